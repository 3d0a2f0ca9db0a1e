"""A journal written by the first version (commit 98027d2, journal format 1, checked in under
tests/fixtures/journal-v1) still reads, lists and rolls back with today's code (issue 13)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from dcx_runbook.target import sandbox
from tests.conftest import cli

FIXTURE = Path(__file__).parent / "fixtures" / "journal-v1"
NAME = "dcx_journal_v1"  # the database the fixture's run changed


@pytest.fixture
def as_the_run_left_it(pg_server: sandbox.Server) -> Iterator[str]:
    """The database the journaled run changed, in the state it left: t created, balance 110."""
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:  # a leftover
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(NAME))
        )
    with sandbox.scratch_database(pg_server, name=NAME) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE wallet (balance int); INSERT INTO wallet VALUES (110)")
            conn.execute("CREATE TABLE t (x int)")
        yield url


def test_a_first_version_journal_lists_and_rolls_back(
    as_the_run_left_it: str, _isolate: Path
) -> None:
    shutil.copytree(FIXTURE / "state", _isolate)
    [row] = [json.loads(line) for line in cli("runs", "-o", "json").stdout.splitlines()]
    assert row["runbook"] == "journal-fixture" and row["status"] == "succeeded"

    done = cli("rollback", "--yes", "-o", "json", "--database-url", as_the_run_left_it)

    assert done.returncode == 0, done.stderr + done.stdout
    with psycopg.connect(as_the_run_left_it) as conn:
        assert conn.execute("SELECT balance FROM wallet").fetchone() == (100,)
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
    log = json.loads(cli("log", row["run_id"], "-f", "json").stdout)
    assert log["rollbacks"][-1]["status"] == "rolled_back"
