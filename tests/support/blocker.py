"""A session that holds a lock on a table for a while, from another thread: what a run meets as
a blocker (its lock waits and retries)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


@contextmanager
def lock_held(url: str, table: str, seconds: float = 1.5) -> Iterator[None]:
    """ACCESS SHARE on `table` for `seconds`, taken before the body runs; released (and the
    thread joined) by the end of the block."""
    holding = threading.Event()

    def blocker() -> None:
        with psycopg.connect(url) as conn:
            conn.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
            holding.set()
            time.sleep(seconds)
            conn.rollback()

    thread = threading.Thread(target=blocker)
    thread.start()
    holding.wait()
    try:
        yield
    finally:
        thread.join()
