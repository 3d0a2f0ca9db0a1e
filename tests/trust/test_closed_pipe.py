"""Closing the human output's pipe (`run X 2>&1 | head`, `| less` then q, a dead `tee`) ends
the output, not the run (issue 12, item 3). rich answers a broken pipe with SystemExit(1): the
run stopped after step 1, its change applied, with the exit code that says "all undone"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from dcx_runbook.state.journal import Journal
from tests.conftest import write_runbook
from tests.support.ledger import CREDIT, balance, wallet

pytestmark = pytest.mark.slow


SLOW_T = {
    "id": "slow-t",
    "title": "a precheck that takes a while, then create table t",
    "precheck": [{"kind": "sql", "query": "SELECT 1 FROM pg_sleep(0.5)", "expect": 1}],
    "action": [{"kind": "sql", "sql": "CREATE TABLE t (x int)"}],
    "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t"}]},
}


def test_human_output_to_a_closed_pipe_lets_the_run_finish(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    wallet(db)
    path = write_runbook(tmp_path / "rb.yaml", "closed-human-pipe", [CREDIT, SLOW_T])
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcx_runbook", "run", str(path), "--yes"]
        + ["--database-url", database_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # 2>&1 | head -n 1
    )
    assert proc.stdout is not None
    assert proc.stdout.readline()  # the first line of the panel
    proc.stdout.close()  # the reader goes away while the run works

    assert proc.wait(timeout=60) == 0
    assert balance(db) == 110
    assert db.execute("SELECT to_regclass('t') IS NOT NULL").fetchone() == (True,)
    [(_, record)] = list(Journal(tmp_path / "state").records())
    assert isinstance(record, dict) and record["status"] == "succeeded"
    assert [s["status"] for s in record["steps"]] == ["applied", "applied"]
