"""A COMMIT whose answer is lost: the server committed (or not), the client can't tell.

The connection goes through a real TCP proxy that forwards the first COMMIT to PostgreSQL and
then cuts the connection instead of passing its answer back: the server has committed, the
client sees a dead connection during COMMIT. The unwind used to take the step for rolled back
(its transaction "died with the connection"), leave its change in place and say that every
change was undone. It now asks the server what became of the transaction."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from dcx_runbook import api
from dcx_runbook.engine.session import Options
from dcx_runbook.errors import ExitCode
from dcx_runbook.reporters.base import Collecting
from dcx_runbook.state.journal import Journal
from dcx_runbook.target import ledger
from tests.conftest import write_runbook
from tests.support.ledger import CREDIT, wallet

pytestmark = pytest.mark.slow


class CommitCutter:
    """Forwards PostgreSQL connections; the first simple-protocol COMMIT reaches the server and
    its answer never reaches the client: both sockets are closed instead."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            commit_sent = threading.Event()
            threading.Thread(
                target=self._pump, args=(client, server, commit_sent, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, commit_sent, False), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, commit_sent: threading.Event, up: bool
    ) -> None:
        try:
            while data := src.recv(65536):
                if not up and commit_sent.is_set():
                    self.cut.set()  # the server answered COMMIT: the client never hears it
                    break
                if up and self.armed.is_set() and b"COMMIT\x00" in data:
                    self.armed.clear()
                    commit_sent.set()  # before forwarding: the answer can't overtake it
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def cutter(database_url: str) -> Iterator[tuple[CommitCutter, str]]:
    parts = urlsplit(database_url)
    proxy = CommitCutter((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    yield proxy, urlunsplit(parts._replace(netloc=netloc))
    proxy.close()


def test_a_commit_whose_answer_is_lost_is_asked_about_and_undone(
    tmp_path: Path, db: psycopg.Connection, cutter: tuple[CommitCutter, str]
) -> None:
    proxy, url = cutter
    wallet(db)
    db.execute(ledger.ddl(ledger.DEFAULT_SCHEMA))  # the first COMMIT cut must be the step's
    path = write_runbook(tmp_path / "rb.yaml", "lost-commit", [CREDIT])
    proxy.armed.set()
    reporter = Collecting()
    outcome = api.run(
        str(path),
        reporter=reporter,
        database_url=url,
        options=Options(yes=True),
        journal=Journal(tmp_path / "state"),
    )
    assert proxy.cut.is_set(), "the COMMIT's answer was not cut: the test proved nothing"
    said = [e.message or "" for e in reporter.events if e.type == "log"]
    assert any("the server says transaction" in m and "committed" in m for m in said), said
    assert outcome.exit_code == ExitCode.UNDONE, outcome.message
    row = db.execute("SELECT balance FROM wallet").fetchone()
    assert row == (100,), "the committed change was left in place"
    record = Journal(tmp_path / "state").load(outcome.run_id)
    assert record.data["steps"][0]["status"] == "failed"
    # The step's ledger row committed with its change (applied), and its undo says so.
    rows = db.execute("SELECT status FROM dcx_runbook.steps").fetchall()
    assert rows == [("failed",)]


def test_ctrl_c_during_a_slow_commit_asks_the_server_and_finds_it_aborted(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """Ctrl-C while COMMIT runs (a deferred trigger makes it take 2 s): psycopg cancels it and
    raises KeyboardInterrupt whatever the outcome; the server says the transaction aborted, so
    there is nothing of the step to undo, and the run says so truthfully (exit 130)."""
    wallet(db)
    db.execute(
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$"
    )
    db.execute(
        "CREATE CONSTRAINT TRIGGER slow AFTER UPDATE ON wallet DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION slow_commit()"
    )
    path = write_runbook(tmp_path / "rb.yaml", "slow-commit", [CREDIT])
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcx_runbook", "run", str(path), "--yes", "-o", "json"]
        + ["--database-url", database_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if lines[-1]["event"] == "check" and lines[-1]["phase"] == "verify":
            break
    time.sleep(0.7)  # COMMIT is running the 2 s deferred trigger
    proc.send_signal(signal.SIGINT)
    lines += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == ExitCode.INTERRUPTED, proc.stderr.read() if proc.stderr else ""
    said = [e["message"] for e in lines if e["event"] == "log"]
    assert any("the server says transaction" in m and "aborted" in m for m in said), said
    assert lines[-1]["event"] == "run_finished" and lines[-1]["status"] == "interrupted"
    assert db.execute("SELECT balance FROM wallet").fetchone() == (100,)
