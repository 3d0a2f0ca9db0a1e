"""The target database: connecting, the guard, the run lock, lock timeouts with retry, blockers."""

from __future__ import annotations

import random
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from dcx_runbook.errors import InvalidInput, Refused
from dcx_runbook.secrets import mask_url

# Re-exported: the engine's `db.BlockerWatch` (target/blockers.py).
from dcx_runbook.target.blockers import Blocker as Blocker
from dcx_runbook.target.blockers import BlockerWatch as BlockerWatch

LOCK_NAMESPACE = 0x6463  # "dc": the first key of dcx-runbook's advisory locks
CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class Policy:
    lock_timeout: float = 2.0
    statement_timeout: float = 60.0
    attempts: int = 5
    retry_budget: float = 30.0


def application_name(runbook: str, run_id: str, role: str = "") -> str:
    """`dcx-runbook/<runbook>/<run id>[/<role>]`, within PostgreSQL's 63 bytes: the runbook name
    is shortened, never the run id (the run lock's holder is found by it)."""
    tail = f"/{run_id}" + (f"/{role}" if role else "")
    room = 63 - len("dcx-runbook/") - len(tail) - len("/monitor")
    return f"dcx-runbook/{runbook[: max(room, 1)]}{tail}"


def connect(url: str, application_name: str) -> psycopg.Connection[Any]:
    _check_url(url)
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            # Statements are rarely repeated; preparing them would only add bookkeeping.
            prepare_threshold=None,
            application_name=application_name[:63],
            connect_timeout=CONNECT_TIMEOUT,
        )
    except psycopg.Error as exc:
        raise Refused(f"can't connect to {mask_url(url)}: {_first_line(exc)}") from None
    except ValueError as exc:  # malformed URL or conninfo
        raise Refused(f"invalid database URL {mask_url(url)}: {exc}") from None
    if conn.info.server_version >= 140000:
        # A backend whose client was killed notices within a second, even while it waits for a
        # lock, and releases its locks (the run lock included) instead of holding them.
        conn.execute("SET client_connection_check_interval = '1s'")
    return conn


def set_application_name(conn: psycopg.Connection[Any] | None, name: str) -> None:
    """Rename the session in pg_stat_activity (how the run lock's holder is found and named)."""
    if conn is not None:
        conn.execute("SELECT set_config('application_name', %s, false)", (name[:63],))


def _check_url(url: str) -> None:
    """A URL libpq can't even parse is invalid input (exit 2), not a refusal to connect."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except (psycopg.ProgrammingError, ValueError) as exc:
        # A URL that doesn't parse can't be masked reliably: a password with a space, a quote or
        # a stray '%' in it is exactly what breaks both libpq's parser and ours. Neither the URL
        # nor the pieces of it that libpq's message quotes are shown; the reason is.
        raise InvalidInput(
            f"invalid database URL (not shown: it may hold a password): {_unquoted(exc)}; "
            "expected postgresql://user:password@host:port/dbname, with any space, quote, '%', "
            "'@' or '/' in the password percent-encoded (a space is %20), or key=value pairs"
        ) from None


def _unquoted(exc: BaseException) -> str:
    """libpq's reason without the text it quotes from the URL (`"..."`), which may be a password."""
    return re.sub(r'"[^"]*"?', '"…"', _first_line(exc))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@dataclass(frozen=True)
class TargetInfo:
    database: str
    host: str
    port: str
    user: str
    server_version: str
    # The server's identity, as seen from inside: two servers whose databases share a name
    # (staging and production often do) differ here. `system_identifier` is the cluster's own
    # (pg_control_system(); None where a role may not call it); `database_oid` changes when a
    # database is dropped and created again.
    system_identifier: str | None = None
    server_address: str | None = None  # inet_server_addr():inet_server_port(); None on a socket
    database_oid: int | None = None

    def identity(self) -> dict[str, Any]:
        """What tells this database apart from a same-named one elsewhere (see identity.py)."""
        return {
            "database": self.database,
            "system_identifier": self.system_identifier,
            "server_address": self.server_address,
            "database_oid": self.database_oid,
        }


_DESCRIBE = """
SELECT current_database(), current_setting('server_version'), d.oid,
       host(inet_server_addr()) || ':' || inet_server_port(), {system_identifier}
  FROM pg_database d WHERE d.datname = current_database()
"""


def describe(conn: psycopg.Connection[Any]) -> TargetInfo:
    info = conn.info
    try:
        row = conn.execute(
            _DESCRIBE.format(
                system_identifier="(SELECT system_identifier::text FROM pg_control_system())"
            )
        ).fetchone()
    except psycopg.errors.InsufficientPrivilege:  # EXECUTE revoked from the run's role
        row = conn.execute(_DESCRIBE.format(system_identifier="NULL::text")).fetchone()
    assert row is not None
    return TargetInfo(
        row[0],
        info.host,
        str(info.port),
        info.user,
        row[1],
        system_identifier=row[4],
        server_address=row[3],
        database_oid=int(row[2]),
    )


def lock_key(name: str) -> int:
    value = zlib.crc32(name.encode())
    return value - 2**32 if value >= 2**31 else value


def try_run_lock(conn: psycopg.Connection[Any], runbook: str) -> bool:
    row = conn.execute(
        "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, lock_key(runbook))
    ).fetchone()
    return bool(row and row[0])


def lock_holder(conn: psycopg.Connection[Any], runbook: str) -> dict[str, Any] | None:
    row = conn.execute(
        """
        SELECT a.pid, a.application_name, a.usename, coalesce(a.client_hostname, host(a.client_addr)),
               a.backend_start
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
           AND l.classid = %s::bigint::oid AND l.objid = (%s::bigint & 4294967295)::oid
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        (LOCK_NAMESPACE, lock_key(runbook)),
    ).fetchone()
    return session(row) if row is not None else None


def session(row: Any) -> dict[str, Any]:
    """A session as pg_stat_activity shows it (pid, application_name, usename, client,
    backend_start), and the run its application name says it works for."""
    app = row[1] or ""
    return {
        "pid": row[0],
        "application": row[1],
        "user": row[2],
        "client": row[3] or "local socket",
        "since": row[4].isoformat(timespec="seconds") if row[4] else None,
        "run_id": app.split("/")[2] if app.count("/") >= 2 else None,
    }


def set_timeouts(conn: psycopg.Connection[Any], policy: Policy, local: bool) -> None:
    """Both timeouts in one round trip; `local` limits them to the current transaction."""
    conn.execute(
        "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
        (_ms(policy.lock_timeout), local, _ms(policy.statement_timeout), local),
    )


def _ms(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms"


@dataclass
class Tx:
    """One transaction of a step: its server-side id, and whether COMMIT's answer was lost."""

    xid: str | None = None
    # COMMIT was sent but no answer came back (the connection died, or Ctrl-C during it): the
    # server may have committed or not. `commit_status(conn, xid)` asks it.
    in_doubt: bool = False


@contextmanager
def transaction(
    conn: psycopg.Connection[Any],
    policy: Policy,
    before_commit: Callable[[], None],
    commit_with: Callable[[], bytes | None] | None = None,
) -> Iterator[Tx]:
    """A transaction whose timeouts are SET LOCAL in the same round trip as its BEGIN (they end
    with it, whatever the statements inside SET). COMMIT only after `before_commit` returns; any
    exception rolls back. A COMMIT the server turned into a ROLLBACK is an error, not success.

    The same round trip fetches the transaction's id: should COMMIT's answer be lost, the server
    can still say what became of it (a step's writes get an id anyway, so this costs nothing).

    `commit_with` gives a statement sent in COMMIT's own round trip, inside the transaction (the
    step's ledger row): it commits or vanishes with the step's change, at no extra round trip."""
    current = "pg_current_xact_id()" if conn.info.server_version >= 130000 else "txid_current()"
    # One simple-protocol message: the values are integers formatted here, never operator input.
    cur = conn.execute(
        f"BEGIN; SELECT set_config('lock_timeout', '{_ms(policy.lock_timeout)}', true), "
        f"set_config('statement_timeout', '{_ms(policy.statement_timeout)}', true), "
        f"{current}::text"
    )
    cur.nextset()
    row = cur.fetchone()
    tx = Tx(xid=row[2] if row else None)
    committing = False
    try:
        yield tx
        before_commit()
        extra = commit_with() if commit_with is not None else None
        committing = True
        status = _commit(conn, extra)
    except BaseException as exc:
        # An error the server answered (a deferred constraint, a serialization failure) means it
        # rolled back; no answer at all means nobody knows yet.
        tx.in_doubt = committing and getattr(exc, "sqlstate", None) is None
        if not conn.closed and not tx.in_doubt:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass  # a broken connection: the server rolls back on its own
        raise
    if status != "COMMIT":
        raise psycopg.errors.InFailedSqlTransaction(
            f"the server answered {status} to COMMIT: nothing of the transaction was kept"
        )


def _commit(conn: psycopg.Connection[Any], extra: bytes | None) -> str | None:
    """COMMIT, after `extra` in the same message (one simple-protocol round trip: every value in
    it is a quoted literal); the server's answer to the COMMIT."""
    if extra is None:
        return conn.execute("COMMIT").statusmessage
    cur = conn.execute(extra + b"; COMMIT")
    while cur.nextset():  # to the last result: COMMIT's
        pass
    return cur.statusmessage


def commit_status(conn: psycopg.Connection[Any], xid: str) -> str | None:
    """What became of transaction `xid`: committed, aborted, in progress; None when the server
    no longer knows (too old) or can't say."""
    modern = conn.info.server_version >= 130000
    function = "pg_xact_status(%s::xid8)" if modern else "txid_status(%s::bigint)"
    try:
        row = conn.execute(f"SELECT {function}", (xid,)).fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row and row[0] is not None else None


def backoff_delays(policy: Policy, rng: random.Random | None = None) -> Iterator[float]:
    """Exponential backoff with full jitter, capped so all attempts fit in the retry budget."""
    rng = rng or random.Random()
    for attempt in range(1, policy.attempts):
        yield min(rng.uniform(0, 0.5 * 2**attempt), 5.0)


def sleep_within(deadline: float, delay: float) -> bool:
    """Sleep for `delay` unless that passes the deadline; False when the budget is spent."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    time.sleep(min(delay, remaining))
    return True


@contextmanager
def read_only(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A READ ONLY transaction that is always rolled back: the dry run's window on the target."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        yield
