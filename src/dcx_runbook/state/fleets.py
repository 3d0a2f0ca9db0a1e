"""A fleet run's record (docs/fleet.md): one JSON file per fleet run in the state directory's
`fleets/`, rewritten atomically at each change of a target's state. It names each target's
child runs, whose own records (runs/) and the targets' ledgers hold what was done: after a crash
of the driver, `status --targets` and `resume` read those, not only this file."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from dcx_runbook.clock import now
from dcx_runbook.errors import JournalError, Refused, RunbookError
from dcx_runbook.filesystem import write_atomic
from dcx_runbook.state.durable import reason
from dcx_runbook.state.entries import gone, operator
from dcx_runbook.state.journal import new_run_id, state_dir
from dcx_runbook.statuses import RunStatus, TargetState

FORMAT = 1
PREFIX = "fleet-"


def new_fleet_id() -> str:
    return PREFIX + new_run_id()


def is_fleet_id(text: str | None) -> bool:
    return bool(text) and str(text).startswith(PREFIX)


def new_fleet(
    fleet_run: str,
    runbook: dict[str, Any],
    targets_file: str,
    options: dict[str, Any],
    targets: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "fleet_run": fleet_run,
        "runbook": runbook,
        "targets_file": targets_file,
        "options": options,
        "operator": operator(),
        "pid": os.getpid(),
        "started_at": now(),
        "finished_at": None,
        "status": RunStatus.RUNNING,
        "exit_code": None,
        "message": "",
        "targets": [
            {
                **t,
                "state": TargetState.PENDING,
                "runs": [],
                "message": "",
                "exit_code": None,
                "started_at": None,
                "finished_at": None,
            }
            for t in targets
        ],
    }


class FleetRecord:
    def __init__(self, path: Path, data: dict[str, Any]):
        self.path, self.data = path, data
        self._lock_fd: int | None = None

    @property
    def fleet_run(self) -> str:
        return str(self.data["fleet_run"])

    def target(self, name: str) -> dict[str, Any]:
        entry: dict[str, Any]
        for entry in self.data["targets"]:
            if entry["name"] == name:
                return entry  # the entry itself: the caller updates it, then save()
        raise KeyError(name)

    def save(self) -> None:
        self.data["updated_at"] = now()
        payload = json.dumps(self.data, default=str).encode()
        try:
            write_atomic(self.path, payload, None)
        except OSError as exc:
            raise JournalError(f"can't write the fleet record {self.path}: {reason(exc)}") from None

    def lock(self) -> None:
        """Exclusive while a process drives this fleet run (released when it exits, and by the
        child runs it started only once they end too: they inherit it)."""
        fd = os.open(self.path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Refused(self._held_by()) from None
        self._lock_fd = fd

    def _held_by(self) -> str:
        op = self.data.get("operator") or {}
        who = f"by {op.get('user')}@{op.get('host')}, pid {self.data.get('pid')}"
        if gone(self.data):  # its driver died; the child runs it started hold the lock
            return (
                f"fleet run {self.fleet_run} is still at work: its driver ({who}) is gone, but "
                "child runs it started are still working on their targets (see `dcx-runbook "
                "status --targets`): let them end; nothing was changed"
            )
        return (
            f"fleet run {self.fleet_run} is still at work ({who}): let it end, or stop it with "
            "Ctrl-C; nothing was changed"
        )

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def lock_fd(self) -> int | None:
        return self._lock_fd


class Fleets:
    def __init__(self, root: Path | None = None):
        self.dir = (root or state_dir()) / "fleets"

    def create(self, data: dict[str, Any]) -> FleetRecord:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise JournalError(f"can't create {self.dir}: {reason(exc)}") from None
        record = FleetRecord(self.dir / f"{data['fleet_run']}.json", data)
        record.lock()
        try:
            record.save()
        except JournalError:
            record.unlock()
            raise
        return record

    def load(self, fleet_run: str) -> FleetRecord:
        if not is_fleet_id(fleet_run) or "/" in fleet_run:
            raise RunbookError(f"no fleet run {fleet_run!r}: see `dcx-runbook runs`")
        path = self.dir / f"{fleet_run}.json"
        if not path.is_file():
            raise RunbookError(f"no fleet run {fleet_run!r} in {self.dir}: see `dcx-runbook runs`")
        return FleetRecord(path, _read(path))

    def records(self, limit: int | None = None, runbook: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` fleet runs (of `runbook`), newest first; an unreadable record is
        {"fleet_run": ..., "error": ...}, never skipped."""
        if not self.dir.is_dir():
            return []
        out: list[dict[str, Any]] = []
        for path in sorted(self.dir.glob(f"{PREFIX}*.json"), reverse=True):
            if limit is not None and len(out) >= limit:
                break
            try:
                data = _read(path)
            except JournalError as exc:
                out.append({"fleet_run": path.stem, "error": str(exc)})
                continue
            if runbook is None or (data.get("runbook") or {}).get("name") == runbook:
                out.append(data)
        return out


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise JournalError(f"can't read the fleet record {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise JournalError(f"{path}: not a fleet record this release can read")
    if not _whole(data):
        raise JournalError(f"the fleet record {path} is damaged; it was left as is")
    return data


_STATES = frozenset(str(s) for s in TargetState)


def _whole(data: dict[str, Any]) -> bool:
    """The fields `resume` and `rollback` rely on, with the types they expect."""
    targets, options = data.get("targets"), data.get("options")
    runbook = data.get("runbook")
    if not isinstance(targets, list) or not isinstance(options, dict):
        return False
    if not isinstance(runbook, dict) or not isinstance(data.get("targets_file"), str):
        return False
    if not all(
        isinstance(options.get(k, 0), int) for k in ("canary", "concurrency", "max_failures")
    ):
        return False
    return all(
        isinstance(t, dict)
        and isinstance(t.get("name"), str)
        and t.get("state") in _STATES
        and isinstance(t.get("runs"), list)
        for t in targets
    )
