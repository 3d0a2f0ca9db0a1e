"""Runs this machine learns of from the target's ledger (run on another machine, or from another
state directory), as journal records of its own: `rollback` and `status` then treat them as any
other run. Their SQL steps undo from the ledger alone; their file pre-images stay in the journal
of the machine that ran them (engine/hosts.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg

from dcx_runbook.clock import now
from dcx_runbook.engine.ledger import ANSWERS
from dcx_runbook.errors import JournalError, RunbookError
from dcx_runbook.state.entries import FORMAT
from dcx_runbook.state.journal import Journal, RunRecord
from dcx_runbook.target import ledger, ledger_rows

Say = Callable[[str], None]


class AdoptedRecord(RunRecord):
    """A run known from the ledger only, held in memory (a dry run, `status`): never locked,
    reloaded or written here."""

    def try_lock(self) -> bool:
        return True

    def reload(self) -> None:
        pass

    def unlock(self) -> None:
        pass


def adopt(
    journal: Journal, run: ledger_rows.LedgerRun, schema: str, *, write: bool, say: Say
) -> RunRecord:
    """A run this machine never saw, as a record of its own (on disk unless `write` is off)."""
    data = adopted_data(run, schema)
    path = journal.runs_dir / f"{run.run_id}.json"
    if not write:
        return AdoptedRecord(path, data)
    record = RunRecord(path, data)
    try:
        journal.runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Never over a record already there (damaged, or written meanwhile): it is the journal.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        record.snapshot()
    except FileExistsError:
        raise RunbookError(
            f"run {run.run_id} is in the ledger and already has a record in {journal.runs_dir}: "
            "it was left as it is"
        ) from None
    except (OSError, JournalError) as exc:
        raise RunbookError(f"can't keep run {run.run_id} from the ledger here: {exc}") from None
    op = data.get("operator") or {}
    say(
        f"run {run.run_id} of {data['runbook']['name']} by {op.get('user')}@{op.get('host')} "
        f"is known from the ledger {schema} only: kept in {journal.runs_dir}"
    )
    return record


def adopted_data(run: ledger_rows.LedgerRun, schema: str) -> dict[str, Any]:
    """A ledger run as a journal record (docs/journal-format.md)."""
    row = run.row
    steps = [_entry(s) for s in run.steps]
    return {
        "format": FORMAT,
        "run_id": run.run_id,
        "runbook": {
            "name": row["runbook"],
            "title": row.get("title") or "",
            "sha256": row.get("runbook_sha256") or "",
            "spec": row.get("spec") or {},
        },
        "mode": "run",
        "status": row["status"],
        "dry_run": False,
        "operator": {"user": row["os_user"], "host": row["host"]},
        "pid": row["pid"],
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row.get("finished_at")),
        "exit_code": row.get("exit_code"),
        "message": row.get("message") or "",
        "vars": row.get("vars") or {},
        "captured": row.get("captured") or {},
        "secret_vars": row.get("secret_vars") or [],
        "target": row.get("target") or {},
        "skipped": row.get("skipped") or [],
        "steps": steps,
        "rollbacks": [_rollback(b) for b in run.rollbacks],
        "ledger": {"schema": schema},
        "reason": row.get("reason"),
        "adopted": {"schema": schema, "host": row["host"], "at": now()},
    }


def _entry(row: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": row["step_id"], "title": row.get("title") or ""}
    entry["status"] = row["status"]
    for key in ("started_at", "finished_at"):
        if row.get(key):
            entry[key] = _iso(row[key])
    captured = dict(row.get("captured") or {})
    if answers := captured.pop(ANSWERS, None):  # a person's answers, kept apart in the journal
        entry["answers"] = answers
    if captured:
        entry["captured"] = captured
    if row.get("host"):
        entry["host"] = row["host"]
    if row.get("files"):
        entry["elsewhere"] = sorted(row["files"])
    if row.get("processes"):
        entry["processes"] = row["processes"]
    if row.get("error"):
        entry["error"] = row["error"]
    return entry


def _rollback(row: Mapping[str, Any]) -> dict[str, Any]:
    entry = {
        "started_at": _iso(row["started_at"]),
        "operator": {"user": row["os_user"], "host": row["host"]},
        "pid": row["pid"],
        "status": row["status"],
    }
    if row.get("finished_at"):
        entry.update(finished_at=_iso(row["finished_at"]), exit_code=row.get("exit_code"))
        entry["message"] = row.get("message") or ""
    return entry


def _iso(value: Any) -> str | None:
    """A timestamp from the server as the journal writes them: `2026-12-03T12:19:25.515Z`."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ledger_runs(
    url: str, schema: str | None, *, limit: int | None, runbook: str | None, say: Say
) -> list[dict[str, Any]]:
    """The ledger's newest runs (without their runbooks) as journal records, for `runs`; none
    (said) when the target or its ledger can't be read."""
    from dcx_runbook.errors import Refused
    from dcx_runbook.target import db

    name = ledger.schema_name(schema)
    try:
        conn = db.connect(url, "dcx-runbook/runs")
    except Refused as exc:
        say(f"the target's ledger could not be read ({exc}): this machine's journal only")
        return []
    try:
        found = ledger.find(conn, name)
        if not found.can_read:
            say(f"no readable ledger {name} in the target: this machine's journal only")
            return []
        runs = ledger_rows.read_runs(conn, name, runbook=runbook, limit=limit, with_spec=False)
        return [adopted_data(run, name) for run in runs]
    except psycopg.Error as exc:
        say(f"the target's ledger could not be read ({exc}): this machine's journal only")
        return []
    finally:
        conn.close()
