"""`--dry-run`: live read-only checks, the exact SQL and argv, in-memory file diffs, every step;
nothing is written anywhere."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import psycopg

from dcx_runbook.engine.checks import deferred, run_checks
from dcx_runbook.engine.phases import walk
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.engine.session import (
    Options,
    Outcome,
    finish,
    needed,
)
from dcx_runbook.errors import ExitCode, InvalidInput
from dcx_runbook.format.model import Step
from dcx_runbook.kinds import CHECKS, OPERATIONS
from dcx_runbook.statuses import OperationStatus, RunStatus, StepOutcome
from dcx_runbook.target import db


def dry_run(rt: Runtime, options: Options, plan_out: Callable[[], str] | None = None) -> Outcome:
    """Live read-only checks, the exact SQL and argv, in-memory file diffs; nothing is written
    (but the plan, with --plan-out, when every check passed: `plan_out` writes it)."""
    assert rt.conn is not None or rt.runbook.target is None
    window = db.read_only(rt.conn) if rt.conn is not None else nullcontext()
    preview = Preview(rt)
    with window:
        preview.failures += _dry_checks(
            rt, None, "preflight", needed(rt.runbook.preflight, options), []
        )
        for step in rt.runbook.steps:
            if walk(rt, step, preview, options.skip):
                preview.changing.append(step)
    failures = preview.failures
    code = ExitCode.OK if not failures else ExitCode.UNDONE
    message = (
        "dry run: every check that could run passed"
        if not failures
        else "dry run: " + "; ".join(failures)
    )
    if plan_out is not None:
        message += "; " + (_plan(plan_out) if not failures else "no plan written: it did not pass")
    return finish(rt, Outcome(code, RunStatus.DRY_RUN, None, message))


def _plan(plan_out: Callable[[], str]) -> str:
    try:
        return plan_out()
    except OSError as exc:
        raise InvalidInput(f"--plan-out: the plan could not be written: {exc}") from None


class Preview:
    """The phases of a step, previewed: checks run read-only where they can, a check that
    depends on an earlier effect is deferred, operations are planned and shown (file edits
    applied to an in-memory overlay, so later file checks see them)."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.failures: list[str] = []
        self.changing: list[Step] = []  # steps that would act before the current one

    def skipped(self, step: Step) -> None:
        self.rt.emit(
            "step_finished",
            step.id,
            status=StepOutcome.SKIPPED,
            message="would be skipped (--skip)",
        )

    def already_done(self, step: Step) -> bool:
        if not _dry_all_hold(self.rt, step, self.changing):
            return False
        self.rt.emit(
            "step_finished",
            step.id,
            status=StepOutcome.ALREADY_DONE,
            message="already done: would change nothing",
        )
        return True

    def precheck(self, step: Step) -> None:
        self.failures += _dry_checks(self.rt, step, "precheck", step.precheck, self.changing)

    def proceed(self, step: Step) -> bool:
        return True  # a dry run asks nobody: it changes nothing

    def verify_only(self, step: Step) -> None:
        self._verify(step, StepOutcome.WOULD_VERIFY, "would verify")

    def act(self, step: Step) -> None:
        self._plan(step)
        self._verify(step, StepOutcome.WOULD_APPLY, "would apply")

    def _plan(self, step: Step) -> None:
        ctx = self.rt.context()
        try:
            for effect in self.rt.plan(step.action, ctx):
                self.rt.emit(
                    "operation",
                    step.id,
                    phase="action",
                    status=OperationStatus.PLANNED,
                    message=effect.describe(),
                )
                if effect.paths():
                    effect.execute(ctx)  # in a dry run, into the in-memory overlay only
        except Exception as exc:  # noqa: BLE001 - a plan that can't be made is a failed check
            self.failures.append(f"{step.id}: {exc}")
            self.rt.emit(
                "operation",
                step.id,
                phase="action",
                status=OperationStatus.FAILED,
                message=str(exc),
            )

    def _verify(self, step: Step, outcome: StepOutcome, said: str) -> None:
        """Verify (deferred where it waits for this step's own action or an earlier one), the
        rollback that would undo the step, and how the step would end."""
        self.failures += _dry_checks(self.rt, step, "verify", step.verify, self.changing, own=True)
        preview_rollback(self.rt, step, prechecks=True)
        self.rt.emit("step_finished", step.id, status=outcome, message=said)


def preview_rollback(rt: Runtime, step: Step, *, prechecks: bool = False) -> None:
    """The planned rollback operations of a step, as events (dry runs of run and of rollback);
    with `prechecks`, its rollback prechecks said as not evaluated (they check the state after
    the step's change, which a dry run of the run has not made)."""
    if step.rollback is None:
        return
    for spec in step.rollback.precheck if prechecks else ():
        label = spec.name or f"{spec.kind} check"
        why = "checked when the rollback runs, against the state the step's change leaves"
        deferred(rt, step.id, "rollback.precheck", label, why)
    for op in step.rollback.action:
        try:
            message = next(iter(rt.plan([op], rt.context()))).describe()
        except Exception as exc:  # noqa: BLE001 - shown, not raised: a preview must not stop
            message = f"{op.kind}: {exc}"
        rt.emit(
            "operation",
            step.id,
            phase="rollback.action",
            status=OperationStatus.PLANNED,
            message=message,
        )


def _dry_all_hold(rt: Runtime, step: Step, changing: list[Step]) -> bool:
    """True only when every already-done check ran now and held; one that can't run yet is
    said, with why, and doesn't count."""
    held = True
    for spec in step.done_when:
        why = _depends_on(spec, changing, step, own=False)
        if why:
            label = spec.name or f"{spec.kind} check"
            deferred(rt, step.id, "done_when", label, f"can't be evaluated yet: depends on {why}")
            held = False
            continue
        if not one_check(rt, step.id, "done_when", spec, deferred_holds=False):
            return False  # the step has work to do: the rest would tell nothing more
    return held


def _depends_on(spec: Any, changing: list[Step], step: Step, *, own: bool) -> str | None:
    """Why a check can't be evaluated in a dry run yet, or None: it reads what an action before
    it (or this step's own) may change, and no in-memory preview shows it the change (file checks
    see planned edits through the overlay; a process may write anything)."""
    reader = CHECKS[spec.kind].traits

    def waits(other: Step) -> bool:
        return any(reader.dry_run_waits(OPERATIONS[op.kind].traits) for op in other.action)

    if own and waits(step):
        return "this step's action"
    earlier = [s.id for s in changing if s is not step and waits(s)]
    return f"the effect of {', '.join(earlier)}" if earlier else None


def _dry_checks(
    rt: Runtime,
    step: Step | None,
    phase: str,
    specs: Sequence[Any],
    changing: list[Step],
    *,
    own: bool = False,
) -> list[str]:
    """Evaluate what can be evaluated now; defer what depends on an earlier (or this) step."""
    failures: list[str] = []
    step_id = step.id if step is not None else None
    for spec in specs:
        label = spec.name or f"{spec.kind} check"
        why = _depends_on(spec, changing, step, own=own) if step is not None else None
        if why:
            deferred(rt, step_id, phase, label, f"can't be evaluated yet: depends on {why}")
            continue
        ok = one_check(rt, step_id, phase, spec)
        if not ok:
            failures.append(f"{step_id or 'preflight'} {phase}: {label}")
    return failures


def one_check(
    rt: Runtime, step_id: str | None, phase: str, spec: Any, *, deferred_holds: bool = True
) -> bool:
    """One check in a dry run's read-only window, in its own savepoint: a failing query must not
    abort the checks after it."""
    savepoint = (
        rt.conn.transaction()
        if rt.conn is not None and CHECKS[spec.kind].traits.uses_connection
        else nullcontext()
    )
    try:
        with savepoint:
            ok = run_checks(
                rt, step_id, phase, [spec], fail_fast=False, deferred_holds=deferred_holds
            )
    except psycopg.Error as exc:  # the connection itself failed: say so, count it as failed
        rt.emit("log", step_id, message=f"the check could not run: {exc}")
        return False
    return ok
