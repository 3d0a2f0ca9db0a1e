"""`runs`: the newest first, --limit/--all/--runbook, whether each run is still in effect; with a
target given, the ledger's runs from every machine. The ledger's schema is settable."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import yaml

from tests.conftest import cli, write_runbook
from tests.ledger.conftest import CREATE_T, last
from tests.support.machines import Machine

NOTE = {
    "id": "note",
    "title": "A note in table n",
    "action": [{"kind": "sql", "sql": "INSERT INTO n VALUES (1)"}],
    "rollback": {"action": [{"kind": "sql", "sql": "DELETE FROM n"}]},
}


def rows(result_stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in result_stdout.splitlines() if line.strip()]


def test_runs_limit_all_runbook_and_in_effect(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    db.execute("CREATE TABLE n (id int)")
    note = write_runbook(tmp_path / "note.yaml", "note", [NOTE])
    make = write_runbook(tmp_path / "make.yaml", "make", [CREATE_T])
    ids = []
    for path in (note, note, make, note):
        done = cli("run", str(path), "--yes", "-o", "json", "--database-url", database_url)
        assert done.returncode == 0, done.stdout + done.stderr
        ids.append(last(done)["detail"]["run_id"])
    undo = cli("rollback", ids[2], "--yes", "-o", "json", "--database-url", database_url)
    assert undo.returncode == 0, undo.stdout + undo.stderr

    newest = rows(cli("runs", "-o", "json", "--limit", "2").stdout)
    assert [r["run_id"] for r in newest] == [ids[3], ids[2]]
    assert [(r["in_effect"], r["steps_in_effect"]) for r in newest] == [(True, 1), (False, 0)]
    assert [r["run_id"] for r in rows(cli("runs", "-o", "json", "--all").stdout)] == ids[::-1]
    only = rows(cli("runs", "-o", "json", "--runbook", "note", "--limit", "2").stdout)
    assert [r["run_id"] for r in only] == [ids[3], ids[1]]
    piped = cli("runs").stdout.splitlines()  # not a terminal: a tab-separated line per run
    assert [line.split("\t")[4] for line in piped] == ["1/1 steps", "no", "1/1 steps", "1/1 steps"]


def test_runs_with_a_target_lists_the_ledgers_runs_from_every_machine(
    tmp_path: Path, database_url: str, machines: tuple[Machine, ...]
) -> None:
    a, b, _ = machines
    path = write_runbook(tmp_path / "make.yaml", "make", [CREATE_T])
    ran = a.cli("run", str(path), "--yes", "-o", "json", "--database-url", database_url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = last(ran)["detail"]["run_id"]

    assert rows(b.cli("runs", "-o", "json").stdout) == []  # B's journal is empty
    listed = rows(b.cli("runs", "-o", "json", "--database-url", database_url).stdout)

    assert [(r["run_id"], r["source"], r["in_effect"]) for r in listed] == [
        (run_id, "ledger", True)
    ]
    assert str(listed[0]["operator"]).endswith("@machine-a")

    # B rolls it back: A's journal alone still calls it in effect; with the target given, A's
    # `runs` says what the target's ledger says.
    undo = b.cli("rollback", "--yes", "-o", "json", "--database-url", database_url)
    assert undo.returncode == 0, undo.stdout + undo.stderr
    local = rows(a.cli("runs", "-o", "json").stdout)
    assert [(r["source"], r["in_effect"]) for r in local] == [("journal", True)]
    seen = rows(a.cli("runs", "-o", "json", "--database-url", database_url).stdout)
    assert [(r["run_id"], r["source"], r["in_effect"]) for r in seen] == [(run_id, "ledger", False)]


def test_the_ledger_schema_is_settable_in_the_runbook_and_on_the_command_line(
    tmp_path: Path, database_url: str, db: psycopg.Connection, machines: tuple[Machine, ...]
) -> None:
    a, b, _ = machines
    path = write_runbook(tmp_path / "make.yaml", "make", [CREATE_T])
    spec = yaml.safe_load(path.read_text())
    spec["target"]["ledger_schema"] = "ops_ledger"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    ran = a.cli("run", str(path), "--yes", "-o", "json", "--database-url", database_url)

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert db.execute("SELECT count(*) FROM ops_ledger.runs").fetchone() == (1,)
    assert db.execute("SELECT to_regnamespace('dcx_runbook')").fetchone() == (None,)
    seen = b.cli("status", "-o", "json", "--ledger-schema", "ops_ledger",
                 "--database-url", database_url)  # fmt: skip
    assert len(json.loads(seen.stdout)["in_effect"]) == 1, seen.stdout + seen.stderr
    undo = b.cli("rollback", "--yes", "-o", "json", "--ledger-schema", "ops_ledger",
                 "--database-url", database_url)  # fmt: skip
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert db.execute("SELECT to_regclass('t')").fetchone() == (None,)
    bad = cli("status", "--ledger-schema", "Bad-Name", "--database-url", database_url)
    assert bad.returncode == 2 and "ledger schema 'Bad-Name'" in bad.stderr
