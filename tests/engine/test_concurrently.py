"""Concurrent index builds in `transaction: false` steps, against a real writer that hasn't
committed: a build that fails leaves an INVALID index, which the engine drops before it retries
the step or lets it fail. And a failed check's event shows the value its message refers to.

The blocker is the pattern that really makes CREATE INDEX CONCURRENTLY time out after its catalog
entry exists: a transaction that wrote to the table and stays open. The build takes its lock on
the table at once (a writer's lock doesn't conflict with it), creates the INVALID index, then
waits for that writer to finish: that wait is what `lock_timeout` cuts short.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pytest

from tests.conftest import cli, write_runbook
from tests.engine.conftest import events

pytestmark = pytest.mark.slow  # index builds cut short by lock_timeout, leftovers dropped


SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "events.schema.json").read_text())
VALID = (
    "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('orders_v_idx') AND indisvalid"
)
# The build has failed: its INVALID index exists and nothing builds any more. The writer may go.
BUILD_FAILED = """
SELECT EXISTS (SELECT FROM pg_index WHERE indrelid = 'orders'::regclass AND NOT indisvalid)
   AND NOT EXISTS (SELECT FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                      AND state = 'active'
                      AND (query ILIKE 'CREATE%INDEX%' OR query ILIKE 'REINDEX%'))
"""


@pytest.fixture
def orders(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE orders (id int, v int)")
    db.execute("INSERT INTO orders SELECT g, g % 100 FROM generate_series(1, 1000) g")


@contextmanager
def writer_left_open(url: str, release_when: str | None, limit: float = 60) -> Iterator[None]:
    """A transaction that inserted into orders and stays open, ended (rolled back) once
    `release_when` holds, polled on a second connection; else when the block is left."""
    holding, leave = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def body() -> None:
        try:
            with psycopg.connect(url, application_name="writer") as writer:
                writer.execute("INSERT INTO orders VALUES (0, 0)")
                holding.set()
                _wait(url, release_when, leave, time.monotonic() + limit)
                writer.rollback()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)
            holding.set()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    assert holding.wait(30) and not failure, failure
    try:
        yield
    finally:
        leave.set()
        thread.join(60)
    assert not failure, failure


def _wait(url: str, release_when: str | None, leave: threading.Event, deadline: float) -> None:
    with psycopg.connect(url, autocommit=True) as watch:
        while not leave.is_set() and time.monotonic() < deadline:
            if release_when is not None and watch.execute(release_when).fetchone() == (True,):
                return
            time.sleep(0.05)


def run(runbook: Path, url: str) -> tuple[int, list[dict[str, Any]]]:
    done = cli("run", str(runbook), "--yes", "--output", "json", "--database-url", url)
    assert "Traceback" not in done.stderr, done.stderr
    stream = events(done.stdout)
    for event in stream:
        jsonschema.validate(event, SCHEMA)
    return done.returncode, stream


def index_step(sql: str, **timeouts: Any) -> dict[str, Any]:
    """The safe pattern of docs/runbook-format.md: its own `transaction: false` step, done when
    the index is valid, rolled back by DROP INDEX CONCURRENTLY IF EXISTS."""
    return {
        "id": "add-index",
        "title": "Index orders.v",
        "transaction": False,
        "lock_timeout": "1s",
        **timeouts,
        "done_when": [{"kind": "sql", "query": VALID, "expect": 1}],
        "action": [{"kind": "sql", "sql": sql}],
        "verify": [{"kind": "sql", "query": VALID, "expect": 1}],
        "rollback": {
            "action": [{"kind": "sql", "sql": "DROP INDEX CONCURRENTLY IF EXISTS orders_v_idx"}]
        },
    }


def indexes(db: psycopg.Connection) -> list[tuple[str, bool]]:
    rows = db.execute(
        "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
        "WHERE indrelid = 'orders'::regclass ORDER BY 1"
    ).fetchall()
    return [(name, valid) for name, valid in rows]


def dropped(stream: list[dict[str, Any]], index: str) -> list[dict[str, Any]]:
    text = f"dropped the INVALID index {index} that the failed statement left"
    return [e for e in stream if e["event"] == "log" and e["message"] == text]


def started(stream: list[dict[str, Any]], phase: str, sql: str) -> int:
    return sum(
        1
        for e in stream
        if e["event"] == "operation"
        and e["status"] == "started"
        and e["phase"] == phase
        and e["message"].startswith(sql)
    )


# ------------------------------------------------------------------------------ lock timeouts


def test_an_index_build_cut_short_by_lock_timeout_is_dropped_then_built_again(
    database_url: str, db: psycopg.Connection, orders: None, tmp_path: Path
) -> None:
    """Without the drop, the retry's IF NOT EXISTS took the INVALID index for the index and
    skipped the build: verify on indisvalid failed, and the run unwound."""
    sql = "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_v_idx ON orders (v)"
    runbook = write_runbook(tmp_path / "cic.yaml", "cic", [index_step(sql, attempts=5)])
    with writer_left_open(database_url, BUILD_FAILED):
        code, stream = run(runbook, database_url)

    assert code == 0, stream[-1]
    waits = [e for e in stream if e["event"] == "lock_wait"]
    assert waits and "writer" in " ".join(waits[0]["detail"]["blockers"])
    (log,) = dropped(stream, "public.orders_v_idx")
    assert log["step"] == "add-index" and log["detail"] == {"index": "public.orders_v_idx"}
    assert stream.index(waits[0]) < stream.index(log)  # dropped after the timeout, then retried
    assert started(stream, "action", sql) == len(waits) + 1
    assert indexes(db) == [("orders_v_idx", True)]
    assert stream[-1]["status"] == "succeeded"


def test_a_leftover_that_cannot_be_dropped_stops_the_retries_and_is_named(
    database_url: str, db: psycopg.Connection, orders: None, tmp_path: Path
) -> None:
    """The writer stays for the whole run: the drop times out too. Retrying would only skip
    the build again; the step fails at once, naming the index the operator has to drop."""
    sql = "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_v_idx ON orders (v)"
    step = index_step(sql, attempts=2, retry_budget="5s")
    runbook = write_runbook(tmp_path / "cic.yaml", "cic", [step])
    with writer_left_open(database_url, release_when=None):
        code, stream = run(runbook, database_url)

    # The unwind's DROP INDEX CONCURRENTLY waits for the same writer and times out as well.
    assert code == 3, stream[-1]
    assert started(stream, "action", sql) == 1, "retried over the leftover"
    assert not dropped(stream, "public.orders_v_idx")
    message = stream[-1]["message"]
    assert (
        "not retried: the INVALID index public.orders_v_idx that the failed statement left "
        "could not be dropped: canceling statement due to lock timeout "
        "(drop it with DROP INDEX CONCURRENTLY public.orders_v_idx)"
    ) in message
    assert indexes(db) == [("orders_v_idx", False)]


def test_a_reindex_cut_short_leaves_no_ccnew_index(
    database_url: str, db: psycopg.Connection, orders: None, tmp_path: Path
) -> None:
    """REINDEX ... CONCURRENTLY builds a copy named <index>_ccnew: the same leftover when it
    fails. Without the drop, the retry built another copy (_ccnew1) beside the INVALID one."""
    db.execute("CREATE INDEX orders_v_idx ON orders (v)")
    no_invalid = (
        "SELECT count(*) FROM pg_index WHERE indrelid = 'orders'::regclass AND NOT indisvalid"
    )
    step = {
        "id": "rebuild-index",
        "title": "Rebuild orders_v_idx",
        "transaction": False,
        "lock_timeout": "1s",
        "attempts": 5,
        "action": [{"kind": "sql", "sql": "REINDEX INDEX CONCURRENTLY orders_v_idx"}],
        "verify": [{"kind": "sql", "query": no_invalid, "expect": 0}],
        "irreversible": "a rebuilt index is the same index",
    }
    runbook = write_runbook(tmp_path / "reindex.yaml", "reindex", [step])
    with writer_left_open(database_url, BUILD_FAILED):
        code, stream = run(runbook, database_url)

    assert code == 0, stream[-1]
    assert any(e["event"] == "lock_wait" for e in stream)
    assert dropped(stream, "public.orders_v_idx_ccnew")
    assert indexes(db) == [("orders_v_idx", True)]


# ----------------------------------------------------------------------------- other failures


def test_a_unique_build_that_fails_on_duplicates_drops_its_leftover_before_the_unwind(
    database_url: str, db: psycopg.Connection, orders: None, tmp_path: Path
) -> None:
    """Not a lock timeout: the build itself fails (duplicate values) after creating its INVALID
    index. The step fails; the leftover is gone before the unwind starts."""
    sql = "CREATE UNIQUE INDEX CONCURRENTLY orders_v_idx ON orders (v)"
    runbook = write_runbook(tmp_path / "unique.yaml", "unique", [index_step(sql)])
    code, stream = run(runbook, database_url)

    assert code == 1, stream[-1]
    (log,) = dropped(stream, "public.orders_v_idx")
    unwind = next(e for e in stream if e["event"] == "unwind_started")
    assert stream.index(log) < stream.index(unwind)
    assert "could not create unique index" in unwind["message"]
    assert indexes(db) == []
    assert "the system is as it was" in stream[-1]["message"]


def test_an_invalid_index_that_was_there_before_is_not_the_steps_to_drop(
    database_url: str, db: psycopg.Connection, orders: None, tmp_path: Path
) -> None:
    """Only what the failed statement itself left is dropped: an INVALID index from an earlier
    failed build (someone else's) stays for its owner to judge."""
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("CREATE UNIQUE INDEX CONCURRENTLY orders_v_idx ON orders (v)")
    assert indexes(db) == [("orders_v_idx", False)]
    step = index_step("CREATE INDEX CONCURRENTLY orders_v_idx ON orders (v)")
    runbook = write_runbook(tmp_path / "exists.yaml", "exists", [step])
    code, stream = run(runbook, database_url)

    assert code == 1, stream[-1]
    assert 'relation "orders_v_idx" already exists' in stream[-1]["message"]
    assert not [e for e in stream if e["event"] == "log" and "INVALID" in e["message"]]


# -------------------------------------------------------------------------------------- checks


def test_a_failed_check_event_shows_the_value_its_message_names(
    database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """The check's event rendered `${value}` empty while the failure below it showed 42."""
    check = {
        "kind": "sql",
        "name": "balance",
        "query": "SELECT 42",
        "expect": 0,
        "message": "balance is ${value}",
    }
    step = {"id": "balance", "title": "The balance is zero", "verify": [check]}
    runbook = write_runbook(tmp_path / "balance.yaml", "balance", [step])
    code, stream = run(runbook, database_url)

    assert code == 1
    (event,) = [e for e in stream if e["event"] == "check" and e["status"] == "failed"]
    assert event["message"] == "balance: value 42, expected == 0 (balance is 42)"
    assert "balance is 42" in stream[-1]["message"]
