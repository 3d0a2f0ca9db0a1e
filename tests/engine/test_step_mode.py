"""`run --step` on a real terminal: before each step, what it will do, then run / skip / abort
(undo everything and stop) / stop here, each doing exactly what it says."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.conftest import cli, write_runbook
from tests.support.terminal import converse, plain

ASK = b"[run/skip/abort/stop]"


def _table(name: str) -> dict:
    return {
        "id": name,
        "title": f"create {name}",
        "precheck": [
            {
                "kind": "sql",
                "name": f"{name} is not there yet",
                "query": f"SELECT to_regclass('{name}') IS NULL",
                "expect": True,
            }
        ],
        "action": [{"kind": "sql", "sql": f"CREATE TABLE {name} (id int)"}],
        "rollback": {"action": [{"kind": "sql", "sql": f"DROP TABLE {name}"}]},
    }


@pytest.fixture
def runbook(tmp_path: Path) -> Path:
    return write_runbook(tmp_path / "three.yaml", "three", [_table("a"), _table("b"), _table("c")])


def tables(db: psycopg.Connection) -> set[str]:
    rows = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def steps_of(state: Path) -> dict[str, dict]:
    (path,) = (state / "runs").glob("*.json")
    return {s["id"]: s for s in json.loads(path.read_text())["steps"]}


def test_run_skip_and_stop_each_do_what_they_say(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    args = ["run", str(runbook), "--database-url", database_url, "--step", "--yes"]
    script = [(ASK, b"run\n"), (ASK, b"skip\n"), (ASK, b"stop\n")]
    code, out = converse(args, script)
    assert code == 5, out
    shown = plain(out)
    # What each step will do, with its live precheck, before the question.
    assert "✓ precheck: a is not there yet" in shown
    assert "CREATE TABLE a (id int)" in shown and "DROP TABLE a" in shown
    assert tables(db) == {"a"}
    steps = steps_of(_isolate)
    assert {k: v["status"] for k, v in steps.items()} == {
        "a": "applied",
        "b": "skipped",
        "c": "pending",
    }
    assert [a["answer"] for a in steps["b"]["answers"]] == ["skip"]
    assert "skipped by the operator at the --step prompt" in shown


def test_abort_undoes_everything_and_stops(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    args = ["run", str(runbook), "--database-url", database_url, "--step", "--yes"]
    code, out = converse(args, [(ASK, b"run\n"), (ASK, b"run\n"), (ASK, b"abort\n")])
    assert code == 1, out
    assert tables(db) == set()
    steps = steps_of(_isolate)
    assert steps["a"]["status"] == steps["b"]["status"] == "rolled_back"
    # c never ran: the unwind marks the step the run stopped at, and its answer says why.
    assert steps["c"]["status"] == "failed"
    assert [a["answer"] for a in steps["c"]["answers"]] == ["abort"]


def test_every_step_run_ends_as_a_whole_run(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    args = ["run", str(runbook), "--database-url", database_url, "--step", "--yes"]
    code, out = converse(args, [(ASK, b"run\n")] * 3)
    assert code == 0, out
    assert tables(db) == {"a", "b", "c"}


def test_step_without_a_terminal_is_refused_before_any_change(
    runbook: Path, database_url: str, db: psycopg.Connection
) -> None:
    result = cli("run", str(runbook), "--database-url", database_url, "--step", "--yes")
    assert result.returncode == 4, result.stderr
    assert "--step asks before each step, and nobody can be asked here" in result.stderr
    assert tables(db) == set()
