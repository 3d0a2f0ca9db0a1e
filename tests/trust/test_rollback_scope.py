"""Bare `rollback` undoes the runbook on its target, every run of it; `rollback RUN_ID` undoes
that run and names what other runs still have applied; a run whose only applied steps are
irreversible is never reported as the thing rolled back (issue 12, item 1)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import cli
from tests.support.ledger import balance, wallet
from tests.trust.conftest import (
    ANALYZE_T,
    CREATE_T,
    CREDIT_AGAIN,
    events,
    exists,
    rollback,
    run,
    runbook,
)

pytestmark = pytest.mark.slow  # several runs and rollbacks per test


def test_bare_rollback_undoes_what_every_run_left_applied(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """Run, run again, rollback: the second run only repeated the ANALYZE; today's main undid
    that one run and said "as it was" with table t still there."""
    path = runbook(tmp_path, "twice", CREATE_T, ANALYZE_T)
    first = run(path, database_url)["detail"]["run_id"]
    second = run(path, database_url)["detail"]["run_id"]
    assert exists(db, "t")

    code, stream, stderr = rollback(database_url)

    assert code == 0, stderr
    assert not exists(db, "t")
    started = stream[0]["detail"]
    assert [r["run_id"] for r in started["runs"]] == [second, first]
    listed = [e["message"] for e in stream if e["event"] == "log"]
    assert any(
        f"run {second}: analyze-t (left as it is); run {first}: analyze-t (left as it is), "
        "create-t" in m
        for m in listed
    ), listed
    end = stream[-1]
    assert end["status"] == "rolled_back"
    assert f"rolled back run {first} (1 step(s))" in end["message"]
    assert f"run {second} (" not in end["message"]  # it had nothing that can be undone
    assert "declared irreversible" in end["message"]
    assert "as it was" not in end["message"]  # an irreversible step stayed
    assert "still_applied" not in end["detail"]  # nothing left: omitted, not []

    again_code, again, _ = rollback(database_url)
    assert again_code == 0 and again[-1]["status"] == "nothing_to_undo"


def test_rollback_of_a_run_with_nothing_to_undo_names_the_earlier_run(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    path = runbook(tmp_path, "noop", CREATE_T, ANALYZE_T)
    first = run(path, database_url)["detail"]["run_id"]
    second = run(path, database_url)["detail"]["run_id"]

    code, stream, stderr = rollback(database_url, second)

    assert code == 0, stderr
    end = stream[-1]
    assert end["status"] == "nothing_to_undo"
    assert "nothing that can be undone" in end["message"]
    assert f"run {first}: analyze-t, create-t" in end["message"]
    assert end["detail"]["still_applied_runs"] == [
        {"run_id": first, "runbook": "noop", "steps": ["analyze-t", "create-t"]}
    ]
    assert exists(db, "t")  # run 1's change: still there, and said so


def test_rollback_run_id_names_a_later_run_still_applied(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    wallet(db)
    path = runbook(tmp_path, "credits", CREDIT_AGAIN)
    first = run(path, database_url)["detail"]["run_id"]
    second = run(path, database_url)["detail"]["run_id"]
    assert balance(db) == 120

    code, stream, stderr = rollback(database_url, first)

    assert code == 0, stderr
    assert balance(db) == 110
    before = [e["message"] for e in stream if e["event"] == "log"]
    assert any(f"not undone by this rollback: run {second}: credit" in m for m in before), before
    end = stream[-1]
    assert end["status"] == "rolled_back"
    assert f"rolled back run {first} (1 step(s))" in end["message"]
    assert f"Still applied on database {db.info.dbname}" in end["message"]
    assert f"run {second}: credit" in end["message"]
    assert "as it was" not in end["message"]
    assert end["detail"]["still_applied"] == ["credit"]

    code, stream, _ = rollback(database_url)
    assert code == 0 and balance(db) == 100
    assert f"as it was before run {second}" in stream[-1]["message"]


def test_bare_rollback_without_a_url_uses_the_one_the_run_journaled(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """No password in it (trust, .pgpass or $PGPASSWORD supplied one): the next engineer can type
    `dcx-runbook rollback` alone. A journaled URL with a password is masked: never used."""
    path = runbook(tmp_path, "no-url", CREATE_T)
    run(path, database_url)
    done = cli("rollback", "--yes", "-o", "json")
    assert done.returncode == 0, done.stderr + done.stdout
    stream = events(done.stdout)
    notes = [e["message"] for e in stream if e["event"] == "log"]
    assert "database_url: none given; took the URL the run journaled" in notes
    assert not exists(db, "t")


def test_a_password_equal_to_the_database_name_leaves_the_identity_readable(
    tmp_path: Path, database_url: str, dbname: str, db: psycopg.Connection
) -> None:
    """Every string of the journaled target used to be masked: the database name (and so the
    identity a rollback compares) became ***, and no rollback could match it again."""
    url = database_url.replace("postgres@", f"postgres:{dbname}@")  # trust: any password
    run_id = run(runbook(tmp_path, "pw-is-dbname", CREATE_T), url)["detail"]["run_id"]
    code, stream, stderr = rollback(url, run_id)
    assert code == 0, stderr + str(stream[-1])
    assert not exists(db, "t")


def test_as_it_was_is_not_claimed_while_another_runbook_s_change_stays(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """Two runbooks on one database: undoing the first must not say the database is as it was
    while the second one's table is still there."""
    first = run(runbook(tmp_path, "makes-t", CREATE_T), database_url)["detail"]["run_id"]
    other = {**CREATE_T, "id": "create-u", "title": "create table u"}
    other["done_when"] = [
        {"kind": "sql", "query": "SELECT to_regclass('u') IS NOT NULL", "expect": True}
    ]
    other["action"] = [{"kind": "sql", "sql": "CREATE TABLE u (x int)"}]
    other["rollback"] = {"action": [{"kind": "sql", "sql": "DROP TABLE u"}]}
    second = run(runbook(tmp_path, "makes-u", other), database_url)["detail"]["run_id"]

    code, stream, stderr = rollback(database_url, first)

    assert code == 0, stderr
    message = stream[-1]["message"]
    assert "as it was" not in message
    assert f"Still applied there by other runbooks: run {second} (makes-u): create-u" in message
    assert not exists(db, "t") and exists(db, "u")


def test_a_typed_url_picks_the_latest_run_with_a_database(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """The latest run touched files only: a `--database-url` typed on the command line used to be
    ignored, and the files-only run was rolled back instead."""
    with_db = run(runbook(tmp_path, "has-db", CREATE_T), database_url)["detail"]["run_id"]
    marker = tmp_path / "marker.txt"
    marker.write_text("a\n")
    step = {
        "id": "write-marker",
        "title": "write a marker",
        "action": [{"kind": "file", "path": str(marker), "edits": [{"ensure_line": "x"}]}],
        "rollback": {"restore_files": True},
    }
    files = tmp_path / "files-only.yaml"
    files.write_text(yaml.safe_dump({"name": "files-only", "title": "files", "steps": [step]}))
    done = cli("run", str(files), "--yes", "-o", "json")
    assert done.returncode == 0, done.stderr + done.stdout

    code, stream, stderr = rollback(database_url, "--dry-run")

    assert code == 0, stderr
    assert [r["run_id"] for r in stream[0]["detail"]["runs"]] == [with_db]
    assert marker.exists() and exists(db, "t")
