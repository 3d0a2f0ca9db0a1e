"""A fleet on a real terminal: one confirmation for the whole fleet, then the live table of
targets redrawn in place; an answer of no touches nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.engine.test_terminal import on_a_terminal


def test_yes_at_the_prompt_runs_the_fleet_with_its_live_table(
    make_fleet: Any, _isolate: Path
) -> None:
    fleet = make_fleet(3)
    fleet.write_targets({n: {"vars": {"pause": "0.5"}} for n in fleet.urls})
    args = ["run", str(fleet.runbook), "--targets", str(fleet.targets), "--concurrency", "2"]
    code, out = on_a_terminal(args, b"y\n", {"COLUMNS": "120"})
    assert code == 0, out
    assert "Run fleet-fix on 3 target(s) (db01, db02, db03): canary 1, then 2 at a time" in out
    assert "last message" in out  # the table's header, drawn in place
    assert "\x1b[" in out  # redrawn with the terminal's control sequences
    assert "fleet succeeded (exit 0)" in out
    assert all(fleet.tables(n) == {"t1", "t2"} for n in fleet.urls)


def test_no_at_the_prompt_touches_nothing(make_fleet: Any, _isolate: Path) -> None:
    fleet = make_fleet(2)
    before = fleet.dumps()
    args = ["run", str(fleet.runbook), "--targets", str(fleet.targets)]
    code, out = on_a_terminal(args, b"n\n", {"COLUMNS": "120"})
    assert code == 4, out
    assert "not confirmed" in out
    assert fleet.dumps() == before
    assert not (_isolate / "fleets").exists()
