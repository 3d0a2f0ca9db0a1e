"""The engine end to end against a real PostgreSQL: in this process through the library the CLI
calls (tests/support/inprocess.py), and through the real CLI in a real process where the CLI is
what is tested: one clean run and rollback, the refusal without a terminal, `runs` and `log`,
what `--help` imports."""

from __future__ import annotations

import json

import psycopg
import pytest

from dcx_runbook import api
from tests.conftest import cli, schema_dump, snapshot
from tests.engine.conftest import MIXED, Mixed, events, validate_events
from tests.support import inprocess


def finished(result) -> dict:  # type: ignore[no-untyped-def]
    return events(result.stdout)[-1]


def test_clean_run_then_rollback_restores_schema_and_files(mixed: Mixed) -> None:
    schema_before, files_before = schema_dump(mixed.url), snapshot(*mixed.files)

    result = mixed.run()
    assert result.returncode == 0, result.stderr + result.stdout
    assert finished(result)["status"] == "succeeded"
    assert "still_applied" not in finished(result)["detail"]  # only when something is (issue 18)
    validate_events(events(result.stdout))  # the real process's stdout, as documented
    assert schema_dump(mixed.url) != schema_before
    assert b"APP_MODE=production\n" in (mixed.work / "app.env").read_bytes()  # its bare style
    assert (mixed.work / "marker").exists()

    undo = mixed.rollback()
    assert undo.returncode == 0, undo.stderr + undo.stdout
    validate_events(events(undo.stdout))
    assert [e["step"] for e in events(undo.stdout) if e["event"] == "step_undone"] == [
        "add-column",
        "edit-config",
        "env-setting",
        "create-table",
    ]
    assert schema_dump(mixed.url) == schema_before
    assert snapshot(*mixed.files) == files_before

    again = mixed.rollback()
    assert again.returncode == 0
    assert "nothing" in finished(again)["message"]


@pytest.mark.parametrize(
    ("phase", "var"),
    [("precheck", "step3_precheck=no"), ("action", "step3_exit=3"), ("verify", "step3_verify=no")],
)
def test_failure_in_each_phase_of_step_3_unwinds_everything(
    mixed: Mixed, phase: str, var: str
) -> None:
    schema_before, files_before = schema_dump(mixed.url), snapshot(*mixed.files)

    result = mixed.run_in_process(var=[var])

    assert result.exit_code == 1, result.said()
    stream = result.events
    unwind = next(e for e in stream if e["event"] == "unwind_started")
    assert unwind["step"] == "edit-config"
    assert f"({phase})" in unwind["message"]
    undone = [e["step"] for e in stream if e["event"] == "step_undone"]
    expected = ["env-setting", "create-table"]
    if phase != "precheck":
        expected.insert(0, "edit-config")  # its action began, so it is undone too
    assert undone == expected
    assert "the system is as it was" in stream[-1]["message"]
    assert schema_dump(mixed.url) == schema_before
    assert snapshot(*mixed.files) == files_before
    assert not any(e["step"] == "add-column" for e in stream if e["event"] == "step_started")


def test_failing_undo_stops_exits_3_and_rollback_resumes(mixed: Mixed) -> None:
    schema_before, files_before = schema_dump(mixed.url), snapshot(*mixed.files)

    result = mixed.run_in_process(var=["step3_verify=no", "undo_exit=1"])

    assert result.exit_code == 3, result.said()
    end = result.finished
    assert end["status"] == "undo_incomplete"
    assert end["detail"]["still_applied"] == ["create-table", "env-setting", "edit-config"]
    run_id = end["detail"]["run_id"]
    assert f"dcx-runbook rollback {run_id}" in end["message"]
    assert schema_dump(mixed.url) != schema_before  # the unwind stopped: widgets is still there

    resumed = mixed.rollback_in_process(run_id, var=["undo_exit=0"])

    assert resumed.exit_code == 0, resumed.said()
    assert schema_dump(mixed.url) == schema_before
    assert snapshot(*mixed.files) == files_before


def test_dry_run_changes_nothing_and_names_every_step(mixed: Mixed, _isolate) -> None:  # type: ignore[no-untyped-def]
    schema_before, files_before = schema_dump(mixed.url), snapshot(*mixed.files)

    result = mixed.run_in_process(dry_run=True)

    assert result.exit_code == 0, result.said()
    said = result.said()
    started = [e["step"] for e in result.events if e["event"] == "step_started"]
    assert started == ["create-table", "env-setting", "edit-config", "add-column"]
    assert "CREATE TABLE widgets" in said
    assert "+APP_MODE=production" in said  # the real diff, computed in memory
    assert "+enabled = true" in said
    assert "can't be evaluated yet" in said
    assert schema_dump(mixed.url) == schema_before
    assert snapshot(*mixed.files) == files_before
    assert api.runs() == []  # `runs` says "no runs yet"
    assert not (_isolate / "runs").exists() or not list((_isolate / "runs").glob("*.json"))


def test_second_run_reports_every_step_already_done(mixed: Mixed) -> None:
    assert mixed.run_in_process().exit_code == 0
    schema_after, files_after = schema_dump(mixed.url), snapshot(*mixed.files)

    again = mixed.run_in_process()

    assert again.exit_code == 0, again.said()
    statuses = {e["step"]: e["status"] for e in again.events if e["event"] == "step_finished"}
    assert statuses == dict.fromkeys(
        ["create-table", "env-setting", "edit-config", "add-column"], "already_done"
    )
    assert not [e for e in again.events if e["event"] == "operation"]
    assert schema_dump(mixed.url) == schema_after
    assert snapshot(*mixed.files) == files_after


def test_wrong_database_is_refused_with_exit_4(mixed: Mixed) -> None:
    files_before = snapshot(*mixed.files)
    result = inprocess.run(
        MIXED,
        yes=True,
        database_url=mixed.url,
        var=["expected_database=production_db", f"workdir={mixed.work}"],
    )
    assert result.exit_code == 4
    assert "expects 'production_db'" in result.said()
    # The variable target.database names, said exactly (issue 18).
    assert "if that database is really meant, pass --var expected_database=NAME" in result.said()
    assert snapshot(*mixed.files) == files_before
    assert "Traceback" not in result.printed()  # here an exception would have failed the call


def test_no_terminal_and_no_yes_is_refused_with_exit_4(mixed: Mixed) -> None:
    result = cli("run", MIXED, *mixed.args())  # human output, stdin not a terminal
    assert result.returncode == 4
    said = " ".join(result.stderr.split())
    assert "not confirmed: nobody could be asked (no terminal; pass --yes)" in said
    assert "recorded as run" not in said
    assert schema_dump(mixed.url).count("widgets") == 0


def test_unknown_variable_and_skip_are_invalid_input_exit_2(mixed: Mixed) -> None:
    # The exit code and error line are the CLI's own (`main`), for the error the library raised.
    bad_var = mixed.run_in_process(var=["nope=1"])
    assert bad_var.exit_code == 2
    assert "unknown variable(s) nope" in bad_var.error
    bad_skip = mixed.run_in_process(skip=["nope"])
    assert bad_skip.exit_code == 2
    assert "--skip nope: no such step" in bad_skip.error
    missing = inprocess.run(MIXED, yes=True, var=["workdir=/x"])
    assert missing.exit_code == 2
    assert "missing required variable(s): database_url" in missing.error


def test_invalid_input_with_json_output_still_ends_with_run_finished(mixed: Mixed) -> None:
    """A machine reading -o json sees every command end with run_finished, invalid input
    (exit 2, before any run) included (issue 18)."""
    for args in (["--skip", "nope"], ["--var", "nope=1"], ["--canary", "2"]):
        done = mixed.run(*args)
        assert done.returncode == 2, done.stderr
        end = finished(done)
        assert end["event"] == "run_finished" and end["status"] == "invalid"
        assert end["detail"] == {"run_id": None, "exit_code": 2}
        validate_events(events(done.stdout))
    missing = cli("run", "no-such-runbook", "-o", "json")
    assert finished(missing)["status"] == "invalid"
    rollback = cli("rollback", "no-such-run", "-o", "json")
    assert rollback.returncode == 2 and finished(rollback)["detail"]["exit_code"] == 2


def test_skip_is_journaled_and_reported(mixed: Mixed) -> None:
    result = mixed.run_in_process(skip=["env-setting"])
    assert result.exit_code == 0, result.said()
    assert b"APP_MODE=dev" in (mixed.work / "app.env").read_bytes()
    run_id = result.finished["detail"]["run_id"]
    record = json.loads(api.log(run_id, "json"))  # what `log RUN_ID --format json` prints
    assert record["skipped"] == ["env-setting"]
    assert {s["id"]: s["status"] for s in record["steps"]}["env-setting"] == "skipped"


@pytest.mark.slow  # runs and log five times, each a process
def test_runs_and_log_in_three_formats(mixed: Mixed) -> None:
    failed = mixed.run_in_process(var=["step3_exit=1"])
    ok = mixed.run_in_process()
    ok_id, failed_id = ok.finished["detail"]["run_id"], failed.finished["detail"]["run_id"]

    table = cli("runs")
    assert table.returncode == 0
    assert ok_id in table.stdout and failed_id in table.stdout
    assert "succeeded" in table.stdout and "already_done" not in table.stdout

    text = cli("log", failed_id)
    assert text.returncode == 0
    assert "status    failed (exit 1)" in text.stdout
    markdown = cli("log", ok_id, "--format", "markdown").stdout
    assert markdown.startswith(f"## Runbook `mixed`: run `{ok_id}`")
    assert "| `add-column` | applied |" in markdown
    assert "| run finished | succeeded |" in markdown
    record = json.loads(cli("log", ok_id, "--format", "json").stdout)
    assert record["run_id"] == ok_id
    assert record["runbook"]["spec"]["steps"][0]["id"] == "create-table"

    missing = cli("log", "nope")
    assert missing.returncode != 0 and "no run 'nope'" in missing.stderr


def test_rollback_refuses_a_file_changed_since_the_run_unless_forced(mixed: Mixed) -> None:
    files_before = snapshot(*mixed.files)
    assert mixed.run_in_process().exit_code == 0
    app_env = mixed.work / "app.env"
    app_env.write_bytes(app_env.read_bytes() + b"HOTFIX=by-hand\n")  # someone edited it since

    refused = mixed.rollback_in_process()

    assert refused.exit_code == 3, refused.said()
    said = refused.said()
    assert "changed after the run" in said
    # The diff against the pre-run content: an env file's keys, none of its values (it is where
    # secrets live; the refusal is journaled too).
    assert "+HOTFIX=***" in said and "by-hand" not in refused.printed()
    assert "OTHER=***" in said
    assert b"HOTFIX=by-hand" in app_env.read_bytes()  # nothing was overwritten
    forced = mixed.rollback_in_process(force=True)
    assert forced.exit_code == 0, forced.said()
    assert snapshot(*mixed.files) == files_before


def test_a_run_being_rolled_back_elsewhere_is_refused(mixed: Mixed, _isolate) -> None:  # type: ignore[no-untyped-def]
    from dcx_runbook.state.journal import Journal

    result = mixed.run_in_process()
    run_id = result.finished["detail"]["run_id"]
    record = Journal(_isolate).load(run_id)
    # Another local process is working on this run. The lock is flock(2), held by an open file,
    # not a process: the rollback's own open of the lock file is refused here as it would be in
    # another process.
    record.lock()
    try:
        second = mixed.rollback_in_process(run_id)
    finally:
        record.unlock()
    assert second.exit_code == 4
    assert (
        f"run {run_id} of mixed is in use by another dcx-runbook process"
        in second.finished["message"]
    )
    assert mixed.rollback_in_process(run_id).exit_code == 0


def test_help_and_version_import_neither_psycopg_nor_pydantic() -> None:
    import subprocess
    import sys

    for args in (["--help"], ["--version"]):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "dcx_runbook", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
        assert not {m for m in imported if m.split(".")[0] in ("psycopg", "pydantic", "yaml")}, args


def test_rollback_dry_run_shows_what_it_would_undo_and_changes_nothing(mixed: Mixed) -> None:
    assert mixed.run_in_process().exit_code == 0
    after = schema_dump(mixed.url), snapshot(*mixed.files)

    preview = mixed.rollback_in_process(dry_run=True)

    assert preview.exit_code == 0, preview.said()
    planned = [e for e in preview.events if e["event"] == "operation"]
    assert {e["step"] for e in planned} == {
        "add-column",
        "edit-config",
        "env-setting",
        "create-table",
    }
    assert any("DROP TABLE widgets" in e["message"] for e in planned)
    assert any("restore the exact pre-run bytes" in e["message"] for e in planned)
    assert (schema_dump(mixed.url), snapshot(*mixed.files)) == after
    assert mixed.rollback_in_process().exit_code == 0  # the dry run left the run to undo


def test_rollback_dry_run_says_when_the_rollback_would_stop(
    mixed: Mixed, db: psycopg.Connection
) -> None:
    """It said "would undo ..." with exit 0 while the real rollback then refused a file edited
    since the run, or stopped at a rollback precheck (exit 3)."""
    assert mixed.run_in_process().exit_code == 0
    (mixed.work / "config.ini").write_bytes(b"edited by hand after the run\n")
    db.execute("INSERT INTO widgets (id, name) VALUES (1, 'a row the rollback must not drop')")
    after = schema_dump(mixed.url), snapshot(*mixed.files)

    preview = mixed.rollback_in_process(dry_run=True)

    assert preview.exit_code == 1, preview.said()
    end = preview.finished
    assert "the rollback would stop" in end["message"]
    assert "config.ini changed after the run" in end["message"]
    assert "create-table: a rollback precheck failed" in end["message"]
    assert (schema_dump(mixed.url), snapshot(*mixed.files)) == after
    forced = mixed.rollback_in_process(dry_run=True, force=True)
    assert "config.ini changed" not in forced.finished["message"]
