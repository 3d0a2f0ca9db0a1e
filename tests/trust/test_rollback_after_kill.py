"""A run killed with SIGKILL in the middle of a step's transaction, then `rollback` at once: the
server has not ended the dead run's session yet (it notices when the statement ends), so its
transaction is still open. The rollback waits for it to end (said), reads the ledger again, and
undoes only what was committed: it used to run the step's undo on a transaction that never
committed and stop with "undo incomplete". The step turns off the server's check for dead
clients (the engine sets it to 1 s), so the session outlives the process for a while, as it does
where the platform can't check: the window is certain, not a matter of timing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import cli, schema_dump, write_runbook

pytestmark = pytest.mark.slow

STEPS = [
    {
        "id": "create-t1",
        "title": "create t1",
        "action": [{"kind": "sql", "sql": "CREATE TABLE t1 (id int)"}],
        "verify": [
            {"kind": "sql", "query": "SELECT to_regclass('t1') IS NOT NULL", "expect": True}
        ],
        "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t1"}]},
    },
    {
        "id": "create-t2",
        "title": "create t2, slowly",
        "action": [
            {
                "kind": "sql",
                "sql": "SET client_connection_check_interval = 0; CREATE TABLE t2 (id int); SELECT pg_sleep(4)",
            }
        ],
        "verify": [
            {"kind": "sql", "query": "SELECT to_regclass('t2') IS NOT NULL", "expect": True}
        ],
        "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t2"}]},
    },
]


def test_rollback_right_after_a_kill_waits_for_the_dead_session_then_undoes_what_committed(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    path = write_runbook(tmp_path / "slow.yaml", "slow", STEPS)
    before = schema_dump(database_url)
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dcx_runbook",
            "run",
            str(path),
            "--yes",
            "-o",
            "json",
            "--database-url",
            database_url,
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    for line in run.stdout:
        if json.loads(line)["event"] == "step_started" and '"create-t2"' in line:
            break
    time.sleep(0.5)  # in step 2's transaction, in its pg_sleep
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    run_id = next((tmp_path / "state" / "runs").glob("*.json")).stem

    done = cli("rollback", run_id, "--yes", "-o", "json", "--database-url", database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    said = [json.loads(line)["message"] or "" for line in done.stdout.splitlines()]
    assert any("waiting for the server to end the session" in m for m in said)
    assert schema_dump(database_url) == before
