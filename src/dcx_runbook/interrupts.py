"""SIGTERM handled as Ctrl-C, so every way of stopping the tool unwinds and cleans up; SIGHUP
(the terminal went away) ignored, so the run goes on to its end, its output dropped."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt where the program is: the running query
    is cancelled (psycopg does that on KeyboardInterrupt), a child's process group is stopped
    (run_process does), scratch databases and sandboxes are removed (their `finally` blocks)."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    # A closed terminal is a reader going away, not an order to stop: stopping between two steps
    # would leave the first applied with nobody to unwind it.
    hangup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, hangup)
