"""Benchmarks are not timed tests: this only keeps every benchmark working, at its smallest size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcx_runbook.target import sandbox

pytestmark = pytest.mark.slow  # every benchmark, a wallet fix and a lock stall included


ROOT = Path(__file__).parents[1]


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
        "startup",
        "engine",
        "lint",
        "ledger",
        "runs",
        "fleet",
        "lock_stall",
        "wallet_fix",
    }
    assert results["ledger"]["per_step"]["ledger_round_trips"] > 0
    assert results["runs"]["records"] == 30 and results["runs"]["runs_seconds"] > 0
    assert results["engine"]["10"]["psql_seconds"] > 0
    assert results["engine"]["10"]["bare_psycopg_seconds"] > 0
    assert set(results["engine"]["per_step_2_to_10"]) >= {"ratio", "dcx_fixed_seconds"}
    assert results["machine"]["cpu_reference_seconds"] > 0
    assert results["lock_stall"]["plain_psql"]["samples"] > 0
    assert "without node steps" in results["wallet_fix"]
    assert "startup (median)" in done.stdout
