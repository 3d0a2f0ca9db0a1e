"""What run, dry run and rollback share: options and outcome, the runtime, connecting with the
guard and the run lock, and how a run ends (its journal snapshot and its last event)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from dcx_runbook.clock import now
from dcx_runbook.engine.options import Options as Options
from dcx_runbook.engine.options import Outcome as Outcome
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.errors import ExitCode, JournalError, Refused, RunbookError
from dcx_runbook.format.model import Runbook, Step
from dcx_runbook.format.variables import Resolved
from dcx_runbook.reporters.base import Reporter
from dcx_runbook.secrets import mask_url
from dcx_runbook.state.entries import gone
from dcx_runbook.state.journal import Journal, RunRecord
from dcx_runbook.statuses import STILL_APPLIED, RunStatus
from dcx_runbook.target import db, identity

OWN_LOCK_GRACE = 10.0  # seconds to wait for a lock whose holder's process is gone


def not_confirmed(rt: Runtime) -> Outcome:
    """A no: the person's (said as such), or nobody's, where no terminal could ask."""
    said = (
        "not confirmed; nothing was changed"
        if rt.reporter.can_ask()
        else "not confirmed: nobody could be asked (no terminal; pass --yes); nothing was changed"
    )
    return Outcome(ExitCode.REFUSED, RunStatus.REFUSED, None, said)


def confirmed(rt: Runtime, options: Options, question: str) -> bool:
    """--yes, or the operator's answer; no terminal and no --yes is a no."""
    return options.yes or rt.reporter.confirm(question)


def _guard_hint(runbook: Runbook) -> str:
    """How to expect another database: the variable `target.database` names, or the runbook."""
    from dcx_runbook.template import refs

    written = runbook.target.database if runbook.target is not None else None
    named = refs(written or "")
    if len(named) == 1:
        return f"pass --var {named[0]}=NAME"
    return f"change target.database ({written!r}) in the runbook"


def take_run_lock(rt: Runtime, runbook_name: str, journal: Journal | None) -> None:
    """The run lock, or Refused at once naming its holder. Waiting is only for a holder whose
    process is known to be gone (killed on this host; the server notices the dead client within
    a second or so): a run, or rollback, still at work is never waited for and never undone
    under it."""
    assert rt.conn is not None
    deadline = time.monotonic() + OWN_LOCK_GRACE
    while not db.try_run_lock(rt.conn, runbook_name):
        holder = db.lock_holder(rt.conn, runbook_name) or {}
        record = _holder_record(holder, journal)
        if record is None or not _holder_gone(record, holder) or time.monotonic() > deadline:
            raise Refused(
                f"another dcx-runbook holds the lock for {runbook_name} on "
                f"{db.describe(rt.conn).database}: {_describe_holder(holder, record)}; "
                "nothing was changed"
            )
        time.sleep(0.2)


def _holder_record(holder: Mapping[str, Any], journal: Journal | None) -> RunRecord | None:
    run_id = holder.get("run_id")
    if journal is None or not run_id:
        return None
    try:
        return journal.load(str(run_id))
    except RunbookError:
        return None


def _holder_gone(record: RunRecord, holder: Mapping[str, Any]) -> bool:
    """Whether the journal knows the lock holder's process ended (a rollback's, when the holder
    is a rollback of the run)."""
    rollbacks = record.data.get("rollbacks") or []
    if str(holder.get("application") or "").endswith("/rollback") and rollbacks:
        return gone(rollbacks[-1])
    return gone(record.data)


def connect_target(rt: Runtime) -> db.TargetInfo:
    """Connect and check the guards: the database's name and, when the runbook pins one, the
    server's system identifier. Raises Refused: nothing changed."""
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
        how = rt.guard_hint or _guard_hint(rt.runbook)
        raise Refused(
            f"connected to database {info.database!r} on {info.host}, but this runbook expects "
            f"{expected!r}: refusing before any change (if that database is really meant, {how})"
        )
    pins = (
        ("this runbook", "target.system_identifier", _pinned_system(rt)),
        ("this target", "the targets file's system_identifier", rt.expected_system),
    )
    for who, where, pinned in pins:
        if pinned and info.system_identifier != pinned:
            seen = info.system_identifier or "unknown (pg_control_system() not permitted)"
            raise Refused(
                f"connected to the server with system identifier {seen} "
                f"({identity.describe(info.identity())}), "
                f"but {who} may only touch the one with system identifier {pinned} "
                f"({where}): refusing before any change"
            )
    return info


def _pinned_system(rt: Runtime) -> str | None:
    from dcx_runbook.template import render

    target = rt.runbook.target
    if target is None or not target.system_identifier:
        return None
    return render(target.system_identifier, rt.values).strip() or None


def open_target(rt: Runtime, runbook_name: str, journal: Journal | None) -> db.TargetInfo:
    """Connect, check the guards, take the run lock (not for a dry run). Raises Refused: nothing
    changed."""
    info = connect_target(rt)
    # A dry run changes nothing: it neither needs the lock nor keeps a real run from taking it.
    if not rt.dry_run:
        take_run_lock(rt, runbook_name, journal)
    return info


def _describe_holder(holder: Mapping[str, Any], record: RunRecord | None) -> str:
    if not holder:
        return "it ended just now; try again"
    app = str(holder.get("application") or "")
    run_id = holder.get("run_id") or "unknown"
    role = "a rollback of run" if app.endswith("/rollback") else "run"
    who = f"{holder.get('user')} from {holder.get('client')}"
    pid = ""
    if record is not None:
        rollbacks = record.data.get("rollbacks") or []
        entry = rollbacks[-1] if app.endswith("/rollback") and rollbacks else record.data
        op = entry.get("operator") or record.data.get("operator") or {}
        who, pid = f"{op.get('user')}@{op.get('host')}", f"pid {entry.get('pid')}, "
    return (
        f"{role} {run_id} by {who} ({pid}backend pid {holder.get('pid')}), "
        f"since {holder.get('since')}"
    )


def runtime_for(
    runbook: Runbook,
    resolved: Resolved,
    reporter: Reporter,
    run_id: str,
    *,
    dry_run: bool = False,
    role: str = "",
    expected_database: str | None = None,
    expected_system: str | None = None,
    guard: bool = True,
    captured: Mapping[str, Any] | None = None,
) -> Runtime:
    """The runtime of a run or rollback, whole: nothing is patched in afterwards.

    `expected_database` overrides the runbook's `target.database` (a rehearsal's scratch
    database, the database a rollback's run changed); `guard=False` leaves the name unchecked (a
    bare rollback matches runs by the server's identity instead). `captured`: values the run's
    checks captured, for a rollback's checks."""
    values: dict[str, Any] = {**resolved.values, **(captured or {})}
    url = values.get(runbook.url_var) if runbook.url_var else None
    expected = expected_database or (_runbook_guard(runbook, values) if guard else None)
    masker = resolved.masker()
    if url:
        masker.add(url)
    return Runtime(
        runbook,
        values,
        {n: resolved.values.get(n) for n in resolved.secret},
        masker,
        reporter,
        url=url,
        app_name=db.application_name(runbook.name, run_id, role),
        expected_database=expected,
        expected_system=expected_system,
        dry_run=dry_run,
    )


def _runbook_guard(runbook: Runbook, values: Mapping[str, Any]) -> str | None:
    if runbook.target is None or not runbook.target.database:
        return None
    from dcx_runbook.template import render

    expected = render(runbook.target.database, values)
    if not expected.strip():
        # An empty name would turn the guard off: `--var expected_database=$DB` with $DB unset.
        raise RunbookError(
            f"target.database ({runbook.target.database}) is empty: give the name of the "
            "database this runbook is meant for; the guard refuses any other"
        )
    return expected


def needed(checks: Sequence[Any], options: Options) -> list[Any]:
    """Preflight checks, without those only skipped steps need."""
    return [c for c in checks if not c.needed_by or set(c.needed_by) - set(options.skip)]


def target_view(rt: Runtime, info: db.TargetInfo | None) -> dict[str, Any]:
    if info is None:
        return {}
    return {
        "url": mask_url(rt.url or ""),
        "host": info.host,
        "port": info.port,
        "database": info.database,
        "user": info.user,
        "server_version": info.server_version,
        **info.identity(),
    }


def undone_summary(irreversible: Sequence[Step]) -> str:
    """How an unwind or rollback that got through every step ended, in words: "as it was" only
    when no step was left to its author's word."""
    if not irreversible:
        return "every change was undone: the system is as it was"
    said = "; ".join(
        f"{step.id}: {' '.join(str(step.irreversible).split())}" for step in irreversible
    )
    return f"every change was undone but those of the step(s) declared irreversible ({said})"


def incomplete(rt: Runtime, reason: str, what: str) -> Outcome:
    assert rt.record is not None
    still = [s["id"] for s in rt.record.data["steps"] if s["status"] in STILL_APPLIED]
    command = f"dcx-runbook rollback {rt.record.run_id}"
    message = (
        f"{reason}; {what.rstrip('.')}. Still applied: {', '.join(still) or 'nothing'}. "
        f"Fix the cause, then run: {command}"
    )
    return finish(
        rt,
        Outcome(
            ExitCode.UNDO_INCOMPLETE, RunStatus.UNDO_INCOMPLETE, rt.record.run_id, message, still
        ),
    )


def finish(rt: Runtime, outcome: Outcome, detail: Mapping[str, Any] | None = None) -> Outcome:
    record_outcome(rt, outcome)
    return report_end(rt, outcome, detail)


def record_outcome(rt: Runtime, outcome: Outcome) -> None:
    """Journal how the run (or this rollback of it) ended."""
    if rt.record is None or rt.dry_run:
        return
    # A run's outcome is the record's own; a rollback's goes to its entry under `rollbacks`,
    # and leaves how the run itself ended (and when) as it was.
    where = rt.rollback_entry if rt.rollback_entry is not None else rt.record.data
    where.update(
        exit_code=int(outcome.exit_code),
        finished_at=now(),
        message=rt.masker(outcome.message),
    )
    if rt.rollback_entry is None or where.get("status") in (None, RunStatus.RUNNING):
        where["status"] = outcome.status  # a rollback may have said more (interrupted)
    try:
        rt.record.snapshot()
    except JournalError as exc:  # its log still holds every step's state for a rollback
        rt.emit("log", message=f"the journal could not record how the run ended: {exc}")
    if rt.mirror is not None:
        number = len(rt.record.data.get("rollbacks") or []) if rt.rollback_entry else None
        rt.mirror.finish(rt.conn, {**where, "rollback": number})


def ledger_schema(rt: Runtime, options: Options) -> str | None:
    """The ledger this run writes to, checked before anything changes: refused (exit 4, with the
    statements a DBA must run) when the role can neither create it nor write it. None with
    --no-ledger, said in the output (and in the record)."""
    from dcx_runbook.engine.ledger import schema_for
    from dcx_runbook.target import ledger

    if rt.runbook.target is None or rt.conn is None:
        return None
    if not options.ledger:
        rt.emit(
            "log",
            message="--no-ledger: this run is recorded in this machine's journal only; the "
            "target's ledger won't show it, and other machines can't see or undo it",
        )
        return None
    schema = schema_for(rt.runbook, options.ledger_schema)
    ledger.check(ledger.find(rt.conn, schema))
    return schema


def attach_mirror(rt: Runtime, options: Options) -> None:
    """A rollback's writes to the ledger of the run it undoes (none for a run that kept none)."""
    from dcx_runbook.engine.ledger import Mirror

    schema = ((rt.record.data.get("ledger") if rt.record else None) or {}).get("schema")
    if rt.record is None or not schema or not options.ledger or rt.dry_run:
        return
    rt.mirror = Mirror(schema, rt.record.data, rt.masker)
    rt.mirror.on_failure = lambda message: rt.emit("log", message=message)


def open_mirror(rt: Runtime, schema: str | None) -> None:
    """The run's rows in the ledger (the ledger created on first use), before its first change.
    Raises Refused: nothing changed."""
    from dcx_runbook.engine.ledger import Mirror
    from dcx_runbook.target import ledger

    if schema is None or rt.record is None or rt.conn is None:
        return
    try:
        if ledger.ensure(rt.conn, schema):
            rt.emit(
                "log", message=f"created the ledger {schema} in {db.describe(rt.conn).database}"
            )
        mirror = Mirror(schema, rt.record.data, rt.masker)
        mirror.create(rt.conn)
    except psycopg.Error as exc:
        raise Refused(f"the ledger {schema} could not record the run: {exc}") from None
    mirror.on_failure = lambda message: rt.emit("log", message=message)
    rt.mirror = mirror


def report_end(rt: Runtime, outcome: Outcome, detail: Mapping[str, Any] | None = None) -> Outcome:
    rt.emit(
        "run_finished",
        status=outcome.status,
        message=outcome.message,
        detail={
            "run_id": outcome.run_id,
            "exit_code": int(outcome.exit_code),
            # Only when something is: an empty list read as "nothing left" is a claim.
            **({"still_applied": outcome.still_applied} if outcome.still_applied else {}),
            **(detail or {}),
        },
    )
    return outcome
