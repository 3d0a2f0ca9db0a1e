"""The ledger's rows: the statements that write them and the queries that read them. Every
statement is built from identifiers and literals quoted by psycopg, so the engine can send a
ledger write in the same round trip as a step's own COMMIT."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from dcx_runbook.statuses import STILL_APPLIED

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


def _table(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def _lit(value: Any) -> sql.Composable:
    if isinstance(value, dict | list):
        return sql.Literal(Jsonb(value))
    return sql.Literal(value)


def insert_run(
    schema: str, run: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]
) -> sql.Composed:
    """The run's row and one row per step (pending), as one statement."""
    run_cols = list(run)
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        _table(schema, "runs"),
        sql.SQL(", ").join(map(sql.Identifier, run_cols)),
        sql.SQL(", ").join(_lit(run[k]) for k in run_cols),
    )
    if not steps:
        return statement
    return sql.SQL("; ").join([statement, upsert_steps(schema, steps)])


def upsert_steps(schema: str, rows: Iterable[Mapping[str, Any]]) -> sql.Composed:
    """Each step row as it is now (inserted if missing: a ledger reconciled from a journal)."""
    values = [
        sql.SQL("({})").format(sql.SQL(", ").join(_lit(row.get(c)) for c in STEP_COLUMNS))
        for row in rows
    ]
    columns = sql.SQL(", ").join(map(sql.Identifier, STEP_COLUMNS))
    updated = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in STEP_COLUMNS[3:]
    )
    return sql.SQL(
        "INSERT INTO {} ({}) VALUES {} ON CONFLICT (run_id, step_id) DO UPDATE SET {}, "
        "updated_at = clock_timestamp()"
    ).format(_table(schema, "steps"), columns, sql.SQL(", ").join(values), updated)


def finish_run(schema: str, run_id: str, status: str, exit_code: int, message: str) -> sql.Composed:
    return sql.SQL(
        "UPDATE {} SET status = {}, exit_code = {}, message = {}, "
        "finished_at = clock_timestamp() WHERE run_id = {}"
    ).format(
        _table(schema, "runs"),
        _lit(status),
        _lit(exit_code),
        _lit(message),
        _lit(run_id),
    )


def start_rollback(schema: str, run_id: str, number: int, row: Mapping[str, Any]) -> sql.Composed:
    cols = ["run_id", "number", *row]
    values = [run_id, number, *row.values()]
    return sql.SQL(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (run_id, number) DO NOTHING"
    ).format(
        _table(schema, "rollbacks"),
        sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(_lit(v) for v in values),
    )


def finish_rollback(
    schema: str,
    run_id: str,
    number: int,
    status: str,
    exit_code: int,
    message: str,
    skipped: list[str],
) -> sql.Composed:
    return sql.SQL(
        "UPDATE {} SET status = {}, exit_code = {}, message = {}, skipped_steps = {}, "
        "finished_at = clock_timestamp() WHERE run_id = {} AND number = {}"
    ).format(
        _table(schema, "rollbacks"),
        _lit(status),
        _lit(exit_code),
        _lit(message),
        _lit(skipped),
        _lit(run_id),
        _lit(number),
    )


def execute(conn: psycopg.Connection[Any], *statements: sql.Composable) -> None:
    """The statements in one round trip (simple protocol: quoted literals, no parameters)."""
    if statements:
        conn.execute(sql.SQL("; ").join(statements))


# ---------------------------------------------------------------------------------- reading


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
    return [
        {
            "pid": r[0],
            "application": r[1],
            "user": r[2],
            "client": r[3] or "local socket",
            "since": r[4].isoformat(timespec="seconds") if r[4] else None,
            "state": r[5],
            "run_id": r[1].split("/")[2] if r[1].count("/") >= 2 else None,
        }
        for r in rows
    ]


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
    return [
        {
            "pid": r[0],
            "application": r[1],
            "user": r[2],
            "client": r[3] or "local socket",
            "since": r[4].isoformat(timespec="seconds") if r[4] else None,
            "run_id": r[1].split("/")[2] if r[1] and r[1].count("/") >= 2 else None,
            "rollback": bool(r[1] and r[1].endswith("/rollback")),
        }
        for r in rows
    ]
