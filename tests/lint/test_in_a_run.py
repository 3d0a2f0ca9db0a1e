"""The lint in a run: findings at their step in the dry run, with what the live target says
about the table (a blocker from a real second session; an idle table says nothing of locks and a
tiny one turns the warning into a note); the confirmation's summary; waived findings with their
reasons in the journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from dcx_runbook import api
from dcx_runbook.engine.options import Options
from dcx_runbook.reporters.base import Collecting
from dcx_runbook.state.journal import Journal
from tests.conftest import cli, write_runbook

INDEX = {
    "id": "index-a",
    "title": "Index t.a",
    "done_when": [
        {"kind": "sql", "query": "SELECT to_regclass('t_a_idx') IS NOT NULL", "expect": True}
    ],
    "action": [{"kind": "sql", "sql": "CREATE INDEX t_a_idx ON t (a)"}],
    "rollback": {"action": [{"kind": "sql", "sql": "DROP INDEX t_a_idx"}]},
    "lint": {"allow": {"require-concurrent-index-deletion": "the index is new: nobody uses it"}},
}


def findings(stdout: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [e for e in events if e["event"] == "finding"]


def test_the_dry_run_says_who_holds_a_lock_on_the_table(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    db.execute("CREATE TABLE t (id bigint, a bigint)")
    db.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 20000) g")
    db.execute("ANALYZE t")
    path = write_runbook(tmp_path / "index.yaml", "index", [INDEX])
    with psycopg.connect(database_url, application_name="nightly report") as blocker:
        blocker.execute("SELECT count(*) FROM t")  # AccessShareLock, idle in transaction
        pid = blocker.info.backend_pid
        done = cli("run", str(path), "--dry-run", "-o", "json", "--database-url", database_url)

    assert done.returncode == 0, done.stdout + done.stderr
    (create,) = [
        f
        for f in findings(done.stdout)
        if f["detail"]["rule"] == "require-concurrent-index-creation"
    ]
    assert create["step"] == "index-a" and create["status"] == "warning"
    context = "\n".join(create["detail"]["context"])
    assert "t: " in context and "~20,000 rows" in context
    assert f"pid {pid} (nightly report, idle in transaction" in context
    assert "holds AccessShareLock on t: this step will wait for it" in context
    waived = [f for f in findings(done.stdout) if f["detail"]["waived"]]
    assert [f["detail"]["rule"] for f in waived] == ["require-concurrent-index-deletion"]


def test_an_idle_tiny_table_says_nothing_of_locks_and_makes_a_note(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    db.execute("CREATE TABLE t (id bigint, a bigint)")
    db.execute("INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)")
    path = write_runbook(tmp_path / "index.yaml", "index", [INDEX])

    done = cli("run", str(path), "--dry-run", "-o", "json", "--database-url", database_url)

    assert done.returncode == 0, done.stdout + done.stderr
    (create,) = [
        f
        for f in findings(done.stdout)
        if f["detail"]["rule"] == "require-concurrent-index-creation"
    ]
    context = "\n".join(create["detail"]["context"])
    assert "holds" not in context and "waits for" not in context
    assert create["status"] == "note" and "a note, not a warning" in context


class Asking(Collecting):
    def __init__(self) -> None:
        super().__init__(answer=True)
        self.questions: list[str] = []

    def confirm(self, question: str) -> bool:
        self.questions.append(question)
        return True


def test_the_confirmation_summarises_and_the_journal_keeps_the_waivers(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    db.execute("CREATE TABLE t (id bigint, a bigint)")
    path = write_runbook(tmp_path / "index.yaml", "index", [INDEX])
    reporter = Asking()
    journal = Journal(tmp_path / "state")

    outcome = api.run(str(path), reporter=reporter, database_url=database_url,
                      options=Options(), journal=journal)  # fmt: skip

    assert outcome.exit_code == 0, outcome.message
    (question,) = reporter.questions
    assert question.endswith("\nlint: 1 warning, 1 waived\nGo ahead?"), question
    # Every finding, the waived one with its reason, was said before the question.
    said = [e for e in reporter.events if e.type == "finding"]
    assert len(said) == 2 and any("[waived: the index is new" in (e.message or "") for e in said)
    kept = journal.load(str(outcome.run_id)).data["lint"]
    assert {(f["rule"], f["waived"]) for f in kept} == {
        ("require-concurrent-index-creation", None),
        ("require-concurrent-index-deletion", "the index is new: nobody uses it"),
    }
