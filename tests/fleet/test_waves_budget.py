"""20 real databases, one of which fails at step 2: the canary first and alone, the failure
budget, resume, and `rollback FLEET_RUN` (docs/fleet.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import validate_events
from tests.fleet.conftest import events, finished, fleet_end

ALL = {"t1", "t2"}


def record(state: Path, fleet_run: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "fleets" / f"{fleet_run}.json").read_text())
    return data


@pytest.mark.slow
def test_budget_zero_stops_new_targets_then_resume_finishes_and_rollback_restores(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(20)
    before = fleet.dumps()
    fleet.write_targets({"db07": {"vars": {"fail": "yes"}}})

    done = fleet.run("--concurrency", "4", "--max-failures", "0")
    assert done.returncode == 1, done.stdout + done.stderr
    end = fleet_end(done)
    fleet_run = end["detail"]["fleet_run"]
    states = finished(done)
    assert states["db07"][0] == "failed"
    assert "create-t2" in states["db07"][1]
    # Every event validates against docs/events.schema.json; every one of a target carries its
    # name, and the stream ends with the fleet's end.
    validate_events(events(done))
    assert events(done)[-1]["event"] == "fleet_finished"
    for event in events(done):
        if event["event"] in ("run_started", "step_finished", "run_finished"):
            assert event["target"] in fleet.urls

    kept = record(_isolate, fleet_run)
    by_name = {t["name"]: t for t in kept["targets"]}
    # The canary ran first, alone: every other target started after it ended.
    canary = by_name["db01"]
    assert canary["state"] == "succeeded"
    others = [t for n, t in by_name.items() if n != "db01" and t["started_at"]]
    assert all(t["started_at"] >= canary["finished_at"] for t in others)
    # No target started after db07 failed; those running then finished; the rest never began.
    failed_at = by_name["db07"]["finished_at"]
    assert all(t["started_at"] <= failed_at for t in others)
    reached = {n for n, t in by_name.items() if t["state"] != "not_reached"}
    assert {"db01", "db07"} <= reached and len(reached) < 20
    for name, entry in by_name.items():
        if entry["state"] == "succeeded":
            assert fleet.tables(name) == ALL, name
        elif entry["state"] == "not_reached":
            assert states[name][0] == "not_reached"
            assert "--max-failures 0" in states[name][1]
            assert fleet.tables(name) == set(), name
    assert fleet.dumps()["db07"] == before["db07"]  # the failing target unwound itself

    # The cause fixed, resume runs db07 and the targets never reached, nothing else.
    fleet.write_targets()
    succeeded_before = {n for n, t in by_name.items() if t["state"] == "succeeded"}
    resumed = fleet.cli("resume", fleet_run, "--yes", "-o", "json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    validate_events(events(resumed))
    started = {e["target"] for e in events(resumed) if e["event"] == "run_started"}
    assert started == set(fleet.urls) - succeeded_before
    assert all(fleet.tables(n) == ALL for n in fleet.urls)
    kept = record(_isolate, fleet_run)
    assert {t["state"] for t in kept["targets"]} == {"succeeded"}
    assert len(by_name["db07"]["runs"]) == 1
    assert len({t["name"]: t for t in kept["targets"]}["db07"]["runs"]) == 2

    # `runs` shows the fleet run, one row per target.
    listed = fleet.cli("runs", "-o", "json")
    fleets = [json.loads(x) for x in listed.stdout.splitlines() if '"fleet_run"' in x]
    mine = [f for f in fleets if f.get("targets") and f["fleet_run"] == fleet_run]
    assert len(mine) == 1 and len(mine[0]["targets"]) == 20

    # rollback FLEET_RUN: every target's schema exactly as before (db07's two runs, newest
    # first: the failed one has nothing left to undo).
    undone = fleet.cli("rollback", fleet_run, "--yes", "-o", "json")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    validate_events(events(undone))
    assert fleet_end(undone)["status"] == "rolled_back"
    assert {s for s, _ in finished(undone).values()} == {"rolled_back"}
    assert fleet.dumps() == before


@pytest.mark.slow
def test_budget_one_lets_every_other_target_finish(make_fleet: Any, _isolate: Path) -> None:
    fleet = make_fleet(20)
    before = fleet.dumps()
    fleet.write_targets({"db07": {"vars": {"fail": "yes"}}})

    done = fleet.run("--concurrency", "4", "--max-failures", "1", "--canary", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    states = finished(done)
    assert states.pop("db07")[0] == "failed"
    assert {s for s, _ in states.values()} == {"succeeded"}
    assert all(fleet.tables(n) == ALL for n in states)
    assert fleet.dumps()["db07"] == before["db07"]
    assert fleet_end(done)["detail"]["targets"] == {"failed": 1, "succeeded": 19}


def test_unwind_all_on_failure_undoes_the_targets_that_succeeded(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(4)
    before = fleet.dumps()
    fleet.write_targets({"db03": {"vars": {"fail": "yes"}}})

    done = fleet.run("--concurrency", "2", "--unwind-all-on-failure")
    assert done.returncode == 1, done.stdout + done.stderr
    states = finished(done)
    assert states["db03"][0] == "failed"
    assert states["db01"][0] == "rolled_back"  # the canary, undone with the others
    # db02 (and db04, should db02 end before db03 fails) succeeded, then was undone.
    assert {states[n][0] for n in ("db02", "db04")} <= {"rolled_back", "not_reached"}
    assert fleet.dumps() == before
    # Undone, the fleet run is over: resuming it would fix some targets and not the others.
    resumed = fleet.cli("resume", fleet_end(done)["detail"]["fleet_run"], "--yes")
    assert resumed.returncode == 4, resumed.stdout + resumed.stderr
    assert "start a new fleet run instead" in resumed.stderr
    assert fleet.dumps() == before


def test_per_server_cap_and_concurrency_hold(make_fleet: Any, _isolate: Path) -> None:
    """Every target here lives on one server: --per-server 2 caps --concurrency 6 at 2."""
    fleet = make_fleet(6)
    fleet.write_targets({n: {"vars": {"pause": "0.4"}} for n in fleet.urls})

    done = fleet.run("--concurrency", "6", "--per-server", "2", "--canary", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    kept = record(_isolate, fleet_end(done)["detail"]["fleet_run"])
    spans = [(t["started_at"], t["finished_at"]) for t in kept["targets"]]
    most = max(sum(1 for s, e in spans if s <= at < e) for at, _ in spans)
    assert most == 2
