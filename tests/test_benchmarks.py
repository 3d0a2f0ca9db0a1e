"""Benchmarks are not timed tests: this only keeps every benchmark working, at its smallest size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dcx_runbook.target import sandbox

pytestmark = pytest.mark.slow  # every benchmark, a wallet fix and a lock stall included


ROOT = Path(__file__).parents[1]
PEERS = ("bare_psycopg", "psql", "sqitch", "liquibase")


def test_every_benchmark_runs_at_its_smallest_size(
    pg_server: sandbox.Server, tmp_path: Path
) -> None:
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "DCX_BENCH_DATABASE_URL": pg_server.admin_url},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {
        "machine",
        "smoke",
        "startup",
        "engine",
        "lint",
        "ledger",
        "runs",
        "fleet",
        "lock_stall",
        "wallet_fix",
        "goals",
    }
    assert results["ledger"]["per_step"]["ledger_round_trips"] > 0
    assert results["runs"]["records"] == 30 and results["runs"]["runs_seconds"] > 0
    assert results["machine"]["cpu_reference_seconds"] > 0
    assert results["lock_stall"]["plain_psql"]["samples"] > 0
    assert "without node steps" in results["wallet_fix"]
    assert "startup (median)" in done.stdout
    assert "goals (issue 19)" in done.stdout

    engine = results["engine"]
    assert list(engine["tools"]) == ["dcx", "dcx_warm", *PEERS]
    for n in ("2", "10"):
        assert {"run_seconds", "rollback_seconds", "peak_rss_kib"} <= set(engine[n]["dcx"])
        for key in ("dcx_warm", "bare_psycopg", "psql"):  # always measured
            assert engine[n][key]["run_over_dcx"] > 0 and engine[n][key]["rollback_seconds"] > 0
    span = engine["per_step_2_to_10"]
    assert set(span["dcx"]) == {
        "run_seconds",
        "run_fixed_seconds",
        "rollback_seconds",
        "rollback_fixed_seconds",
    }
    # A peer is measured or says why not: never silently dropped.
    missing = {}
    for key in PEERS:
        state = engine["status"][key]
        if state == "measured":
            assert engine["10"][key]["rollback_over_dcx"] > 0 and set(span[key]) == set(span["dcx"])
        else:
            assert state.startswith(("not installed: ", "can't run: ")), state
            assert engine["10"][key] == state and state in done.stdout
            missing[key] = state
    if missing and os.environ.get("DCX_REQUIRE_PEERS"):  # CI installs them (make peers)
        pytest.fail(f"peers not measured and DCX_REQUIRE_PEERS is set: {missing}")
    for key, state in missing.items():
        warnings.warn(f"benchmark peer {key}: {state}", stacklevel=1)

    # Every goal is listed with its figure; at smoke sizes those of N=100 and 1,000 can't be.
    goals = {g["goal"]: g for g in results["goals"]}
    assert len(goals) == 12
    assert all(g["figure"] for g in goals.values())
    assert goals["peak RSS of a 1,000-step run ≤ 80 MB"]["met"] is None
    assert goals["`--help` ≤ 5× `python -c pass`"]["met"] in (True, False)
