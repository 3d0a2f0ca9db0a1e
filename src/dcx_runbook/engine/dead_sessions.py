"""Runs whose process died while a step's transaction was open: until the server ends the dead
run's session (it checks for a dead client every second, `client_connection_check_interval`,
where the platform allows; else when the statement ends), that transaction is neither committed
nor rolled back, and neither the journal nor the ledger can tell which it will be. A rollback (or a fleet's undo) waits for those sessions to end, says so, and only then
reads the ledger: what it then undoes is what was committed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import psycopg

from dcx_runbook.errors import JournalError, RunbookError
from dcx_runbook.state.entries import gone
from dcx_runbook.state.journal import Journal
from dcx_runbook.statuses import RunStatus
from dcx_runbook.target import db
from dcx_runbook.target.ledger_rows import live_sessions

GRACE = 30.0  # seconds for the server to notice a killed run's client is gone
POLL = 0.2


def dead_runs(journal: Journal, run_ids: Sequence[str] | None = None) -> list[str]:
    """The runs (of `run_ids`, else of the whole journal) said running whose process is known to
    have ended on this machine."""
    if run_ids is None:
        try:
            found = [d for _, d in journal.records() if not isinstance(d, JournalError)]
        except JournalError:
            return []
    else:
        found = []
        for run_id in run_ids:
            try:
                found.append(journal.load(run_id).data)
            except RunbookError:
                continue
    return [str(d["run_id"]) for d in found if d.get("status") == RunStatus.RUNNING and gone(d)]


def await_ended(url: str, run_ids: Sequence[str], say: Callable[[str], None]) -> None:
    """Until no session of `run_ids` is left on the server at `url` (at most GRACE seconds)."""
    if not run_ids:
        return
    deadline = time.monotonic() + GRACE
    try:
        conn = db.connect(url, "dcx-runbook/ledger")
    except RunbookError:
        return  # the command itself says why it can't connect
    try:
        told = False
        while time.monotonic() < deadline:
            try:
                alive = {s["run_id"] for s in live_sessions(conn)} & set(run_ids)
            except psycopg.Error:
                return  # can't tell: the run lock still keeps a rollback off a live run
            if not alive:
                return
            if not told:
                runs = ", ".join(sorted(alive))
                say(
                    f"waiting for the server to end the session of run {runs} (its process is gone)"
                )
                told = True
            time.sleep(POLL)
    finally:
        conn.close()
