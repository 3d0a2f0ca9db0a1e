"""What a rollback covers, read from the journal alone: the runs of one runbook on one target
that left steps applied, newest first, and what is still applied once it is done.

A second run of a runbook finds most steps already done and repeats only those without
`done_when` (an ANALYZE, a regenerate): undoing that run alone would leave the first run's
changes in place. So a bare `rollback` undoes the runbook on its target, every run of it, and
`rollback RUN_ID` names what other runs still have applied there."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from socket import gethostname
from typing import Any

from dcx_runbook import caching
from dcx_runbook.errors import JournalError
from dcx_runbook.format.model import Runbook, Step
from dcx_runbook.state.journal import Journal, RunRecord
from dcx_runbook.statuses import STILL_APPLIED, UNCERTAIN
from dcx_runbook.target import identity

_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def journaled_runbook(record: RunRecord) -> Runbook:
    """The runbook as it was run, from the journal: rollback never needs the original file."""
    from pydantic import ValidationError
    from pydantic.version import VERSION

    try:
        spec = record.data["runbook"]["spec"]
        key = VERSION.encode() + b"\0" + _ENCODER.encode(spec).encode()
        cached = caching.load("journaled", key)  # read back before: by the run, or a status
        if isinstance(cached, Runbook):
            return cached
        runbook = Runbook.model_validate(spec)
        caching.store("journaled", key, runbook)
        return runbook
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        raise JournalError(
            f"run {record.run_id}: the journaled runbook can't be read back ({exc.__class__.__name__}); "
            f"the record is left as is in {record.path}"
        ) from None


@dataclass
class Pending:
    """One run within a rollback's scope."""

    record: RunRecord
    runbook: Runbook

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def target(self) -> dict[str, Any]:
        return dict(self.record.data.get("target") or {})

    def applied(self) -> list[dict[str, Any]]:
        """The step entries still applied, newest first."""
        steps = self.record.data["steps"]
        return [s for s in reversed(steps) if s["status"] in STILL_APPLIED]

    def undoable(self) -> list[dict[str, Any]]:
        """The applied entries a rollback can do something about: not those declared
        irreversible, nor those with nothing recorded to undo."""
        return [e for e in self.applied() if can_undo(self.runbook.step(e["id"]), e)]


def can_undo(step: Step, entry: Mapping[str, Any]) -> bool:
    if entry.get("files") or entry.get("elsewhere") or entry["status"] in UNCERTAIN:
        return True
    if step.irreversible:
        return False
    return step.rollback is not None and bool(step.rollback.action)


def pending(record: RunRecord) -> Pending:
    return Pending(record, journaled_runbook(record))


def history(journal: Journal) -> list[RunRecord | JournalError]:
    """Every record, newest first (a damaged one as its error: never skipped)."""
    out: list[RunRecord | JournalError] = []
    for path, data in journal.records():
        out.append(data if isinstance(data, JournalError) else journal.record_for(path, data))
    return out


def candidates(records: Sequence[RunRecord | JournalError]) -> list[Pending]:
    """The runs, newest first, with something a rollback can undo. A damaged record that may be
    newer than the newest of them stops everything: it could be the very run to undo."""
    found: list[Pending] = []
    damaged: list[JournalError] = []
    for record in records:
        if isinstance(record, JournalError):
            damaged.append(record)
            continue
        if record.data.get("dry_run") or not any(
            s["status"] in STILL_APPLIED for s in record.data["steps"]
        ):
            continue
        run = pending(record)
        if run.undoable():
            found.append(run)
    for error in damaged:  # a run id starts with the second the run started
        if not found or _stem(error) >= found[0].run_id[:16]:
            raise error
    return found


def _stem(error: JournalError) -> str:
    return (error.run_id or "")[:16]


def same_target(run: Pending, connected: Mapping[str, Any] | None) -> bool:
    """Whether `run` changed the target connected to (`None`: a runbook with no database,
    whose target is this machine)."""
    if connected is None:
        return run.runbook.target is None
    return run.runbook.target is not None and identity.mismatch(run.target, connected) is None


def of_runbook(
    records: Sequence[RunRecord | JournalError],
    name: str | None,
    connected: Mapping[str, Any] | None,
    *,
    other: bool = False,
) -> list[Pending]:
    """Every run of runbook `name` (of any other runbook, with `other`; of any, for None) on the
    connected target with steps still applied (declared irreversible ones included: they are
    named, not undone), newest first."""
    out = []
    for record in records:
        if isinstance(record, JournalError):
            continue
        if name is not None and (record.data["runbook"]["name"] == name) == other:
            continue
        if record.data.get("dry_run") or not any(
            s["status"] in STILL_APPLIED for s in record.data["steps"]
        ):
            continue
        run = pending(record)
        if same_target(run, connected):
            out.append(run)
    return out


def still_running(run: Pending) -> str | None:
    """A process group that a step of `run` started and that still exists on this host (the
    tool that started it was killed): said, so that nothing is undone under it."""
    host = gethostname()
    for entry in run.record.data["steps"]:
        if entry["status"] not in UNCERTAIN:
            continue
        for process in entry.get("processes", []):
            if process.get("host") == host and _group_exists(process.get("pgid")):
                return (
                    f"step {entry['id']} of run {run.run_id} started process group "
                    f"{process['pgid']}, which is still running on this host (its dcx-runbook "
                    "is gone): it may still be changing things. Wait for it, or stop it "
                    f"(kill -TERM -{process['pgid']}), then roll back; nothing was changed"
                )
    return None


def _group_exists(pgid: object) -> bool:
    if not isinstance(pgid, int) or pgid <= 1:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: it exists
        return True
    return _alive_members(pgid)


def _alive_members(pgid: int) -> bool:
    """Whether a member of the group is more than a zombie (an exited process nobody reaped
    still answers kill(0)). Without /proc, the group is taken as alive."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def live(
    records: Sequence[RunRecord | JournalError],
    name: str | None = None,
    connected: Mapping[str, Any] | None = None,
) -> RunRecord | None:
    """A run (or rollback) of runbook `name` (any, when None) still at work in another process
    of this machine: its record's lock is held. With `connected`, only one on that database (a
    fleet's other targets run the same runbook at the same time, each on its own database)."""
    for record in records:
        if isinstance(record, JournalError):
            continue
        if name is not None and record.data["runbook"]["name"] != name:
            continue
        target = record.data.get("target") or {}
        if connected is not None and target and identity.mismatch(target, connected):
            continue
        if not record.try_lock():
            return record
        record.unlock()
    return None


def listing(runs: Sequence[Pending]) -> str:
    """`run R2: prisma-generate (irreversible: left as it is); run R1: prisma-schema, ...`"""
    parts = []
    for run in runs:
        steps = [
            e["id"] if can_undo(run.runbook.step(e["id"]), e) else f"{e['id']} (left as it is)"
            for e in run.applied()
        ]
        parts.append(f"run {run.run_id}: {', '.join(steps) or 'nothing'}")
    return "; ".join(parts)


def still_applied(
    journal: Journal, name: str, connected: Mapping[str, Any] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the journal says is still applied on the target, from one reading of it: by runs of
    `name`, and by runs of other runbooks; newest run first, as `{"run_id", "runbook", "steps"}`
    (the steps newest first). Declared-irreversible steps left in place by a rollback are not
    counted here: the rollback that left them said so."""
    records = history(journal)
    return _applied(records, name, connected, False), _applied(records, name, connected, True)


def _applied(
    records: Sequence[RunRecord | JournalError],
    name: str,
    connected: Mapping[str, Any] | None,
    other: bool,
) -> list[dict[str, Any]]:
    out = []
    for run in of_runbook(records, name, connected, other=other):
        steps = [e["id"] for e in run.applied()]
        if steps:
            out.append({"run_id": run.run_id, "runbook": run.runbook.name, "steps": steps})
    return out


def said(left: Sequence[Mapping[str, Any]], *, runbook: bool = False) -> str:
    def run(r: Mapping[str, Any]) -> str:
        return f"run {r['run_id']}" + (f" ({r['runbook']})" if runbook else "")

    return "; ".join(f"{run(r)}: {', '.join(r['steps'])}" for r in left)
