"""Whether a runbook concerns a target at all (`applies_when`): read-only checks, evaluated in a
read-only transaction before the ledger is looked at or created, so a target it does not
concern is left exactly as it was (docs/fleet.md)."""

from __future__ import annotations

import psycopg

from dcx_runbook.engine.checks import run_checks
from dcx_runbook.engine.ledger import schema_for
from dcx_runbook.engine.options import Options
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.errors import StepFailed
from dcx_runbook.target import ledger
from dcx_runbook.target.ledger_rows import read_runs


def not_applicable(rt: Runtime, options: Options) -> str | None:
    """None when the runbook concerns the target; else why not, in words: the failing check's
    message.

    A target where the checks don't hold but whose ledger records a run of this runbook still in
    effect is concerned all the same: the fix is there (its steps will say "already done"), and
    calling it "not applicable" would hide it."""
    checks = rt.runbook.applies_when
    if not checks:
        return None
    try:
        if rt.conn is None:  # a runbook with no database: its checks read files, run commands
            run_checks(rt, None, "applies_when", checks)
            return None
        with rt.conn.transaction(force_rollback=True):
            rt.conn.execute("SET TRANSACTION READ ONLY")
            run_checks(rt, None, "applies_when", checks)
        return None
    except StepFailed as exc:
        why = exc.message.splitlines()[-1].strip()
    applied = _in_effect(rt, options) if rt.conn is not None else None
    if applied is None:
        return f"not applicable: {why}; nothing was touched"
    rt.emit(
        "log",
        message=f"applies_when does not hold ({why}), but the ledger records run {applied} of "
        f"{rt.runbook.name} still in effect here: the runbook concerns this target",
    )
    return None


def _in_effect(rt: Runtime, options: Options) -> str | None:
    """The newest run of this runbook the target's ledger holds with a step still applied."""
    assert rt.conn is not None
    if not options.ledger:
        return None
    schema = schema_for(rt.runbook, options.ledger_schema)
    try:
        found = ledger.find(rt.conn, schema)
        if not found.can_read:
            return None
        runs = read_runs(rt.conn, schema, runbook=rt.runbook.name, with_spec=False, in_effect_or=())
    except psycopg.Error:
        return None
    return runs[0].run_id if runs else None
