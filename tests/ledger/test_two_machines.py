"""Any engineer on any machine sees and undoes the last fix: the target's ledger holds it.

Two machines are two state directories and two host names (tests/ledger/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from tests.conftest import schema_dump, write_runbook
from tests.ledger.conftest import CREATE_T, INDEX_T, events, last, ledger_steps
from tests.support.ledger import CREDIT, balance, wallet
from tests.support.machines import Machine

# A step without done_when, repeated by every run: credit 10 more, whatever the balance.
CREDIT_AGAIN = {
    **CREDIT,
    "precheck": [{"kind": "sql", "query": "SELECT balance FROM wallet", "capture": "before"}],
    "verify": [{"kind": "sql", "query": "SELECT balance - ${before} FROM wallet", "expect": 10}],
}


def test_a_run_from_a_is_seen_and_undone_from_b_which_has_no_record_of_it(
    tmp_path: Path, database_url: str, db: psycopg.Connection, machines: tuple[Machine, ...]
) -> None:
    a, b, _ = machines
    path = write_runbook(tmp_path / "fix.yaml", "fix", [CREATE_T, INDEX_T])
    before = schema_dump(database_url)

    ran = a.cli("run", str(path), "--yes", "-o", "json", "--database-url", database_url,
                "--reason", "INC-42")  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = last(ran)["detail"]["run_id"]
    assert schema_dump(database_url) != before

    # B has never heard of the run; the target's ledger has.
    seen = b.cli("status", "-o", "json", "--database-url", database_url)
    assert seen.returncode == 0, seen.stderr
    status = json.loads(seen.stdout)
    assert [r["run_id"] for r in status["in_effect"]] == [run_id]
    (run,) = status["in_effect"]
    assert run["operator"].endswith("@machine-a") and run["reason"] == "INC-42"
    assert run["source"] == "ledger"
    assert [(s["step_id"], s["status"], s["holds"]) for s in run["steps"]] == [
        ("index-t", "applied", True),
        ("create-t", "applied", True),
    ]
    assert status["live"] == [] and status["drift"] == []
    assert not (b.state / "runs").exists()  # status writes nothing anywhere

    # B's dry run says what it would undo, and writes nothing anywhere.
    ledger_before = ledger_steps(database_url)
    preview = b.cli("rollback", "--dry-run", "-o", "json", "--database-url", database_url)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert last(preview)["message"] == f"dry run: would undo run {run_id}: index-t, create-t"
    assert not b.state.exists() and ledger_steps(database_url) == ledger_before

    undo = b.cli("rollback", "--yes", "-o", "json", "--database-url", database_url)

    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert [e["step"] for e in events(undo.stdout) if e["event"] == "step_undone"] == [
        "index-t",
        "create-t",
    ]
    assert last(undo)["status"] == "rolled_back"
    assert "is as it was before run" in last(undo)["message"]
    assert schema_dump(database_url) == before
    # The ledger says who undid it; A learns of it the next time it reaches the target.
    assert set(ledger_steps(database_url).values()) == {"rolled_back"}
    rollbacks = db.execute(
        "SELECT host, status, session_user_name FROM dcx_runbook.rollbacks WHERE run_id = %s",
        (run_id,),
    ).fetchall()
    assert rollbacks == [("machine-b", "rolled_back", "postgres")]
    again = a.cli("rollback", "--yes", "-o", "json", "--database-url", database_url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert last(again)["status"] == "nothing_to_undo"
    said = [e["message"] for e in events(again.stdout) if e["event"] == "log"]
    assert any("the ledger rolled_back" in m and "create-t" in m for m in said), said
    listed = a.cli("runs", "-o", "json")
    assert json.loads(listed.stdout.splitlines()[0])["in_effect"] is False


def test_run_run_again_then_a_bare_rollback_from_a_third_machine_undoes_both_runs(
    tmp_path: Path, database_url: str, db: psycopg.Connection, machines: tuple[Machine, ...]
) -> None:
    a, b, c = machines
    wallet(db)
    path = write_runbook(tmp_path / "credit.yaml", "credit", [CREATE_T, CREDIT_AGAIN])
    before = schema_dump(database_url)
    args = ("run", str(path), "--yes", "-o", "json", "--database-url", database_url)
    first, second = a.cli(*args), b.cli(*args)
    assert first.returncode == 0 and second.returncode == 0, first.stdout + second.stdout
    assert balance(db) == 120  # the second run found t made, and credited again

    undo = c.cli("rollback", "--yes", "-o", "json", "--database-url", database_url)

    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert [e["step"] for e in events(undo.stdout) if e["event"] == "step_undone"] == [
        "credit",
        "credit",
        "create-t",
    ]
    assert balance(db) == 100
    assert schema_dump(database_url) == before
    assert last(undo)["detail"]["still_applied_runs"] == []
