"""A run killed before it changed anything stayed "interrupted" in `status` forever: rolling it
back found nothing to undo and wrote nothing, so its record still said running. Found by the
fleet crash test when the kill fell before a target's first change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli, write_runbook

pytestmark = pytest.mark.slow  # a real process killed mid-precheck

WAIT = {
    "id": "wait-then-create",
    "title": "a long precheck, then a change",
    "precheck": [{"kind": "shell", "name": "a slow check", "argv": ["sleep", "30"]}],
    "action": [{"kind": "sql", "sql": "CREATE TABLE t (id int)"}],
    "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t"}]},
}


def test_a_run_killed_before_any_change_is_settled_by_its_rollback(
    tmp_path: Path, database_url: str, _isolate: Path
) -> None:
    path = write_runbook(tmp_path / "slow.yaml", "slow", [WAIT])
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcx_runbook", "run", str(path), "--yes", "-o", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((_isolate / "runs").glob("*.json")):
        time.sleep(0.1)
    time.sleep(1.0)  # in its precheck: nothing changed yet
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (record,) = (_isolate / "runs").glob("*.json")
    run_id = record.stem
    assert json.loads(record.read_text())["status"] == "running"

    undone = cli("rollback", run_id, "--yes", "--database-url", database_url)
    assert undone.returncode == 0, undone.stderr
    assert "nothing to undo" in undone.stderr

    seen = cli("status", "-o", "json", "--database-url", database_url)
    assert seen.returncode == 0, seen.stderr
    assert [x for x in json.loads(seen.stdout)["live"] if x["run_id"] == run_id] == []
    (settled,) = json.loads(record.read_text())["rollbacks"]
    assert settled["status"] == "nothing_to_undo" and settled["exit_code"] == 0
