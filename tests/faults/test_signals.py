"""Ctrl-C, SIGTERM and a lost backend in the middle of a step: cancel, unwind, say what happened."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest

from tests.conftest import cli, schema_dump, snapshot
from tests.faults.support import (
    events,
    start,
    wait_until,
    waiting_on_advisory_lock,
    waits_args,
)

pytestmark = pytest.mark.slow  # signals mid-step: real processes, waits, unwinds


@pytest.fixture
def work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.env").write_bytes(b"# settings\nMODE=prod\n")
    return work


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_shell_step_stops_the_child_unwinds_and_exits_130(
    database_url: str, dbname: str, work: Path, sig: signal.Signals
) -> None:
    before = schema_dump(database_url), snapshot(work / "app.env", work / "marker")
    proc = start(*waits_args(database_url, dbname, work, "--skip", "wait-sql"))
    wait_until(lambda: (work / "ready").exists(), "the shell step to start")

    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err + out
    stream = events(out)
    assert [e["step"] for e in stream if e["event"] == "step_undone"] == ["wait-shell", "prep"]
    assert stream[-1]["status"] == "interrupted"
    assert (schema_dump(database_url), snapshot(work / "app.env", work / "marker")) == before
    # The child's loop was stopped, not left behind waiting for its go file.
    assert "undo" not in err


def test_ctrl_c_during_a_query_cancels_it_and_unwinds(
    database_url: str, dbname: str, work: Path
) -> None:
    before = schema_dump(database_url), snapshot(work / "app.env")
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(4242)")
        proc = start(*waits_args(database_url, dbname, work, "--skip", "wait-shell"))
        wait_until(lambda: waiting_on_advisory_lock(database_url, 4242), "the query to wait")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        # The cancelled query no longer waits: the run's backend gave the lock request up.
        assert not waiting_on_advisory_lock(database_url, 4242)
    assert proc.returncode == 130, err + out
    assert (schema_dump(database_url), snapshot(work / "app.env")) == before


def test_second_ctrl_c_while_unwinding_keeps_the_journal_and_says_how_to_finish(
    database_url: str, dbname: str, work: Path
) -> None:
    before = schema_dump(database_url), snapshot(work / "app.env", work / "marker")
    proc = start(
        *waits_args(database_url, dbname, work, "--skip", "wait-sql", "--var", "undo_wait=yes")
    )
    wait_until(lambda: (work / "ready").exists(), "the shell step to start")
    proc.send_signal(signal.SIGINT)
    wait_until(lambda: (work / "undo-ready").exists(), "the unwind to reach prep")

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 3, err + out
    end = events(out)[-1]
    run_id = end["detail"]["run_id"]
    assert f"dcx-runbook rollback {run_id}" in end["message"]
    assert end["detail"]["still_applied"] == ["prep"]
    (work / "undo-go").touch()
    finish = cli("rollback", run_id, "--yes", "--database-url", database_url)
    assert finish.returncode == 0, finish.stderr
    assert (schema_dump(database_url), snapshot(work / "app.env", work / "marker")) == before


def test_backend_terminated_mid_step_reconnects_and_unwinds(
    database_url: str, dbname: str, work: Path
) -> None:
    before = schema_dump(database_url), snapshot(work / "app.env")
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(4242)")
        proc = start(*waits_args(database_url, dbname, work, "--skip", "wait-shell"))
        wait_until(lambda: waiting_on_advisory_lock(database_url, 4242), "the query to wait")
        holder.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'dcx-runbook/waits/%' AND wait_event_type = 'Lock'"
        )
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err + out
    stream = events(out)
    assert any(
        "connection" in (e["message"] or "") and "lost" in (e["message"] or "")
        for e in stream
        if e["event"] in ("unwind_started", "log")
    )
    undone = [(e["step"], e["status"]) for e in stream if e["event"] == "step_undone"]
    # wait-sql's transaction died with its backend: nothing of it is left to undo.
    assert undone == [("wait-sql", "nothing_to_undo"), ("prep", "rolled_back")]
    assert (schema_dump(database_url), snapshot(work / "app.env")) == before
