"""What a rollback says where it stands: what it undid, what it left declared irreversible, and
exactly what is still applied on the target afterwards (from the journal, every run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dcx_runbook.clock import now
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.engine.scope import Pending, said, still_applied
from dcx_runbook.engine.session import Outcome, report_end
from dcx_runbook.errors import ExitCode, JournalError
from dcx_runbook.format.model import Step
from dcx_runbook.reporters.base import Reporter
from dcx_runbook.state.entries import new_rollback
from dcx_runbook.state.journal import Journal
from dcx_runbook.statuses import RunStatus
from dcx_runbook.target import identity

# Still applied on the target: by runs of this runbook, by runs of others.
Standing = tuple[list[dict[str, Any]], list[dict[str, Any]]]


class Report:
    """What the end of a rollback needs to say where it stands."""

    def __init__(
        self,
        rt: Runtime,
        journal: Journal,
        name: str,
        view: Mapping[str, Any] | None,
        bare: bool,
        run_id: str,
    ):
        self.rt, self.journal, self.name, self.view = rt, journal, name, view
        self.bare, self.run_id = bare, run_id
        self.where = identity.describe(view) if view is not None else "this machine"

    @property
    def command(self) -> str:
        return "dcx-runbook rollback" + ("" if self.bare else f" {self.run_id}")

    def standing(self) -> Standing:
        """What is still applied on the target now: by runs of this runbook, and by runs of
        other runbooks (this rollback leaves them); one reading of the journal."""
        return still_applied(self.journal, self.name, self.view)

    def nothing(self, run: Pending) -> Outcome:
        """The run has no step still applied (it unwound itself, was rolled back meanwhile, or
        never changed anything)."""
        message = f"run {run.run_id} has no step still applied: nothing to undo"
        settle(self.rt, run, message)
        return self.end(Outcome(ExitCode.OK, RunStatus.NOTHING_TO_UNDO, run.run_id, message))

    def end(self, outcome: Outcome, standing: Standing | None = None) -> Outcome:
        """The last event, saying exactly what is still applied on the target afterwards."""
        left, elsewhere = standing or self.standing()
        if left:
            outcome.message += f". Still applied on {self.where}: {said(left)}"
        if elsewhere:
            outcome.message += (
                f". Still applied there by other runbooks: {said(elsewhere, runbook=True)}"
            )
        outcome.still_applied = list(dict.fromkeys(s for r in left for s in r["steps"]))
        return report_end(self.rt, outcome, {"still_applied_runs": left + elsewhere})


def settle(rt: Runtime, run: Pending, message: str) -> None:
    """A run said running whose process died before it changed anything: its record says this
    rollback found nothing to undo, so `status` stops calling it interrupted. (Its lock is this
    rollback's: a run still at work was refused before.)"""
    if rt.dry_run or run.record.data.get("status") != RunStatus.RUNNING:
        return
    entry = new_rollback()
    entry["status"] = RunStatus.NOTHING_TO_UNDO
    entry["finished_at"] = now()
    entry["exit_code"] = 0
    entry["message"] = message
    run.record.data.setdefault("rollbacks", []).append(entry)
    try:
        run.record.snapshot()
    except JournalError as exc:
        rt.emit("log", message=f"the journal could not record that {run.run_id} is settled: {exc}")


def name_others(context: Report, run: Pending) -> None:
    """`rollback RUN_ID` undoes that run only: other runs still applied on the target are named
    before anything is asked."""
    others = [r for r in context.standing()[0] if r["run_id"] != run.run_id]
    if others:
        context.rt.emit(
            "log",
            message=f"other runs of {context.name} still applied on {context.where}, not undone "
            f"by this rollback: {said(others)} (`dcx-runbook rollback` undoes every run)",
        )


def stopped(context: Report, reason: str, what: str) -> Outcome:
    left = context.standing()[0]
    message = (
        f"{reason}; {what.rstrip('.')}. Still applied on {context.where}: "
        f"{said(left) or 'nothing'}. Fix the cause, then run: {context.command}"
    )
    still = list(dict.fromkeys(s for r in left for s in r["steps"]))
    outcome = Outcome(
        ExitCode.UNDO_INCOMPLETE, RunStatus.UNDO_INCOMPLETE, context.run_id, message, still
    )
    return report_end(context.rt, outcome, {"still_applied_runs": left})


def closing(
    context: Report,
    undone: Sequence[tuple[str, int]],
    kept: Sequence[tuple[str, Step]],
    todo: Sequence[Pending],
    standing: Standing,
) -> Outcome:
    """Says what was undone, and never more: a run whose applied steps were all irreversible or
    had nothing to undo is not reported as rolled back; "as it was" only when nothing is left
    on the target (`standing`)."""
    if undone:
        message = "rolled back " + ", ".join(f"run {rid} ({n} step(s))" for rid, n in undone)
    else:
        message = "nothing that can be undone: " + ", ".join(run.run_id for run in todo)
    if kept:
        reasons = "; ".join(
            f"{step.id} of run {rid}: {' '.join(str(step.irreversible).split())}"
            for rid, step in kept
        )
        message += f"; left as they are, declared irreversible: {reasons}"
    elif undone and not any(standing):
        message += (
            f": every change was undone, {context.where} is as it was before run {undone[-1][0]}"
        )
    status = RunStatus.ROLLED_BACK if undone else RunStatus.NOTHING_TO_UNDO
    return Outcome(ExitCode.OK, status, context.run_id, message)


def end_here(reporter: Reporter, code: ExitCode, status: RunStatus, message: str) -> Outcome:
    """The last event of a rollback that found no run to connect for."""
    from dcx_runbook.reporters.base import Event

    detail: dict[str, Any] = {"run_id": None, "exit_code": int(code)}
    reporter.emit(Event("run_finished", status=status, message=message, detail=detail))
    return Outcome(code, status, None, message)
