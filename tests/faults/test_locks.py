"""A DDL step on a table under live writes, a blocker holding a lock: the tool's lock timeout keeps
writers moving where plain psql stalls them; the run lock keeps runs apart and never sticks."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import RUNBOOKS, cli
from tests.faults.support import WAITS, events, start, wait_until, waits_args

pytestmark = pytest.mark.slow  # lock stalls and retries run out their timeouts


DDL = str(RUNBOOKS / "ddl.yaml")
LOCK_TIMEOUT = 1.0
BLOCK_FOR = 10.0


def run_json(runbook: str, database_url: str, dbname: str) -> subprocess.CompletedProcess[str]:
    """`dcx-runbook run` with JSON events, against the test's database."""
    return cli(
        "run",
        runbook,
        "--yes",
        "--output",
        "json",
        "--database-url",
        database_url,
        "--var",
        f"expected_database={dbname}",
    )


class Writers:
    """Several clients inserting at a steady rate; records every insert's latency."""

    def __init__(self, url: str, clients: int = 4, interval: float = 0.02):
        self.url, self.clients, self.interval = url, clients, interval
        self.latencies: list[tuple[float, float]] = []
        self.last_start: dict[int, float] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, daemon=True) for _ in range(clients)]

    def _write(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    conn.execute("INSERT INTO busy DEFAULT VALUES")
                except psycopg.Error as exc:
                    self.errors.append(str(exc))
                self.latencies.append((start, time.monotonic() - start))
                self.last_start[threading.get_ident()] = start
                time.sleep(self.interval)

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def max_stall(self, since: float) -> float:
        """The longest insert started since `since`, once every writer has finished an insert
        started after now: an insert still queued behind a lock is counted, not missed."""
        now = time.monotonic()
        deadline = now + 30
        while len(self.last_start) < self.clients or min(self.last_start.values()) < now:
            assert time.monotonic() < deadline, "the writers stopped writing"
            time.sleep(0.02)
        return max(latency for start, latency in self.latencies if start >= since)


def hold_lock(url: str, seconds: float, started: threading.Event) -> threading.Thread:
    """A long transaction holding ACCESS SHARE on busy (a report query left open). Returns once
    the lock is held, so every measurement below really happens behind the blocker."""
    failure: list[BaseException] = []

    def body() -> None:
        try:
            with psycopg.connect(url, application_name="blocker") as conn:
                conn.execute("SELECT count(*) FROM busy /* the long report */")
                started.set()
                time.sleep(seconds)
                conn.rollback()
        except BaseException as exc:  # reported by the caller, not lost in the thread
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    assert started.wait(30), "the blocker never got its lock"
    assert not failure, f"the blocker failed: {failure[0]}"
    return thread


@pytest.fixture
def busy(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE busy (id bigserial, at timestamptz DEFAULT now())")
    db.execute("CREATE UNIQUE INDEX busy_id_key ON busy (id)")


def test_ddl_under_a_blocker_keeps_writers_moving_where_psql_stalls_them(
    database_url: str, dbname: str, busy: None, db: psycopg.Connection
) -> None:
    with Writers(database_url) as writers:
        time.sleep(0.5)
        started = threading.Event()
        blocker = hold_lock(database_url, BLOCK_FOR, started)
        started.wait(10)
        window = time.monotonic()
        result = run_json(DDL, database_url, dbname)
        blocker.join()
        tool_stall = writers.max_stall(window)

        db.execute("CREATE UNIQUE INDEX IF NOT EXISTS busy_id_key ON busy (id)")
        started = threading.Event()
        blocker = hold_lock(database_url, BLOCK_FOR, started)
        started.wait(10)
        window = time.monotonic()
        subprocess.run(
            ["psql", "-X", "-q", database_url, "-c", "DROP INDEX busy_id_key"], check=True
        )
        blocker.join()
        psql_stall = writers.max_stall(window)

    assert result.returncode in (0, 1), result.stderr + result.stdout
    stream = events(result.stdout)
    waits = [e for e in stream if e["event"] == "lock_wait"]
    assert len(waits) >= 2, "the step should have timed out and retried"
    blockers = " ".join(b for e in waits for b in e["detail"]["blockers"])
    assert "app blocker" in blockers and "the long report" in blockers
    assert "pid " in blockers
    if result.returncode == 0:
        assert stream[-1]["status"] == "succeeded"
    else:
        assert "the system is as it was" in stream[-1]["message"]
    assert not writers.errors
    # Writers queue behind a waiting DDL; with the tool they wait at most one lock timeout.
    assert tool_stall < LOCK_TIMEOUT + 2.0, tool_stall
    assert psql_stall > BLOCK_FOR / 2, psql_stall
    print(f"max writer stall: dcx-runbook {tool_stall:.2f}s, plain psql {psql_stall:.2f}s")


def test_attempts_run_out_then_the_run_unwinds(
    database_url: str, dbname: str, busy: None, tmp_path: Path
) -> None:
    short = tmp_path / "ddl.yaml"
    short.write_text(Path(DDL).read_text().replace("attempts: 10", "attempts: 2"))
    started = threading.Event()
    blocker = hold_lock(database_url, 8, started)
    started.wait(10)
    result = run_json(str(short), database_url, dbname)
    blocker.join()
    assert result.returncode == 1, result.stderr + result.stdout
    end = events(result.stdout)[-1]
    assert "could not get a lock within 1s in 2 attempt(s)" in end["message"]
    assert "blocked by: pid" in end["message"]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.env").write_text("MODE=prod\n")
    return work


def test_second_run_is_refused_naming_the_first_and_the_lock_dies_with_it(
    database_url: str, dbname: str, work: Path
) -> None:
    first = start(*waits_args(database_url, dbname, work, "--skip", "wait-sql"))
    wait_until(lambda: (work / "ready").exists(), "the first run to hold the lock")
    run_id = events(first.stdout.readline())[0]["detail"]["run_id"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        apps = [
            r[0]
            for r in conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'dcx-runbook/%'"
            )
        ]
    assert f"dcx-runbook/waits/{run_id}" in apps  # a DBA sees who is working

    second = cli(
        "run",
        WAITS,
        "--yes",
        "--database-url",
        database_url,
        "--var",
        f"expected_database={dbname}",
        "--var",
        f"work={work}",
        timeout=20,
    )

    assert second.returncode == 4, second.stderr
    assert f"run {run_id}" in second.stderr
    assert "since" in second.stderr and "@" in second.stderr  # operator@host, since when

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    (work / "go").touch()
    third = cli(
        "run",
        WAITS,
        "--yes",
        "--database-url",
        database_url,
        "--var",
        f"expected_database={dbname}",
        "--var",
        f"work={work}",
        "--skip",
        "wait-sql",
    )
    assert third.returncode == 0, third.stderr  # the killed run's lock did not stick


def test_a_retry_outside_a_transaction_resumes_at_the_operation_that_timed_out(
    database_url: str, dbname: str, busy: None, tmp_path: Path, db: psycopg.Connection
) -> None:
    runbook = tmp_path / "two-ops.yaml"
    runbook.write_text(
        Path(DDL)
        .read_text()
        .replace(
            "    action:\n      - {kind: sql, sql: DROP INDEX busy_id_key}",
            "    transaction: false\n"
            "    action:\n"
            "      - {kind: sql, sql: CREATE TABLE audit_marker (id int)}\n"
            "      - {kind: sql, sql: DROP INDEX busy_id_key}",
        )
        .replace(
            "        - {kind: sql, sql: CREATE UNIQUE INDEX busy_id_key ON busy (id)}",
            "        - {kind: sql, sql: CREATE UNIQUE INDEX IF NOT EXISTS busy_id_key ON busy (id)}\n"
            "        - {kind: sql, sql: DROP TABLE IF EXISTS audit_marker}",
        )
    )
    assert "audit_marker" in runbook.read_text()
    started = threading.Event()
    blocker = hold_lock(database_url, 3, started)
    result = run_json(str(runbook), database_url, dbname)
    blocker.join()
    assert result.returncode == 0, result.stdout + result.stderr
    stream = events(result.stdout)
    assert any(e["event"] == "lock_wait" for e in stream)
    creates = [
        e
        for e in stream
        if e["event"] == "operation"
        and e["status"] == "started"
        and "CREATE TABLE audit_marker" in e["message"]
    ]
    assert len(creates) == 1, "the CREATE before the timed-out DROP ran again"
    assert db.execute("SELECT to_regclass('audit_marker') IS NOT NULL").fetchone() == (True,)
