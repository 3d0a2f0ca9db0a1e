"""Failures the engine did not foresee still end in an unwind; an undo never runs twice nor for
a change that never happened; the database guard can't be emptied.

Each test here reproduces a defect found in review: before its fix, a run left a change applied
behind an exit code saying everything was undone, or undid a change twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from dcx_runbook import api
from dcx_runbook.engine.resolving import resolve_for
from dcx_runbook.engine.rollback import journaled_runbook, rollback_run
from dcx_runbook.engine.session import Options
from dcx_runbook.errors import ExitCode
from dcx_runbook.reporters.base import Collecting, Event, Reporter
from dcx_runbook.state.journal import Journal
from dcx_runbook.target import db as dcx_db
from tests.conftest import write_runbook
from tests.support import inprocess
from tests.support.blocker import lock_held
from tests.support.ledger import CREDIT, balance, wallet

CREATE_T = {
    "id": "create-t",
    "title": "create table t",
    "action": [{"kind": "sql", "sql": "CREATE TABLE t (x int)"}],
    "verify": [{"kind": "sql", "query": "SELECT to_regclass('t') IS NOT NULL", "expect": True}],
    "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t"}]},
}


def run_in_process(
    path: Path,
    url: str | None,
    state: Path | None = None,
    reporter: Reporter | None = None,
    **cli: Any,
) -> inprocess.Done:
    """`dcx-runbook run PATH --yes --database-url URL ...` in this process (tests/support/
    inprocess.py): its exit code, events and, for invalid input, the CLI's error line."""
    return inprocess.run(path, yes=True, database_url=url, state=state, reporter=reporter, **cli)


def rollback_in_process(run_id: str | None, url: str, state: Path) -> inprocess.Done:
    return inprocess.rollback(run_id, yes=True, database_url=url, state=state)


def assert_unwound(path: Path, url: str, db: psycopg.Connection, said: str) -> None:
    """A run of `path` fails with `said`, unwinds (table t is gone) and exits 1 (in this
    process, an exception the CLI would show as a traceback fails the call itself)."""
    done = run_in_process(path, url)
    assert done.exit_code == ExitCode.UNDONE, done.said()
    assert "Traceback" not in done.printed()
    assert said in done.said()
    assert db.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_a_check_on_null_fails_the_step_and_unwinds(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """`ge: 0` against NULL (max() of an empty table) is a failed check, not a TypeError that
    left table t behind with the run journaled as still running."""
    step = {
        "id": "check-max",
        "title": "max is not negative",
        "precheck": [{"kind": "sql", "query": "SELECT max(x) FROM t", "expect": {"ge": 0}}],
        "action": [{"kind": "sql", "sql": "INSERT INTO t VALUES (1)"}],
        "rollback": {"action": [{"kind": "sql", "sql": "DELETE FROM t"}]},
    }
    path = write_runbook(tmp_path / "null.yaml", "null-check", [CREATE_T, step])
    assert_unwound(path, database_url, db, "value None, expected >= 0")


def test_an_edit_whose_replacement_cant_be_made_fails_the_step_and_unwinds(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """A group reference the pattern doesn't have (`\\2` with one group) raised re.error at the
    edit, out of every handler: traceback, table t left behind."""
    target = tmp_path / "app.conf"
    target.write_text("mode = dev\n")
    edit = {
        "id": "edit",
        "title": "edit app.conf",
        "action": [
            {
                "kind": "file",
                "path": str(target),
                "edits": [{"replace": "mode = (dev)", "with": "mode = \\2"}],
            }
        ],
        "rollback": {"restore_files": True},
    }
    path = write_runbook(tmp_path / "edit.yaml", "bad-group", [CREATE_T, edit])
    assert_unwound(path, database_url, db, "invalid group reference")
    assert target.read_text() == "mode = dev\n"


class FailsOnce(Collecting):
    """A reporter with a bug: it raises on one event. The engine must still unwind."""

    def __init__(self, event_type: str, step: str):
        super().__init__()
        self.trigger: tuple[str, str] | None = (event_type, step)

    def emit(self, event: Event) -> None:
        if self.trigger == (event.type, event.step):
            self.trigger = None
            raise RuntimeError("reporter bug")
        super().emit(event)


def test_an_unexpected_exception_mid_run_still_unwinds(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    wallet(db)
    second = {**CREATE_T, "id": "second"}
    path = write_runbook(tmp_path / "rb.yaml", "unexpected", [CREDIT, second])
    reporter = FailsOnce("step_started", "second")
    outcome = run_in_process(path, database_url, tmp_path / "state", reporter)
    assert outcome.exit_code == ExitCode.UNDONE
    assert "unexpected error RuntimeError: reporter bug" in outcome.message
    assert balance(db) == 100
    record = Journal(tmp_path / "state").load(outcome.run_id)
    assert record.data["status"] == "failed"
    assert [s["status"] for s in record.data["steps"]] == ["rolled_back", "failed"]


@pytest.mark.slow
def test_a_reader_that_goes_away_does_not_stop_the_run(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """`dcx-runbook run -o json | head -n 1`: the closed pipe used to end the process between
    two steps, nothing undone, the journal saying "running"."""
    wallet(db)
    slow = {
        "id": "slow",
        "title": "a precheck that takes a while",
        "precheck": [{"kind": "sql", "query": "SELECT 1 FROM pg_sleep(0.5)", "expect": 1}],
        "action": [{"kind": "sql", "sql": "CREATE TABLE t (x int)"}],
        "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t"}]},
    }
    path = write_runbook(tmp_path / "rb.yaml", "closed-pipe", [CREDIT, slow])
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcx_runbook", "run", str(path), "--yes", "-o", "json"]
        + ["--database-url", database_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert b'"run_started"' in proc.stdout.readline()
    proc.stdout.close()  # the reader goes away while the run works
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == ExitCode.OK, stderr
    assert stderr == ""
    assert balance(db) == 110
    assert db.execute("SELECT to_regclass('t') IS NOT NULL").fetchone() == (True,)
    [(_, record)] = list(Journal(tmp_path / "state").records())
    assert isinstance(record, dict) and record["status"] == "succeeded"


def test_rollback_rereads_the_record_under_its_lock(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """A rollback that read the record before the run (or another rollback) undid it must not
    undo it again: it used to work from its first reading (balance 90)."""
    wallet(db)
    path = write_runbook(tmp_path / "rb.yaml", "double-undo", [CREDIT])
    state = tmp_path / "state"
    outcome = run_in_process(path, database_url, state)
    assert outcome.exit_code == ExitCode.OK and balance(db) == 110
    journal = Journal(state)
    stale = journal.load(outcome.run_id)  # read now, used after another rollback ran
    first = rollback_in_process(outcome.run_id, database_url, state)
    assert first.status == "rolled_back" and balance(db) == 100
    resolved = resolve_for(journaled_runbook(stale), [], None, database_url)
    late = rollback_run(stale, journal, lambda *_: resolved, Options(yes=True), Collecting())
    assert late.exit_code == ExitCode.OK
    assert late.status == "nothing_to_undo", late.message
    assert balance(db) == 100


def test_a_transaction_that_never_committed_is_not_undone(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """A transactional step failing before its shell operation ran: its transaction rolled
    back, so its rollback action (balance - 10) must not run (it did: balance 90)."""
    wallet(db)
    marker = tmp_path / "marker"
    step = {
        **CREDIT,
        "action": [
            *CREDIT["action"],
            {"kind": "sql", "sql": "SELECT 1/0"},
            {"kind": "shell", "argv": ["touch", str(marker)]},
        ],
    }
    path = write_runbook(tmp_path / "rb.yaml", "never-committed", [step])
    outcome = run_in_process(path, database_url, tmp_path / "state")
    assert outcome.exit_code == ExitCode.UNDONE, outcome.message
    assert balance(db) == 100
    assert not marker.exists()


@pytest.mark.slow  # waits out lock_timeout
def test_a_shell_operation_runs_once_across_lock_retries(
    tmp_path: Path, database_url: str, db: psycopg.Connection, dbname: str
) -> None:
    """In a transactional step, a lock timeout rolls back the sql; the shell command before it
    stays done and must not run again on the retry (it ran once per attempt)."""
    db.execute("CREATE TABLE busy (id int)")
    counter = tmp_path / "counter"
    step = {
        "id": "append-then-alter",
        "title": "append a line, then alter",
        "lock_timeout": "200ms",
        "attempts": 10,
        "action": [
            {"kind": "shell", "argv": ["sh", "-c", f"echo ran >> {counter}"]},
            {"kind": "sql", "sql": "ALTER TABLE busy ADD COLUMN note text"},
        ],
        "rollback": {"action": [{"kind": "sql", "sql": "ALTER TABLE busy DROP COLUMN note"}]},
    }
    path = write_runbook(tmp_path / "rb.yaml", "retry-shell", [step])
    reporter = Collecting()
    with lock_held(database_url, "busy"):
        outcome = run_in_process(path, database_url, tmp_path / "state", reporter)
    assert outcome.exit_code == ExitCode.OK, outcome.message
    assert any(e.type == "lock_wait" for e in reporter.events), "the blocker was never met"
    assert counter.read_text() == "ran\n"


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_expected_database_is_invalid_input(
    tmp_path: Path, database_url: str, value: str
) -> None:
    """`--var expected_database=$DB` with $DB unset emptied a defaulted guard and turned it
    off: the run went on against whatever database the URL named."""
    path = tmp_path / "guarded.yaml"
    path.write_text(
        "name: guarded\ntitle: guarded\n"
        "vars:\n"
        "  database_url: {required: true, secret: true, env: DATABASE_URL}\n"
        "  expected_database: {default: billing}\n"
        "target: {url: '${database_url}', database: '${expected_database}'}\n"
        "steps:\n"
        "  - id: create-t\n    title: create t\n"
        "    action: [{kind: sql, sql: 'CREATE TABLE t (x int)'}]\n"
        "    rollback: {action: [{kind: sql, sql: 'DROP TABLE t'}]}\n"
    )
    done = run_in_process(path, database_url, var=[f"expected_database={value}"])
    assert done.exit_code == ExitCode.INVALID, done.said()
    assert "target.database" in done.error and "is empty" in done.error
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
    assert not (tmp_path / "state" / "runs").exists()


def test_a_state_directory_that_cant_be_made_refuses_before_any_change(
    tmp_path: Path, database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing has changed when the journal can't be started: exit 4, not 3 ("manual
    intervention needed")."""
    wallet(db)
    path = write_runbook(tmp_path / "rb.yaml", "no-state", [CREDIT])
    in_the_way = tmp_path / "state-file"
    in_the_way.write_text("a file where the state directory should be\n")
    monkeypatch.setenv("DCX_RUNBOOK_STATE_DIR", str(in_the_way))
    done = run_in_process(path, database_url)  # its Journal() reads $DCX_RUNBOOK_STATE_DIR
    assert done.exit_code == ExitCode.REFUSED, done.said()
    assert "can't create the state directory" in done.said()
    assert "nothing was changed" in done.said()
    assert balance(db) == 100
    assert in_the_way.read_text() == "a file where the state directory should be\n"


def test_a_symlinked_file_is_edited_through_its_link_and_restored(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """The edit replaced the link with a regular file while the journal kept the pre-image of
    the file it points to: after the unwind, the link was gone and held the new content."""
    wallet(db)
    shared = tmp_path / "shared"
    shared.mkdir()
    real = shared / "backend.env"
    real.write_bytes(b'DATABASE_URL="old"\nOTHER=1\n')
    app = tmp_path / "app"
    app.mkdir()
    link = app / "backend.env"
    link.symlink_to("../shared/backend.env")
    edit = {
        "id": "point-env",
        "title": "point the env file at the new database",
        "action": [{"kind": "env_file", "path": str(link), "set": {"DATABASE_URL": "new"}}],
        "rollback": {"restore_files": True},
    }
    failing = {**CREATE_T, "verify": [{"kind": "sql", "query": "SELECT 1", "expect": 2}]}
    state = tmp_path / "state"
    path = write_runbook(tmp_path / "rb.yaml", "symlinked", [edit, failing])
    outcome = run_in_process(path, database_url, state)
    assert outcome.exit_code == ExitCode.UNDONE, outcome.message
    assert link.is_symlink() and real.read_bytes() == b'DATABASE_URL="old"\nOTHER=1\n'

    path = write_runbook(tmp_path / "ok.yaml", "symlinked", [edit])
    assert run_in_process(path, database_url, state).exit_code == ExitCode.OK
    assert link.is_symlink() and b'DATABASE_URL="new"' in real.read_bytes()
    undo = rollback_in_process(None, database_url, state)
    assert undo.exit_code == ExitCode.OK, undo.message
    assert link.is_symlink() and real.read_bytes() == b'DATABASE_URL="old"\nOTHER=1\n'


def test_an_env_file_with_a_line_it_cant_read_is_invalid_input(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """python-dotenv skipped the unreadable line with a warning and the run went ahead: that
    line might have been the DATABASE_URL the operator meant."""
    wallet(db)
    path = write_runbook(tmp_path / "rb.yaml", "env-file", [CREDIT])
    env = tmp_path / "prod.env"
    env.write_text(f'DATABASE_URL={database_url}\nOTHER_URL="postgresql://u:S3cretPw@h/db\n')
    done = run_in_process(path, None, env_file=env)
    assert done.exit_code == ExitCode.INVALID, done.said()
    assert "line(s) 2 can't be read as KEY=VALUE" in done.error
    assert "S3cretPw" not in done.printed()  # events, error, any print or log record
    assert balance(db) == 100


def test_a_check_expecting_null_survives_the_journal_and_rollback(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """`expect: null` equals the field's default: the journaled spec dropped it, and `rollback`
    could not read the runbook back (exit 3), or read a check that always passes."""
    step = {
        **CREATE_T,
        "rollback": {
            "action": [{"kind": "sql", "sql": "DROP TABLE t"}],
            "verify": [
                {
                    "kind": "sql",
                    "name": "t gone",
                    "query": "SELECT to_regclass('t')::text",
                    "expect": None,
                }
            ],
        },
    }
    state = tmp_path / "state"
    path = write_runbook(tmp_path / "rb.yaml", "null-expect", [step])
    outcome = run_in_process(path, database_url, state)
    assert outcome.exit_code == ExitCode.OK, outcome.message
    spec = Journal(state).load(outcome.run_id).data["runbook"]["spec"]
    assert spec["steps"][0]["rollback"]["verify"][0]["expect"] is None
    undo = rollback_in_process(None, database_url, state)
    assert undo.exit_code == ExitCode.OK, undo.message
    assert db.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_a_dry_run_neither_takes_nor_waits_for_the_run_lock(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """The docs say a dry run does everything but take the lock; it took it, so a dry run kept
    the real run out (exit 4 naming a run id that was never journaled), and vice versa."""
    wallet(db)
    path = write_runbook(tmp_path / "rb.yaml", "dry-lock", [CREDIT])
    with psycopg.connect(database_url, autocommit=True) as holder:  # a real run's lock
        holder.execute(
            "SELECT pg_advisory_lock(%s, %s)", (dcx_db.LOCK_NAMESPACE, dcx_db.lock_key("dry-lock"))
        )
        dry = run_in_process(path, database_url, dry_run=True)
        real = run_in_process(path, database_url)
    assert dry.exit_code == ExitCode.OK, dry.said()
    assert real.exit_code == ExitCode.REFUSED and "holds the lock" in real.said()
    assert balance(db) == 100


def test_a_dry_run_does_not_call_a_step_done_on_a_check_it_could_not_run(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """A done_when check the dry run can't evaluate (a shell check not marked pure) counted as
    holding: the preview said "already done" for a step the real run then applied."""
    marker = tmp_path / "marker"
    step = {
        **CREATE_T,
        "done_when": [
            {"kind": "shell", "name": "marked", "argv": ["test", "-e", str(marker)]},
        ],
    }
    path = write_runbook(tmp_path / "rb.yaml", "dry-deferred", [step])
    dry = run_in_process(path, database_url, dry_run=True)
    assert dry.exit_code == ExitCode.OK, dry.said()
    [step_end] = [e for e in dry.events if e["event"] == "step_finished"]
    assert step_end["status"] == "would_apply", step_end
    assert db.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_a_value_captured_by_preflight_is_there_for_a_later_rollback(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """Preflight captures were not journaled: the run's own unwind could use them, a later
    `rollback` failed with "undefined variable" (exit 3)."""
    db.execute("CREATE TABLE settings (answer int)")
    db.execute("INSERT INTO settings VALUES (42)")
    step = {
        **CREATE_T,
        "rollback": {
            "precheck": [
                {"kind": "sql", "query": "SELECT answer FROM settings", "expect": "${answer}"}
            ],
            "action": [{"kind": "sql", "sql": "DROP TABLE t"}],
        },
    }
    path = tmp_path / "rb.yaml"
    write_runbook(path, "preflight-capture", [step])
    document = yaml.safe_load(path.read_text())
    document["preflight"] = [
        {"kind": "sql", "query": "SELECT answer FROM settings", "capture": "answer"}
    ]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    state = tmp_path / "state"
    outcome = run_in_process(path, database_url, state)
    assert outcome.exit_code == ExitCode.OK
    # The rollback knows only the journal (nothing is kept in memory between two commands).
    assert Journal(state).load(outcome.run_id).data["captured"] == {"answer": 42}
    undo = rollback_in_process(None, database_url, state)
    assert undo.exit_code == ExitCode.OK, undo.said()
    assert db.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_a_rollback_keeps_how_the_run_itself_ended(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """The rollback's outcome overwrote the run's status, exit code, message and end time:
    `runs` and `log` then showed a succeeded run as "undo_incomplete" or ending at the
    rollback's time."""
    wallet(db)
    state = tmp_path / "state"
    path = write_runbook(tmp_path / "rb.yaml", "keep-outcome", [CREDIT])
    outcome = run_in_process(path, database_url, state)
    assert outcome.exit_code == ExitCode.OK
    before = Journal(state).load(outcome.run_id).data
    assert rollback_in_process(None, database_url, state).exit_code == ExitCode.OK
    after = Journal(state).load(outcome.run_id).data
    for key in ("status", "exit_code", "message", "finished_at"):
        assert after[key] == before[key], key
    [rolled] = after["rollbacks"]
    assert rolled["status"] == "rolled_back" and rolled["exit_code"] == 0
    assert "rolled back" in rolled["message"]
    # What `runs --output json` prints, one row a line: the run's status and its rollback's.
    row = api.runs()[0]
    assert (row["status"], row["rollback_status"]) == ("succeeded", "rolled_back")


def test_an_unwind_past_an_irreversible_step_says_it_was_left(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """It said "every change was undone: the system is as it was" with the irreversible
    step's change still in place."""
    marker = tmp_path / "marker"
    touch = {
        "id": "touch",
        "title": "touch a marker",
        "action": [{"kind": "shell", "argv": ["touch", str(marker)]}],
        "irreversible": "a marker nobody minds",
    }
    failing = {**CREATE_T, "verify": [{"kind": "sql", "query": "SELECT 1", "expect": 2}]}
    path = write_runbook(tmp_path / "rb.yaml", "irreversible", [touch, failing])
    outcome = run_in_process(path, database_url, tmp_path / "state")
    assert outcome.exit_code == ExitCode.UNDONE
    assert (
        "every change was undone but those of the step(s) declared irreversible "
        "(touch: a marker nobody minds)"
    ) in outcome.message
    assert "the system is as it was" not in outcome.message
    assert marker.exists()
