"""Runbooks and helpers for the trust regressions: every claim a run or rollback makes is checked
against the real database and journal, across runs, processes and servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import cli, write_runbook

# A step done once (done_when) and a step repeated by every run, as an ANALYZE or a regenerate is.
CREATE_T: dict[str, Any] = {
    "id": "create-t",
    "title": "create table t",
    "done_when": [{"kind": "sql", "query": "SELECT to_regclass('t') IS NOT NULL", "expect": True}],
    "action": [{"kind": "sql", "sql": "CREATE TABLE t (x int)"}],
    "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t"}]},
}
ANALYZE_T: dict[str, Any] = {
    "id": "analyze-t",
    "title": "refresh t's statistics",
    "action": [{"kind": "sql", "sql": "ANALYZE t"}],
    "irreversible": "statistics are refreshed again by autovacuum; nothing to undo",
}
CREDIT_AGAIN: dict[str, Any] = {
    "id": "credit",
    "title": "credit 10 (every run)",
    "action": [{"kind": "sql", "sql": "UPDATE wallet SET balance = balance + 10"}],
    "rollback": {"action": [{"kind": "sql", "sql": "UPDATE wallet SET balance = balance - 10"}]},
}


def runbook(tmp_path: Path, name: str, *steps: dict[str, Any]) -> str:
    return str(write_runbook(tmp_path / f"{name}.yaml", name, list(steps)))


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run(path: str, url: str, *extra: str) -> dict[str, Any]:
    """A run through the real CLI; its run_finished event."""
    done = cli("run", path, "--yes", "-o", "json", "--database-url", url, *extra)
    assert done.returncode == 0, done.stderr + done.stdout
    return events(done.stdout)[-1]


def rollback(url: str, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    done = cli("rollback", "--yes", "-o", "json", "--database-url", url, *extra)
    return done.returncode, events(done.stdout), done.stderr


def exists(db: psycopg.Connection, table: str) -> bool:
    row = db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


from tests.engine.conftest import mixed  # noqa: E402, F401 - the four-step fixture, shared
