"""A failed run's unwind: every step it applied undone, newest first, the step in flight
included when its action began (its COMMIT's fate asked of the server when the answer was lost),
on the very database it changed."""

from __future__ import annotations

from typing import Any

import psycopg

from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.engine.session import Outcome, finish, incomplete, undone_summary
from dcx_runbook.engine.undo import undo_all
from dcx_runbook.errors import ExitCode, JournalError, Refused, UndoFailed
from dcx_runbook.format.model import Step
from dcx_runbook.statuses import RunStatus, StepStatus
from dcx_runbook.target import db, identity


def unwind(
    rt: Runtime, applied: list[Step], current: Step | None, reason: str, code: ExitCode
) -> Outcome:
    assert rt.record is not None
    rt.emit("unwind_started", current.id if current else None, message=reason)
    if not _reconnect_if_lost(rt):
        return incomplete(
            rt, reason, "the database connection was lost and the unwind could not safely continue"
        )
    todo: list[tuple[Step, bool]] = []
    if current is not None:
        failed = _in_flight(rt, current)
        if failed is None:
            return incomplete(
                rt,
                reason,
                f"the answer to {current.id}'s COMMIT was lost and the server can't say "
                "whether it took effect: check the step's effect before rolling back",
            )
        todo += failed
    todo += [(step, False) for step in reversed(applied)]
    flying = {step.id for step, in_flight in todo if in_flight}

    def run_ops(step: Step, entry: dict[str, Any]) -> bool:
        # A step failed in flight has its transaction rolled back: its rollback operations run
        # only if something no transaction takes back had started.
        return step.id not in flying or bool(entry.get("effects_started"))

    entries = [(step, rt.record.step(step.id)) for step, _ in todo]
    try:
        kept = undo_all(rt, entries, run_ops, force=False).kept
    except UndoFailed as exc:
        return incomplete(rt, reason, f"undo of {exc.step_id} failed: {exc.message}")
    except KeyboardInterrupt:
        return incomplete(rt, reason, "the unwind was interrupted")
    except JournalError as exc:
        # Nothing is undone before the journal says so: with the journal unwritable, stop here.
        return incomplete(rt, reason, f"the unwind stopped: {exc}")
    _mark_failed(rt, current)
    return finish(
        rt,
        Outcome(
            code,
            RunStatus.INTERRUPTED if code == ExitCode.INTERRUPTED else RunStatus.FAILED,
            rt.record.run_id,
            f"{reason}; {undone_summary(kept)}",
        ),
    )


def _mark_failed(rt: Runtime, current: Step | None) -> None:
    """The step that failed is `failed`, undone or not (the ledger's row too, with the run's
    end)."""
    entry = rt.record.step(current.id) if rt.record is not None and current is not None else None
    if entry is not None and entry["status"] == StepStatus.ROLLED_BACK:
        entry["status"] = StepStatus.FAILED
        rt.save(entry, durable=False)


def _in_flight(rt: Runtime, step: Step) -> list[tuple[Step, bool]] | None:
    """The failed step itself, if its action began: `[(step, in flight?)]`; `[]` when it never
    acted (marked failed); None when its COMMIT's answer was lost and the server can't say."""
    assert rt.record is not None
    entry = rt.record.step(step.id)
    if entry["status"] == StepStatus.PENDING:
        entry["status"] = StepStatus.FAILED
    if entry["status"] != StepStatus.ACTION_STARTED:
        return []
    committed = _committed(rt, step, entry)
    return None if committed is None else [(step, not committed)]


def _committed(rt: Runtime, step: Step, entry: dict[str, Any]) -> bool | None:
    """Whether the in-flight step's transaction committed: False unless its COMMIT got no answer
    (connection lost, Ctrl-C during it); then the server says, or None when it can't."""
    if "commit_in_doubt" not in entry:
        return False
    xid = entry["commit_in_doubt"]
    state = db.commit_status(rt.conn, xid) if xid is not None and rt.conn is not None else None
    rt.emit(
        "log",
        step.id,
        message=f"the answer to COMMIT was lost; the server says transaction {xid}: "
        f"{state or 'unknown'}",
    )
    if state == "committed":
        entry["status"] = StepStatus.APPLIED  # undone below like any applied step
        return True
    return False if state == "aborted" else None


def _reconnect_if_lost(rt: Runtime) -> bool:
    """A new connection (and the run lock again) when the old one died; False when the unwind
    must not go on: no connection, or another run took the lock meanwhile."""
    if rt.conn is None or not rt.conn.closed and not rt.conn.broken:
        return True
    rt.emit("log", message="the database connection was lost; reconnecting to unwind")
    if rt.blocker_watch is not None:  # it watched the old backend: its thread ends with it
        rt.blocker_watch.close()
        rt.blocker_watch = None
    try:
        rt.conn = db.connect(rt.url or "", rt.app_name)
        reached = db.describe(rt.conn).identity()
    except (Refused, psycopg.Error) as exc:
        rt.emit("log", message=f"reconnect failed: {exc}")
        return False
    recorded = rt.record.data.get("target") if rt.record is not None else None
    why = identity.mismatch(recorded, reached) if recorded else None
    if why is not None:  # a failover, a DNS change: never unwind on another database
        rt.emit(
            "log",
            message=f"the reconnection reached {identity.describe(reached)} ({why}), not the "
            "database the run changed",
        )
        return False
    if not db.try_run_lock(rt.conn, rt.runbook.name):
        rt.emit("log", message="another process took the run lock while the connection was down")
        return False
    return True
