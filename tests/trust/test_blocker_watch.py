"""The blocker watch of a connection that was lost is stopped, not dropped with its thread still
polling (issue 12, item 10)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from dcx_runbook import api
from dcx_runbook.engine.session import Options
from dcx_runbook.reporters.base import Collecting
from dcx_runbook.state.journal import Journal
from dcx_runbook.target import db
from tests.faults.support import WAITS, wait_until, waiting_on_advisory_lock

pytestmark = pytest.mark.slow  # blocker watch threads and reconnects


def watch_threads() -> int:
    return sum(t.name == "dcx-blocker-watch" and t.is_alive() for t in threading.enumerate())


def test_closing_a_blocker_watch_ends_its_thread_and_connection(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        watch = db.BlockerWatch(
            lambda: db.connect(database_url, "dcx-test/monitor"),
            conn.info.backend_pid,
            grace=0.0,
            interval=0.05,
        )
        before = watch_threads()
        with watch.watching():
            wait_until(lambda: monitors(conn) == 1, "the watch to connect")
        assert watch_threads() == before + 1
        watch.close()
        assert watch_threads() == before
        wait_until(lambda: monitors(conn) == 0, "the watch's connection to close")


def monitors(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dcx-test/monitor'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_reconnect_stops_the_old_watch(tmp_path: Path, database_url: str, dbname: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.env").write_text("MODE=prod\n")
    before = watch_threads()
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(4242)")

        def cut() -> None:  # the run stays in the main thread (its signal handlers)
            wait_until(lambda: waiting_on_advisory_lock(database_url, 4242), "the query to wait")
            time.sleep(0.3)  # past the watch's grace: its thread runs and polls
            with psycopg.connect(database_url, autocommit=True) as killer:
                killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "application_name LIKE 'dcx-runbook/waits/%' AND wait_event_type = 'Lock'"
                )

        cutter = threading.Thread(target=cut)
        cutter.start()
        outcome = api.run(
            WAITS,
            reporter=Collecting(),
            var=[f"expected_database={dbname}", f"work={work}"],
            database_url=database_url,
            options=Options(yes=True, skip=("wait-shell",)),
            journal=Journal(tmp_path / "state"),
        )
        cutter.join(timeout=60)
    assert outcome.exit_code == 1, outcome.message
    assert watch_threads() == before
