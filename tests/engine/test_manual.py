"""Manual steps: a person's work in the middle of a run. On a real terminal the run stops and
asks (done / abort / stop here); without one, each must be confirmed with --confirm, else the
run is refused before any change. --yes never answers for a person."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.conftest import cli, write_runbook
from tests.support.machines import Machine
from tests.support.terminal import converse, plain

STEPS = [
    {
        "id": "t1",
        "title": "create t1",
        "action": [{"kind": "sql", "sql": "CREATE TABLE t1 (id int)"}],
        "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t1"}]},
    },
    {
        "id": "by-hand",
        "title": "a person's step",
        "action": [{"kind": "manual", "instruction": "Tell **#billing** about ${who}."}],
        "rollback": {"action": [{"kind": "manual", "instruction": "Tell #billing it is undone."}]},
    },
    {
        "id": "t2",
        "title": "create t2",
        "action": [{"kind": "sql", "sql": "CREATE TABLE t2 (id int)"}],
        "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t2"}]},
    },
]


@pytest.fixture
def runbook(tmp_path: Path) -> Path:
    path = write_runbook(tmp_path / "manual.yaml", "manual", STEPS)
    text = path.read_text().replace("vars:\n", "vars:\n  who:\n    default: the wallet fix\n", 1)
    path.write_text(text)
    return path


def tables(db: psycopg.Connection) -> set[str]:
    rows = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def record(state: Path) -> dict:
    (path,) = (state / "runs").glob("*.json")
    return json.loads(path.read_text())


def ledger_answers(db: psycopg.Connection, step: str) -> list[dict]:
    row = db.execute(
        "SELECT captured -> '@answers' FROM dcx_runbook.steps WHERE step_id = %s", (step,)
    ).fetchone()
    assert row is not None
    return row[0]


def test_abort_at_a_manual_step_undoes_everything_before_it(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    args = ["run", str(runbook), "--database-url", database_url]
    code, out = converse(args, [(b"[y/n]", b"y\n"), (b"[done/abort/stop]", b"abort\n")])
    assert code == 1, out
    out = plain(out)
    assert "Tell #billing about the wallet fix." in out  # Markdown rendered, variable filled in
    assert "the operator chose to undo everything and stop" in out
    assert tables(db) == set()
    data = record(_isolate)
    steps = {s["id"]: s for s in data["steps"]}
    assert steps["t1"]["status"] == "rolled_back"
    (answer,) = steps["by-hand"]["answers"]
    assert answer["answer"] == "abort" and answer["via"] == "prompt" and answer["user"]
    assert ledger_answers(db, "by-hand")[0]["answer"] == "abort"


def test_stop_here_leaves_the_earlier_steps_applied_and_says_how_to_undo(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    args = ["run", str(runbook), "--database-url", database_url]
    code, out = converse(args, [(b"[y/n]", b"y\n"), (b"[done/abort/stop]", b"stop\n")])
    assert code == 5, out
    data = record(_isolate)
    assert data["status"] == "stopped" and data["exit_code"] == 5
    assert f"to undo: dcx-runbook rollback {data['run_id']}" in plain(out)
    assert tables(db) == {"t1"}
    steps = {s["id"]: s["status"] for s in data["steps"]}
    assert steps == {"t1": "applied", "by-hand": "pending", "t2": "pending"}
    status = db.execute("SELECT status FROM dcx_runbook.runs").fetchone()
    assert status == ("stopped",)
    # The exact command it printed undoes it (no person needed: by-hand was not done).
    undone = cli("rollback", data["run_id"], "--yes", "--database-url", database_url)
    assert undone.returncode == 0, undone.stderr
    assert tables(db) == set()


def test_done_at_the_prompt_goes_on(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    args = ["run", str(runbook), "--database-url", database_url, "--yes"]
    code, out = converse(args, [(b"[done/abort/stop]", b"done\n")])  # --yes: not for a person
    assert code == 0, out
    assert tables(db) == {"t1", "t2"}
    assert record(_isolate)["steps"][1]["answers"][0]["answer"] == "done"


def test_without_a_terminal_or_confirm_preflight_refuses_with_nothing_changed(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    result = cli("run", str(runbook), "--yes", "--database-url", database_url)
    assert result.returncode == 4, result.stderr
    assert "by-hand must be done by a person" in result.stderr
    assert "--confirm by-hand" in result.stderr
    assert tables(db) == set()
    assert not (_isolate / "runs").exists() or not list((_isolate / "runs").glob("*.json"))


def test_confirm_answers_for_the_person_and_the_undo_needs_its_own(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    ran = cli("run", str(runbook), "--yes", "--database-url", database_url, "--confirm", "by-hand")
    assert ran.returncode == 0, ran.stderr
    assert tables(db) == {"t1", "t2"}
    (answer,) = record(_isolate)["steps"][1]["answers"]
    assert answer["via"] == "--confirm" and answer["answer"] == "done"
    assert ledger_answers(db, "by-hand")[0]["via"] == "--confirm"
    # Its undo is a person's too: without a terminal, refused before any undo...
    refused = cli("rollback", "--yes", "--database-url", database_url)
    assert refused.returncode == 4, refused.stderr
    assert "the undo of by-hand is a person's" in refused.stderr
    assert tables(db) == {"t1", "t2"}
    # ...and with --confirm, undone.
    undone = cli("rollback", "--yes", "--database-url", database_url, "--confirm", "by-hand")
    assert undone.returncode == 0, undone.stderr
    assert tables(db) == set()


def test_confirm_names_a_manual_step(
    runbook: Path, database_url: str, db: psycopg.Connection
) -> None:
    for bad, said in (("nope", "no such step"), ("t1", "not a manual step")):
        result = cli("run", str(runbook), "--yes", "--database-url", database_url, "--confirm", bad)
        assert result.returncode == 2, result.stderr
        assert said in result.stderr
    assert tables(db) == set()


def test_a_manual_operation_is_alone_in_its_list(tmp_path: Path) -> None:
    steps = [
        {
            "id": "mixed",
            "title": "mixed",
            "action": [
                {"kind": "manual", "instruction": "do it"},
                {"kind": "sql", "sql": "SELECT 1"},
            ],
            "irreversible": "test",
        }
    ]
    path = write_runbook(tmp_path / "mixed.yaml", "mixed", steps)
    result = cli("validate", str(path))
    assert result.returncode == 2
    assert "steps[0].action: a manual operation is the only operation of its list" in result.stderr


def test_no_answer_at_a_manual_step_stops_there_and_changes_nothing_more(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    args = ["run", str(runbook), "--database-url", database_url, "--yes"]
    code, out = converse(args, [(b"[done/abort/stop]", b"\x04")])  # end of input: Ctrl-D
    assert code == 5, out
    assert tables(db) == {"t1"}
    (answer,) = record(_isolate)["steps"][1]["answers"]
    assert answer["answer"] == "stop" and answer["via"] == "no answer"


def test_a_manual_undo_answered_on_a_terminal(
    runbook: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    ran = cli("run", str(runbook), "--yes", "--database-url", database_url, "--confirm", "by-hand")
    assert ran.returncode == 0, ran.stderr
    args = ["rollback", "--yes", "--database-url", database_url]
    code, out = converse(args, [(b"[done/stop]", b"done\n")])
    assert code == 0, out
    assert "Tell #billing it is undone." in plain(out)
    assert tables(db) == set()
    answers = record(_isolate)["steps"][1]["answers"]
    assert [(a["phase"], a["answer"], a["via"]) for a in answers] == [
        ("action", "done", "--confirm"),
        ("rollback.action", "done", "prompt"),
    ]


def test_another_machine_undoes_a_manual_step_from_the_ledger(
    runbook: Path,
    database_url: str,
    db: psycopg.Connection,
    machines: tuple[Machine, Machine, Machine],
) -> None:
    """A person's undo binds no machine: machine B, which never ran it, undoes the run from the
    target's ledger, the manual step with the person's --confirm, and the ledger keeps both
    answers."""
    a, b = machines[0], machines[1]
    ran = a.cli(
        "run", str(runbook), "--yes", "--database-url", database_url, "--confirm", "by-hand"
    )
    assert ran.returncode == 0, ran.stderr
    refused = b.cli("rollback", "--yes", "--database-url", database_url)
    assert refused.returncode == 4 and "the undo of by-hand is a person's" in refused.stderr
    undone = b.cli("rollback", "--yes", "--database-url", database_url, "--confirm", "by-hand")
    assert undone.returncode == 0, undone.stderr
    assert tables(db) == set()
    answers = ledger_answers(db, "by-hand")
    assert [(x["answer"], x["via"], x["host"]) for x in answers] == [
        ("done", "--confirm", "machine-a"),
        ("done", "--confirm", "machine-b"),
    ]
