"""A fleet's dry run writes nothing anywhere; a fleet run whose driver died while its children
still work can't be resumed or rolled back under them."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.fleet.conftest import finished, fleet_end
from tests.fleet.test_crashes import fleet_record, start, wait_until


def test_a_fleet_dry_run_writes_nothing_anywhere(make_fleet: Any, _isolate: Path) -> None:
    fleet = make_fleet(3)
    before = fleet.dumps()
    done = fleet.run("--dry-run", "--concurrency", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {s for s, _ in finished(done).values()} == {"dry_run"}
    assert fleet_end(done)["status"] == "dry_run" and fleet_end(done)["detail"]["fleet_run"] is None
    assert fleet.dumps() == before
    for url in fleet.urls.values():
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT to_regnamespace('dcx_runbook')").fetchone()
        assert row == (None,)  # no ledger either
    assert not _isolate.exists()


def test_resume_and_rollback_wait_for_children_still_at_work(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(3)
    fleet.write_targets({n: {"vars": {"pause": "2"}} for n in fleet.urls})
    driver = start(fleet, "--canary", "0", "--concurrency", "3")
    wait_until(
        lambda: [t["state"] for t in fleet_record(_isolate)["targets"]].count("running") == 3,
        "three targets at work",
    )
    time.sleep(0.3)
    os.kill(driver.pid, signal.SIGKILL)  # the driver alone: its children go on
    driver.wait()
    fleet_run = fleet_record(_isolate)["fleet_run"]
    for command in ("resume", "rollback"):
        refused = fleet.cli(command, fleet_run, "--yes")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert f"fleet run {fleet_run} is still at work" in refused.stderr
    # The children finish their targets and record them; then resume finds nothing to do.
    wait_until(lambda: _done(fleet), "the children to finish", timeout=30)
    resumed = fleet.cli("resume", fleet_run, "--yes", "-o", "json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not [
        e for e in map(json.loads, resumed.stdout.splitlines()) if e["event"] == "run_started"
    ]
    assert all(fleet.tables(n) == {"t1", "t2"} for n in fleet.urls)


def _done(fleet: Any) -> bool:
    seen = fleet.cli("status", "--targets", str(fleet.targets), "-o", "json")
    rows = json.loads(seen.stdout)
    return all(not r["live"] and len(r["in_effect"]) == 1 for r in rows)


def test_rollback_dry_run_says_what_it_would_undo_on_each_target(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(2)
    done = fleet.run("--concurrency", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    fleet_run = fleet_end(done)["detail"]["fleet_run"]
    preview = fleet.cli("rollback", fleet_run, "--dry-run", "-o", "json")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    ends = finished(preview)
    assert {s for s, _ in ends.values()} == {"dry_run"}
    assert all(m.startswith("dry run: would undo run") for _, m in ends.values())
    assert all(fleet.tables(n) == {"t1", "t2"} for n in fleet.urls)


def test_a_refused_target_after_others_changed_is_not_exit_4(
    make_fleet: Any, _isolate: Path
) -> None:
    """Exit 4 means nothing was changed: once a target succeeded, a refused one is a failure."""
    fleet = make_fleet(1)
    fleet.urls["gone"] = "postgresql://postgres@127.0.0.1:1/gone"
    fleet.write_targets()
    done = fleet.run()
    assert done.returncode == 1, done.stdout + done.stderr
    assert finished(done)["gone"][0] == "refused"
    assert fleet_end(done)["status"] == "failed"


def test_a_target_that_is_not_the_database_its_file_names_is_refused(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(1)
    before = fleet.dumps()
    fleet.write_targets({"db01": {"database": "billing_prod"}})
    done = fleet.run()
    assert done.returncode == 4, done.stdout + done.stderr
    state, message = finished(done)["db01"]
    assert state == "refused"
    assert "this runbook expects 'billing_prod': refusing before any change" in message
    assert "change the `database` of target db01 in the targets file" in message
    assert fleet.dumps() == before


def test_rollback_of_a_fleet_run_with_an_undeclared_var_is_exit_2_and_changes_nothing(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(2)
    done = fleet.run("--concurrency", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    fleet_run = fleet_end(done)["detail"]["fleet_run"]
    record = (_isolate / "fleets" / f"{fleet_run}.json").read_bytes()
    for args in (["--var", "nope=1"], ["--var", "novalue"], ["--database-url", "postgresql://x/y"]):
        refused = fleet.cli("rollback", fleet_run, "--yes", *args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
    assert (
        "no run to undo declares such a variable"
        in fleet.cli("rollback", fleet_run, "--yes", "--var", "nope=1").stderr
    )
    assert all(fleet.tables(n) == {"t1", "t2"} for n in fleet.urls)
    assert (_isolate / "fleets" / f"{fleet_run}.json").read_bytes() == record


def test_a_target_on_another_server_than_its_file_pins_is_refused(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(1)
    before = fleet.dumps()
    fleet.write_targets({"db01": {"system_identifier": "7000000000000000001"}})
    done = fleet.run()
    assert done.returncode == 4, done.stdout + done.stderr
    state, message = finished(done)["db01"]
    assert state == "refused"
    assert (
        "but this target may only touch the one with system identifier 7000000000000000001"
        in message
    )
    assert "(the targets file's system_identifier): refusing before any change" in message
    assert fleet.dumps() == before


def test_a_damaged_fleet_record_is_one_clear_error_not_a_traceback(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(1)
    done = fleet.run()
    assert done.returncode == 0, done.stdout + done.stderr
    fleet_run = fleet_end(done)["detail"]["fleet_run"]
    path = _isolate / "fleets" / f"{fleet_run}.json"
    data = json.loads(path.read_text())
    data["targets"][0]["state"] = "bogus"
    path.write_text(json.dumps(data))
    for command in ("resume", "rollback"):
        refused = fleet.cli(command, fleet_run, "--yes")
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "is damaged; it was left as is" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert fleet.tables("db01") == {"t1", "t2"}
