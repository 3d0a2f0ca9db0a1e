"""The journal's disk fills up in the middle of a run: one clear error, exit 3, no traceback, and
once there is room again `dcx-runbook rollback` puts everything back.

The disk is filled for real, by the kernel: the run's process gets a file size limit
(RLIMIT_FSIZE) just under what its journal needs, so an append fails part-way through a line,
the way a full file system fails it (EFBIG here, ENOSPC there: the same OSError path)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dcx_runbook.state.journal import Journal
from tests.conftest import cli, write_runbook
from tests.faults.support import events

pytestmark = pytest.mark.slow


STEPS = 12


def step(n: int) -> dict[str, Any]:
    return {
        "id": f"insert-{n}",
        "title": f"insert row {n} into the ledger",
        # done_when keeps the record lint-free: its size below is the steps' own.
        "done_when": [
            {"kind": "sql", "query": f"SELECT count(*) FROM ledger WHERE n = {n}", "expect": 1}
        ],
        "action": [{"kind": "sql", "sql": f"INSERT INTO ledger VALUES ({n})"}],
        "verify": [
            {"kind": "sql", "query": f"SELECT count(*) FROM ledger WHERE n = {n}", "expect": 1},
            # A captured value is journaled with the step: each step's log line carries 4 KB.
            {"kind": "sql", "query": "SELECT repeat('x', 4000)", "capture": f"pad_{n}"},
        ],
        "rollback": {"action": [{"kind": "sql", "sql": f"DELETE FROM ledger WHERE n = {n}"}]},
    }


@pytest.fixture
def runbook(tmp_path: Path) -> Path:
    return write_runbook(tmp_path / "ledger.yaml", "ledger", [step(n) for n in range(1, STEPS + 1)])


def rows(db: psycopg.Connection) -> int:
    row = db.execute("SELECT count(*) FROM ledger").fetchone()
    assert row is not None
    return int(row[0])


def run_limited(args: list[str], limit: int, state: Path) -> subprocess.CompletedProcess[str]:
    def limit_file_size() -> None:  # Python ignores SIGXFSZ: a write over the limit gets EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "dcx_runbook", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DCX_RUNBOOK_STATE_DIR": str(state)},
        preexec_fn=limit_file_size,  # noqa: PLW1509 - the child execs at once
        timeout=120,
        check=False,
    )


def test_a_full_disk_mid_run_stops_cleanly_and_rollback_finishes_once_there_is_room(
    db: psycopg.Connection, database_url: str, runbook: Path, tmp_path: Path
) -> None:
    db.execute("CREATE TABLE ledger (n int)")
    args = ["run", str(runbook), "--yes", "--output", "json", "--database-url", database_url]

    # How big the whole record gets, measured on a run with room (then undone).
    roomy = tmp_path / "roomy-state"
    assert cli(*args, env={"DCX_RUNBOOK_STATE_DIR": str(roomy)}).returncode == 0
    assert cli("rollback", "--yes", "--database-url", database_url,
               env={"DCX_RUNBOOK_STATE_DIR": str(roomy)}).returncode == 0  # fmt: skip
    (record,) = (roomy / "runs").glob("*.json")
    assert rows(db) == 0

    # Half of that: the record at the start (no captured values yet) fits, the log of the steps
    # (4 KB more each) outgrows it half-way through the run.
    limit = record.stat().st_size // 2
    assert record.stat().st_size > STEPS * 4000
    state = tmp_path / "state"
    full = run_limited(args, limit, state)

    assert full.returncode == 3, full.stderr + full.stdout
    assert "Traceback" not in full.stderr
    end = events(full.stdout)[-1]
    assert end["event"] == "run_finished" and end["status"] == "undo_incomplete"
    assert "can't write the journal" in end["message"] and "File too large" in end["message"]
    assert f"dcx-runbook rollback {end['detail']['run_id']}" in end["message"]
    applied = rows(db)
    assert 0 < applied < STEPS  # it stopped part-way
    finished = [e["step"] for e in events(full.stdout) if e["event"] == "step_finished"]
    # The last step committed may have lost its "applied" line (written after COMMIT): its
    # durable "action started" line is what tells rollback to undo it.
    assert finished == [f"insert-{n}" for n in range(1, len(finished) + 1)]
    assert len(finished) in (applied - 1, applied)

    # Rolling back on the same full disk stops the same way. It may undo the last step (whose
    # journal lines are short: its "applied" line, with the captured value, was the one lost)
    # but never one its journal could not record first.
    stuck = run_limited(["rollback", "--yes", "--output", "json", "--database-url", database_url],
                        limit, state)  # fmt: skip
    assert stuck.returncode == 3, stuck.stderr + stuck.stdout
    assert "Traceback" not in stuck.stderr
    end = events(stuck.stdout)[-1]
    assert end["event"] == "run_finished" and end["status"] == "undo_incomplete"
    assert "can't write the journal" in end["message"]
    left = rows(db)
    assert left in (applied, applied - 1)
    if left < applied:  # its undo was journaled before the DELETE (write-ahead)
        (_, data) = next(Journal(state).records())
        assert isinstance(data, dict)
        status = {st["id"]: st["status"] for st in data["steps"]}
        assert status[f"insert-{applied}"] in ("rollback_started", "rolled_back"), status

    # A line torn by a crash in the middle of a write (the failed append above was cut off):
    # rollback must not glue its own lines to it.
    (log,) = [p for p in (state / "runs").glob("*.jsonl") if not p.name.endswith(".events.jsonl")]
    with log.open("ab") as fh:
        fh.write(b'{"seq":999,"top":{"status":"runn')

    # Room again: the journal reads back (its torn last line cut off) and the run is undone.
    undo = cli("rollback", "--yes", "--output", "json", "--database-url", database_url,
               env={"DCX_RUNBOOK_STATE_DIR": str(state)})  # fmt: skip
    assert undo.returncode == 0, undo.stderr + undo.stdout
    assert rows(db) == 0
    listed = cli("runs", env={"DCX_RUNBOOK_STATE_DIR": str(state)})
    assert listed.returncode == 0 and "unreadable" not in listed.stdout


def test_an_append_after_a_torn_line_starts_on_a_line_of_its_own(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state")
    steps = [{"id": "a", "status": "pending"}, {"id": "b", "status": "pending"}]
    record = journal.create(
        {"run_id": "r1", "mode": "run", "runbook": {"name": "t"}, "dry_run": False, "steps": steps}
    )
    record.step("a")["status"] = "applied"
    record.save(record.step("a"))
    record.unlock()
    with record.log_path.open("ab") as fh:  # a crash in the middle of the next append
        fh.write(b'{"seq":99,"top":{"status":"runn')

    resumed = journal.load("r1")  # a rollback picks the run up
    resumed.step("b")["status"] = "rolled_back"
    resumed.save(resumed.step("b"))
    resumed.unlock()

    assert [s["status"] for s in journal.load("r1").data["steps"]] == ["applied", "rolled_back"]
