"""The ledger: what was done to a database, kept in that database (docs/ledger.md).

A schema (`dcx_runbook` by default) with a version, and three tables: `runs`, `steps` and
`rollbacks`. This module creates it and says what a role may do with it (and, where it may not,
what a DBA must run); its rows are target/ledger_rows.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dcx_runbook.errors import InvalidInput, Refused

VERSION = 1  # the ledger schema's own version: a later release migrates from it
DEFAULT_SCHEMA = "dcx_runbook"
TABLES = ("version", "runs", "steps", "rollbacks")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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
) WITH (fillfactor = 50);
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
