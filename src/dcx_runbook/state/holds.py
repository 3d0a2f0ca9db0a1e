"""Holding a runbook on this machine: a runbook with no database target has no run lock on a
server, so a lock file in the state directory stands in for it."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from dcx_runbook.clock import now
from dcx_runbook.errors import JournalError, Refused
from dcx_runbook.state.durable import reason
from dcx_runbook.state.entries import operator


def hold_runbook(runs_dir: Path, name: str, run_id: str) -> Held:
    """Runbook `name` for this process, on this machine. A runbook with no database target
    has no run lock on a server: this lock stands in for it, so a second run, or a run
    during its rollback, is refused at once (Refused), naming who holds it."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(runs_dir / f".runbook-{name}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise JournalError(f"can't lock runbook {name} in {runs_dir}: {reason(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise Refused(
            f"another dcx-runbook is running or rolling back {name} on this machine: "
            f"{holder}; nothing was changed"
        ) from None
    who = {"run_id": run_id, "pid": os.getpid(), **operator(), "since": now()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(who).encode(), 0)
    return Held(fd)


class Held:
    """A runbook held by this process (Journal.hold_runbook) until released or the process ends."""

    def __init__(self, fd: int):
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> str:
    try:
        who = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        who = {}
    if not isinstance(who, dict) or not who:
        return "a process that has not said who it is yet"
    return (
        f"run {who.get('run_id')} by {who.get('user')}@{who.get('host')}, "
        f"pid {who.get('pid')}, since {who.get('since')}"
    )
