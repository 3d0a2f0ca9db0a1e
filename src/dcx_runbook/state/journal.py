"""The journal: one JSON record per run, a snapshot rewritten atomically plus an append-only log
(docs/journal-format.md).

It holds everything rollback needs (the rendered runbook, public variables, file pre-images), so an
undo works after a crash or after the runbook file changed. Secrets are never written: pre-images
are sealed (state/sealing.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets as _random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dcx_runbook.clock import now
from dcx_runbook.errors import JournalError, Refused, RunbookError
from dcx_runbook.filesystem import fsync_dir, write_atomic
from dcx_runbook.state.durable import Syncer, reason
from dcx_runbook.state.entries import FORMAT, RunData
from dcx_runbook.state.holds import Held, hold_runbook
from dcx_runbook.state.reading import read_record, signature
from dcx_runbook.statuses import RunStatus

# Compact, so that json uses its C encoder; one encoder for the run (json.dumps with options
# builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def _flushed() -> None:
    pass


def state_dir() -> Path:
    explicit = os.environ.get("DCX_RUNBOOK_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dcx-runbook"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(3)


# -------------------------------------------------------------------------------- records


# Top-level fields that change during a run; everything else is written once, at creation.
MUTABLE = ("status", "exit_code", "finished_at", "message", "rollbacks", "updated_at")


class RunRecord:
    """One run's record: a snapshot (`<id>.json`, replaced atomically) plus an append-only log
    (`<id>.jsonl`) of the step entries changed since. Appending one entry costs the same at step
    1000 as at step 1, and a durable append is written, flushed and fsynced before the caller
    goes on (the write-ahead points: action started, file pre-images)."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self._lock_fd: int | None = None
        self._log: Any = None
        self._steps: dict[str, dict[str, Any]] | None = None
        self._syncer: Syncer | None = None

    @property
    def log_path(self) -> Path:
        return self.path.with_suffix(".jsonl")

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    def step(self, step_id: str) -> dict[str, Any]:
        if self._steps is None:  # the entries are updated in place, never replaced: index once
            self._steps = {step["id"]: step for step in self.data["steps"]}
        return self._steps[step_id]

    def save(self, *steps: dict[str, Any], durable: bool = True) -> None:
        """Append the given step entries and the mutable top-level fields to the log."""
        self.data["updated_at"] = now()
        self.data["seq"] = int(self.data.get("seq", 0)) + 1
        line = {
            "seq": self.data["seq"],
            "top": {k: self.data[k] for k in MUTABLE if k in self.data},
            "steps": list(steps),
        }
        payload = _ENCODER.encode(line).encode() + b"\n"
        end: int | None = None
        try:
            if self._log is None:
                self._log = self._open_log()
            end = self._log.tell()
            self._log.write(payload)
            self._log.flush()
            if durable:
                os.fdatasync(self._log.fileno())
        except OSError as exc:  # a full or failing disk: said plainly, never a traceback
            self._drop_unwritten(end)
            raise JournalError(f"can't write the journal {self.log_path}: {reason(exc)}") from None

    def _open_log(self) -> Any:
        created = not self.log_path.exists()
        # 0600 like the snapshot: it holds sealed pre-images and captured values.
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        log = os.fdopen(fd, "ab")
        if created:
            fsync_dir(self.path.parent)
        elif log.tell() > 0:
            # A last line without its newline is a write that was never acknowledged (a crash or
            # a full disk in the middle of it): cut it off, or the next line would be glued to it.
            data = self.log_path.read_bytes()
            if not data.endswith(b"\n"):
                log.truncate(data.rfind(b"\n") + 1)
                log.seek(0, os.SEEK_END)
        return log

    def _drop_unwritten(self, end: int | None) -> None:
        """After a failed append: the part of the line that reached the file is cut off, so that
        the log stays whole lines if later appends succeed (once there is room again)."""
        with contextlib.suppress(OSError):  # the buffer may still hold the line: it goes too
            self._close_log()
        if end is not None:
            with contextlib.suppress(OSError):
                os.truncate(self.log_path, end)

    def save_ahead(self, *steps: dict[str, Any]) -> Callable[[], None]:
        """Append the entries now and start making them durable on a worker thread; the function
        returned waits until they are. Between the two, the caller can talk to the database: a
        transactional action only takes effect at COMMIT, so the disk's flush and the database's
        work overlap instead of adding up."""
        if self._syncer is not None and self._syncer.failed:
            # Its failure was said to the step that waited on it. What follows (the unwind's
            # undo of the steps before) is flushed here, each failure raised at once.
            self.save(*steps)
            return _flushed
        self.save(*steps, durable=False)
        if self._syncer is None:
            self._syncer = Syncer(self._log.fileno())
        return self._syncer.request()

    def snapshot(self) -> None:
        """Write the whole record atomically (temporary file, fsync, rename); the log's lines up
        to this point are then superseded (their sequence numbers are not above the snapshot's)."""
        self.data["updated_at"] = now()
        # Compact: with indentation json would use its pure-Python encoder (0.3 s for 1000 steps).
        payload = _ENCODER.encode(self.data).encode()
        try:
            write_atomic(self.path, payload, None)  # mkstemp's 0600: the journal is the user's
        except OSError as exc:
            raise JournalError(f"can't write the journal {self.path}: {reason(exc)}") from None
        self._close_log()
        self.log_path.unlink(missing_ok=True)

    def lock(self) -> None:
        """Exclusive while a process runs or rolls back this run (released when it exits).
        Refused at once, naming who holds it: a run still at work is never undone under it."""
        if not self.try_lock():
            raise Refused(self.held_by())

    def try_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def held_by(self) -> str:
        """Who holds this run's lock, in words, from the record as it is now."""
        try:
            data = read_record(self.path)
        except JournalError:
            data = self.data
        name = (data.get("runbook") or {}).get("name", "?")
        rollbacks = data.get("rollbacks") or []
        if rollbacks and rollbacks[-1].get("status") == RunStatus.RUNNING:
            who, doing = rollbacks[-1], "being rolled back"
        elif data.get("status") == RunStatus.RUNNING:
            who, doing = data, "still running"
        else:
            return (
                f"run {self.run_id} of {name} is in use by another dcx-runbook process on this "
                "machine; nothing was changed"
            )
        op = who.get("operator") or data.get("operator") or {}
        return (
            f"run {self.run_id} of {name} is {doing} (by {op.get('user')}@{op.get('host')}, "
            f"pid {who.get('pid')}, since {who.get('started_at')}): let it end, or stop it with "
            "Ctrl-C (a run unwinds itself); nothing was changed"
        )

    def reload(self) -> None:
        """Read the record again. Taken after `lock()`: until then another process (the run
        itself unwinding, another rollback) may have changed it."""
        self.data = read_record(self.path)
        self._steps = None

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._close_log()

    def _close_log(self) -> None:
        if self._syncer is not None:
            self._syncer.close()
            self._syncer = None
        log, self._log = self._log, None  # forgotten even if closing it fails
        if log is not None:
            log.close()


class Journal:
    def __init__(self, root: Path | None = None):
        self.root = root or state_dir()
        self.runs_dir = self.root / "runs"
        # Each record read, with the files' signatures it was read at: a command that goes over
        # the history several times (a rollback: to pick its runs, to hold them, to say what
        # stays applied) reads and checks each record once, and again only once it changed.
        self._read: dict[Path, tuple[tuple[int, ...], dict[str, Any]]] = {}

    def create(self, data: RunData) -> RunRecord:
        """A new run's record, durable and locked (the run holds its lock until it ends, so that
        from its first line a rollback can tell it is still at work)."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            order = self._next_order()
        except OSError as exc:
            raise JournalError(
                f"can't create the state directory {self.runs_dir}: {exc.strerror}"
            ) from None
        data["format"], data["order"] = FORMAT, order
        record = RunRecord(self.runs_dir / f"{data['run_id']}.json", dict(data))
        record.lock()
        try:
            record.snapshot()
        except JournalError:
            record.unlock()
            raise
        return record

    def record_for(self, path: Path, data: dict[str, Any]) -> RunRecord:
        """The record of `data`, read from `path` (a view of the journal may hold its own)."""
        return RunRecord(path, data)

    def hold_runbook(self, name: str, run_id: str) -> Held:
        """Runbook `name` for this process, on this machine (state/holds.py)."""
        return hold_runbook(self.runs_dir, name, run_id)

    def _next_order(self) -> int:
        """A sequence number per state directory: runs started in the same second (whose ids
        then sort by their random suffix) keep the order they started in."""
        fd = os.open(self.runs_dir / ".order", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 32, 0).strip()
            value = (int(raw) if raw.isdigit() else 0) + 1
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(value).encode(), 0)
            os.fsync(fd)  # handed out once, even across a power loss
            return value
        finally:
            os.close(fd)

    def exists(self, run_id: str) -> bool:
        """Whether this state directory has a record of `run_id`."""
        return (self.runs_dir / f"{run_id}.json").is_file()

    def load(self, run_id: str) -> RunRecord:
        # A run id that names no run is a typo (exit 2), not a journal in trouble (exit 3).
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise RunbookError(f"no run {run_id!r}: see `dcx-runbook runs`")
        path = self.runs_dir / f"{run_id}.json"
        if not path.is_file():
            raise RunbookError(f"no run {run_id!r} in {self.runs_dir}: see `dcx-runbook runs`")
        return RunRecord(path, read_record(path))

    def records(
        self, limit: int | None = None, runbook: str | None = None
    ) -> Iterator[tuple[Path, dict[str, Any] | JournalError]]:
        """Every record, newest first; an unreadable one is returned as its error, never skipped.

        With `limit`, only the newest `limit` (of `runbook`, when given) are read: a run id starts
        with the second its run started, so the newest names are the newest runs but for those
        started in the same second, which are all read and then ordered."""
        try:
            if not self.runs_dir.is_dir():
                return
            # Not glob: it takes a directory it can't read for an empty one, and a run still to
            # undo would look like no run at all.
            with os.scandir(self.runs_dir) as entries:
                names = [e.name for e in entries if e.name.endswith(".json")]
        except OSError as exc:
            raise JournalError(
                f"can't read the state directory {self.runs_dir}: {exc.strerror or exc}"
            ) from None
        found: list[tuple[Path, dict[str, Any] | JournalError]] = []
        matched, last = 0, ""
        for name in sorted((n for n in names if not n.startswith(".")), reverse=True):
            if limit is not None and matched >= limit and name[:16] != last:
                break
            path = self.runs_dir / name
            try:
                item: tuple[Path, dict[str, Any] | JournalError] = (path, self._record(path))
            except JournalError as exc:
                exc.run_id = path.stem
                item = (path, exc)
            data = item[1]
            if runbook is not None and not isinstance(data, JournalError):
                if data["runbook"]["name"] != runbook:
                    continue
            found.append(item)
            matched, last = matched + 1, name[:16]
        ordered = sorted(found, key=_started, reverse=True)
        yield from ordered if limit is None else ordered[:limit]

    def _record(self, path: Path) -> dict[str, Any]:
        written = signature(path)
        known = self._read.get(path)
        if known is not None and known[0] == written:
            return known[1]
        data = read_record(path)
        self._read[path] = (written, data)
        return data


def _started(item: tuple[Path, dict[str, Any] | JournalError]) -> tuple[int, str, str]:
    """Newest first means started last: by the state directory's sequence (records written
    before it existed have none, and come first), then the start time, then the id."""
    path, data = item
    if isinstance(data, JournalError):
        return (0, path.stem[:16], path.stem)
    order = data.get("order")
    return (
        order if isinstance(order, int) else 0,
        str(data.get("started_at") or path.stem),
        path.stem,
    )
