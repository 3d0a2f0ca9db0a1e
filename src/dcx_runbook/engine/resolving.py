"""Where a run's values come from when a command (or a fleet, for each of its targets) starts it
or undoes it: --var, the env file, the environment, the URL given, and for a journaled run what
it really used. And the journal seen together with the target's ledger, its changes said."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dcx_runbook.engine.options import Options
from dcx_runbook.format.variables import Resolved, parse_assignments, read_env_file, resolve
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.secrets import MASK, Masker
from dcx_runbook.state.journal import Journal


def resolve_for(
    loaded_runbook: Any,
    var: Sequence[str],
    env_file: Path | None,
    database_url: str | None,
    recorded: Mapping[str, str] | None = None,
    last_resort: Mapping[str, str] | None = None,
) -> Resolved:
    file_values = read_env_file(env_file) if env_file else None
    return resolve(
        loaded_runbook,
        parse_assignments(var),
        os.environ,
        file_values,
        database_url,
        recorded=recorded,
        last_resort=last_resort,
    )


def resolver(var: Sequence[str], env_file: Path | None, database_url: str | None) -> Any:
    """How a journaled run's variables are resolved again: its public values first (what it
    really used), then what is given now."""

    def resolve_(record: Any, runbook: Any) -> Resolved:
        journaled = record.data.get("vars", {})
        recorded = {k: v for k, v in journaled.items() if v is not None and k in runbook.vars}
        # With no URL given, the run's own target, when its journaled URL is whole (no password
        # in it: trust, .pgpass or $PGPASSWORD supplied one). A masked one can't connect.
        url = (record.data.get("target") or {}).get("url")
        whole = runbook.url_var and url and MASK not in url
        fallback: dict[str, str] = {runbook.url_var: str(url)} if whole else {}
        return resolve_for(
            runbook, var, env_file, database_url, recorded=recorded, last_resort=fallback
        )

    return resolve_


def with_ledger_said(
    journal: Journal, url: str, options: Options, reporter: Reporter, *, write: bool
) -> Journal:
    """The journal together with the target's ledger; each change the ledger brings, said. A run
    of this journal whose process died in a step's transaction is waited for first, until the
    server ends its session (engine/dead_sessions.py): the ledger then says what committed."""
    from dcx_runbook.engine.dead_sessions import await_ended, dead_runs
    from dcx_runbook.engine.reconcile import with_ledger

    masker = Masker([url])

    def say(message: str) -> None:
        reporter.emit(Event("log", message=masker(f"ledger: {message}")))

    if write:
        await_ended(url, dead_runs(journal), lambda m: reporter.emit(Event("log", message=m)))

    return with_ledger(journal, url, options.ledger_schema, write=write, say=say)
