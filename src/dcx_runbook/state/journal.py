"""The journal: one JSON record per run, rewritten atomically (temp file, fsync, rename).

It holds everything rollback needs (the rendered runbook, public variables, file pre-images), so an
undo works after a crash or after the runbook file changed. Secrets are never written: pre-images
are sealed (secret values replaced by markers, restored from the live value, checked by hash).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import secrets as _random
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dcx_runbook.clock import now
from dcx_runbook.errors import JournalError, Refused, RunbookError

FORMAT = 1
# Compact, so that json uses its C encoder; one encoder for the run (json.dumps with options
# builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
UNDO_STATUSES = ("applied", "action_started", "rollback_failed", "rollback_started")


def state_dir() -> Path:
    explicit = os.environ.get("DCX_RUNBOOK_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dcx-runbook"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(3)


def gone(entry: dict[str, Any]) -> bool:
    """Whether the process that wrote `entry` (a run record, or one of its rollbacks) is known to
    have ended: same host, and no process with its pid. A process still there, or on another
    machine, is not called gone (a reused pid errs on the side of "still running")."""
    pid, host = entry.get("pid"), (entry.get("operator") or {}).get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: it exists
        return False
    return False


def operator() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname()}


# -------------------------------------------------------------------------------- sealed bytes


def _marker(name: str) -> bytes:
    return f"\x00dcx-secret:{name}\x00".encode()


def seal(data: bytes, secrets: Mapping[str, str | None]) -> str:
    for name, value in sorted(secrets.items(), key=lambda kv: -len(kv[1] or "")):
        if value:
            data = data.replace(value.encode(), _marker(name))
    return base64.b64encode(data).decode()


def unseal(sealed: str, secrets: Mapping[str, str | None], sha256: str) -> bytes:
    data = base64.b64decode(sealed)
    for name, value in secrets.items():
        if _marker(name) in data:
            if value is None:
                raise JournalError(f"restoring needs the secret variable {name}: pass it again")
            data = data.replace(_marker(name), value.encode())
    if hashlib.sha256(data).hexdigest() != sha256:
        raise JournalError("a stored pre-image does not match its checksum; not restored")
    return data


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
        self._syncer: _Syncer | None = None

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
            raise JournalError(f"can't write the journal {self.log_path}: {_reason(exc)}") from None

    def _open_log(self) -> Any:
        created = not self.log_path.exists()
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the run
        if created:
            _fsync_dir(self.path.parent)
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
        self.save(*steps, durable=False)
        if self._syncer is None:
            self._syncer = _Syncer(self._log.fileno())
        return self._syncer.request()

    def snapshot(self) -> None:
        """Write the whole record atomically (temporary file, fsync, rename); the log's lines up
        to this point are then superseded (their sequence numbers are not above the snapshot's)."""
        self.data["updated_at"] = now()
        # Compact: with indentation json would use its pure-Python encoder (0.3 s for 1000 steps).
        payload = _ENCODER.encode(self.data).encode()
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(payload)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise JournalError(f"can't write the journal {self.path}: {_reason(exc)}") from None
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
        if rollbacks and rollbacks[-1].get("status") == "running":
            who, doing = rollbacks[-1], "being rolled back"
        elif data.get("status") == "running":
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


class _Syncer:
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
                raise JournalError(f"the journal could not be made durable: {_reason(self._error)}")

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


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _replay(data: dict[str, Any], log_path: Path) -> None:
    """Apply the log's lines newer than the snapshot. A torn last line is a write that was never
    acknowledged (nothing acted on it); a damaged line before the last is corruption."""
    try:
        lines = log_path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return
    if lines and lines[-1] == b"":
        lines.pop()
    base = int(data.get("seq", 0))
    steps = {step["id"]: i for i, step in enumerate(data["steps"])}
    for number, raw in enumerate(lines, 1):
        try:
            line = json.loads(raw)
            seq, top, changed = int(line["seq"]), line["top"], line["steps"]
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                return
            raise JournalError(
                f"journal log {log_path} is damaged at line {number}; it was left as is: inspect "
                "it, and do not delete it before the run's changes are accounted for"
            ) from None
        if seq <= base:
            continue
        data.update(top)
        data["seq"] = seq
        for step in changed:
            if step.get("id") in steps:
                data["steps"][steps[step["id"]]] = step


def read_record(path: Path) -> dict[str, Any]:
    """A run's record as last written: its snapshot, then the log's lines past it."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise JournalError(
            f"journal record {path} is unreadable ({exc}); it was left as is: "
            "inspect it, and do not delete it before the run's changes are accounted for"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "steps" not in data:
        raise JournalError(
            f"journal record {path} is not a dcx-runbook run record (format {FORMAT})"
        )
    damage = _damage(data)
    if damage is None:
        _replay(data, path.with_suffix(".jsonl"))
        damage = _damage(data)
    if damage is not None:
        raise JournalError(
            f"journal record {path} is damaged ({damage}); it was left as is: inspect it, and do "
            "not delete it before the run's changes are accounted for"
        )
    return data


def _damage(data: dict[str, Any]) -> str | None:
    """What of a record's shape `runs`, `log` and `rollback` rely on is missing, if anything."""
    if not isinstance(data.get("run_id"), str):
        return "no run id"
    runbook = data.get("runbook")
    if not isinstance(runbook, dict) or not isinstance(runbook.get("name"), str):
        return "no runbook name"
    for key in ("target", "operator"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            return f"its {key} is not a mapping"
    rollbacks = data.get("rollbacks", [])
    if not isinstance(rollbacks, list) or not all(isinstance(r, dict) for r in rollbacks):
        return "its rollbacks are not a list of entries"
    steps = data["steps"]
    if not isinstance(steps, list):
        return "its steps are not a list"
    for i, step in enumerate(steps, 1):
        if not (
            isinstance(step, dict)
            and isinstance(step.get("id"), str)
            and isinstance(step.get("status"), str)
        ):
            return f"step {i} has no id or status"
    return None


class Journal:
    def __init__(self, root: Path | None = None):
        self.root = root or state_dir()
        self.runs_dir = self.root / "runs"

    def create(self, data: dict[str, Any]) -> RunRecord:
        """A new run's record, durable and locked (the run holds its lock until it ends, so that
        from its first line a rollback can tell it is still at work)."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            order = self._next_order()
        except OSError as exc:
            raise JournalError(
                f"can't create the state directory {self.runs_dir}: {exc.strerror}"
            ) from None
        data = {"format": FORMAT, "order": order, **data}
        record = RunRecord(self.runs_dir / f"{data['run_id']}.json", data)
        record.lock()
        try:
            record.snapshot()
        except JournalError:
            record.unlock()
            raise
        return record

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
            return value
        finally:
            os.close(fd)

    def load(self, run_id: str) -> RunRecord:
        # A run id that names no run is a typo (exit 2), not a journal in trouble (exit 3).
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise RunbookError(f"no run {run_id!r}: see `dcx-runbook runs`")
        path = self.runs_dir / f"{run_id}.json"
        if not path.is_file():
            raise RunbookError(f"no run {run_id!r} in {self.runs_dir}: see `dcx-runbook runs`")
        return RunRecord(path, read_record(path))

    def records(self) -> Iterator[tuple[Path, dict[str, Any] | JournalError]]:
        """Every record, newest first; an unreadable one is returned as its error, never skipped."""
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
        for name in (n for n in names if not n.startswith(".")):
            path = self.runs_dir / name
            try:
                found.append((path, read_record(path)))
            except JournalError as exc:
                exc.run_id = path.stem
                found.append((path, exc))
        yield from sorted(found, key=_started, reverse=True)


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
