"""The ledger's rows: the statements that write them (`Statements`) and the queries that read
them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import Escaping

from dcx_runbook.statuses import STILL_APPLIED
from dcx_runbook.target.db import session

TABLES = ("runs", "steps", "rollbacks")
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)  # one encoder: json's C one

# The columns a run writes to `steps`, in the order of the rows given to `upsert_steps`.
STEP_COLUMNS = (
    "run_id",
    "step_id",
    "position",
    "title",
    "status",
    "started_at",
    "finished_at",
    "captured",
    "host",
    "files",
    "processes",
    "error",
)


# ---------------------------------------------------------------------------------- writing


class Statements:
    """The ledger's writes for one schema, as SQL text whose values are quoted by libpq for the
    connection (PQescapeLiteral): built in microseconds, and sendable in one simple-protocol
    message with a step's COMMIT."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str):
        self._escape = Escaping(conn.pgconn).escape_literal
        self.conn = conn
        self.runs, self.steps, self.rollbacks = (f'"{schema}"."{t}"' for t in TABLES)
        columns = ", ".join(STEP_COLUMNS)
        updated = ", ".join(f"{c} = EXCLUDED.{c}" for c in STEP_COLUMNS[3:])
        self._upsert = (
            f"INSERT INTO {self.steps} ({columns}) VALUES {{}} ON CONFLICT (run_id, step_id) "
            f"DO UPDATE SET {updated}, updated_at = clock_timestamp()"
        )

    def lit(self, value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, dict | list):
            if not value:
                return "'{}'::jsonb" if isinstance(value, dict) else "'[]'::jsonb"
            return self._escape(_JSON.encode(value).encode()).decode() + "::jsonb"
        return self._escape(str(value).encode()).decode()

    def insert_run(self, run: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> str:
        """The run's row and one row per step (pending, as it starts), as one message; the
        steps as one JSON document the server takes apart (a thousand steps cost one literal)."""
        columns = ", ".join(run)
        values = ", ".join(self.lit(v) for v in run.values())
        statement = f"INSERT INTO {self.runs} ({columns}) VALUES ({values})"
        if not steps:
            return statement
        fields = ("step_id", "position", "title", "status")
        document = [{k: step.get(k) for k in fields} for step in steps]
        return (
            f"{statement}; INSERT INTO {self.steps} (run_id, {', '.join(fields)}) "
            f"SELECT {self.lit(run['run_id'])}, {', '.join(fields)} FROM "
            f"jsonb_to_recordset({self.lit(document)}) "
            "AS s(step_id text, position int, title text, status text)"
        )

    def upsert_steps(self, rows: Iterable[Mapping[str, Any]]) -> str:
        """Each step row as it is now (inserted if missing: a ledger reconciled from a journal)."""
        lit = self.lit
        values = ", ".join(
            "(" + ", ".join(lit(row.get(c)) for c in STEP_COLUMNS) + ")" for row in rows
        )
        return self._upsert.format(values)

    def update_steps(self, rows: Iterable[Mapping[str, Any]]) -> str:
        """Each step row (known to be there) as it is now: plain UPDATEs, cheaper than an upsert
        and HOT-friendly (no indexed column changes)."""
        lit = self.lit
        return "; ".join(
            f"UPDATE {self.steps} SET "
            + ", ".join(f"{c} = {lit(row.get(c))}" for c in STEP_COLUMNS[3:])
            + f", updated_at = clock_timestamp() WHERE run_id = {lit(row['run_id'])} "
            f"AND step_id = {lit(row['step_id'])}"
            for row in rows
        )

    def finish_run(self, run_id: str, status: str, exit_code: int, message: str) -> str:
        lit = self.lit
        return (
            f"UPDATE {self.runs} SET status = {lit(status)}, exit_code = {lit(exit_code)}, "
            f"message = {lit(message)}, finished_at = clock_timestamp() "
            f"WHERE run_id = {lit(run_id)}"
        )

    def start_rollback(self, run_id: str, number: int, row: Mapping[str, Any]) -> str:
        columns = ", ".join(["run_id", "number", *row])
        values = ", ".join(self.lit(v) for v in (run_id, number, *row.values()))
        return (
            f"INSERT INTO {self.rollbacks} ({columns}) VALUES ({values}) "
            "ON CONFLICT (run_id, number) DO NOTHING"
        )

    def finish_rollback(
        self, run_id: str, number: int, outcome: Mapping[str, Any], skipped: list[str]
    ) -> str:
        lit = self.lit
        return (
            f"UPDATE {self.rollbacks} SET status = {lit(str(outcome['status']))}, "
            f"exit_code = {lit(outcome['exit_code'])}, message = {lit(outcome['message'])}, "
            f"skipped_steps = {lit(skipped)}, finished_at = clock_timestamp() "
            f"WHERE run_id = {lit(run_id)} AND number = {lit(number)}"
        )


def execute(conn: psycopg.Connection[Any], *statements: str) -> None:
    """The statements in one round trip (simple protocol: quoted literals, no parameters)."""
    if statements:
        conn.execute("; ".join(statements).encode())


# ---------------------------------------------------------------------------------- reading


def _table(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


@dataclass(frozen=True)
class LedgerRun:
    """A run as the ledger has it, with its steps (in order) and rollbacks."""

    row: dict[str, Any]
    steps: list[dict[str, Any]]
    rollbacks: list[dict[str, Any]]

    @property
    def run_id(self) -> str:
        return str(self.row["run_id"])


_RUNS = """
SELECT to_jsonb(r) - 'spec' AS row, r.spec,
       coalesce((SELECT jsonb_agg(to_jsonb(s) ORDER BY s.position) FROM {steps} s
                  WHERE s.run_id = r.run_id), '[]'),
       coalesce((SELECT jsonb_agg(to_jsonb(b) ORDER BY b.number) FROM {rollbacks} b
                  WHERE b.run_id = r.run_id), '[]')
  FROM {runs} r
 WHERE ({runbook}::text IS NULL OR r.runbook = {runbook}) AND {which}
 ORDER BY r.started_at DESC, r.run_id DESC
 LIMIT {limit}
"""


def read_runs(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    runbook: str | None = None,
    limit: int | None = None,
    with_spec: bool = True,
    in_effect_or: Sequence[str] | None = None,
) -> list[LedgerRun]:
    """The ledger's runs, newest first (by the server's clock: runs from every machine in one
    order), each with its steps and rollbacks. `in_effect_or`: only the runs still running or
    with a step still applied, and those named."""
    which: sql.Composable = sql.SQL("true")
    if in_effect_or is not None:
        which = sql.SQL(
            "(r.status = 'running' OR r.run_id = ANY({ids}) OR EXISTS (SELECT FROM {steps} s "
            "WHERE s.run_id = r.run_id AND s.status = ANY({applied})))"
        ).format(
            ids=sql.Literal(list(in_effect_or)),
            steps=_table(schema, "steps"),
            applied=sql.Literal(sorted(str(s) for s in STILL_APPLIED)),
        )
    query = sql.SQL(_RUNS).format(
        which=which,
        runs=_table(schema, "runs"),
        steps=_table(schema, "steps"),
        rollbacks=_table(schema, "rollbacks"),
        runbook=sql.Literal(runbook),
        limit=sql.Literal(limit) if limit is not None else sql.SQL("ALL"),
    )
    out = []
    for row, spec, steps, rollbacks in conn.execute(query).fetchall():
        if with_spec:
            row["spec"] = spec
        out.append(LedgerRun(row, steps, rollbacks))
    return out


def live_sessions(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every session of dcx-runbook on this database (its application_name says which run)."""
    rows = conn.execute(
        """
        SELECT a.pid, a.application_name, a.usename, coalesce(a.client_hostname, host(a.client_addr)),
               a.backend_start, a.state
          FROM pg_stat_activity a
         WHERE a.datname = current_database() AND a.application_name LIKE 'dcx-runbook/%'
           AND a.pid <> pg_backend_pid()
        """
    ).fetchall()
    return [{**session(r), "state": r[5]} for r in rows]


def run_lock_holders(conn: psycopg.Connection[Any], namespace: int) -> list[dict[str, Any]]:
    """The sessions holding a run lock (an advisory lock in dcx-runbook's namespace) here."""
    rows = conn.execute(
        """
        SELECT a.pid, a.application_name, a.usename, coalesce(a.client_hostname, host(a.client_addr)),
               a.backend_start
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
           AND l.classid = %s::bigint::oid
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        (namespace,),
    ).fetchall()
    return [{**session(r), "rollback": bool(r[1] and r[1].endswith("/rollback"))} for r in rows]
