"""Evaluating checks: each one's event, its captured value journaled, a failure raised (or
counted) as the phase asks; a check a dry run can't evaluate yet is deferred, not assumed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.errors import StepFailed
from dcx_runbook.kinds import CHECKS, path_of
from dcx_runbook.kinds.base import CheckResult, CheckSpec, Deferred
from dcx_runbook.statuses import CheckStatus
from dcx_runbook.template import TemplateError, render


def run_checks(
    rt: Runtime,
    step_id: str | None,
    phase: str,
    specs: Sequence[CheckSpec],
    *,
    fail_fast: bool = True,
    deferred_holds: bool = True,
) -> bool:
    """Evaluate checks; True when all passed. Raises StepFailed on a failure when fail_fast.
    A check deferred (a dry run can't evaluate it) counts as passed unless `deferred_holds`
    is False: "already done" must be known, not assumed."""
    ok = True
    ctx = rt.context()  # checks write nothing: one context serves them all
    for index, spec in enumerate(specs):
        label = spec.name or f"{spec.kind} check {index + 1}"
        errored = False
        try:
            result = CHECKS[spec.kind].check(spec, ctx)
        except Deferred as why:
            deferred(rt, step_id, phase, label, str(why))
            ok = ok and deferred_holds
            continue
        except (psycopg.Error, OSError, TemplateError, ValueError, re.error) as exc:
            if isinstance(exc, psycopg.Error) and rt.conn is not None and rt.conn.closed:
                raise
            result = CheckResult(False, f"{type(exc).__name__}: {_first_line(exc)}")
            errored = True
        _capture(rt, step_id, spec, result)
        said = result.detail + _simulated(rt, spec)
        _check_event(rt, step_id, phase, label, result.ok, said, spec, result.value)
        if not result.ok:
            ok = False
            if fail_fast:
                raise _failure(rt, step_id, phase, label, spec, result, errored)
    return ok


def _simulated(rt: Runtime, spec: CheckSpec) -> str:
    """In a dry run, a check that read a file an earlier planned edit changed in memory: its
    result is the plan's, not the disk's, and it says so."""
    if not rt.dry_run or not rt.overlay:
        return ""
    written = path_of(spec)
    try:
        path = Path(render(written, rt.values)) if written else None
    except TemplateError:
        return ""
    if path is None or path not in rt.overlay:
        return ""
    return " (simulated: against the content planned for it, not the file on disk)"


def deferred(rt: Runtime, step_id: str | None, phase: str, label: str, why: str) -> None:
    """A check that can't be evaluated yet (a dry run, before the effect it depends on)."""
    rt.emit(
        "check",
        step_id,
        phase=phase,
        status=CheckStatus.DEFERRED,
        message=f"{label}: {why}",
        detail={"name": label},
    )


def _capture(rt: Runtime, step_id: str | None, spec: CheckSpec, result: CheckResult) -> None:
    """A value a passing check captures: a variable for later checks, journaled for a rollback
    (a preflight's with the run's record)."""
    capture = getattr(spec, "capture", None)
    if not capture or not result.ok:
        return
    rt.values[capture] = result.value
    if step_id is None:
        rt.captured[capture] = _jsonable(result.value)
    elif rt.record is not None:
        rt.record.step(step_id).setdefault("captured", {})[capture] = _jsonable(result.value)


def _failure(
    rt: Runtime,
    step_id: str | None,
    phase: str,
    label: str,
    spec: CheckSpec,
    result: CheckResult,
    errored: bool,
) -> StepFailed:
    """The failure a failed check raises: what it found and, when it could compare at all, what
    its author says that means."""
    if errored:
        return StepFailed(f"{label}: {rt.masker(result.detail)}", step_id=step_id, phase=phase)
    message = f"{label}: {result.detail}"
    if spec.message:
        message += f"\n{_render_message(rt, spec.message, result.value)}"
    return StepFailed(message, step_id=step_id, phase=phase)


def _render_message(rt: Runtime, template: str, value: Any) -> str:
    try:
        return render(template, {**rt.values, "value": value})
    except TemplateError:
        return template


def _check_event(
    rt: Runtime,
    step_id: str | None,
    phase: str,
    label: str,
    ok: bool,
    detail: str,
    spec: CheckSpec,
    value: Any,
) -> None:
    """The check's event; a failed check's message shows `${value}` as the failure raised
    after it does: the value the check found."""
    message = f"{label}: {detail}"
    if not ok and spec.message and phase != "done_when":
        message += f" ({_render_message(rt, spec.message, value)})"
    # An unmet already-done check is not a failure: it means the step has work to do.
    status = (
        CheckStatus.PASSED
        if ok
        else (CheckStatus.UNMET if phase == "done_when" else CheckStatus.FAILED)
    )
    rt.emit(
        "check",
        step_id,
        phase=phase,
        status=status,
        message=message,  # emit masks it
        detail={"name": label},
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
