"""Who blocks a run's statement, seen from a second connection while it waits (a lock wait's
report names its blockers: after a lock timeout, nobody blocks any more)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True)
class Blocker:
    pid: int
    user: str | None
    application: str | None
    state: str | None
    xact_age: float | None
    query: str

    def __str__(self) -> str:
        age = f"{self.xact_age:.1f}s" if self.xact_age is not None else "?"
        return (
            f"pid {self.pid} user {self.user} app {self.application or '-'} {self.state} "
            f"in transaction for {age}: {self.query}"
        )


BLOCKERS_SQL = """
SELECT a.pid, a.usename, a.application_name, a.state,
       extract(epoch FROM now() - a.xact_start)::float8, left(a.query, 200)
  FROM unnest(pg_blocking_pids(%s)) AS b(pid) JOIN pg_stat_activity a ON a.pid = b.pid
"""


class BlockerWatch:
    """Who blocks the run's backend, seen from a second connection while a statement waits:
    after a lock timeout nobody blocks any more, so the report must be taken during the wait.

    One daemon thread per run, armed around each SQL attempt. Arming costs an Event.set(); the
    thread opens its connection and polls pg_blocking_pids() only once an attempt has lasted
    longer than `grace` (most statements never wait for a lock)."""

    def __init__(
        self,
        open_monitor: Callable[[], psycopg.Connection[Any]],
        pid: int,
        grace: float = 0.1,
        interval: float = 0.2,
        connect_timeout: float = 10.0,  # how long `open_monitor` may take: close waits that long
    ):
        self._open = open_monitor
        self._pid = pid
        self._grace, self._interval = grace, interval
        self._connect_timeout = connect_timeout
        self._armed = threading.Event()
        # Set when an attempt ends (or the watch closes): the thread's waits end at once, so a
        # run's end never waits out a grace period for a statement long finished.
        self._wake = threading.Event()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._stopped = False
        self.blockers: list[Blocker] = []

    @contextmanager
    def watching(self) -> Iterator[BlockerWatch]:
        self.blockers = []
        self._generation += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dcx-blocker-watch", daemon=True)
            self._thread.start()
        self._armed.set()
        try:
            yield self
        finally:
            self._armed.clear()
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._armed.wait()
            if self._stopped:
                break
            generation = self._generation
            self._wake.clear()
            if not self._current(generation):
                continue
            self._wake.wait(self._grace)
            while self._current(generation):
                try:
                    if self._conn is None:
                        self._conn = self._open()
                    rows = self._conn.execute(BLOCKERS_SQL, (self._pid,)).fetchall()
                except Exception:  # noqa: BLE001 - a report is a nicety, never a reason to fail
                    self._conn = None
                    self._wake.wait(self._interval)
                    continue
                if rows and generation == self._generation:
                    self.blockers = [Blocker(*row) for row in rows]
                self._wake.wait(self._interval)

        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _current(self, generation: int) -> bool:
        """Still watching the attempt of `generation`."""
        return self._armed.is_set() and generation == self._generation and not self._stopped

    def close(self) -> None:
        """Stop the thread and close its connection (after a reconnect, the old backend it
        watched is gone: a thread left polling for it would only hold a connection open)."""
        self._stopped = True
        self._armed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._grace + self._interval + self._connect_timeout)
