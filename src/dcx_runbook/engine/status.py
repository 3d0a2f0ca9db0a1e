"""`dcx-runbook status`: what is applied on a target right now, read from its ledger and this
machine's journal, reconciled in memory (nothing is written anywhere):

- each run still in effect there and its steps, newest first;
- any live run or rollback: the holder of a run lock (run id, operator, host, pid, since), and
  runs the ledger says are running whose session is gone (interrupted);
- drift: every applied step's `done_when` checks evaluated again, read-only; a step applied
  whose checks no longer hold was undone (or changed) behind the tool's back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from socket import gethostname
from typing import Any

import psycopg

from dcx_runbook.engine.journaled import Resolve, runtime_of
from dcx_runbook.engine.reconcile import reconcile
from dcx_runbook.engine.scope import Pending, history, of_runbook
from dcx_runbook.engine.session import Options
from dcx_runbook.errors import RunbookError
from dcx_runbook.format.model import Step
from dcx_runbook.kinds import CHECKS
from dcx_runbook.kinds.base import Deferred
from dcx_runbook.reporters.base import Collecting
from dcx_runbook.state.entries import gone
from dcx_runbook.state.journal import Journal
from dcx_runbook.state.records import authority_said
from dcx_runbook.statuses import RunStatus, StepStatus
from dcx_runbook.target import db, identity, ledger, ledger_rows

RESOLVED = frozenset({RunStatus.ROLLED_BACK, RunStatus.NOTHING_TO_UNDO})


@dataclass
class StepState:
    step_id: str
    status: str
    holds: bool | None  # its done_when checks now: True, False (drift), None (not known)
    note: str = ""


@dataclass
class RunState:
    run_id: str
    runbook: str
    operator: str
    started_at: str
    reason: str | None
    source: str  # "journal" (this machine's) or "ledger" (run elsewhere)
    steps: list[StepState] = field(default_factory=list)
    authority: str | None = None  # its plan and approvers, or BREAK GLASS and why


@dataclass
class Status:
    target: str
    identity: dict[str, Any]
    ledger: dict[str, Any]
    live: list[dict[str, Any]]
    in_effect: list[RunState]
    drift: list[dict[str, str]]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(url: str, schema: str | None, journal: Journal, resolve: Resolve) -> Status:
    conn = db.connect(url, "dcx-runbook/status")
    try:
        return _status(conn, ledger.schema_name(schema), journal, resolve)
    finally:
        conn.close()


def _status(
    conn: psycopg.Connection[Any], schema: str, journal: Journal, resolve: Resolve
) -> Status:
    info = db.describe(conn)
    view = info.identity()
    notes: list[str] = []
    found = ledger.find(conn, schema)
    merged = reconcile(conn, journal, [schema], write=False, say=notes.append)
    records = history(merged)
    runs = of_runbook(records, None, view)
    holders = ledger_rows.run_lock_holders(conn, db.LOCK_NAMESPACE)
    states = [_run_state(conn, run, resolve) for run in runs]
    drift = [
        {"run_id": r.run_id, "step": s.step_id, "note": s.note}
        for r in states
        for s in r.steps
        if s.holds is False
    ]
    return Status(
        target=identity.describe(view),
        identity=view,
        ledger={
            "schema": schema,
            "exists": found.whole,
            "version": found.version,
            "readable": found.can_read,
        },
        live=_live(holders, records, conn, view),
        in_effect=states,
        drift=drift,
        notes=notes,
    )


def _interrupted(data: Mapping[str, Any], view: Mapping[str, Any]) -> bool:
    """Said running on this target, and no rollback has resolved it since (its process died:
    a rollback undid what it left, or found nothing to undo)."""
    if data.get("status") != RunStatus.RUNNING:
        return False
    if identity.mismatch(data.get("target") or {}, view) is not None:
        return False  # another database's run, in this machine's journal
    rollbacks = data.get("rollbacks") or []
    return not rollbacks or rollbacks[-1].get("status") not in RESOLVED


def _live(
    holders: list[dict[str, Any]],
    records: list[Any],
    conn: psycopg.Connection[Any],
    view: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Who holds a run lock now, as the journal or the ledger knows them; and runs said to be
    running with no session left on the server."""
    by_id = {r.run_id: r.data for r in records if not isinstance(r, RunbookError)}
    out = []
    for holder in holders:
        data = by_id.get(holder["run_id"] or "", {})
        entry = data
        if holder["rollback"] and data.get("rollbacks"):
            entry = data["rollbacks"][-1]
        op = entry.get("operator") or data.get("operator") or {}
        out.append(
            {
                "run_id": holder["run_id"],
                "what": "rollback" if holder["rollback"] else "run",
                "runbook": (data.get("runbook") or {}).get("name"),
                "operator": f"{op.get('user')}@{op.get('host')}" if op else holder["user"],
                "host": op.get("host") or holder["client"],
                "pid": entry.get("pid"),
                "backend_pid": holder["pid"],
                "since": entry.get("started_at") or holder["since"],
                # Killed on this host, its session not ended yet (the server notices a dead
                # client when it next talks to it: after the statement at work, at the latest).
                "process_gone": gone(entry) if entry else None,
            }
        )
    sessions = {s["run_id"] for s in ledger_rows.live_sessions(conn)}
    for run_id, data in by_id.items():
        if _interrupted(data, view) and run_id not in sessions:
            op = data.get("operator") or {}
            out.append(
                {
                    "run_id": run_id,
                    "what": RunStatus.INTERRUPTED,
                    "runbook": data["runbook"]["name"],
                    "operator": f"{op.get('user')}@{op.get('host')}",
                    "host": op.get("host"),
                    "pid": data.get("pid"),
                    "backend_pid": None,
                    "since": data.get("started_at"),
                    "process_gone": gone(data),
                }
            )
    return out


def _run_state(conn: psycopg.Connection[Any], run: Pending, resolve: Resolve) -> RunState:
    data = run.record.data
    op = data.get("operator") or {}
    adopted = data.get("adopted")
    state = RunState(
        run.run_id,
        run.runbook.name,
        f"{op.get('user')}@{op.get('host')}",
        str(data.get("started_at") or ""),
        data.get("reason"),
        "ledger" if adopted else "journal",
        authority=authority_said(data),
    )
    check = _checker(conn, run, resolve)
    for entry in run.applied():
        step = run.runbook.step(entry["id"])
        holds, note = check(step, entry)
        state.steps.append(StepState(entry["id"], str(entry["status"]), holds, note))
    return state


Checker = Callable[[Step, Mapping[str, Any]], tuple[bool | None, str]]


def _checker(conn: psycopg.Connection[Any], run: Pending, resolve: Resolve) -> Checker:
    """Evaluates a step's done_when checks read-only, with the run's own values."""
    try:
        resolved = resolve(run.record, run.runbook)
    except RunbookError as exc:
        reason = f"not checked: the run's variables can't be resolved here ({exc})"
        return lambda step, entry: (None, reason)
    rt = runtime_of(run, resolved, Collecting(), Options(dry_run=True))
    rt.conn = conn
    here = (run.record.data.get("operator") or {}).get("host") == gethostname()
    ctx = rt.context()

    def check(step: Step, entry: Mapping[str, Any]) -> tuple[bool | None, str]:
        if entry["status"] != StepStatus.APPLIED:
            return None, f"{entry['status']}: caught in the middle; `rollback` finds out"
        if not step.done_when:
            return None, "no done_when checks: can't be re-checked"
        failing = []
        for spec in step.done_when:
            kind = CHECKS[spec.kind]
            if not kind.traits.uses_connection and not here:
                host = (run.record.data.get("operator") or {}).get("host")
                return None, f"not checked here: it looks at {host}"
            try:
                with db.read_only(conn):
                    result = kind.check(spec, ctx)
            except Deferred as why:
                return None, f"not checked: {why}"
            except (psycopg.Error, OSError, ValueError) as exc:
                return None, f"not checked: {exc}"
            if not result.ok:
                failing.append(f"{spec.name or spec.kind}: {result.detail}")
        if failing:
            return False, "applied but no longer holds: " + "; ".join(failing)
        return True, "holds"

    return check
