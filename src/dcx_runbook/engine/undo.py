"""Undoing steps: restore file pre-images byte for byte, run rollback operations, verify."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from dcx_runbook.engine.acting import act
from dcx_runbook.engine.checks import run_checks
from dcx_runbook.engine.restore import restore_file
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.errors import JournalError, RunbookError, StepFailed, UndoFailed
from dcx_runbook.format.model import Step
from dcx_runbook.kinds import OPERATIONS, path_of
from dcx_runbook.statuses import OperationStatus, StepStatus, UndoOutcome
from dcx_runbook.template import TemplateError, render


@dataclass(frozen=True)
class UndoResult:
    """How one step's undo ended: the status its `step_undone` event reports, and what to say."""

    status: UndoOutcome
    message: str


def undo_step(
    rt: Runtime, step: Step, journal_step: dict[str, Any], *, force: bool, run_ops: bool
) -> UndoResult:
    """Undo one step: rollback precheck, restore file pre-images, rollback operations, verify.

    `run_ops` is False when only the files need restoring: the step's transaction already rolled
    back, or after a crash its already-done checks show its effect is absent."""
    rollback = step.rollback
    files = journal_step.get("files", {})
    needs_ops = rollback is not None and bool(rollback.action) and run_ops
    if step.irreversible and not files:
        journal_step["status"] = StepStatus.IRREVERSIBLE
        rt.save(journal_step)
        reason = " ".join(str(step.irreversible).split())
        return UndoResult(UndoOutcome.IRREVERSIBLE, f"irreversible, left as it is: {reason}")
    journal_step["status"] = StepStatus.ROLLBACK_STARTED
    # Write-ahead. When the undo is one transaction whose COMMIT carries the ledger's row, the
    # flush overlaps its statements (awaited before COMMIT, as a run's action), and its end needs
    # no flush of its own: should that line be lost, the ledger's row says rolled back.
    carried = needs_ops and not files and _commit_carries_it(rt, step)
    durable = rt.save_ahead(journal_step) if carried else _saved(rt, journal_step)
    try:
        _undo_effects(
            rt,
            step,
            journal_step,
            needs_ops=needs_ops,
            run_ops=run_ops,
            force=force,
            before_effect=durable,
        )
    except (StepFailed, UndoFailed, JournalError, psycopg.Error, OSError) as exc:
        # Said once: a StepFailed's own text already names the step and phase.
        message = exc.message if isinstance(exc, RunbookError) else str(exc)
        journal_step["status"] = StepStatus.ROLLBACK_FAILED
        journal_step["error"] = rt.masker(message)
        rt.save(journal_step)
        raise UndoFailed(message, step_id=step.id, phase=getattr(exc, "phase", None)) from None
    journal_step["status"] = StepStatus.ROLLED_BACK
    rt.save(journal_step, durable=not carried)
    if needs_ops or files:
        return UndoResult(UndoOutcome.ROLLED_BACK, "rolled back")
    return UndoResult(UndoOutcome.NOTHING_TO_UNDO, "nothing to undo")


def _commit_carries_it(rt: Runtime, step: Step) -> bool:
    """Whether the step's rollback operations all take effect at one COMMIT that writes the
    ledger's row (which then is the durable record of the undo)."""
    rollback = step.rollback
    if rt.mirror is None or rt.dry_run or rollback is None or not rollback.action:
        return False
    in_tx = step.transaction if rollback.transaction is None else rollback.transaction
    return in_tx and all(OPERATIONS[op.kind].traits.transactional for op in rollback.action)


def _saved(rt: Runtime, journal_step: dict[str, Any]) -> Callable[[], None]:
    """Journal the entry durably now (and the ledger's row): nothing left to wait for."""
    rt.save(journal_step)
    return _nothing


def _nothing() -> None:
    pass


def _undo_effects(
    rt: Runtime,
    step: Step,
    journal_step: dict[str, Any],
    *,
    needs_ops: bool,
    run_ops: bool,
    force: bool,
    before_effect: Callable[[], None],
) -> None:
    """Rollback precheck, file pre-images restored, rollback operations (their transaction
    carries the step's ledger row, rolled back), verify."""
    rollback = step.rollback
    files = journal_step.get("files", {})
    if rollback is not None and needs_ops:
        run_checks(rt, step.id, "rollback.precheck", rollback.precheck)
    views = _views(rt, step)
    for key, entry in files.items():
        message = restore_file(Path(key), entry, rt.secrets, force=force, view=views.get(key))
        rt.emit(
            "operation",
            step.id,
            phase="rollback.action",
            status=OperationStatus.DONE,
            message=message,
        )
    if rollback is not None and needs_ops:
        done = StepStatus.ROLLED_BACK
        act(
            rt,
            step,
            "rollback.action",
            rollback.action,
            rollback.verify,
            journal_step,
            before_effect=before_effect,
            commit_status=done,
            transaction=rollback.transaction,  # default: as the step
        )
    elif rollback is not None and files and run_ops:
        run_checks(rt, step.id, "rollback.verify", rollback.verify)


@dataclass
class Undone:
    """What an undo got through: how many steps it undid, the irreversible ones it left."""

    count: int = 0
    kept: list[Step] = field(default_factory=list)


def undo_all(
    rt: Runtime,
    todo: Sequence[tuple[Step, dict[str, Any]]],
    run_ops: Callable[[Step, dict[str, Any]], bool],
    *,
    force: bool,
) -> Undone:
    """The one undo loop, of a failed run's unwind and of `rollback`: each step in the order
    given (newest first), its `step_undone` said. `run_ops(step, entry)` says, just before the
    step is undone, whether its rollback operations must run. Stops at the first undo that fails
    (UndoFailed, said too), at an interrupt, or when the journal can't record it first."""
    done = Undone()
    try:
        with rt.interruptible():
            for step, entry in todo:
                result = undo_step(rt, step, entry, force=force, run_ops=run_ops(step, entry))
                rt.emit("step_undone", step.id, status=result.status, message=result.message)
                if result.status == UndoOutcome.IRREVERSIBLE:
                    done.kept.append(step)
                elif result.status == UndoOutcome.ROLLED_BACK:
                    done.count += 1
    except UndoFailed as exc:
        rt.emit(
            "step_undone", exc.step_id, status=UndoOutcome.ROLLBACK_FAILED, message=exc.in_step()
        )
        raise
    return done


def _views(rt: Runtime, step: Step) -> dict[str, Callable[[bytes], bytes]]:
    """How each file the step's operations write may be shown, keyed as the journal keys it."""
    out: dict[str, Callable[[bytes], bytes]] = {}
    for op in step.action:
        path = path_of(op)
        if path is None:
            continue
        try:
            out[str(Path(render(path, rt.values)).resolve())] = OPERATIONS[op.kind].diff_view
        except (TemplateError, OSError):
            continue
    return out
