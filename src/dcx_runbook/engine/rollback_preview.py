"""`rollback --dry-run`: what the rollback would do, and whether it would get through."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from dcx_runbook.engine.dryrun import one_check, preview_rollback
from dcx_runbook.engine.journaled import Resolve, borrowed
from dcx_runbook.engine.report import Report
from dcx_runbook.engine.restore import file_state
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.engine.scope import Pending, can_undo, listing
from dcx_runbook.engine.session import Options, Outcome, report_end
from dcx_runbook.errors import ExitCode
from dcx_runbook.statuses import OperationStatus, RunStatus
from dcx_runbook.target import db


def preview(
    context: Report, todo: Sequence[Pending], resolve: Resolve, options: Options
) -> Outcome:
    """What the rollback would do, and whether it would get through: files edited since the run
    (refused without --force) and rollback prechecks (run read-only) are checked, not assumed."""
    problems: list[str] = []
    for run in todo:
        with borrowed(context.rt, run, resolve, options) as rt:
            problems += _preview_run(rt, run, options)
    undo = listing(todo)
    if problems:
        message = f"dry run: the rollback would stop: {'; '.join(problems)} (would undo {undo})"
        return report_end(
            context.rt, Outcome(ExitCode.UNDONE, RunStatus.DRY_RUN, context.run_id, message)
        )
    message = f"dry run: would undo {undo}"
    return report_end(context.rt, Outcome(ExitCode.OK, RunStatus.DRY_RUN, context.run_id, message))


def _preview_run(rt: Runtime, run: Pending, options: Options) -> list[str]:
    problems: list[str] = []
    window = db.read_only(rt.conn) if rt.conn is not None else nullcontext()
    with window:
        for entry in run.applied():
            step = run.runbook.step(entry["id"])
            for path, file_entry in entry.get("files", {}).items():
                state, _ = file_state(Path(path), file_entry)
                if state == "changed" and not options.force:
                    problems.append(f"{step.id}: {path} changed after the run")
                    message, status = (
                        f"{path} changed after the run: would refuse",
                        OperationStatus.FAILED,
                    )
                else:
                    message, status = (
                        f"restore the exact pre-run bytes of {path}",
                        OperationStatus.PLANNED,
                    )
                rt.emit(
                    "operation", step.id, phase="rollback.action", status=status, message=message
                )
            if not can_undo(step, entry):
                continue
            rollback = step.rollback
            if rollback is not None and rollback.action:
                results = [
                    one_check(rt, step.id, "rollback.precheck", c) for c in rollback.precheck
                ]
                if not all(results):
                    problems.append(f"{step.id}: a rollback precheck failed")
            preview_rollback(rt, step)
    return problems
