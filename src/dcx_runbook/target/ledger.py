"""The ledger: what was done to a database, kept in that database (docs/ledger.md).

A schema (`dcx_runbook` by default) with a version, and three tables: `runs`, `steps` and
`rollbacks`. Every statement here is built from identifiers and literals quoted by psycopg, so the
engine can send a ledger write in the same round trip as a step's own COMMIT.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from dcx_runbook.errors import InvalidInput, Refused
from dcx_runbook.statuses import STILL_APPLIED

VERSION = 1  # the ledger schema's own version: a later release migrates from it
DEFAULT_SCHEMA = "dcx_runbook"
TABLES = ("version", "runs", "steps", "rollbacks")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

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

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE {schema}.version (
    version int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO {schema}.version (version) VALUES ({version});
CREATE TABLE {schema}.runs (
    run_id text PRIMARY KEY,
    runbook text NOT NULL,
    runbook_sha256 text,
    title text,
    spec jsonb NOT NULL,
    vars jsonb NOT NULL DEFAULT '{{}}',
    secret_vars jsonb NOT NULL DEFAULT '[]',
    captured jsonb NOT NULL DEFAULT '{{}}',
    skipped jsonb NOT NULL DEFAULT '[]',
    os_user text NOT NULL,
    host text NOT NULL,
    pid int NOT NULL,
    session_user_name text NOT NULL DEFAULT session_user,
    backend_pid int NOT NULL DEFAULT pg_backend_pid(),
    application_name text NOT NULL DEFAULT current_setting('application_name'),
    client_addr text DEFAULT host(inet_client_addr()),
    target jsonb NOT NULL DEFAULT '{{}}',
    reason text,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    status text NOT NULL,
    exit_code int,
    message text
);
CREATE INDEX ON {schema}.runs (runbook, started_at);
CREATE INDEX ON {schema}.runs (started_at);
CREATE TABLE {schema}.steps (
    run_id text NOT NULL REFERENCES {schema}.runs ON DELETE CASCADE,
    step_id text NOT NULL,
    position int NOT NULL,
    title text,
    status text NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    captured jsonb NOT NULL DEFAULT '{{}}',
    host text,
    files jsonb NOT NULL DEFAULT '{{}}',
    processes jsonb NOT NULL DEFAULT '[]',
    error text,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE {schema}.rollbacks (
    run_id text NOT NULL REFERENCES {schema}.runs ON DELETE CASCADE,
    number int NOT NULL,
    os_user text NOT NULL,
    host text NOT NULL,
    pid int NOT NULL,
    session_user_name text NOT NULL DEFAULT session_user,
    backend_pid int NOT NULL DEFAULT pg_backend_pid(),
    reason text,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    status text NOT NULL,
    exit_code int,
    message text,
    skipped_steps jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, number)
);
"""


def schema_name(name: str | None) -> str:
    """The ledger schema's name, checked: a plain lower-case identifier (it is named in GRANTs a
    DBA copies, and in every ledger statement)."""
    chosen = name or DEFAULT_SCHEMA
    if not _NAME.match(chosen):
        raise InvalidInput(
            f"ledger schema {chosen!r}: expected a lower-case identifier (letters, digits, _; "
            "at most 63), such as dcx_runbook"
        )
    return chosen


def ddl(schema: str, grant_to: str | None = None, *, with_schema: bool = True) -> str:
    """The statements that create the ledger (and, with `grant_to`, let that role use it with
    only SELECT, INSERT and UPDATE): what a DBA runs for a role that may not create it."""
    text = _DDL.format(schema=_q(schema), version=VERSION)
    if not with_schema:  # CREATE SCHEMA needs CREATE on the database, even IF NOT EXISTS
        text = text.split("\n", 2)[2]
    if grant_to:
        text += grants(schema, grant_to).replace("  ", "")
    return text


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Found:
    """The ledger as a role finds it: there or not, its version, what the role may do."""

    schema: str
    schema_exists: bool
    tables: int  # how many of the ledger's tables exist
    version: int | None
    can_create: bool  # what creating the missing part needs: CREATE on the database or schema
    can_write: bool  # USAGE on the schema; SELECT, INSERT, UPDATE on every table
    can_read: bool
    role: str

    @property
    def whole(self) -> bool:
        return self.tables == len(TABLES)


# From the catalogs, not to_regclass(): that fails outright on a schema the role has no USAGE on.
_FIND = """
WITH n AS (SELECT oid FROM pg_namespace WHERE nspname = %(s)s),
     t AS (SELECT c.oid FROM pg_class c JOIN n ON c.relnamespace = n.oid
            WHERE c.relname = ANY(%(tables)s::text[]) AND c.relkind IN ('r', 'p'))
SELECT EXISTS (SELECT FROM n),
       (SELECT count(*) FROM t),
       CASE WHEN EXISTS (SELECT FROM n)
            THEN (SELECT has_schema_privilege(n.oid, 'CREATE') FROM n)
            ELSE has_database_privilege(current_database(), 'CREATE') END,
       coalesce((SELECT has_schema_privilege(n.oid, 'USAGE') FROM n), false),
       coalesce((SELECT bool_and(has_table_privilege(t.oid, 'SELECT')
                             AND has_table_privilege(t.oid, 'INSERT')
                             AND has_table_privilege(t.oid, 'UPDATE')) FROM t), false),
       coalesce((SELECT bool_and(has_table_privilege(t.oid, 'SELECT')) FROM t), false),
       current_user
"""


def find(conn: psycopg.Connection[Any], schema: str) -> Found:
    """Whether the ledger exists, its version, and what the connected role may do with it."""
    row = conn.execute(_FIND, {"s": schema, "tables": list(TABLES)}).fetchone()
    assert row is not None
    exists, tables, can_create, usage, writable, readable, role = row
    whole = tables == len(TABLES) and usage
    version = None
    if whole and readable:
        got = conn.execute(
            sql.SQL("SELECT max(version) FROM {}").format(sql.Identifier(schema, "version"))
        ).fetchone()
        version = int(got[0]) if got and got[0] is not None else None
    return Found(
        schema,
        bool(exists),
        int(tables),
        version,
        bool(can_create),
        bool(whole and writable),
        bool(whole and readable),
        str(role),
    )


def ensure(conn: psycopg.Connection[Any], schema: str) -> bool:
    """The ledger, ready to be written by the connected role: created on first use (True is
    then returned). Refused, before any change, with the statements a DBA must run when the role
    may not create it or write to it, or when it is a version this release can't write."""
    found = find(conn, schema)
    check(found)
    if found.whole:
        return False
    try:
        with conn.transaction():
            conn.execute(ddl(schema, with_schema=not found.schema_exists))
    except psycopg.errors.DuplicateTable:  # another run created it meanwhile
        check_writable(find(conn, schema))
        return False
    except psycopg.errors.InsufficientPrivilege as exc:
        raise Refused(cannot_create(found) + f" ({str(exc).strip()})") from None
    return True


def check(found: Found) -> None:
    """Refused, with what a DBA must run, unless the role can write the ledger or create it."""
    if found.whole:
        check_writable(found)
    elif found.tables:
        raise Refused(
            f"the ledger {found.schema} is incomplete ({found.tables} of its {len(TABLES)} "
            f"tables: {', '.join(TABLES)}): it was left as is; nothing was changed"
        )
    elif not found.can_create:
        raise Refused(cannot_create(found))


def check_writable(found: Found) -> None:
    if found.version is not None and found.version > VERSION:
        raise Refused(
            f"the ledger {found.schema} is version {found.version}, written by a newer "
            f"dcx-runbook (this one writes version {VERSION}): use that version or a later one; "
            "nothing was changed"
        )
    if not found.can_write:
        raise Refused(
            f"the role {found.role} can't write the ledger {found.schema} (it needs USAGE on the "
            "schema and SELECT, INSERT, UPDATE on its tables); nothing was changed. A DBA can "
            f"run:\n{grants(found.schema, found.role)}"
            "or run with --no-ledger (this machine's journal only)"
        )


def grants(schema: str, role: str) -> str:
    return (
        f"  GRANT USAGE ON SCHEMA {_q(schema)} TO {_q(role)};\n"
        f"  GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {_q(schema)} TO {_q(role)};\n"
    )


def cannot_create(found: Found) -> str:
    schema, role = _q(found.schema), _q(found.role)
    where = f"the schema {found.schema}" if found.schema_exists else "this database"
    return (
        f"the role {found.role} may not create the ledger {found.schema} (it has no CREATE on "
        f"{where}); nothing was changed. A DBA can either let the role own the schema:\n"
        f"  CREATE SCHEMA {schema} AUTHORIZATION {role};\n"
        "or create the ledger and grant the role only what a run needs:\n"
        f"  dcx-runbook ledger-sql --ledger-schema {found.schema} --grant-to {found.role} "
        "| psql ADMIN_URL\n"
        f"which ends with\n{grants(found.schema, found.role)}"
        "or run with --no-ledger (this machine's journal only)"
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
