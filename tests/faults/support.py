"""Driving a real `dcx-runbook` process: start it, wait for it to reach a point, signal it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.conftest import RUNBOOKS

WAITS = str(RUNBOOKS / "waits.yaml")


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dcx_runbook", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def waiting_on_advisory_lock(url: str, key: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
            (key,),
        ).fetchone()
    return bool(row and row[0])


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def waits_args(url: str, dbname: str, work: Path, *extra: str) -> list[str]:
    return [
        "run",
        WAITS,
        "--yes",
        "--output",
        "json",
        "--database-url",
        url,
        "--var",
        f"expected_database={dbname}",
        "--var",
        f"work={work}",
        *extra,
    ]
