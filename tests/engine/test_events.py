"""Every JSON event of real runs validates against docs/events.schema.json, and tells the story."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.engine.conftest import Mixed, events

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "events.schema.json").read_text())


def validate_all(stream: list[dict]) -> None:
    for event in stream:
        jsonschema.validate(event, SCHEMA)


def test_failing_run_stream_validates_and_tells_the_whole_story(mixed: Mixed) -> None:
    result = mixed.run("--var", "step3_verify=no")
    assert result.returncode == 1
    stream = events(result.stdout)
    validate_all(stream)

    story = [(e["event"], e["step"], e["status"]) for e in stream if e["event"] != "check"]
    kinds = [s[0] for s in story]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert story.index(("step_finished", "create-table", "applied")) < story.index(
        ("step_finished", "env-setting", "applied")
    )
    unwind = kinds.index("unwind_started")
    assert ("step_started", "edit-config", None) in story[:unwind]
    assert [s[1] for s in story[unwind:] if s[0] == "step_undone"] == [
        "edit-config",
        "env-setting",
        "create-table",
    ]
    failed = [e for e in stream if e["event"] == "check" and e["status"] == "failed"]
    assert [(e["step"], e["phase"], e["detail"]["name"]) for e in failed] == [
        ("edit-config", "verify", "verify switch")
    ]
    assert stream[-1]["detail"]["exit_code"] == 1
    assert stream[-1]["status"] == "failed"
    times = [e["time"] for e in stream]
    assert times == sorted(times)


@pytest.mark.slow  # three runs; test_failing_run_stream_validates_and_tells_the_whole_story stays fast
def test_success_dry_run_and_rollback_streams_validate(mixed: Mixed) -> None:
    from tests.conftest import cli
    from tests.engine.conftest import MIXED

    dry = cli("run", MIXED, "--dry-run", "--output", "json", *mixed.args())
    ok = mixed.run()
    undo = mixed.rollback()
    for result in (dry, ok, undo):
        assert result.returncode == 0, result.stderr
        validate_all(events(result.stdout))
    assert events(dry.stdout)[-1]["status"] == "dry_run"
    assert events(undo.stdout)[0]["detail"]["mode"] == "rollback"


def test_a_refused_run_ends_its_json_stream_with_run_finished(mixed: Mixed) -> None:
    from tests.conftest import cli
    from tests.engine.conftest import MIXED

    result = cli(
        "run",
        MIXED,
        "--yes",
        "--output",
        "json",
        "--database-url",
        mixed.url,
        "--var",
        "expected_database=elsewhere",
        "--var",
        f"workdir={mixed.work}",
    )
    assert result.returncode == 4
    (event,) = events(result.stdout)
    validate_all([event])
    assert event["event"] == "run_finished" and event["status"] == "refused"
    assert "expects 'elsewhere'" in event["message"]
    assert event["detail"]["exit_code"] == 4
