"""Run a runbook: guard, lock, preflight, confirm, then precheck → action → verify per step, and
on any failure stop and unwind everything already done. Also: rollback of a journaled run."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from dcx_runbook import db
from dcx_runbook.errors import ExitCode, Refused, RunbookError, StepFailed
from dcx_runbook.journal import UNDO_STATUSES, Journal, RunRecord, new_run_id, now, operator
from dcx_runbook.loader import Loaded
from dcx_runbook.model import Runbook, Step
from dcx_runbook.reporters.base import Reporter
from dcx_runbook.runtime import Runtime
from dcx_runbook.secrets import mask_url
from dcx_runbook.undo import UndoFailed, has_non_transactional, undo_step
from dcx_runbook.variables import Resolved

OWN_LOCK_GRACE = 10.0  # seconds a rollback waits for the lock of its own dead run


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    yes: bool = False
    skip: tuple[str, ...] = ()
    force: bool = False
    # The database name the guard expects instead of the runbook's (rehearsals and the demo run
    # against a scratch database).
    expect_database: str | None = None


@dataclass
class Outcome:
    exit_code: ExitCode
    status: str
    run_id: str | None = None
    message: str = ""
    still_applied: list[str] = field(default_factory=list)


def _take_run_lock(rt: Runtime, runbook_name: str, own_run: str | None) -> bool:
    """The run lock; a rollback waits a little when the holder is the very run it undoes (its
    process was killed and the server has not yet noticed the dead client)."""
    assert rt.conn is not None
    deadline = time.monotonic() + OWN_LOCK_GRACE
    while not db.try_run_lock(rt.conn, runbook_name):
        holder = db.lock_holder(rt.conn, runbook_name) or {}
        mine = own_run is not None and f"/{own_run}" in str(holder.get("application") or "")
        if not mine or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def open_target(
    rt: Runtime, runbook_name: str, journal: Journal | None, own_run: str | None = None
) -> db.TargetInfo:
    """Connect, check the guard, take the run lock. Raises Refused: nothing changed."""
    if rt.runbook.target is None:
        raise RunbookError("this runbook has no database target")
    if not rt.url:
        raise RunbookError(
            "no database URL: pass --database-url or set it (see `dcx-runbook show`)"
        )
    rt.conn = db.connect(rt.url, rt.app_name)
    info = db.describe(rt.conn)
    expected = rt.expected_database
    if expected and info.database != expected:
        raise Refused(
            f"connected to database {info.database!r} on {info.host}, but this runbook expects "
            f"{expected!r}: refusing before any change (override with --var if that is really meant)"
        )
    if not _take_run_lock(rt, runbook_name, own_run):
        holder = db.lock_holder(rt.conn, runbook_name) or {}
        raise Refused(
            f"another dcx-runbook holds the lock for {runbook_name} on {info.database}: "
            + _describe_holder(holder, journal)
        )
    return info


def _describe_holder(holder: Mapping[str, Any], journal: Journal | None) -> str:
    if not holder:
        return "it ended just now; try again"
    app = str(holder.get("application") or "")
    run_id = app.split("/")[2] if app.count("/") >= 2 else "unknown"
    who = f"{holder.get('user')} from {holder.get('client')}"
    if journal is not None and run_id != "unknown":
        try:
            op = journal.load(run_id).data.get("operator", {})
            who = f"{op.get('user')}@{op.get('host')}"
        except RunbookError:
            pass
    return f"run {run_id} by {who}, backend pid {holder.get('pid')}, since {holder.get('since')}"


def run(
    loaded: Loaded, resolved: Resolved, options: Options, reporter: Reporter, journal: Journal
) -> Outcome:
    runbook = loaded.runbook
    unknown = [s for s in options.skip if s not in {st.id for st in runbook.steps}]
    if unknown:
        raise RunbookError(
            f"--skip {', '.join(unknown)}: no such step (steps: "
            + ", ".join(s.id for s in runbook.steps)
            + ")"
        )
    # The loaded runbook, its models and the imported modules live for the whole run: moving them
    # out of the collector's reach keeps its passes short however many steps there are.
    gc.freeze()
    run_id = new_run_id()
    rt = _runtime(runbook, resolved, reporter, run_id)
    rt.dry_run = options.dry_run
    if options.expect_database:
        rt.expected_database = options.expect_database
    try:
        return _run(rt, loaded, resolved, options, journal, run_id)
    finally:
        rt.close()


def _runtime(runbook: Runbook, resolved: Resolved, reporter: Reporter, run_id: str) -> Runtime:
    values: dict[str, Any] = dict(resolved.values)
    url = values.get(runbook.url_var) if runbook.url_var else None
    expected = None
    if runbook.target is not None and runbook.target.database:
        from dcx_runbook.template import render

        expected = render(runbook.target.database, values)
    secrets = {n: resolved.values.get(n) for n in resolved.secret}
    masker = resolved.masker()
    if url:
        masker.add(url)
    return Runtime(
        runbook,
        values,
        secrets,
        masker,
        reporter,
        url=url,
        app_name=db.application_name(runbook.name, run_id),
        expected_database=expected,
    )


def _run(
    rt: Runtime, loaded: Loaded, resolved: Resolved, options: Options, journal: Journal, run_id: str
) -> Outcome:
    runbook = rt.runbook
    try:
        info = open_target(rt, runbook.name, journal) if runbook.target is not None else None
    except Refused as exc:
        # Wrong database, run lock held, can't connect: said as an event too, so a JSON reader
        # sees every run end with run_finished.
        return _finish(rt, Outcome(ExitCode.REFUSED, "refused", None, str(exc)))
    target = _target_view(rt, info)
    rt.emit(
        "run_started",
        message=f"{runbook.name}: {runbook.title}",
        detail={
            "run_id": None if options.dry_run else run_id,
            "mode": "run",
            "runbook": runbook.name,
            "dry_run": options.dry_run,
            "target": target,
            "steps": [s.id for s in runbook.steps],
            "skip": list(options.skip),
        },
    )
    if options.dry_run:
        return _dry_run(rt, options)
    with rt.interruptible():
        try:
            rt.run_checks(None, "preflight", _needed(runbook.preflight, options))
        except (StepFailed, psycopg.Error) as exc:
            return _finish(
                rt, Outcome(ExitCode.REFUSED, "refused", None, f"preflight failed: {exc}")
            )
    question = f"Run {runbook.name} ({len(runbook.steps)} steps) against {target.get('url', 'no database')}?"
    if not options.yes and not rt.reporter.confirm(question):
        return _finish(
            rt,
            Outcome(
                ExitCode.REFUSED,
                "refused",
                None,
                "not confirmed (no terminal? pass --yes); nothing was changed",
            ),
        )
    rt.record = journal.create(
        {
            "run_id": run_id,
            "mode": "run",
            "status": "running",
            "dry_run": False,
            "runbook": {
                "name": runbook.name,
                "title": runbook.title,
                "path": str(loaded.path),
                "sha256": loaded.sha256,
                "spec": _journal_spec(runbook),
            },
            "vars": rt.masker.deep(resolved.public()),
            "secret_vars": sorted(resolved.secret),
            "target": target,
            "operator": operator(),
            "pid": os.getpid(),
            "started_at": now(),
            "finished_at": None,
            "exit_code": None,
            "skipped": list(options.skip),
            "steps": [{"id": s.id, "title": s.title, "status": "pending"} for s in runbook.steps],
        }
    )
    rt.record.lock()
    try:
        return _execute(rt, options)
    finally:
        rt.record.unlock()


def _journal_spec(runbook: Runbook) -> dict[str, Any]:
    """The runbook as journaled: everything rollback needs, minus secret defaults."""
    spec = runbook.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for name, var in runbook.vars.items():
        if var.secret and var.default is not None:
            spec["vars"][name].pop("default", None)
    return spec


def _needed(checks: Sequence[Any], options: Options) -> list[Any]:
    """Preflight checks, without those only skipped steps need."""
    return [c for c in checks if not c.needed_by or set(c.needed_by) - set(options.skip)]


def _target_view(rt: Runtime, info: db.TargetInfo | None) -> dict[str, Any]:
    if info is None:
        return {}
    return {
        "url": mask_url(rt.url or ""),
        "host": info.host,
        "port": info.port,
        "database": info.database,
        "user": info.user,
        "server_version": info.server_version,
    }


def _execute(rt: Runtime, options: Options) -> Outcome:
    assert rt.record is not None
    applied: list[Step] = []
    current: Step | None = None
    with rt.interruptible():
        try:
            for step in rt.runbook.steps:
                current = step
                if _run_step(rt, step, options):
                    applied.append(step)
                current = None
        except (StepFailed, psycopg.Error, RunbookError) as exc:
            return _unwind(rt, applied, current, f"{exc}", ExitCode.UNDONE)
        except KeyboardInterrupt:
            return _unwind(rt, applied, current, "interrupted", ExitCode.INTERRUPTED)
    return _finish(rt, Outcome(ExitCode.OK, "succeeded", rt.record.run_id, "done and verified"))


def _run_step(rt: Runtime, step: Step, options: Options) -> bool:
    """Run one step; True if it changed something that an unwind must undo."""
    assert rt.record is not None
    entry = rt.record.step(step.id)
    if step.id in options.skip:
        entry["status"] = "skipped"
        rt.save(entry, durable=False)
        rt.emit(
            "step_finished", step.id, status="skipped", message="skipped by the operator (--skip)"
        )
        return False
    rt.emit("step_started", step.id, message=step.title)
    if step.done_when:
        ok, _ = rt.run_checks(step.id, "done_when", step.done_when, fail_fast=False)
        if ok:
            entry["status"] = "already_done"
            rt.save(entry, durable=False)
            rt.emit(
                "step_finished",
                step.id,
                status="already_done",
                message="already done: nothing to change",
            )
            return False
    rt.run_checks(step.id, "precheck", step.precheck)
    if not step.action:
        rt.run_checks(step.id, "verify", step.verify)
        entry["status"] = "passed"
        rt.save(entry, durable=False)
        rt.emit("step_finished", step.id, status="passed", message="verified")
        return False
    entry["status"] = "action_started"
    entry["started_at"] = now()
    rt.save(entry)  # write-ahead: durable before the action runs
    rt.act(step, "action", step.action, step.verify, entry)
    entry["status"] = "applied"
    entry["finished_at"] = now()
    # Not fsynced: should this line be lost, "action started" and the step's already-done checks
    # still tell a later rollback what to undo.
    rt.save(entry, durable=False)
    rt.emit("step_finished", step.id, status="applied", message="applied and verified")
    return True


def _unwind(
    rt: Runtime, applied: list[Step], current: Step | None, reason: str, code: ExitCode
) -> Outcome:
    assert rt.record is not None
    rt.emit("unwind_started", current.id if current else None, message=reason)
    if not _reconnect_if_lost(rt):
        return _incomplete(
            rt, reason, "the database connection was lost and the unwind could not safely continue"
        )
    todo: list[tuple[Step, bool]] = []
    if current is not None:
        entry = rt.record.step(current.id)
        if entry["status"] == "action_started":
            todo.append((current, True))
        elif entry["status"] in ("pending",):
            entry["status"] = "failed"
    todo += [(step, False) for step in reversed(applied)]
    try:
        with rt.interruptible():
            for step, in_flight in todo:
                message = undo_step(
                    rt,
                    step,
                    rt.record.step(step.id),
                    force=False,
                    run_ops=not in_flight or has_non_transactional(step),
                )
                status = _undone_status(message)
                rt.emit("step_undone", step.id, status=status, message=message)
    except UndoFailed as exc:
        rt.emit("step_undone", exc.step_id, status="rollback_failed", message=str(exc))
        return _incomplete(rt, reason, f"undo of {exc.step_id} failed: {exc.message}")
    except KeyboardInterrupt:
        return _incomplete(rt, reason, "the unwind was interrupted")
    for step, _ in todo:
        if rt.record.step(step.id)["status"] == "rolled_back" and step is current:
            rt.record.step(step.id)["status"] = "failed"
    return _finish(
        rt,
        Outcome(
            code,
            "interrupted" if code == ExitCode.INTERRUPTED else "failed",
            rt.record.run_id,
            f"{reason}; every change was undone: the system is as it was",
        ),
    )


def _undone_status(message: str) -> str:
    if message.startswith("irreversible"):
        return "irreversible"
    return "nothing_to_undo" if message == "nothing to undo" else "rolled_back"


def _reconnect_if_lost(rt: Runtime) -> bool:
    """A new connection (and the run lock again) when the old one died; False when the unwind
    must not go on: no connection, or another run took the lock meanwhile."""
    if rt.conn is None or not rt.conn.closed and not rt.conn.broken:
        return True
    rt.emit("log", message="the database connection was lost; reconnecting to unwind")
    try:
        rt.conn = db.connect(rt.url or "", rt.app_name)
        rt.blocker_watch = None  # it watched the old backend
    except Refused as exc:
        rt.emit("log", message=f"reconnect failed: {exc}")
        return False
    if not db.try_run_lock(rt.conn, rt.runbook.name):
        rt.emit("log", message="another process took the run lock while the connection was down")
        return False
    return True


def _incomplete(rt: Runtime, reason: str, what: str) -> Outcome:
    assert rt.record is not None
    still = [s["id"] for s in rt.record.data["steps"] if s["status"] in UNDO_STATUSES]
    command = f"dcx-runbook rollback {rt.record.run_id}"
    message = (
        f"{reason}; {what}. Still applied: {', '.join(still) or 'nothing'}. "
        f"Fix the cause, then run: {command}"
    )
    return _finish(
        rt, Outcome(ExitCode.UNDO_INCOMPLETE, "undo_incomplete", rt.record.run_id, message, still)
    )


def _finish(rt: Runtime, outcome: Outcome) -> Outcome:
    if rt.record is not None and not rt.dry_run:
        rt.record.data.update(
            status=outcome.status,
            exit_code=int(outcome.exit_code),
            finished_at=now(),
            message=rt.masker(outcome.message),
        )
        rt.record.snapshot()
    rt.emit(
        "run_finished",
        status=outcome.status,
        message=outcome.message,
        detail={
            "run_id": outcome.run_id,
            "exit_code": int(outcome.exit_code),
            "still_applied": outcome.still_applied,
        },
    )
    return outcome


# ------------------------------------------------------------------------------------ dry run


def _dry_run(rt: Runtime, options: Options) -> Outcome:
    """Live read-only checks, the exact SQL and argv, in-memory file diffs; nothing is written."""
    assert rt.conn is not None or rt.runbook.target is None
    failures: list[str] = []
    changing: list[Step] = []  # steps that would act before the current one
    from contextlib import nullcontext

    window = db.read_only(rt.conn) if rt.conn is not None else nullcontext()
    with window:
        preflight = _needed(rt.runbook.preflight, options)
        failures += _dry_checks(rt, None, "preflight", preflight, [])
        for step in rt.runbook.steps:
            if step.id in options.skip:
                rt.emit(
                    "step_finished", step.id, status="skipped", message="would be skipped (--skip)"
                )
                continue
            rt.emit("step_started", step.id, message=step.title)
            if step.done_when and _dry_all_hold(rt, step, changing):
                rt.emit(
                    "step_finished",
                    step.id,
                    status="already_done",
                    message="already done: would change nothing",
                )
                continue
            failures += _dry_checks(rt, step, "precheck", step.precheck, changing)
            ctx = rt.context()
            try:
                for effect in rt.plan(step.action, ctx):
                    rt.emit(
                        "operation",
                        step.id,
                        phase="action",
                        status="planned",
                        message=effect.describe(),
                    )
                    if effect.paths():
                        effect.execute(ctx)  # in a dry run, into the in-memory overlay only
            except Exception as exc:  # noqa: BLE001 - a plan that can't be made is a failed check
                failures.append(f"{step.id}: {exc}")
                rt.emit("operation", step.id, phase="action", status="failed", message=str(exc))
            if step.action:
                changing.append(step)
            failures += _dry_checks(rt, step, "verify", step.verify, changing, own=True)
            if step.rollback is not None:
                for op in step.rollback.action:
                    rt.emit(
                        "operation",
                        step.id,
                        phase="rollback.action",
                        status="planned",
                        message=_describe_rollback(rt, op),
                    )
            rt.emit(
                "step_finished",
                step.id,
                status="would_apply" if step.action else "would_verify",
                message="would apply" if step.action else "would verify",
            )
    code = ExitCode.OK if not failures else ExitCode.UNDONE
    message = (
        "dry run: every check that could run passed"
        if not failures
        else "dry run: " + "; ".join(failures)
    )
    return _finish(rt, Outcome(code, "dry_run", None, message))


def _describe_rollback(rt: Runtime, op: Any) -> str:
    try:
        return next(iter(rt.plan([op], rt.context()))).describe()
    except Exception as exc:  # noqa: BLE001
        return f"{op.kind}: {exc}"


def _dry_all_hold(rt: Runtime, step: Step, changing: list[Step]) -> bool:
    """True only when every already-done check ran now and held (a deferred one doesn't count)."""
    for spec in step.done_when:
        if _depends_on(spec, changing, step, own=False):
            return False
        ok, _ = _one_check(rt, step.id, "done_when", spec)
        if not ok:
            return False
    return True


def _depends_on(spec: Any, changing: list[Step], step: Step, *, own: bool) -> str | None:
    """Why a check can't be evaluated in a dry run yet, or None.

    File checks see planned edits through the in-memory overlay, so they wait only for shell
    actions (which may write anything). A sql check waits for sql or shell actions; a shell check
    waits for any action."""
    waits_for = {
        "sql": {"sql", "shell"},
        "shell": {"sql", "shell", "file", "env_file"},
        "file": {"shell"},
        "env_file": {"shell"},
    }
    kinds = waits_for.get(spec.kind)
    if not kinds:
        return None
    if own and any(op.kind in kinds for op in step.action):
        return "this step's action"
    earlier = [s.id for s in changing if s is not step and any(op.kind in kinds for op in s.action)]
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
            rt.emit(
                "check",
                step_id,
                phase=phase,
                status="deferred",
                message=f"{label}: can't be evaluated yet: depends on {why}",
                detail={"name": label},
            )
            continue
        ok, _ = _one_check(rt, step_id, phase, spec)
        if not ok:
            failures.append(f"{step_id or 'preflight'} {phase}: {label}")
    return failures


def _one_check(rt: Runtime, step_id: str | None, phase: str, spec: Any) -> tuple[bool, str]:
    from contextlib import nullcontext

    # A savepoint per check: one failing query must not abort the dry run's whole window.
    savepoint = (
        rt.conn.transaction() if rt.conn is not None and spec.kind == "sql" else nullcontext()
    )
    try:
        with savepoint:
            ok, _ = rt.run_checks(step_id, phase, [spec], fail_fast=False)
    except psycopg.Error as exc:
        return False, str(exc)
    return ok, ""


# ------------------------------------------------------------------------------------ rollback


def rollback(
    record: RunRecord, resolved: Resolved, options: Options, reporter: Reporter, journal: Journal
) -> Outcome:
    """Undo, in reverse, every step of a journaled run that is still applied."""
    runbook = Runbook.model_validate(record.data["runbook"]["spec"])
    rt = _runtime(runbook, resolved, reporter, record.run_id)
    rt.app_name = db.application_name(runbook.name, record.run_id, "rollback")
    rt.expected_database = record.data.get("target", {}).get("database")
    for entry in record.data["steps"]:
        rt.values.update(entry.get("captured", {}))
    rt.dry_run = options.dry_run
    try:
        return _rollback(rt, record, options, journal)
    finally:
        rt.close()


def _rollback(rt: Runtime, record: RunRecord, options: Options, journal: Journal) -> Outcome:
    todo = [s for s in reversed(record.data["steps"]) if s["status"] in UNDO_STATUSES]
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
            "target": _target_view(rt, info),
            "steps": [s["id"] for s in todo],
            "skip": [],
        },
    )
    if not todo:
        return _finish(
            rt,
            Outcome(
                ExitCode.OK,
                "nothing_to_undo",
                record.run_id,
                f"run {record.run_id} left no changes behind: nothing to undo",
            ),
        )
    if options.dry_run:
        for entry in todo:
            step = rt.runbook.step(entry["id"])
            for path in entry.get("files", {}):
                rt.emit(
                    "operation",
                    step.id,
                    phase="rollback.action",
                    status="planned",
                    message=f"restore the exact pre-run bytes of {path}",
                )
            if step.rollback is not None:
                for op in step.rollback.action:
                    rt.emit(
                        "operation",
                        step.id,
                        phase="rollback.action",
                        status="planned",
                        message=_describe_rollback(rt, op),
                    )
        return _finish(
            rt,
            Outcome(
                ExitCode.OK,
                "dry_run",
                record.run_id,
                "dry run: would undo " + ", ".join(s["id"] for s in todo),
            ),
        )
    question = (
        f"Undo {len(todo)} step(s) of run {record.run_id} ({', '.join(s['id'] for s in todo)})"
        f" on {_target_view(rt, info).get('url', 'this machine')}?"
    )
    if not options.yes and not rt.reporter.confirm(question):
        return _finish(
            rt,
            Outcome(
                ExitCode.REFUSED,
                "refused",
                record.run_id,
                "not confirmed (no terminal? pass --yes); nothing was changed",
            ),
        )
    record.lock()
    rt.record = record
    history = record.data.setdefault("rollbacks", [])
    history.append({"started_at": now(), "operator": operator(), "status": "running"})
    rt.save()
    try:
        with rt.interruptible():
            for entry in todo:
                step = rt.runbook.step(entry["id"])
                # After a crash (or an interrupted undo), the already-done checks tell whether
                # the step's effect is there to undo; the file pre-images are restored either way.
                uncertain = entry["status"] in ("action_started", "rollback_started")
                run_ops = not (uncertain and step.done_when and not _some_effect(rt, step))
                message = undo_step(rt, step, entry, force=options.force, run_ops=run_ops)
                status = _undone_status(message)
                rt.emit("step_undone", step.id, status=status, message=message)
    except UndoFailed as exc:
        rt.emit("step_undone", exc.step_id, status="rollback_failed", message=str(exc))
        history[-1].update(status="undo_incomplete", finished_at=now())
        return _incomplete(rt, "rollback stopped", f"undo of {exc.step_id} failed: {exc.message}")
    except KeyboardInterrupt:
        history[-1].update(status="interrupted", finished_at=now())
        return _incomplete(rt, "rollback interrupted", "not every step was undone")
    finally:
        record.unlock()
    history[-1].update(status="rolled_back", finished_at=now())
    return _finish(
        rt,
        Outcome(
            ExitCode.OK,
            "rolled_back",
            record.run_id,
            f"run {record.run_id} rolled back: every change was undone",
        ),
    )


def _some_effect(rt: Runtime, step: Step) -> bool:
    """After a crash mid-action or mid-undo: is any of the step's effect there? A step killed
    between two of its effects (or between two parts of its undo) has only some of its
    already-done checks holding; one is enough for its rollback operations to run."""
    for spec in step.done_when:
        try:
            ok, _ = rt.run_checks(step.id, "done_when", [spec], fail_fast=False)
        except psycopg.Error:
            return True
        if ok:
            return True
    return False
