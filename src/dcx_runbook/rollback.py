"""`dcx-runbook rollback`: undo, newest first, every step of a journaled run still applied;
resumable after a crash or a failed undo, and from the journal alone."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import psycopg

from dcx_runbook import db
from dcx_runbook.clock import now
from dcx_runbook.dryrun import one_check, preview_rollback
from dcx_runbook.errors import ExitCode, JournalError
from dcx_runbook.journal import UNDO_STATUSES, Journal, RunRecord, operator
from dcx_runbook.model import Runbook, Step
from dcx_runbook.reporters.base import Reporter
from dcx_runbook.runtime import Runtime
from dcx_runbook.session import (
    NOT_CONFIRMED,
    Options,
    Outcome,
    confirmed,
    finish,
    incomplete,
    open_target,
    runtime_for,
    target_view,
    undone_status,
    undone_summary,
)
from dcx_runbook.undo import UndoFailed, file_state, undo_step
from dcx_runbook.variables import Resolved


def journaled_runbook(record: RunRecord) -> Runbook:
    """The runbook as it was run, from the journal: rollback never needs the original file."""
    from pydantic import ValidationError

    try:
        return Runbook.model_validate(record.data["runbook"]["spec"])
    except (ValidationError, KeyError, TypeError) as exc:
        raise JournalError(
            f"run {record.run_id}: the journaled runbook can't be read back ({exc.__class__.__name__}); "
            f"the record is left as is in {record.path}"
        ) from None


def rollback(
    record: RunRecord,
    resolved: Resolved,
    options: Options,
    reporter: Reporter,
    journal: Journal,
    runbook: Runbook | None = None,
) -> Outcome:
    """Undo, in reverse, every step of a journaled run that is still applied. `runbook` is the
    journaled one (read from the record when not given)."""
    runbook = runbook or journaled_runbook(record)
    rt = runtime_for(runbook, resolved, reporter, record.run_id)
    rt.app_name = db.application_name(runbook.name, record.run_id, "rollback")
    rt.expected_database = record.data.get("target", {}).get("database")
    rt.values.update(record.data.get("captured") or {})  # by preflight checks
    for entry in record.data["steps"]:
        rt.values.update(entry.get("captured", {}))
    rt.dry_run = options.dry_run
    try:
        return _rollback(rt, record, options, journal)
    finally:
        rt.close()


def _rollback(rt: Runtime, record: RunRecord, options: Options, journal: Journal) -> Outcome:
    todo = _to_undo(record)
    info = (
        open_target(rt, rt.runbook.name, journal, own_run=record.run_id)
        if rt.runbook.target is not None
        else None
    )
    rt.emit(
        "run_started",
        message=f"rollback of {record.run_id} ({rt.runbook.name})",
        detail={
            "run_id": record.run_id,
            "mode": "rollback",
            "runbook": rt.runbook.name,
            "dry_run": options.dry_run,
            "target": target_view(rt, info),
            "steps": [s["id"] for s in todo],
            "skip": [],
        },
    )
    if not todo:
        return _nothing_to_undo(rt, record, "left no changes behind")
    if options.dry_run:
        return _preview(rt, record, todo, options)
    question = (
        f"Undo {len(todo)} step(s) of run {record.run_id} ({', '.join(s['id'] for s in todo)})"
        f" on {target_view(rt, info).get('url', 'this machine')}?"
    )
    if not confirmed(rt, options, question):
        return finish(rt, NOT_CONFIRMED)
    record.lock()
    try:
        # What to undo is read again under the lock: while this process read the record and
        # waited for the run lock, the run may have unwound itself or another rollback finished.
        # Undoing from the earlier reading would undo those steps a second time.
        record.reload()
    except JournalError:
        record.unlock()
        raise
    todo = _to_undo(record)
    if not todo:
        record.unlock()
        return _nothing_to_undo(
            rt, record, "was undone meanwhile (by its own unwind or another rollback)"
        )
    rt.record = record
    history = record.data.setdefault("rollbacks", [])
    history.append(
        {"started_at": now(), "operator": operator(), "pid": os.getpid(), "status": "running"}
    )
    rt.rollback_entry = history[-1]
    kept: list[Step] = []  # irreversible steps: left as they are, said so
    try:
        rt.save()
        with rt.interruptible():
            for entry in todo:
                step = rt.runbook.step(entry["id"])
                # After a crash (or an interrupted undo), the already-done checks tell whether
                # the step's effect is there to undo; the file pre-images are restored either way.
                uncertain = entry["status"] in ("action_started", "rollback_started")
                run_ops = not (uncertain and step.done_when and not _some_effect(rt, step))
                message = undo_step(rt, step, entry, force=options.force, run_ops=run_ops)
                status = undone_status(message)
                rt.emit("step_undone", step.id, status=status, message=message)
                if status == "irreversible":
                    kept.append(step)
    except UndoFailed as exc:
        rt.emit("step_undone", exc.step_id, status="rollback_failed", message=str(exc))
        history[-1].update(status="undo_incomplete", finished_at=now())
        return incomplete(rt, "rollback stopped", f"undo of {exc.step_id} failed: {exc.message}")
    except KeyboardInterrupt:
        history[-1].update(status="interrupted", finished_at=now())
        return incomplete(rt, "rollback interrupted", "not every step was undone")
    except JournalError as exc:  # nothing is undone that the journal can't record first
        history[-1].update(status="undo_incomplete", finished_at=now())
        return incomplete(rt, "rollback stopped", str(exc))
    finally:
        record.unlock()
    history[-1].update(status="rolled_back", finished_at=now())
    return finish(
        rt,
        Outcome(
            ExitCode.OK,
            "rolled_back",
            record.run_id,
            f"run {record.run_id} rolled back: {undone_summary(kept)}",
        ),
    )


def _preview(
    rt: Runtime, record: RunRecord, todo: list[dict[str, Any]], options: Options
) -> Outcome:
    """What the rollback would do, and whether it would get through: files edited since the run
    (refused without --force) and rollback prechecks (run read-only) are checked, not assumed."""
    problems: list[str] = []
    window = db.read_only(rt.conn) if rt.conn is not None else nullcontext()
    with window:
        for entry in todo:
            step = rt.runbook.step(entry["id"])
            for path, file_entry in entry.get("files", {}).items():
                state, _ = file_state(Path(path), file_entry)
                if state == "changed" and not options.force:
                    problems.append(f"{step.id}: {path} changed after the run")
                    message, status = f"{path} changed after the run: would refuse", "failed"
                else:
                    message, status = f"restore the exact pre-run bytes of {path}", "planned"
                rt.emit(
                    "operation", step.id, phase="rollback.action", status=status, message=message
                )
            rollback = step.rollback
            if rollback is not None and rollback.action:
                results = [
                    one_check(rt, step.id, "rollback.precheck", c) for c in rollback.precheck
                ]
                if not all(results):
                    problems.append(f"{step.id}: a rollback precheck failed")
            preview_rollback(rt, step)
    undo = ", ".join(s["id"] for s in todo)
    if problems:
        message = f"dry run: the rollback would stop: {'; '.join(problems)} (would undo {undo})"
        return finish(rt, Outcome(ExitCode.UNDONE, "dry_run", record.run_id, message))
    return finish(rt, Outcome(ExitCode.OK, "dry_run", record.run_id, f"dry run: would undo {undo}"))


def _to_undo(record: RunRecord) -> list[dict[str, Any]]:
    """The step entries still applied, newest first."""
    return [s for s in reversed(record.data["steps"]) if s["status"] in UNDO_STATUSES]


def _nothing_to_undo(rt: Runtime, record: RunRecord, why: str) -> Outcome:
    message = f"run {record.run_id} {why}: nothing to undo"
    return finish(rt, Outcome(ExitCode.OK, "nothing_to_undo", record.run_id, message))


def _some_effect(rt: Runtime, step: Step) -> bool:
    """After a crash mid-action or mid-undo: is any of the step's effect there? A step killed
    between two of its effects (or between two parts of its undo) has only some of its
    already-done checks holding; one is enough for its rollback operations to run."""
    for spec in step.done_when:
        try:
            ok = rt.run_checks(step.id, "done_when", [spec], fail_fast=False)
        except psycopg.Error:
            return True
        if ok:
            return True
    return False
