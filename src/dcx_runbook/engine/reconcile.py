"""This machine's journal and the target's ledger, made one (docs/ledger.md).

A command that reaches a target reads the ledger's runs still in effect there (and those the
journal thinks are) and, run by run:

- a run only the ledger knows was run on another machine, or from another state directory: it is
  adopted, so `rollback` and `status` see it (its SQL steps undo from the ledger alone; its file
  pre-images stay on the machine that ran it);
- a run both know, whose step states differ, takes the state further along in the step's life:
  the ledger is ahead when a step's transaction committed its row before the journal was told
  (a kill right after COMMIT) or another machine rolled it back; the journal is ahead when a
  ledger write was lost. A step whose action is only SQL in one transaction, which the journal
  says started and the ledger still has pending, never committed: it is marked failed in both.

Every change is said. A run still at work (its session is on the server, or its record is locked
here) is never touched. With `write=False` (a dry run, `status`) nothing is written anywhere:
the merged view lives in memory only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from socket import gethostname
from typing import Any

import psycopg

from dcx_runbook.engine.adopt import AdoptedRecord, adopt
from dcx_runbook.engine.ledger import ANSWERS, step_row, transaction_only
from dcx_runbook.engine.scope import journaled_runbook
from dcx_runbook.errors import JournalError
from dcx_runbook.secrets import Masker
from dcx_runbook.state.journal import Journal, RunRecord
from dcx_runbook.statuses import STILL_APPLIED, RunStatus, StepStatus
from dcx_runbook.target import identity, ledger, ledger_rows

# How far along its life a step is: of two records of one step, the one further along wins.
_RANK = {
    StepStatus.PENDING: 0,
    StepStatus.SKIPPED: 1,
    StepStatus.ALREADY_DONE: 1,
    StepStatus.PASSED: 1,
    StepStatus.FAILED: 1,
    StepStatus.ACTION_STARTED: 2,
    StepStatus.APPLIED: 3,
    StepStatus.ROLLBACK_STARTED: 4,
    StepStatus.ROLLBACK_FAILED: 5,
    StepStatus.ROLLED_BACK: 6,
    StepStatus.IRREVERSIBLE: 6,
}

Say = Callable[[str], None]


class LedgerJournal(Journal):
    """This machine's journal, with the runs only the target's ledger knows, newest first by
    when they started (runs of several machines in one order)."""

    def __init__(self, journal: Journal, known: Sequence[RunRecord], schemas: Sequence[str]):
        super().__init__(journal.root)
        self.local = journal
        # Adopted runs, and (with nothing written) the journal's runs as reconciled in memory.
        self.known = {record.run_id: record for record in known}
        self.schemas = list(schemas)

    def records(
        self, limit: int | None = None, runbook: str | None = None
    ) -> Iterator[tuple[Path, dict[str, Any] | JournalError]]:
        found = [
            item
            for item in self.local.records(limit, runbook)
            if isinstance(item[1], JournalError) or item[1]["run_id"] not in self.known
        ]
        found += [(r.path, r.data) for r in self.known.values()]
        yield from sorted(found, key=_when, reverse=True)

    def record_for(self, path: Path, data: dict[str, Any]) -> RunRecord:
        known = self.known.get(str(data.get("run_id")))
        return known if known is not None and known.data is data else RunRecord(path, data)

    def load(self, run_id: str) -> RunRecord:
        if run_id in self.known:
            return self.known[run_id]
        return self.local.load(run_id)


def _when(item: tuple[Path, dict[str, Any] | JournalError]) -> tuple[str, int, str]:
    path, data = item
    if isinstance(data, JournalError):
        return (path.stem[:16], 0, path.stem)
    order = data.get("order")
    return (str(data.get("started_at") or ""), order if isinstance(order, int) else 0, path.stem)


# ---------------------------------------------------------------------------------- merging


def reconcile(
    conn: psycopg.Connection[Any],
    journal: Journal,
    schemas: Sequence[str],
    *,
    write: bool,
    say: Say,
    everything: bool = False,
) -> LedgerJournal:
    """The journal with the ledger's runs on this target (see the module's docstring)."""
    view = _identity(conn)
    mine, present = _local_runs(journal, view)
    schemas = list(dict.fromkeys([*schemas, *_schemas_of(mine.values())]))
    live = {s["run_id"] for s in ledger_rows.live_sessions(conn) if s["run_id"]}
    known: list[RunRecord] = []
    readable = []
    for schema in schemas:
        found = ledger.find(conn, schema)
        if not found.whole:
            continue
        if not found.can_read:
            say(f"the ledger {schema} is there but the role {found.role} may not read it")
            continue
        readable.append(schema)
        wanted = [rid for rid, r in mine.items() if _in_effect(r.data)]
        runs = ledger_rows.read_runs(conn, schema, in_effect_or=None if everything else wanted)
        for run in runs:
            record = mine.get(run.run_id)
            if record is None and run.run_id in present:
                continue  # damaged, or of another target here: left as it is, said downstream
            if record is None:
                adopted = adopt(journal, run, schema, write=write, say=say)
                if not write:  # else it is on disk now, read with the rest of the journal
                    known.append(adopted)
            elif run.run_id not in live:
                changed = _merge(
                    conn, record, run, schema, write=write and found.can_write, say=say
                )
                if changed and not write:
                    known.append(AdoptedRecord(record.path, record.data))
    return LedgerJournal(journal, known, readable)


def _identity(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    from dcx_runbook.target import db

    return db.describe(conn).identity()


def _local_runs(journal: Journal, view: Mapping[str, Any]) -> tuple[dict[str, RunRecord], set[str]]:
    """The journal's runs on this target; and the id of every record it holds, damaged ones
    included: a run the journal has in any state is never adopted over it."""
    out, present = {}, set()
    for path, data in journal.records():
        present.add(path.stem)
        if isinstance(data, JournalError) or data.get("dry_run"):
            continue
        target = data.get("target") or {}
        if target and identity.mismatch(target, view) is None:
            out[data["run_id"]] = RunRecord(path, data)
    return out, present


def _schemas_of(records: Iterable[RunRecord]) -> list[str]:
    found = []
    for record in records:
        schema = (record.data.get("ledger") or {}).get("schema")
        if isinstance(schema, str):
            found.append(schema)
    return found


def _in_effect(data: Mapping[str, Any]) -> bool:
    running = data.get("status") == RunStatus.RUNNING
    return running or any(s["status"] in STILL_APPLIED for s in data["steps"])


def _merge(
    conn: psycopg.Connection[Any],
    record: RunRecord,
    run: ledger_rows.LedgerRun,
    schema: str,
    *,
    write: bool,
    say: Say,
) -> bool:
    """One run both know: each step to the state further along; said, and written to whichever
    side lagged (unless `write` is off, or the run is at work on this machine). Whether anything
    differed."""
    if not record.try_lock():
        return False  # still at work here: its own process keeps both up to date
    try:
        to_journal, to_ledger = _differences(record, run, say)
        if write and to_journal:
            record.snapshot()
        if write and to_ledger:
            host = gethostname()
            rows = [step_row(record.run_id, i, e, Masker(), host) for i, e in to_ledger]
            ledger_rows.execute(conn, ledger_rows.Statements(conn, schema).upsert_steps(rows))
        return bool(to_journal or to_ledger)
    except (psycopg.Error, JournalError) as exc:
        say(f"run {record.run_id}: the reconciliation could not be recorded: {exc}")
        return True
    finally:
        record.unlock()


def _differences(
    record: RunRecord, run: ledger_rows.LedgerRun, say: Say
) -> tuple[list[int], list[tuple[int, dict[str, Any]]]]:
    """Apply the ledger's further-along states to the record (in memory); return which journal
    entries changed, and which entries the ledger lags on (by position)."""
    rows = {s["step_id"]: s for s in run.steps}
    to_journal: list[int] = []
    to_ledger: list[tuple[int, dict[str, Any]]] = []
    try:
        runbook = journaled_runbook(record)
    except JournalError:
        runbook = None
    for position, entry in enumerate(record.data["steps"]):
        row = rows.get(entry["id"])
        theirs = StepStatus(row["status"]) if row else StepStatus.PENDING
        ours = StepStatus(entry["status"])
        if row and _more_answers(entry, row):  # given on another machine: kept, never lost
            entry["answers"] = row["captured"][ANSWERS]
            to_journal.append(position)
        if theirs == ours:
            continue
        where = f"run {record.run_id}, step {entry['id']}"
        if _never_committed(runbook, entry, ours, theirs):
            entry["status"] = StepStatus.FAILED
            say(
                f"{where}: the journal said {ours}, but the ledger has no record of its "
                "transaction: it never committed, nothing of it is applied (now: failed)"
            )
            to_journal.append(position)
            to_ledger.append((position, entry))
        elif _RANK[theirs] > _RANK[ours]:
            entry["status"] = theirs
            by = f" by {row.get('host')}" if row and row.get("host") else ""
            say(f"{where}: the journal said {ours}, the ledger {theirs}{by}: now {theirs}")
            to_journal.append(position)
        else:
            say(f"{where}: the ledger said {theirs}, the journal {ours}: the ledger now {ours}")
            to_ledger.append((position, entry))
    return to_journal, to_ledger


def _more_answers(entry: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    theirs = (row.get("captured") or {}).get(ANSWERS) or []
    return len(theirs) > len(entry.get("answers") or [])


def _never_committed(
    runbook: Any, entry: Mapping[str, Any], ours: StepStatus, theirs: StepStatus
) -> bool:
    """A step that only changes the database in one transaction, whose ledger row its COMMIT
    would have written: started by the journal, still pending in the ledger, its session gone."""
    if ours != StepStatus.ACTION_STARTED or theirs != StepStatus.PENDING or runbook is None:
        return False
    if entry.get("effects_started") or "commit_in_doubt" in entry:
        return False
    try:
        return transaction_only(runbook.step(entry["id"]))
    except KeyError:
        return False


# ---------------------------------------------------------------------------------- opening


def with_ledger(
    journal: Journal,
    url: str,
    schema: str | None,
    *,
    write: bool,
    say: Say,
    everything: bool = False,
) -> Journal:
    """The journal reconciled with the ledger of the target at `url`; the journal alone (said)
    when the target can't be reached: the command then goes on from what this machine knows."""
    from dcx_runbook.errors import Refused
    from dcx_runbook.target import db

    schemas = [ledger.schema_name(schema)]
    try:
        conn = db.connect(url, "dcx-runbook/ledger")
    except Refused as exc:
        say(f"the target's ledger could not be read ({exc}): this machine's journal only")
        return journal
    try:
        return reconcile(conn, journal, schemas, write=write, say=say, everything=everything)
    except psycopg.Error as exc:
        say(f"the target's ledger could not be read ({exc}): this machine's journal only")
        return journal
    finally:
        conn.close()
