"""Runbook parts and readers for the ledger tests (machines: tests/support/machines.py)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import psycopg

CREATE_T = {
    "id": "create-t",
    "title": "Create table t",
    "done_when": [{"kind": "sql", "query": "SELECT to_regclass('t') IS NOT NULL", "expect": True}],
    "action": [{"kind": "sql", "sql": "CREATE TABLE t (id int PRIMARY KEY, note text)"}],
    "verify": [{"kind": "sql", "query": "SELECT to_regclass('t') IS NOT NULL", "expect": True}],
    "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t"}]},
}
INDEX_T = {
    "id": "index-t",
    "title": "Index t.note, outside a transaction",
    "transaction": False,
    "done_when": [
        {"kind": "sql", "query": "SELECT to_regclass('t_note_idx') IS NOT NULL", "expect": True}
    ],
    "action": [{"kind": "sql", "sql": "CREATE INDEX CONCURRENTLY t_note_idx ON t (note)"}],
    "verify": [
        {"kind": "sql", "query": "SELECT to_regclass('t_note_idx') IS NOT NULL", "expect": True}
    ],
    "rollback": {"action": [{"kind": "sql", "sql": "DROP INDEX CONCURRENTLY t_note_idx"}]},
}


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def last(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    found = events(result.stdout)
    assert found, result.stdout + result.stderr
    return found[-1]


def ledger_steps(url: str, schema: str = "dcx_runbook") -> dict[tuple[str, str], str]:
    """{(run id, step id): status} as the target's ledger has them."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(f"SELECT run_id, step_id, status FROM {schema}.steps").fetchall()
    return {(r[0], r[1]): r[2] for r in rows}
