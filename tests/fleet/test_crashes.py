"""A fleet stopped half way, for real: the driver and its children killed with SIGKILL (the
machine died), and Ctrl-C. `status --targets` tells each target's truth; `resume` completes;
Ctrl-C unwinds the targets at work and leaves the finished ones as they are, saying so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dcx_runbook.errors import JournalError
from dcx_runbook.state.reading import read_record
from tests.fleet.conftest import Fleet, events

ALL = {"t1", "t2"}
# What each step leaves in the database, for comparing status with the truth.
LEAVES = {"create-t1": "t1", "create-t2": "t2"}


def start(fleet: Fleet, *more: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "dcx_runbook", "run", str(fleet.runbook), "--targets",
            str(fleet.targets), "--yes", "-o", "json", *more]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fleet_record(state: Path) -> dict[str, Any]:
    found = list((state / "fleets").glob("fleet-*.json")) if (state / "fleets").is_dir() else []
    return json.loads(found[0].read_text()) if found else {"targets": []}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def states(state: Path) -> dict[str, str]:
    return {t["name"]: t["state"] for t in fleet_record(state)["targets"]}


def in_step(path: Path, step_id: str) -> bool:
    try:
        data = read_record(path)
    except JournalError:  # being written: not yet
        return False
    return any(s["id"] == step_id and s["status"] == "action_started" for s in data["steps"])


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


@pytest.mark.slow
def test_kill_9_mid_fleet_status_tells_each_targets_truth_and_resume_completes(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(8)
    fleet.write_targets({n: {"vars": {"pause": "1"}} for n in fleet.urls})
    driver = start(fleet, "--concurrency", "3")

    def two_in_step_2() -> bool:
        """Two runs in create-t2's transaction (it waits a second before committing)."""
        return (
            sum(in_step(record, "create-t2") for record in (_isolate / "runs").glob("*.json")) >= 2
        )

    wait_until(two_in_step_2, "two targets to be in step 2")
    os.kill(driver.pid, signal.SIGSTOP)  # no new child from here on
    at_work = children(driver.pid)
    os.kill(driver.pid, signal.SIGKILL)  # the machine dies: the driver and every child
    for pid in at_work:
        os.kill(pid, signal.SIGKILL)
    driver.wait()

    # At once: the killed runs still hold their sessions (the server notices a dead client when
    # its statement ends), and status says their processes are gone.
    seen = fleet.cli("status", "--targets", str(fleet.targets), "-o", "json")
    assert seen.returncode == 0, seen.stdout + seen.stderr
    live = [x for row in json.loads(seen.stdout) for x in row["live"]]
    assert len(live) >= 2 and all(x["process_gone"] for x in live), [
        (x["pid"], x["process_gone"], x["host"]) for x in live
    ]

    def sessions_ended() -> bool:
        seen = fleet.cli("status", "--targets", str(fleet.targets), "-o", "json")
        return all(x["what"] != "run" for row in json.loads(seen.stdout) for x in row["live"])

    wait_until(sessions_ended, "the server to end the killed runs' sessions", timeout=30)
    seen = fleet.cli("status", "--targets", str(fleet.targets), "-o", "json")
    interrupted = 0
    for row in json.loads(seen.stdout):
        name = row["target"]
        applied = {
            LEAVES[s["step_id"]]
            for run in row["in_effect"]
            for s in run["steps"]
            if s["status"] == "applied" and s["step_id"] in LEAVES
        }
        assert applied == fleet.tables(name), (name, row)  # the ledger says what is there
        dead = [x for x in row["live"] if x["what"] == "interrupted"]
        interrupted += len(dead)
        assert row["drift"] == []
    assert interrupted >= 2, (
        seen.stdout
    )  # the runs killed in the middle: said running, no session left

    resumed = fleet.cli("resume", fleet_record(_isolate)["fleet_run"], "--yes", "-o", "json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    undone_first = [e for e in events(resumed) if "died in the middle" in (e["message"] or "")]
    assert len(undone_first) >= 2
    assert all(fleet.tables(n) == ALL for n in fleet.urls)
    after = json.loads(fleet.cli("status", "--targets", str(fleet.targets), "-o", "json").stdout)
    assert [
        (r["target"], r["live"], [x["run_id"] for x in r["in_effect"]])
        for r in after
        if r["live"] or len(r["in_effect"]) != 1
    ] == []


@pytest.mark.slow
def test_ctrl_c_mid_fleet_unwinds_the_targets_at_work_and_keeps_the_finished_ones(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(6)
    before = fleet.dumps()
    fleet.write_targets({n: {"vars": {"pause": "1"}} for n in fleet.urls})
    driver = start(fleet, "--concurrency", "2")

    def at_work() -> bool:
        now = states(_isolate)
        return now.get("db01") == "succeeded" and "running" in list(now.values())[1:]

    wait_until(at_work, "the canary to succeed and the next wave to be at work")
    time.sleep(0.3)
    os.kill(driver.pid, signal.SIGINT)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, out + err
    done = [json.loads(line) for line in out.splitlines()]
    ends = {e["target"]: e["status"] for e in done if e["event"] == "target_finished"}
    (end,) = [e for e in done if e["event"] == "fleet_finished"]
    assert end["status"] == "interrupted"
    finished_ones = sorted(n for n, s in ends.items() if s == "succeeded")
    assert "db01" in finished_ones
    assert end["message"].endswith(f"finished and left applied: {', '.join(finished_ones)}")
    assert "interrupted" in ends.values()
    for name, state in ends.items():
        if state == "succeeded":
            assert fleet.tables(name) == ALL, name
        else:
            assert state in ("interrupted", "not_reached"), (name, state)
            assert fleet.dumps()[name] == before[name], name
    assert children(driver.pid) == []


@pytest.mark.slow
def test_a_child_killed_mid_run_is_undo_incomplete_and_resume_undoes_it_then_runs_it(
    make_fleet: Any, _isolate: Path
) -> None:
    """kill -9 of one target's process (not the driver): the fleet can't say it was undone (exit
    3); resume at once waits for the server to end its session, undoes it, runs it again."""
    fleet = make_fleet(2)
    fleet.write_targets({"db02": {"vars": {"pause": "2"}}})
    driver = start(fleet, "--concurrency", "2")
    wait_until(lambda: states(_isolate).get("db02") == "running", "db02 to start")
    time.sleep(0.8)  # into step 2 (create-t2 waits 2 s before committing)
    (child,) = children(driver.pid)
    os.kill(child, signal.SIGKILL)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 3, out + err
    done = [json.loads(line) for line in out.splitlines()]
    (end,) = [e for e in done if e["event"] == "target_finished" and e["target"] == "db02"]
    assert end["status"] == "undo_incomplete" and "killed (signal 9)" in end["message"]
    assert end["detail"]["exit_code"] is None
    assert fleet.tables("db02") == {"t1"}  # step 1 committed, step 2 died with its session

    resumed = fleet.cli("resume", fleet_record(_isolate)["fleet_run"], "--yes", "-o", "json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [e["target"] for e in events(resumed) if e["event"] == "run_started"].count("db02") == 2
    assert all(fleet.tables(n) == ALL for n in fleet.urls)


@pytest.mark.slow
def test_ctrl_c_as_the_children_start_never_leaves_a_target_undo_incomplete(
    make_fleet: Any, _isolate: Path
) -> None:
    """A SIGINT that reaches a child as it is forked (before its handlers are its own) used to
    end it outside any handler: exit 3, `undo_incomplete`, for good."""
    fleet = make_fleet(4)
    for _ in range(4):
        driver = start(fleet, "--dry-run", "--concurrency", "4")
        assert driver.stdout is not None
        for line in driver.stdout:
            if json.loads(line)["event"] == "fleet_started":
                break
        os.kill(driver.pid, signal.SIGINT)
        out, err = driver.communicate(timeout=60)
        assert driver.returncode in (0, 130), out + err
        ends = [json.loads(x) for x in out.splitlines() if '"target_finished"' in x]
        assert {e["status"] for e in ends} <= {"dry_run", "interrupted", "not_reached"}, ends
