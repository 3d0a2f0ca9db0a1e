#!/usr/bin/env python3
"""The floor of any Python tool built on psycopg: the statements of an SQL file, one per line,
sent one by one over one autocommit connection; no journal, no checks, no events.

    python benchmarks/bare_psycopg.py URL FILE.sql

Beside psql and dcx-runbook, it tells what the language and the driver cost (start-up, imports,
per statement) from what dcx-runbook's engine adds."""

from __future__ import annotations

import sys

import psycopg


def main(url: str, path: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn, open(path) as statements:
        for line in statements:
            statement = line.strip()
            if statement:
                conn.execute(statement)


if __name__ == "__main__":
    main(*sys.argv[1:3])
