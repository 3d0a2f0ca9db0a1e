"""Keeping a run's rows in the target's ledger in step with its journal record (docs/ledger.md).

A step whose action is only SQL in a transaction writes its ledger row in that transaction, sent
with its COMMIT: the change and its record commit or vanish together, at no extra round trip.
Any other step writes its intent before its first effect and its result after it, at the
journal's own write-ahead points. The journal stays the fallback: a ledger write that fails
outside those points is said once and left to the next command's reconciliation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from socket import gethostname
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus

from dcx_runbook.clock import now
from dcx_runbook.errors import StepFailed
from dcx_runbook.format.model import Runbook, Step
from dcx_runbook.kinds import OPERATIONS
from dcx_runbook.statuses import RunStatus, StepStatus
from dcx_runbook.target import ledger, ledger_rows

if TYPE_CHECKING:
    from dcx_runbook.secrets import Masker


def schema_for(runbook: Runbook, override: str | None) -> str:
    """`--ledger-schema`, else the runbook's `target.ledger_schema`, else `dcx_runbook`."""
    configured = runbook.target.ledger_schema if runbook.target is not None else None
    return ledger.schema_name(override or configured)


def transaction_only(step: Step) -> bool:
    """Whether everything the step's action does takes effect at its COMMIT: its ledger row then
    needs no intent before it, only the result written in its transaction."""
    kinds = [OPERATIONS[op.kind].traits for op in step.action]
    return step.transaction and bool(kinds) and all(t.transactional for t in kinds)


def touches_host(step: Step) -> bool:
    """Whether the step, or its undo, acts on the machine that runs it: files, processes."""
    ops = [*step.action, *(step.rollback.action if step.rollback else [])]
    restores = step.rollback is not None and step.rollback.restore_files
    # A person's step (manual) can be done, and undone, from anywhere: it binds no machine.
    local = [op for op in ops if not OPERATIONS[op.kind].traits.asks_person]
    return restores or any(not OPERATIONS[op.kind].traits.uses_connection for op in local)


def planned_paths(step: Step, values: Mapping[str, Any]) -> list[str]:
    """The files the step's action writes, as its journal keys them (resolved), for its intent
    in the ledger: a machine that finds it there knows what only this one can restore."""
    from dcx_runbook.kinds import path_of
    from dcx_runbook.template import TemplateError, render

    out = []
    for op in step.action:
        path = path_of(op)
        if path is None:
            continue
        try:
            out.append(str(Path(render(path, dict(values))).resolve()))
        except (TemplateError, OSError, ValueError):
            continue
    return out


# ------------------------------------------------------------------------------------ rows


def run_row(data: Mapping[str, Any], masker: Masker) -> dict[str, Any]:
    """A run's ledger row, from its journal record (already masked where it holds values)."""
    ref = data["runbook"]
    op = data.get("operator") or {}
    return {
        "run_id": data["run_id"],
        "runbook": ref["name"],
        "runbook_sha256": ref.get("sha256"),
        "title": ref.get("title"),
        "spec": ref.get("spec") or {},
        "vars": data.get("vars") or {},
        "secret_vars": data.get("secret_vars") or [],
        "captured": masker.deep(data.get("captured") or {}),
        "skipped": data.get("skipped") or [],
        "os_user": op.get("user") or "?",
        "host": op.get("host") or "?",
        "pid": data.get("pid") or 0,
        # The ledger keeps a run's authority (plan, approvers, break-glass) with its target.
        "target": {**(data.get("target") or {}), **_authority(data)},
        "reason": data.get("reason"),
        "status": str(data.get("status") or RunStatus.RUNNING),
    }


def step_row(
    run_id: str, position: int, entry: Mapping[str, Any], masker: Masker, host: str
) -> dict[str, Any]:
    """A step's ledger row: its state, and the files it touched by path and hash (never their
    content: the sealed pre-images stay in the journal)."""
    files = {
        path: {k: f.get(k) for k in ("existed", "mode", "sha256", "planned")}
        for path, f in (entry.get("files") or {}).items()
    }
    acted = entry["status"] != StepStatus.PENDING or files or entry.get("processes")
    return {
        "run_id": run_id,
        "step_id": entry["id"],
        "position": position,
        "title": entry.get("title"),
        "status": str(entry["status"]),
        "started_at": entry.get("started_at"),
        "finished_at": entry.get("finished_at"),
        "captured": masker.deep(_with_answers(entry)),
        "host": entry.get("host") or (host if acted else None),
        "files": files,
        "processes": entry.get("processes") or [],
        "error": entry.get("error"),
    }


def _authority(data: Mapping[str, Any]) -> dict[str, Any]:
    found = data.get("authority")
    return {"authority": found} if found else {}


ANSWERS = "@answers"  # in a step row's `captured`: a person's answers (no variable's name)


def _with_answers(entry: Mapping[str, Any]) -> dict[str, Any]:
    captured = dict(entry.get("captured") or {})
    if entry.get("answers"):
        captured[ANSWERS] = entry["answers"]
    return captured


def _same(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two writes of a row differ (its timestamps aside)."""
    return (
        row["status"],
        row["host"],
        repr(row["files"]),
        repr(row["processes"]),
        repr(row["captured"]),
        row["error"],
    )


# ------------------------------------------------------------------------------------ mirror


class Mirror:
    """One run's rows in the ledger, as its journal record changes. A save only marks its
    entries; their rows are built when written, and only those that changed are sent."""

    def __init__(self, schema: str, data: dict[str, Any], masker: Masker):
        self.schema, self.data, self.masker = schema, data, masker
        self.run_id = str(data["run_id"])
        self.host = gethostname()
        self.positions = {s["id"]: i for i, s in enumerate(data["steps"])}
        self.written: dict[str, tuple[Any, ...]] = {}
        self.dirty: dict[str, Mapping[str, Any]] = {}  # journal entries changed since
        self._committing: list[dict[str, Any]] = []
        self._statements: ledger_rows.Statements | None = None
        self.expected: dict[str, list[str]] = {}  # step id: files it is about to write
        self.failure: str | None = None  # the first write that failed, said once
        self.on_failure: Callable[[str], None] = lambda _: None

    # -- rows

    def _row(self, entry: Mapping[str, Any], **override: Any) -> dict[str, Any]:
        row = step_row(self.run_id, self.positions[entry["id"]], entry, self.masker, self.host)
        for path in self.expected.get(entry["id"], ()):
            row["files"].setdefault(path, {"planned": []})
        row.update(override)
        return row

    def expect_files(self, step_id: str, paths: list[str]) -> None:
        """Files the step is about to write: in its row from its intent on."""
        self.expected[step_id] = paths

    def mark(self, entries: tuple[dict[str, Any], ...]) -> None:
        """These journal entries changed: their rows are written at the next flush."""
        for entry in entries:
            if entry.get("id") in self.positions:
                self.dirty[entry["id"]] = entry

    def _pending(self, but: str | None = None) -> list[dict[str, Any]]:
        """The rows of the marked entries that differ from what the ledger was last sent (those
        that don't are unmarked)."""
        rows, clean = [], []
        for key, entry in self.dirty.items():
            if key == but:
                continue
            row = self._row(entry)
            if self.written.get(key) == _same(row):
                clean.append(key)
            else:
                rows.append(row)
        for key in clean:
            del self.dirty[key]
        return rows

    def _sql(self, conn: psycopg.Connection[Any]) -> ledger_rows.Statements:
        if self._statements is None or self._statements.conn is not conn:  # after a reconnect
            self._statements = ledger_rows.Statements(conn, self.schema)
        return self._statements

    def _sent(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.written[row["step_id"]] = _same(row)
            self.dirty.pop(row["step_id"], None)

    # -- writes

    def create(self, conn: psycopg.Connection[Any]) -> None:
        """The run's row and its steps', pending, in one round trip. Raises psycopg.Error: the
        run must not start unrecorded."""
        rows = [self._row(e) for e in self.data["steps"]]
        run = run_row(self.data, self.masker)
        ledger_rows.execute(conn, self._sql(conn).insert_run(run, rows))
        self._sent(rows)

    def flush(self, conn: psycopg.Connection[Any] | None, *, strict: bool = False) -> None:
        """Write the rows changed since the last write, unless a transaction is open (its
        COMMIT carries them, or the next flush after it). `strict`: a write-ahead point, where a
        failed write stops the step before its effect (StepFailed)."""
        if not self.dirty or conn is None or conn.closed or conn.broken:
            return
        if conn.info.transaction_status != TransactionStatus.IDLE:
            return
        rows = self._pending()
        if not rows:
            self.dirty.clear()
            return
        try:
            ledger_rows.execute(conn, self._sql(conn).update_steps(rows))
        except psycopg.Error as exc:
            if strict:
                raise StepFailed(
                    f"the ledger {self.schema} could not record the step before it acts: "
                    f"{_first_line(exc)}",
                    step_id=rows[0]["step_id"],
                    phase="action",
                ) from None
            self._failed(exc)
            return
        self._sent(rows)

    def commit_statement(
        self, conn: psycopg.Connection[Any], entry: Mapping[str, Any], status: str
    ) -> bytes:
        """The step's row as it will be once its transaction commits (sent with the COMMIT),
        with any other row still to write."""
        row = self._row(entry, status=status, finished_at=now())
        self._committing = [*self._pending(but=row["step_id"]), row]
        return self._sql(conn).update_steps(self._committing).encode()

    def committed(self) -> None:
        """The transaction carrying `commit_statement`'s rows committed."""
        self._sent(self._committing)
        self._committing = []

    def finish(self, conn: psycopg.Connection[Any] | None, outcome: Mapping[str, Any]) -> None:
        """How the run (or one of its rollbacks) ended, with any row still to write."""
        if conn is None or conn.closed or conn.broken:
            return
        sql = self._sql(conn)
        rows = self._pending()
        statements = [sql.update_steps(rows)] if rows else []
        number = outcome.get("rollback")
        if number is None:
            statements.append(
                sql.finish_run(
                    self.run_id,
                    str(outcome["status"]),
                    int(outcome["exit_code"]),
                    outcome["message"],
                )
            )
        else:
            skipped = list(outcome.get("skipped_steps") or [])
            statements.append(sql.finish_rollback(self.run_id, number, outcome, skipped))
        try:
            ledger_rows.execute(conn, *statements)
        except psycopg.Error as exc:
            self._failed(exc)
            return
        self._sent(rows)

    def start_rollback(
        self, conn: psycopg.Connection[Any] | None, number: int, entry: Mapping[str, Any]
    ) -> None:
        if conn is None or conn.closed or conn.broken:
            return
        op = entry.get("operator") or {}
        row = {
            "os_user": op.get("user") or "?",
            "host": op.get("host") or "?",
            "pid": entry.get("pid") or 0,
            "reason": entry.get("reason"),
            "status": str(entry.get("status")),
        }
        try:
            ledger_rows.execute(conn, self._sql(conn).start_rollback(self.run_id, number, row))
        except psycopg.Error as exc:
            self._failed(exc)

    def _failed(self, exc: psycopg.Error) -> None:
        if self.failure is None:
            self.failure = _first_line(exc)
            self.on_failure(
                f"the ledger {self.schema} could not be written ({self.failure}); this "
                "machine's journal has every change, and the next rollback that reaches the "
                "target brings the ledger up to date"
            )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
