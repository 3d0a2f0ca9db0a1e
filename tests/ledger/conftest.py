"""Machines for the ledger tests: each one its own state directory and its own host name (a real
UTS namespace, `unshare -u`), running the real CLI in a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

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


@dataclass
class Machine:
    """A laptop of the on-call team: its host name and its state directory."""

    host: str
    state: Path

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env={**os.environ, "DCX_RUNBOOK_STATE_DIR": str(self.state), **(env or {})},
            timeout=timeout,
            check=False,
        )

    def argv(self, *args: str) -> list[str]:
        # A UTS namespace of its own: socket.gethostname() in the tool says this host.
        script = 'hostname "$0" && exec "$@"'
        command = [sys.executable, "-m", "dcx_runbook", *args]
        return ["unshare", "--uts", "sh", "-c", script, self.host, *command]


@pytest.fixture
def machines(tmp_path: Path) -> tuple[Machine, Machine, Machine]:
    if shutil.which("unshare") is None:  # pragma: no cover - util-linux is on every CI machine
        pytest.fail("unshare (util-linux) is needed to give each machine its host name")
    return (
        Machine("machine-a", tmp_path / "state-a"),
        Machine("machine-b", tmp_path / "state-b"),
        Machine("machine-c", tmp_path / "state-c"),
    )


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
