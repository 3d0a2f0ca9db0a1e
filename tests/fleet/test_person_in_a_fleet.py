"""A person in a fleet: its targets run in child processes with no terminal, so a manual step
needs --confirm (refused before any change otherwise), --step and plans are one target's, and
approvals a target requires refuse the fleet unless --break-glass, which flags each run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fleet.conftest import STEPS, fleet_end, fleet_runbook

MANUAL = {
    "id": "tell-billing",
    "title": "tell #billing",
    "action": [{"kind": "manual", "instruction": "Tell #billing the fix is in."}],
    "irreversible": "a message can't be unsent",
}


def test_a_manual_step_needs_confirm_in_a_fleet(make_fleet: Any, _isolate: Path) -> None:
    fleet = make_fleet(2)
    fleet_runbook(fleet.runbook, [STEPS[0], MANUAL])
    refused = fleet.run()
    assert refused.returncode == 4, refused.stdout
    assert "tell-billing: a person's step, and a fleet's targets have no terminal" in refused.stderr
    assert "--confirm tell-billing" in refused.stderr
    assert not (_isolate / "fleets").exists()  # refused before anything started
    assert all(fleet.tables(n) == set() for n in fleet.names())
    done = fleet.run("--confirm", "tell-billing")
    assert done.returncode == 0, done.stdout
    assert all(fleet.tables(n) == {"t1"} for n in fleet.names())
    for record in (_isolate / "runs").glob("*.json"):
        (answer,) = json.loads(record.read_text())["steps"][1]["answers"]
        assert answer["via"] == "--confirm"


def test_step_and_plans_are_one_targets(make_fleet: Any) -> None:
    fleet = make_fleet(1)
    for flag in (["--step"], ["--plan", "p.json"], ["--dry-run", "--plan-out", "p.json"]):
        done = fleet.run(*flag)
        assert done.returncode == 2, done.stderr
        assert "one target at a time" in done.stderr


def test_a_target_that_requires_approval_refuses_the_fleet_unless_break_glass(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(2)
    fleet.write_targets({"db02": {"requires_approval": 1}})
    refused = fleet.run()
    assert refused.returncode == 4
    assert "approvals needed on db02" in refused.stderr
    assert all(fleet.tables(n) == set() for n in fleet.names())
    bare = fleet.run("--break-glass")
    assert bare.returncode == 2 and "--break-glass needs --reason" in bare.stderr
    done = fleet.run("--break-glass", "--reason", "INC-7 all hands")
    assert done.returncode == 0, done.stdout
    assert fleet_end(done)["status"] == "succeeded"
    flagged = {}
    for record in (_isolate / "runs").glob("*.json"):
        data = json.loads(record.read_text())
        flagged[data["target"]["name"]] = data.get("authority")
    # Only the target that required approvals had glass to break.
    assert flagged["db01"] is None
    assert flagged["db02"] == {"break_glass": True, "reason": "INC-7 all hands", "required": 1}
