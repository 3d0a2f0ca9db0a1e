"""Rule `no-transaction-block`: a statement PostgreSQL refuses inside a transaction block, in a
step that would send it in one, is a validation error (exit 2, located, with the fix), not a
failure halfway through a run.

The lists below are checked against the real server first: each refused statement really is
refused in a transaction block (under the name the rule gives it), each accepted one really runs
in one. Comments, string literals and dollar-quoted bodies never count.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from dcx_runbook.errors import ExitCode
from tests.conftest import cli
from tests.validation.test_validate import assert_located, validate

# statement: the name PostgreSQL's error gives it ("VACUUM cannot run inside a transaction block")
REFUSED = {
    "CREATE INDEX CONCURRENTLY orders_v_idx ON orders (v)": "CREATE INDEX CONCURRENTLY",
    "create unique index concurrently if not exists orders_id_key on orders (id)": (
        "CREATE INDEX CONCURRENTLY"
    ),
    "DROP INDEX CONCURRENTLY IF EXISTS orders_v_idx": "DROP INDEX CONCURRENTLY",
    "REINDEX INDEX CONCURRENTLY orders_v_idx": "REINDEX CONCURRENTLY",
    "REINDEX (VERBOSE, CONCURRENTLY) TABLE orders": "REINDEX CONCURRENTLY",
    "REINDEX SCHEMA public": "REINDEX SCHEMA",
    "REINDEX DATABASE never_made": "REINDEX DATABASE",
    "REINDEX SYSTEM never_made": "REINDEX SYSTEM",
    "VACUUM orders": "VACUUM",
    "VACUUM (VERBOSE, ANALYZE) orders": "VACUUM",
    "CREATE DATABASE never_made": "CREATE DATABASE",
    "DROP DATABASE IF EXISTS never_made": "DROP DATABASE",
    "ALTER SYSTEM SET work_mem = '8MB'": "ALTER SYSTEM",
    "CREATE TABLESPACE never_made LOCATION '/nonexistent'": "CREATE TABLESPACE",
    "DROP TABLESPACE IF EXISTS never_made": "DROP TABLESPACE",
    "ALTER TABLE orders DETACH PARTITION orders_1 CONCURRENTLY": (
        "ALTER TABLE ... DETACH CONCURRENTLY"
    ),
    "ALTER DATABASE never_made SET TABLESPACE pg_default": "ALTER DATABASE SET TABLESPACE",
    "CLUSTER VERBOSE": "CLUSTER",
    "/* first */ -- the VACUUM\n  VACUUM orders": "VACUUM",
}
ACCEPTED = [
    "UPDATE orders SET note = 'VACUUM'",
    "UPDATE orders SET note = E'it''s \\' VACUUM orders; CREATE DATABASE x'",
    "UPDATE orders SET note = $$VACUUM$$",
    "UPDATE orders SET note = $tag$ $$ DROP DATABASE x $$ $tag$",
    'SELECT 1 AS "VACUUM"',
    "-- VACUUM orders\nANALYZE orders",
    "/* DROP DATABASE x /* nested */ VACUUM */ SELECT 1",
    "REINDEX TABLE orders",
    "REINDEX (CONCURRENTLY false) TABLE orders",
    "CLUSTER orders USING orders_v_idx",
    "CREATE INDEX orders_concurrently ON orders (v)",
]

RUNBOOK = """\
name: no-block
title: A statement and its rollback
vars:
  database_url: {{required: true, secret: true, env: DATABASE_URL}}
target:
  url: "${{database_url}}"
steps:
  - id: the-step
    title: The step
    transaction: {transaction}
    action:
      - kind: sql
        sql: {action}
    rollback:
      action:
        - kind: sql
          sql: {rollback}
"""
ACTION_AT, ROLLBACK_AT = "13:14", "17:16"  # where the two `sql` values start, line:column
HARMLESS = "SELECT 1"


def runbook(path: Path, action: str, rollback: str = HARMLESS, transaction: str = "true") -> Path:
    # JSON's double-quoted strings are YAML's too: any statement, on one line.
    text = RUNBOOK.format(
        transaction=transaction, action=json.dumps(action), rollback=json.dumps(rollback)
    )
    path.write_text(text, encoding="utf-8")
    return path


def problem(name: str, fix: str = "expected `transaction: false` on the step") -> str:
    return (
        f"no-transaction-block: {name} can't run inside a transaction block, and this step "
        f"runs its sql (action and rollback) in one: {fix}"
    )


@pytest.fixture
def orders(db: psycopg.Connection) -> psycopg.Connection:
    db.execute("CREATE TABLE orders (id int, v int, note text)")
    db.execute("CREATE INDEX orders_v_idx ON orders (v)")
    return db


# -------------------------------------------------------------------------- the server agrees


@pytest.mark.slow  # the server's side of the list, a database each
@pytest.mark.parametrize("statement", REFUSED)
def test_postgresql_refuses_each_in_a_transaction_block(
    database_url: str, orders: psycopg.Connection, statement: str
) -> None:
    with psycopg.connect(database_url) as conn:  # not autocommit: a transaction block
        with pytest.raises(psycopg.errors.ActiveSqlTransaction) as caught:
            conn.execute(statement)
    assert str(caught.value).startswith(f"{REFUSED[statement]} cannot run inside")


@pytest.mark.slow  # the server's side of the list, a database each
@pytest.mark.parametrize("statement", ACCEPTED)
def test_postgresql_runs_each_accepted_one_in_a_transaction_block(
    database_url: str, orders: psycopg.Connection, statement: str
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(statement)
        conn.rollback()


def test_postgresql_refuses_one_sent_with_others_even_outside_a_transaction(
    orders: psycopg.Connection,
) -> None:
    """Several statements in one query run in an implicit transaction block."""
    with pytest.raises(psycopg.errors.ActiveSqlTransaction):
        orders.execute("UPDATE orders SET note = 'x'; VACUUM orders")


# ------------------------------------------------------------------------------------ validate


@pytest.mark.slow  # a process per statement; the rollback and several-statement cases stay fast
@pytest.mark.parametrize("statement", REFUSED)
def test_validate_refuses_it_in_a_transaction_step(tmp_path: Path, statement: str) -> None:
    path = runbook(tmp_path / "refused.yaml", statement)
    done = validate(path)
    assert done.returncode == ExitCode.INVALID == 2, done.stderr
    (m,) = assert_located(done.stderr, path)
    expected = f"{ACTION_AT}: steps[0].action[0].sql: {problem(REFUSED[statement])}"
    assert f"{path}:{expected}" in done.stderr, done.stderr
    assert m.group("rest").startswith("steps[0].action[0].sql: no-transaction-block: ")


def test_validate_refuses_it_in_the_rollback_of_a_transaction_step(tmp_path: Path) -> None:
    """A step's rollback action runs in the step's transaction mode too."""
    path = runbook(
        tmp_path / "rollback.yaml",
        "CREATE INDEX orders_v_idx ON orders (v)",
        rollback="DROP INDEX CONCURRENTLY IF EXISTS orders_v_idx",
    )
    done = validate(path)
    assert done.returncode == 2, done.stderr
    assert_located(done.stderr, path)
    expected = f"{ROLLBACK_AT}: steps[0].rollback.action[0].sql: "
    said = (
        "no-transaction-block: DROP INDEX CONCURRENTLY can't run inside a transaction block, "
        "and this step runs its rollback's sql in one: expected `transaction: false` on the "
        "rollback"
    )
    assert f"{path}:{expected}{said}" in done.stderr
    # The rollback may run outside the step's transaction: then it validates.
    text = path.read_text().replace("    rollback:\n", "    rollback:\n      transaction: false\n")
    assert "transaction: false" in text, text
    path.write_text(text)
    assert validate(path).returncode == 0, validate(path).stderr


def test_each_validates_in_a_step_without_a_transaction(tmp_path: Path) -> None:
    paths = [
        runbook(tmp_path / f"plain-{i}.yaml", statement, rollback=statement, transaction="false")
        for i, statement in enumerate(REFUSED)
    ]
    done = validate(*paths)
    assert done.returncode == ExitCode.OK, done.stderr


def test_comments_strings_and_other_statements_validate_in_a_transaction_step(
    tmp_path: Path,
) -> None:
    paths = [runbook(tmp_path / f"ok-{i}.yaml", s, rollback=s) for i, s in enumerate(ACCEPTED)]
    done = validate(*paths)
    assert done.returncode == ExitCode.OK, done.stderr


def test_each_statement_of_several_is_judged_alone(tmp_path: Path) -> None:
    text = "UPDATE orders SET note = 'VACUUM'; /* ; */ VACUUM orders; SELECT ';'"
    in_tx = validate(runbook(tmp_path / "tx.yaml", text))
    assert in_tx.returncode == 2
    fix = (
        "expected `transaction: false` on the step and the statement in a sql operation of its own"
    )
    assert problem("VACUUM (statement 2 of 3)", fix) in in_tx.stderr
    assert in_tx.stderr.count("no-transaction-block") == 1

    path = runbook(tmp_path / "no-tx.yaml", text, transaction="false")
    outside = validate(path)
    assert outside.returncode == 2
    assert_located(outside.stderr, path)
    assert (
        f"{path}:{ACTION_AT}: steps[0].action[0].sql: no-transaction-block: VACUUM (statement 2 "
        "of 3) can't run inside a transaction block, and statements sent together run in one: "
        "expected the statement in a sql operation of its own"
    ) in outside.stderr


def test_run_refuses_it_before_connecting(
    database_url: str, orders: psycopg.Connection, tmp_path: Path
) -> None:
    """Every load validates: `run` stops with exit 2, and the database is untouched."""
    path = runbook(tmp_path / "run.yaml", "VACUUM orders")
    done = cli("run", str(path), "--yes", "--database-url", database_url)
    assert done.returncode == 2, done.stderr
    assert "no-transaction-block: VACUUM" in done.stderr
    assert "Traceback" not in done.stderr
    runs = orders.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'dcx-runbook/%'"
    ).fetchone()
    assert runs == (0,)
