"""The write-ahead record of a step is durable before anything of its action takes effect.

Its flush runs on a worker thread while the database works: a transactional action only takes
effect at COMMIT, so COMMIT waits for the flush; an operation that takes effect at once (a
non-transactional statement, a shell command, a file) waits before it starts. These tests run the
engine in-process and look at the database from a second connection at the moment the engine
waits for the flush."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dcx_runbook import api
from dcx_runbook.engine.session import Options
from dcx_runbook.errors import ExitCode, JournalError
from dcx_runbook.reporters.base import Collecting
from dcx_runbook.state.durable import Syncer as _Syncer
from dcx_runbook.state.journal import Journal, RunRecord
from dcx_runbook.target import db
from tests.conftest import write_runbook


def insert(n: int, *, transaction: bool = True) -> dict[str, Any]:
    return {
        "id": f"insert-{n}",
        "title": f"insert {n}",
        "transaction": transaction,
        "action": [{"kind": "sql", "sql": f"INSERT INTO ledger VALUES ({n})"}],
        "verify": [
            {"kind": "sql", "query": f"SELECT count(*) FROM ledger WHERE n = {n}", "expect": 1}
        ],
        "rollback": {"action": [{"kind": "sql", "sql": f"DELETE FROM ledger WHERE n = {n}"}]},
    }


def touch(path: Path) -> dict[str, Any]:
    return {
        "id": "touch",
        "title": "touch a marker",
        "action": [{"kind": "shell", "argv": ["touch", str(path)]}],
        "verify": [{"kind": "file", "path": str(path), "exists": True}],
        "rollback": {"action": [{"kind": "shell", "argv": ["rm", "-f", str(path)]}]},
    }


def run(path: Path, url: str, state: Path) -> Any:
    return api.run(
        str(path),
        reporter=Collecting(),
        database_url=url,
        options=Options(yes=True),
        journal=Journal(state),
    )


@pytest.fixture
def ledger(db: psycopg.Connection) -> psycopg.Connection:
    db.execute("CREATE TABLE ledger (n int)")
    return db


def test_nothing_takes_effect_before_its_write_ahead_record_is_durable(
    ledger: psycopg.Connection,
    database_url: str,
    tmp_path: Path,
    _isolate: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "marker"
    path = write_runbook(
        tmp_path / "write-ahead.yaml",
        "write-ahead",
        [insert(1), insert(2, transaction=False), touch(marker)],
    )
    seen: list[tuple[str, list[int], bool]] = []
    real = RunRecord.save_ahead

    def observed(self: RunRecord, *entries: dict[str, Any]) -> Callable[[], None]:
        wait = real(self, *entries)
        step = entries[0]["id"]
        journal_line = self.log_path.read_text().splitlines()[-1]
        assert '"action_started"' in journal_line and step in journal_line

        def waiting() -> None:
            rows = [r[0] for r in ledger.execute("SELECT n FROM ledger ORDER BY n")]
            seen.append((step, rows, marker.exists()))
            wait()

        return waiting

    monkeypatch.setattr(RunRecord, "save_ahead", observed)

    outcome = run(path, database_url, _isolate)

    assert outcome.exit_code == ExitCode.OK, outcome.message
    # Each step waited for its record first, and nothing of that step was visible yet: the
    # transactional insert not committed, the autocommit insert not sent, the file not there.
    assert seen == [("insert-1", [], False), ("insert-2", [1], False), ("touch", [1, 2], False)]
    assert [r[0] for r in ledger.execute("SELECT n FROM ledger ORDER BY n")] == [1, 2]
    assert marker.exists()


def test_a_record_that_cannot_be_flushed_stops_the_step_before_it_takes_effect(
    ledger: psycopg.Connection,
    database_url: str,
    tmp_path: Path,
    _isolate: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_runbook(tmp_path / "write-ahead.yaml", "write-ahead", [insert(1), insert(2)])
    real_fdatasync = os.fdatasync
    calls = {"n": 0}

    def failing_on_the_worker(fd: int) -> None:
        if threading.current_thread().name == "dcx-journal-sync":
            calls["n"] += 1
            if calls["n"] == 2:  # the second step's record
                raise OSError(5, "Input/output error")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", failing_on_the_worker)

    outcome = run(path, database_url, _isolate)

    assert outcome.exit_code == ExitCode.UNDONE
    assert "could not be made durable" in outcome.message
    # Step 2 never committed; step 1 was undone by the unwind.
    assert ledger.execute("SELECT count(*) FROM ledger").fetchone() == (0,)


def test_a_failing_flush_reaches_the_waiter_instead_of_hanging_it() -> None:
    read, write = os.pipe()
    try:
        # fdatasync on a pipe fails (EINVAL): the waiter hears of it instead of hanging.
        syncer = _Syncer(write)
        with pytest.raises(JournalError, match="could not be made durable"):
            syncer.request()()
        syncer.close()
    finally:
        os.close(read)
        os.close(write)


def test_closing_flushes_what_was_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []
    real_fdatasync = os.fdatasync

    def counting(fd: int) -> None:
        flushed.append(fd)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    with open(tmp_path / "log", "ab") as fh:
        fh.write(b"line\n")
        fh.flush()
        syncer = _Syncer(fh.fileno())
        wait = syncer.request()
        syncer.close()  # joins the worker after its last flush
        assert flushed == [fh.fileno()]
        wait()


def test_a_commit_the_server_turns_into_a_rollback_is_an_error(
    ledger: psycopg.Connection, database_url: str
) -> None:
    conn = db.connect(database_url, "dcx-runbook/test")
    try:
        with pytest.raises(psycopg.errors.InFailedSqlTransaction, match="ROLLBACK to COMMIT"):
            with db.transaction(conn, db.Policy(), before_commit=lambda: None):
                conn.execute("INSERT INTO ledger VALUES (1)")
                try:  # a statement fails and someone swallows the error: the transaction is dead
                    conn.execute("SELECT 1 / 0")
                except psycopg.errors.DivisionByZero:
                    pass
        assert ledger.execute("SELECT count(*) FROM ledger").fetchone() == (0,)
    finally:
        conn.close()
