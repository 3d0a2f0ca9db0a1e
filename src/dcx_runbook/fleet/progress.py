"""What a fleet run tells and keeps while the driver works: each child's events to the reporter,
every one with its target's name; each target's state in the fleet's record, written before a
child starts and as it ends; and how the whole fleet ended."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from dcx_runbook.clock import now
from dcx_runbook.engine.options import Outcome
from dcx_runbook.errors import ExitCode, JournalError
from dcx_runbook.fleet.plan import Planned
from dcx_runbook.fleet.worker import Child
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.state.fleets import FleetRecord
from dcx_runbook.state.journal import Journal
from dcx_runbook.statuses import RunStatus, TargetState


class Recorder:
    def __init__(self, record: FleetRecord | None, reporter: Reporter, fleet_run: str | None):
        self.record, self.reporter, self.fleet_run = record, reporter, fleet_run
        self.states: dict[str, TargetState] = {}
        self.journal = Journal()

    # --------------------------------------------------------------------- the record

    def started(self, target: Planned, run_id: str | None) -> None:
        """Written (durably) before the child starts: after a crash, the record names the run
        each target was given."""
        self.states[target.name] = TargetState.RUNNING
        self._update(
            target.name,
            state=TargetState.RUNNING,
            started_at=now(),
            finished_at=None,
            append_run=run_id,
        )

    def forget(self, name: str, run_id: str) -> None:
        """A run id handed out to a target whose run never made its record."""
        if self.record is None:
            return
        entry = self.record.target(name)
        entry["runs"] = [r for r in entry.get("runs", []) if r != run_id]
        try:
            self.record.save()
        except JournalError as exc:
            self.say(f"the fleet's record could not be written: {exc}")

    def not_reached(self, targets: Iterable[Planned], why: str) -> None:
        for target in targets:
            self.states[target.name] = TargetState.NOT_REACHED
            self._update(target.name, state=TargetState.NOT_REACHED, message=why)
            self.emit(
                Event("target_finished", status=TargetState.NOT_REACHED, message=why),
                target.name,
            )

    def _update(self, name: str, *, append_run: str | None = None, **fields: Any) -> None:
        if self.record is None:
            return
        entry = self.record.target(name)
        entry.update(fields)
        if append_run:
            entry["runs"] = [*entry.get("runs", []), append_run]
        try:
            self.record.save()
        except JournalError as exc:  # the child runs' own records still hold what they did
            self.say(f"the fleet's record could not be written: {exc}")

    # --------------------------------------------------------------------- the driver's

    def event(self, child: Child, event: dict[str, Any]) -> None:
        self.reporter.emit(Event.from_json(event, child.target.name))

    def ended(self, child: Child, state: TargetState, message: str, code: int) -> None:
        self.states[child.target.name] = state
        code_or_none = code if code >= 0 else None  # killed by a signal: no exit code (said)
        self._update(
            child.target.name,
            state=state,
            message=message,
            exit_code=code_or_none,
            finished_at=now(),
        )
        run_id = child.run_id
        if run_id and not self.journal.exists(run_id):
            self.forget(child.target.name, run_id)  # it never began: nothing to undo
            run_id = None
        detail = {
            "run_id": run_id,
            "exit_code": code_or_none,
            "database": child.target.spec.database,
        }
        self.emit(
            Event("target_finished", status=state, message=message, detail=detail),
            child.target.name,
        )

    def began(self, child: Child) -> bool | None:
        """Whether the child's run made its journal record (None: its work was an undo)."""
        if child.undo:
            return None
        return child.run_id is not None and self.journal.exists(child.run_id)

    def not_started(self, target: Planned, message: str) -> None:
        """Its process could not be made: refused, nothing of it began."""
        self.states[target.name] = TargetState.REFUSED
        self._update(target.name, state=TargetState.REFUSED, message=message, finished_at=now())
        event = Event("target_finished", status=TargetState.REFUSED, message=message)
        self.emit(event, target.name)

    def say(self, message: str) -> None:
        self.reporter.emit(Event("log", message=message))

    def tick(self) -> None:
        tick = getattr(self.reporter, "tick", None)
        if tick is not None:
            tick()

    def emit(self, event: Event, target: str | None = None) -> None:
        if target is not None:
            event = Event(
                event.type,
                event.step,
                event.phase,
                event.status,
                event.message,
                event.detail,
                event.time,
                target,
            )
        self.reporter.emit(event)

    # --------------------------------------------------------------------- the end

    def finish(self, status: RunStatus, outcome: Outcome) -> None:
        counts = Counter(str(s) for s in self.states.values())
        if self.record is not None:
            self.record.data.update(
                status=status,
                exit_code=int(outcome.exit_code),
                message=outcome.message,
                finished_at=now(),
            )
            try:
                self.record.save()
            except JournalError as exc:
                self.say(f"the fleet's record could not be written: {exc}")
        self.emit(
            Event(
                "fleet_finished",
                status=status,
                message=outcome.message,
                detail={
                    "fleet_run": self.fleet_run,
                    "exit_code": int(outcome.exit_code),
                    "targets": dict(counts),
                },
            )
        )


# The fleet's exit code: the most serious of its targets' ends.
_SEVERITY = (
    (TargetState.UNDO_INCOMPLETE, ExitCode.UNDO_INCOMPLETE, RunStatus.UNDO_INCOMPLETE),
    (TargetState.FAILED, ExitCode.UNDONE, RunStatus.FAILED),
    (TargetState.INTERRUPTED, ExitCode.UNDONE, RunStatus.FAILED),
    (TargetState.REFUSED, ExitCode.REFUSED, RunStatus.REFUSED),
)


def conclude(
    states: dict[str, TargetState], interrupted: bool, done: RunStatus
) -> tuple[RunStatus, ExitCode, str]:
    """How the fleet ended: its status, its exit code, and a line counting its targets."""
    counts = Counter(states.values())
    said = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no target"
    if counts[TargetState.REFUSED] and counts[TargetState.SUCCEEDED]:
        # Exit 4 means "refused before any change": not so when other targets were changed.
        return RunStatus.FAILED, ExitCode.UNDONE, said
    for state, code, status in _SEVERITY:
        if counts[state] and not (interrupted and code != ExitCode.UNDO_INCOMPLETE):
            return status, code, said
    if interrupted:
        return RunStatus.INTERRUPTED, ExitCode.INTERRUPTED, said
    return done, ExitCode.OK, said
