"""`dcx-runbook status`: what is applied on a target now, a live run from another process, and
drift when the fix is undone behind the tool's back."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psycopg

from tests.conftest import cli, write_runbook
from tests.ledger.conftest import CREATE_T
from tests.support.machines import Machine

WAIT = 'touch "$1"; while [ ! -e "$2" ]; do sleep 0.05; done'
DROP_UNIQUE = {
    "id": "drop-unique",
    "title": "Drop the unique index on t.note",
    "done_when": [
        {
            "kind": "sql",
            "name": "no unique index on t.note",
            "query": "SELECT count(*) FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = 't'::regclass AND i.indisunique AND a.attname = 'note'",
            "expect": 0,
        }
    ],
    "action": [{"kind": "sql", "sql": "DROP INDEX t_note_key"}],
    "verify": [
        {"kind": "sql", "query": "SELECT to_regclass('t_note_key') IS NULL", "expect": True}
    ],
    "rollback": {"action": [{"kind": "sql", "sql": "CREATE UNIQUE INDEX t_note_key ON t (note)"}]},
}


def test_status_shows_a_live_run_of_another_process_and_what_it_applied(
    tmp_path: Path, database_url: str, machines: tuple[Machine, ...]
) -> None:
    a, b, _ = machines
    ready, go = tmp_path / "ready", tmp_path / "go"
    waiting = {
        "id": "wait",
        "title": "Wait for the test",
        "action": [{"kind": "shell", "argv": ["sh", "-c", WAIT, "sh", str(ready), str(go)]}],
        "rollback": {"action": [{"kind": "shell", "argv": ["true"]}]},
    }
    path = write_runbook(tmp_path / "slow.yaml", "slow", [CREATE_T, waiting])
    proc = subprocess.Popen(
        a.argv("run", str(path), "--yes", "-o", "json", "--database-url", database_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"DCX_RUNBOOK_STATE_DIR": str(a.state), "PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run never waited"
            time.sleep(0.05)

        seen = b.cli("status", "-o", "json", "--database-url", database_url)

        assert seen.returncode == 0, seen.stderr
        status = json.loads(seen.stdout)
        (live,) = status["live"]
        assert live["what"] == "run" and live["runbook"] == "slow"
        assert live["operator"].endswith("@machine-a") and live["host"] == "machine-a"
        assert live["pid"] == proc.pid and live["backend_pid"]
        (run,) = status["in_effect"]
        assert run["run_id"] == live["run_id"]
        assert [(s["step_id"], s["status"]) for s in run["steps"]] == [
            ("wait", "action_started"),
            ("create-t", "applied"),
        ]
        human = b.cli("status", "--database-url", database_url)
        assert f"run: run {live['run_id']} of slow by" in human.stdout, human.stdout
    finally:
        go.touch()
        proc.wait(timeout=60)
    assert proc.returncode == 0
    after = json.loads(b.cli("status", "-o", "json", "--database-url", database_url).stdout)
    assert after["live"] == []


def test_status_flags_drift_when_the_fix_is_undone_behind_the_tools_back(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    db.execute("CREATE TABLE t (id int, note text)")
    db.execute("CREATE UNIQUE INDEX t_note_key ON t (note)")
    path = write_runbook(tmp_path / "fix.yaml", "fix", [DROP_UNIQUE])
    ran = cli("run", str(path), "--yes", "-o", "json", "--database-url", database_url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    clean = json.loads(cli("status", "-o", "json", "--database-url", database_url).stdout)
    assert clean["drift"] == [] and clean["in_effect"][0]["steps"][0]["holds"] is True

    db.execute("CREATE UNIQUE INDEX t_note_key ON t (note)")  # someone undid the fix by hand

    seen = cli("status", "-o", "json", "--database-url", database_url)
    status = json.loads(seen.stdout)
    (drift,) = status["drift"]
    assert drift["step"] == "drop-unique"
    assert "no longer holds" in drift["note"] and "no unique index on t.note" in drift["note"]
    human = cli("status", "--database-url", database_url)
    assert "DRIFT" in human.stdout and "1 step(s) applied but no longer holding" in human.stdout
