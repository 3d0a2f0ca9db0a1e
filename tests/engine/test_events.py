"""Every JSON event of real runs validates against docs/events.schema.json, and tells the story.

The runs are in this process (tests/support/inprocess.py), each event serialised by the JSON
reporter as it is emitted; test_run.py validates a real process's stdout too."""

from __future__ import annotations

from tests.engine.conftest import MIXED, Mixed, validate_events
from tests.support import inprocess


def test_failing_run_stream_validates_and_tells_the_whole_story(mixed: Mixed) -> None:
    result = mixed.run_in_process(var=["step3_verify=no"])
    assert result.exit_code == 1
    stream = result.events
    validate_events(stream)

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


def test_success_dry_run_and_rollback_streams_validate(mixed: Mixed) -> None:
    dry = mixed.run_in_process(dry_run=True)
    ok = mixed.run_in_process()
    undo = mixed.rollback_in_process()
    for result in (dry, ok, undo):
        assert result.exit_code == 0, result.said()
        validate_events(result.events)
    assert dry.events[-1]["status"] == "dry_run"
    assert undo.events[0]["detail"]["mode"] == "rollback"


def test_a_refused_run_ends_its_json_stream_with_run_finished(mixed: Mixed) -> None:
    result = inprocess.run(
        MIXED,
        yes=True,
        database_url=mixed.url,
        var=["expected_database=elsewhere", f"workdir={mixed.work}"],
    )
    assert result.exit_code == 4
    (event,) = result.events
    validate_events([event])
    assert event["event"] == "run_finished" and event["status"] == "refused"
    assert "expects 'elsewhere'" in event["message"]
    assert event["detail"]["exit_code"] == 4
