"""`dcx-runbook rollback`: undo, newest first, every step still applied by one run (`RUN_ID`) or
by every run of the latest runbook on its target (bare); resumable after a crash or a failed
undo, and from the journal alone. Refused at once while a run or rollback is still at work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from dcx_runbook.engine import person
from dcx_runbook.engine.checks import run_checks
from dcx_runbook.engine.hosts import Elsewhere, refuse_or_skip
from dcx_runbook.engine.hosts import said as said_elsewhere
from dcx_runbook.engine.journaled import Resolve, borrowed, runtime_of
from dcx_runbook.engine.reconcile import LedgerJournal
from dcx_runbook.engine.report import Report, closing, end_here, name_others, stopped
from dcx_runbook.engine.rollback_preview import preview
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.engine.scope import (
    Pending,
    candidates,
    history,
    journaled_runbook,
    listing,
    live,
    of_runbook,
    pending,
    same_target,
    still_running,
)
from dcx_runbook.engine.session import (
    Options,
    Outcome,
    attach_mirror,
    confirmed,
    connect_target,
    finish,
    not_confirmed,
    record_outcome,
    take_run_lock,
    target_view,
)
from dcx_runbook.engine.undo import undo_all
from dcx_runbook.errors import ExitCode, InvalidInput, JournalError, Refused, UndoFailed
from dcx_runbook.format.model import Step
from dcx_runbook.reporters.base import Reporter
from dcx_runbook.state.entries import new_rollback
from dcx_runbook.state.journal import Journal, RunRecord
from dcx_runbook.statuses import RunStatus, StepStatus, UndoOutcome
from dcx_runbook.target import db, identity

__all__ = ["journaled_runbook", "rollback_latest", "rollback_run"]


def rollback_run(
    record: RunRecord, journal: Journal, resolve: Resolve, options: Options, reporter: Reporter
) -> Outcome:
    """`rollback RUN_ID`: that run only, on the very database it changed."""
    run = pending(record)
    resolved = resolve(record, run.runbook)
    rt = runtime_of(run, resolved, reporter, options, expected_database=run.target.get("database"))
    try:
        info = _connect(rt, run)
        if info is not None:
            _same_database(run, info)
        return _undo(rt, info, [run], journal, resolve, options, resolved.notes)
    except Refused as exc:
        return finish(rt, Outcome(ExitCode.REFUSED, RunStatus.REFUSED, None, str(exc)))
    finally:
        rt.close()


def rollback_latest(
    journal: Journal,
    resolve: Resolve,
    options: Options,
    reporter: Reporter,
    *,
    url_given: bool = False,
) -> Outcome:
    """Bare `rollback`: the runbook of the latest run that left changes, on the target given
    (connected to), every run of it there, newest first."""
    records = history(journal)
    found = candidates(records)
    if not found:
        busy = live(records)
        if busy is not None:  # early in a run nothing is applied yet, but it is at work
            return end_here(reporter, ExitCode.REFUSED, RunStatus.REFUSED, busy.held_by())
        message = f"no run recorded in {journal.runs_dir} left changes behind: nothing to roll back"
        if not isinstance(journal, LedgerJournal):  # no target's ledger was read
            message += (
                " (this machine's journal only: give the target with --database-url, --env-file "
                "or $DATABASE_URL to read what its ledger says is applied)"
            )
        return end_here(reporter, ExitCode.OK, RunStatus.NOTHING_TO_UNDO, message)
    # A URL typed on the command line names the target: the latest run with a database.
    newest = (
        next((r for r in found if r.runbook.target is not None), found[0])
        if url_given
        else found[0]
    )
    resolved = resolve(newest.record, newest.runbook)
    # The target given decides; runs are matched by the server's identity, not by a name.
    rt = runtime_of(newest, resolved, reporter, options, guard=False)
    try:
        info = _connect(rt, newest)
        view = info.identity() if info is not None else None
        mine = [run for run in found if same_target(run, view)]
        if not mine:
            raise Refused(_elsewhere(journal, newest, view))
        scope = of_runbook(records, mine[0].runbook.name, view)
        return _undo(rt, info, scope, journal, resolve, options, resolved.notes, bare=True)
    except Refused as exc:
        return finish(rt, Outcome(ExitCode.REFUSED, RunStatus.REFUSED, None, str(exc)))
    finally:
        rt.close()


def _connect(rt: Runtime, run: Pending) -> db.TargetInfo | None:
    if run.runbook.target is None:
        return None
    if not rt.url:
        raise InvalidInput(
            f"no database URL: run {run.run_id} changed {identity.describe(run.target)} "
            f"({run.target.get('url', '?')}); give it with --database-url, $DATABASE_URL or "
            "--env-file (a password is never journaled)"
        )
    return connect_target(rt)


def _same_database(run: Pending, info: db.TargetInfo) -> None:
    """A same-named database on another server (staging and production often share names) is
    not the one the run changed: refused, naming both."""
    why = identity.mismatch(run.target, info.identity())
    if why is not None:
        raise Refused(
            f"run {run.run_id} changed {identity.describe(run.target)}, but the URL given "
            f"reaches {identity.describe(info.identity())} ({why}): refusing before any change"
        )


def _elsewhere(journal: Journal, newest: Pending, view: Mapping[str, Any] | None) -> str:
    where = identity.describe(view) if view is not None else "this machine"
    return (
        f"no run recorded in {journal.runs_dir} changed {where}; the latest run that left "
        f"changes, {newest.run_id} of {newest.runbook.name}, changed "
        f"{identity.describe(newest.target)}: give that database's URL to roll it back"
    )


def _undo(
    rt: Runtime,
    info: db.TargetInfo | None,
    scope: list[Pending],
    journal: Journal,
    resolve: Resolve,
    options: Options,
    notes: Sequence[str],
    *,
    bare: bool = False,
) -> Outcome:
    """Hold every run in scope (refused at once if one is still at work), read them again, take
    the run lock, say what will be undone, ask, undo."""
    name = scope[0].runbook.name
    view = info.identity() if info is not None else None
    held = _hold(scope, journal, name, view)
    local = None
    try:
        if options.dry_run:
            _release(held)
        for run in scope:  # what the run's own unwind or another rollback left
            run.record.reload()
        # The session is named after a run this rollback writes an entry to: another process
        # finding the lock taken judges by that entry whether its holder is still alive.
        first = next((run for run in scope if run.applied()), scope[0])
        if not options.dry_run and info is not None:
            db.set_application_name(rt.conn, db.application_name(name, first.run_id, "rollback"))
            take_run_lock(rt, name, journal)
        elif not options.dry_run:  # files only: no server lock, this machine's stands in
            local = journal.hold_runbook(name, scope[0].run_id)
        todo = [run for run in scope if run.applied()]
        _started(rt, info, scope, todo, options, notes)
        context = Report(rt, journal, name, view, bare, scope[0].run_id)
        if not bare:
            name_others(context, scope[0])
        if not todo:
            return context.nothing(scope[0])
        leave = refuse_or_skip(todo, options.skip_other_hosts)
        person.undo_preflight(rt, todo, options)
        if options.dry_run:
            return preview(context, todo, resolve, options)
        question = f"Undo, newest first, on {context.where}: {listing(todo)}. Go ahead?"
        if not confirmed(rt, options, question):
            return finish(rt, not_confirmed(rt))
        return _undo_all(context, todo, resolve, options, leave)
    finally:
        if local is not None:
            local.release()
        _release(held)


def _hold(
    scope: Sequence[Pending], journal: Journal, name: str, view: Mapping[str, Any] | None
) -> list[RunRecord]:
    """Each run's record lock, and no other run of the runbook at work: a run still going is
    never undone under it, nor waited for."""
    held: list[RunRecord] = []
    mine = {run.run_id for run in scope}
    others = [r for r in history(journal) if isinstance(r, JournalError) or r.run_id not in mine]
    try:
        for run in scope:
            if not run.record.try_lock():
                raise Refused(run.record.held_by())
            held.append(run.record)
        busy = live(others, name, view)
        if busy is not None:
            raise Refused(busy.held_by())
        for run in scope:
            running = still_running(run)
            if running is not None:
                raise Refused(running)
    except BaseException:
        _release(held)
        raise
    return held


def _release(held: Sequence[RunRecord]) -> None:
    for record in held:
        record.unlock()


def _started(
    rt: Runtime,
    info: db.TargetInfo | None,
    scope: Sequence[Pending],
    todo: Sequence[Pending],
    options: Options,
    notes: Sequence[str],
) -> None:
    runs = [{"run_id": run.run_id, "steps": [e["id"] for e in run.applied()]} for run in todo]
    rt.emit(
        "run_started",
        message=f"rollback of {', '.join(run.run_id for run in scope)} ({scope[0].runbook.name})",
        detail={
            "run_id": scope[0].run_id,
            "mode": "rollback",
            "runbook": scope[0].runbook.name,
            "dry_run": options.dry_run,
            "target": target_view(rt, info),
            "steps": [step for run in runs for step in run["steps"]],
            "skip": [],
            "runs": runs,
        },
    )
    for note in notes:
        rt.emit("log", message=note)
    if todo:
        rt.emit("log", message=f"to undo, newest first: {listing(todo)}")


def _undo_all(
    context: Report,
    todo: Sequence[Pending],
    resolve: Resolve,
    options: Options,
    leave: Mapping[str, Sequence[Elsewhere]],
) -> Outcome:
    undone: list[tuple[str, int]] = []
    kept: list[tuple[str, Step]] = []
    try:
        for run in todo:
            with borrowed(context.rt, run, resolve, options) as rt:
                count, irreversible = _undo_run(rt, run, options, leave.get(run.run_id, ()))
            if count:
                undone.append((run.run_id, count))
            kept += [(run.run_id, step) for step in irreversible]
    except UndoFailed as exc:
        return stopped(context, "rollback stopped", f"undo of {exc.step_id} failed: {exc.message}")
    except KeyboardInterrupt:
        return stopped(context, "rollback interrupted", "not every step was undone")
    except JournalError as exc:  # nothing is undone that the journal can't record first
        return stopped(context, "rollback stopped", str(exc))
    standing = context.standing()
    outcome = closing(context, undone, kept, todo, standing)
    left = [item for items in leave.values() for item in items]
    if left:
        outcome.message += (
            f"; left for the machines that ran them (--skip-other-hosts): {said_elsewhere(left)}"
        )
    return context.end(outcome, standing)


def _undo_run(
    rt: Runtime, run: Pending, options: Options, leave: Sequence[Elsewhere] = ()
) -> tuple[int, list[Step]]:
    """Undo one run's applied steps, newest first, but those `leave` names (their own machine
    must undo them); its outcome goes to its own `rollbacks` entry. Returns how many steps were
    undone and the irreversible ones left as they are."""
    record = run.record
    rt.record = record
    left = {item.step_id: item for item in leave}
    entries = [entry for entry in run.applied() if entry["id"] not in left]
    history_ = record.data.setdefault("rollbacks", [])
    reason = rt.masker(options.reason) if options.reason else None
    history_.append(new_rollback(reason, sorted(left)))
    rt.rollback_entry = history_[-1]
    attach_mirror(rt, options)
    if rt.mirror is not None:
        rt.mirror.start_rollback(rt.conn, len(history_), rt.rollback_entry)
    _left(rt, run, leave)
    try:
        rt.save()
        done = undo_all(
            rt,
            [(run.runbook.step(entry["id"]), entry) for entry in entries],
            lambda step, entry: _run_ops(rt, step, entry),
            force=options.force,
        )
    except UndoFailed as exc:
        _end_run(
            rt, ExitCode.UNDO_INCOMPLETE, RunStatus.UNDO_INCOMPLETE, f"undo of {exc.step_id} failed"
        )
        raise
    except KeyboardInterrupt:
        _end_run(
            rt, ExitCode.UNDO_INCOMPLETE, RunStatus.INTERRUPTED, "stopped by Ctrl-C or SIGTERM"
        )
        raise
    except JournalError as exc:
        _end_run(rt, ExitCode.UNDO_INCOMPLETE, RunStatus.UNDO_INCOMPLETE, str(exc))
        raise
    undone = done.count
    said_ = f"rolled back ({undone} step(s) undone)" if undone else "nothing that can be undone"
    _end_run(rt, ExitCode.OK, RunStatus.ROLLED_BACK if undone else RunStatus.NOTHING_TO_UNDO, said_)
    return undone, done.kept


def _left(rt: Runtime, run: Pending, leave: Sequence[Elsewhere]) -> None:
    for item in leave:
        rt.emit(
            "step_undone",
            item.step_id,
            status=UndoOutcome.SKIPPED,
            message=f"left as it is (--skip-other-hosts): it touched {item.host}"
            + (f" ({', '.join(item.paths)})" if item.paths else "")
            + f"; still applied; on {item.host}: dcx-runbook rollback {run.run_id}",
            detail={"host": item.host, "paths": list(item.paths)},
        )


def _run_ops(rt: Runtime, step: Step, entry: dict[str, Any]) -> bool:
    """After a crash (or an interrupted undo), the already-done checks tell whether the step's
    effect is there to undo; the file pre-images are restored either way."""
    uncertain = entry["status"] in (StepStatus.ACTION_STARTED, StepStatus.ROLLBACK_STARTED)
    return not (uncertain and step.done_when and not _some_effect(rt, step))


def _end_run(rt: Runtime, code: ExitCode, status: RunStatus, message: str) -> None:
    assert rt.record is not None
    record_outcome(rt, Outcome(code, status, rt.record.run_id, message))


def _some_effect(rt: Runtime, step: Step) -> bool:
    """After a crash mid-action or mid-undo: is any of the step's effect there? A step killed
    between two of its effects (or between two parts of its undo) has only some of its
    already-done checks holding; one is enough for its rollback operations to run."""
    for spec in step.done_when:
        try:
            ok = run_checks(rt, step.id, "done_when", [spec], fail_fast=False)
        except psycopg.Error:
            return True
        if ok:
            return True
    return False
