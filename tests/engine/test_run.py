"""The engine end to end, through the real CLI in a real process, against a real PostgreSQL."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.conftest import cli, schema_dump, snapshot
from tests.engine.conftest import Mixed, events


def finished(result) -> dict:  # type: ignore[no-untyped-def]
    return events(result.stdout)[-1]


def test_clean_run_then_rollback_restores_schema_and_files(mixed: Mixed) -> None:
    schema_before, files_before = schema_dump(mixed.url), snapshot(*mixed.files)

    result = mixed.run()
    assert result.returncode == 0, result.stderr + result.stdout
    assert finished(result)["status"] == "succeeded"
    assert schema_dump(mixed.url) != schema_before
    assert b'APP_MODE="production"' in (mixed.work / "app.env").read_bytes()
    assert (mixed.work / "marker").exists()

    undo = mixed.rollback()
    assert undo.returncode == 0, undo.stderr + undo.stdout
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

    result = mixed.run("--var", var)

    assert result.returncode == 1, result.stderr + result.stdout
    stream = events(result.stdout)
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

    result = mixed.run("--var", "step3_verify=no", "--var", "undo_exit=1")

    assert result.returncode == 3, result.stderr + result.stdout
    end = finished(result)
    assert end["status"] == "undo_incomplete"
    assert end["detail"]["still_applied"] == ["create-table", "env-setting", "edit-config"]
    run_id = end["detail"]["run_id"]
    assert f"dcx-runbook rollback {run_id}" in end["message"]
    assert schema_dump(mixed.url) != schema_before  # the unwind stopped: widgets is still there

    resumed = mixed.rollback(run_id, "--var", "undo_exit=0")

    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert schema_dump(mixed.url) == schema_before
    assert snapshot(*mixed.files) == files_before


def test_dry_run_changes_nothing_and_names_every_step(mixed: Mixed, _isolate) -> None:  # type: ignore[no-untyped-def]
    schema_before, files_before = schema_dump(mixed.url), snapshot(*mixed.files)

    result = cli("run", str(mixed_path()), "--dry-run", *mixed.args(), env={"COLUMNS": "200"})

    assert result.returncode == 0, result.stderr
    for step in ("create-table", "env-setting", "edit-config", "add-column"):
        assert step in result.stderr
    assert "CREATE TABLE widgets" in result.stderr
    assert '+APP_MODE="production"' in result.stderr  # the real diff, computed in memory
    assert "+enabled = true" in result.stderr
    assert "can't be evaluated yet" in result.stderr
    assert schema_dump(mixed.url) == schema_before
    assert snapshot(*mixed.files) == files_before
    assert cli("runs").stdout.strip() == "no runs yet"
    assert not (_isolate / "runs").exists() or not list((_isolate / "runs").glob("*.json"))


def mixed_path():  # type: ignore[no-untyped-def]
    from tests.engine.conftest import MIXED

    return MIXED


def test_second_run_reports_every_step_already_done(mixed: Mixed) -> None:
    assert mixed.run().returncode == 0
    schema_after, files_after = schema_dump(mixed.url), snapshot(*mixed.files)

    again = mixed.run()

    assert again.returncode == 0, again.stderr
    statuses = {
        e["step"]: e["status"] for e in events(again.stdout) if e["event"] == "step_finished"
    }
    assert statuses == dict.fromkeys(
        ["create-table", "env-setting", "edit-config", "add-column"], "already_done"
    )
    assert not [e for e in events(again.stdout) if e["event"] == "operation"]
    assert schema_dump(mixed.url) == schema_after
    assert snapshot(*mixed.files) == files_after


def test_wrong_database_is_refused_with_exit_4(mixed: Mixed) -> None:
    files_before = snapshot(*mixed.files)
    result = cli(
        "run",
        mixed_path(),
        "--yes",
        "--database-url",
        mixed.url,
        "--var",
        "expected_database=production_db",
        "--var",
        f"workdir={mixed.work}",
    )
    assert result.returncode == 4
    assert "expects 'production_db'" in result.stderr
    assert snapshot(*mixed.files) == files_before
    assert "Traceback" not in result.stderr


def test_no_terminal_and_no_yes_is_refused_with_exit_4(mixed: Mixed) -> None:
    result = cli("run", mixed_path(), *mixed.args())
    assert result.returncode == 4
    assert "not confirmed" in result.stderr
    assert schema_dump(mixed.url).count("widgets") == 0


@pytest.mark.slow
def test_unknown_variable_and_skip_are_invalid_input_exit_2(mixed: Mixed) -> None:
    bad_var = cli("run", mixed_path(), "--yes", *mixed.args("--var", "nope=1"))
    assert bad_var.returncode == 2
    assert "unknown variable(s) nope" in bad_var.stderr
    bad_skip = cli("run", mixed_path(), "--yes", *mixed.args("--skip", "nope"))
    assert bad_skip.returncode == 2
    assert "--skip nope: no such step" in bad_skip.stderr
    missing = cli("run", mixed_path(), "--yes", "--var", "workdir=/x")
    assert missing.returncode == 2
    assert "missing required variable(s): database_url" in missing.stderr


def test_skip_is_journaled_and_reported(mixed: Mixed) -> None:
    result = mixed.run("--skip", "env-setting")
    assert result.returncode == 0, result.stderr
    assert b"APP_MODE=dev" in (mixed.work / "app.env").read_bytes()
    run_id = finished(result)["detail"]["run_id"]
    record = json.loads(cli("log", run_id, "--format", "json").stdout)
    assert record["skipped"] == ["env-setting"]
    assert {s["id"]: s["status"] for s in record["steps"]}["env-setting"] == "skipped"


@pytest.mark.slow  # two runs, then runs and log four times
def test_runs_and_log_in_three_formats(mixed: Mixed) -> None:
    failed = mixed.run("--var", "step3_exit=1")
    ok = mixed.run()
    ok_id, failed_id = finished(ok)["detail"]["run_id"], finished(failed)["detail"]["run_id"]

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


@pytest.mark.slow
def test_rollback_refuses_a_file_changed_since_the_run_unless_forced(mixed: Mixed) -> None:
    files_before = snapshot(*mixed.files)
    assert mixed.run().returncode == 0
    app_env = mixed.work / "app.env"
    app_env.write_bytes(app_env.read_bytes() + b"HOTFIX=by-hand\n")  # someone edited it since

    refused = mixed.rollback(output="human")

    assert refused.returncode == 3, refused.stderr
    assert "changed after the run" in refused.stderr
    # The diff against the pre-run content: an env file's keys, none of its values (it is where
    # secrets live; the refusal is journaled too).
    assert "+HOTFIX=***" in refused.stderr and "by-hand" not in refused.stderr
    assert "OTHER=***" in refused.stderr
    assert b"HOTFIX=by-hand" in app_env.read_bytes()  # nothing was overwritten
    forced = mixed.rollback("--force")
    assert forced.returncode == 0, forced.stderr
    assert snapshot(*mixed.files) == files_before


@pytest.mark.slow
def test_a_run_being_rolled_back_elsewhere_is_refused(mixed: Mixed, _isolate) -> None:  # type: ignore[no-untyped-def]
    from dcx_runbook.state.journal import Journal

    result = mixed.run()
    run_id = finished(result)["detail"]["run_id"]
    record = Journal(_isolate).load(run_id)
    record.lock()  # another local process is working on this run
    try:
        second = mixed.rollback(run_id)
    finally:
        record.unlock()
    assert second.returncode == 4
    assert (
        f"run {run_id} of mixed is in use by another dcx-runbook process"
        in finished(second)["message"]
    )
    assert mixed.rollback(run_id).returncode == 0


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
    assert mixed.run().returncode == 0
    after = schema_dump(mixed.url), snapshot(*mixed.files)

    preview = mixed.rollback("--dry-run")

    assert preview.returncode == 0, preview.stderr
    planned = [e for e in events(preview.stdout) if e["event"] == "operation"]
    assert {e["step"] for e in planned} == {
        "add-column",
        "edit-config",
        "env-setting",
        "create-table",
    }
    assert any("DROP TABLE widgets" in e["message"] for e in planned)
    assert any("restore the exact pre-run bytes" in e["message"] for e in planned)
    assert (schema_dump(mixed.url), snapshot(*mixed.files)) == after
    assert mixed.rollback().returncode == 0  # the dry run left the run to undo


@pytest.mark.slow
def test_rollback_dry_run_says_when_the_rollback_would_stop(
    mixed: Mixed, db: psycopg.Connection
) -> None:
    """It said "would undo ..." with exit 0 while the real rollback then refused a file edited
    since the run, or stopped at a rollback precheck (exit 3)."""
    assert mixed.run().returncode == 0
    (mixed.work / "config.ini").write_bytes(b"edited by hand after the run\n")
    db.execute("INSERT INTO widgets (id, name) VALUES (1, 'a row the rollback must not drop')")
    after = schema_dump(mixed.url), snapshot(*mixed.files)

    preview = mixed.rollback("--dry-run")

    assert preview.returncode == 1, preview.stderr
    end = events(preview.stdout)[-1]
    assert "the rollback would stop" in end["message"]
    assert "config.ini changed after the run" in end["message"]
    assert "create-table: a rollback precheck failed" in end["message"]
    assert (schema_dump(mixed.url), snapshot(*mixed.files)) == after
    forced = mixed.rollback("--dry-run", "--force")
    assert "config.ini changed" not in events(forced.stdout)[-1]["message"]
