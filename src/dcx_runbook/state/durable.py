"""Making the journal's log durable off the main thread: the disk's flush overlaps the database's
work instead of adding to it (see RunRecord.save_ahead)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from dcx_runbook.errors import JournalError


class Syncer:
    """fdatasync of one file on a daemon thread, on request. Each request is a ticket; waiting on
    it returns once an fdatasync that began after the request has finished (one flush can serve
    several tickets)."""

    def __init__(self, fd: int):
        self._fd = fd
        self._cond = threading.Condition()
        self._asked = self._synced = 0
        self._error: OSError | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="dcx-journal-sync", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        """A flush failed: this thread flushes nothing more."""
        with self._cond:
            return self._error is not None

    def request(self) -> Callable[[], None]:
        with self._cond:
            self._asked += 1
            ticket = self._asked
            self._cond.notify_all()
        return lambda: self._wait(ticket)

    def _wait(self, ticket: int) -> None:
        with self._cond:
            while self._synced < ticket and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise JournalError(f"the journal could not be made durable: {reason(self._error)}")

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._synced == self._asked and not self._closed:
                    self._cond.wait()
                if self._synced == self._asked:  # closed, nothing left to flush
                    return
                target = self._asked
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._synced = target
                self._cond.notify_all()

    def close(self) -> None:
        """Waits for a flush in progress: the file must not be closed under it."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()


def reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
