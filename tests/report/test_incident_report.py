"""The incident report (`log RUN --format markdown|html`, issue 18): a failed-and-unwound run and
a run that waited for a lock, rendered by a real headless Chromium: the page loads with no
console message, and its timeline has one bar per phase of the run's events."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from dcx_runbook.state.event_log import read
from dcx_runbook.state.timeline import timeline
from tests.conftest import cli, write_runbook
from tests.support.blocker import lock_held

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
# CI installs Debian's Chromium (`make browser`) and sets DCX_REQUIRE_BROWSER: there a missing
# browser fails these tests instead of skipping them.
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("DCX_REQUIRE_BROWSER"),
    reason="Chromium is not installed (make browser)",
)


def rendered(page: Path, tmp_path: Path) -> tuple[str, str]:
    """The DOM Chromium built from the page, and what it logged; a screenshot beside the page."""
    profile = tmp_path / "chromium-profile"
    args = [CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run(
        [*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = subprocess.run(
        [
            *args,
            "--window-size=1100,900",
            f"--screenshot={page.with_suffix('.png')}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0 and page.with_suffix(".png").stat().st_size > 10_000
    return dom.stdout, dom.stderr + shot.stderr


def report(run_id: str, state: Path, tmp_path: Path) -> tuple[str, str, list[dict]]:
    page = tmp_path / f"{run_id}.html"
    done = cli("log", run_id, "--format", "html")
    assert done.returncode == 0, done.stderr
    page.write_text(done.stdout)
    dom, logged = rendered(page, tmp_path)
    return dom, logged, read(state / "runs" / f"{run_id}.json")


def bars(dom: str) -> list[tuple[str, str]]:
    return re.findall(r'<rect class="bar[^"]*" data-step="([^"]+)" data-phase="([^"]+)"', dom)


FAILING = [
    {
        "id": "create-t",
        "title": "create t",
        "precheck": [
            {
                "kind": "sql",
                "name": "t is not there",
                "query": "SELECT to_regclass('t') IS NULL",
                "expect": True,
            }
        ],
        "action": [{"kind": "sql", "sql": "CREATE TABLE t (id int)"}],
        "verify": [
            {
                "kind": "sql",
                "name": "t is there",
                "query": "SELECT to_regclass('t') IS NOT NULL",
                "expect": True,
            }
        ],
        "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t"}]},
    },
    {
        "id": "fill-t",
        "title": "fill t (its verify fails)",
        "action": [{"kind": "sql", "sql": "INSERT INTO t VALUES (1), (2)"}],
        "verify": [
            {"kind": "sql", "name": "three rows", "query": "SELECT count(*) FROM t", "expect": 3}
        ],
        "rollback": {"action": [{"kind": "sql", "sql": "DELETE FROM t"}]},
    },
]


def test_a_failed_and_unwound_run(tmp_path: Path, database_url: str, _isolate: Path) -> None:
    path = write_runbook(tmp_path / "failing.yaml", "failing", FAILING)
    done = cli("run", str(path), "--yes", "-o", "json", env={"DATABASE_URL": database_url})
    assert done.returncode == 1, done.stderr
    run_id = json.loads(done.stdout.splitlines()[-1])["detail"]["run_id"]
    dom, logged, events = report(run_id, _isolate, tmp_path)
    kept = _isolate / "runs" / f"{run_id}.events.jsonl"
    assert kept.stat().st_mode & 0o777 == 0o600  # as private as the journal
    assert ":CONSOLE" not in logged, logged  # no script error, no blocked request
    drawn = bars(dom)
    line = timeline(events)
    assert line is not None
    assert sorted(drawn) == sorted((s.step, s.phase) for s in line.segments)  # a bar per phase
    assert ("create-t", "precheck") in drawn and ("create-t", "action") in drawn
    assert ("create-t", "rollback.action") in drawn  # the unwind, drawn
    assert 'class="bar phase-action undo"' in dom
    assert "three rows" in dom and "INSERT INTO t VALUES (1), (2)" in dom  # each step's story
    markdown = cli("log", run_id, "--format", "markdown").stdout
    assert "```mermaid\ngantt" in markdown and ":crit, create-t" in markdown
    assert "failed (exit 1)" in markdown and "| verify | three rows: value 2" in markdown


def test_a_run_that_waited_for_a_lock(
    tmp_path: Path, database_url: str, db: psycopg.Connection, _isolate: Path
) -> None:
    db.execute("CREATE TABLE busy (id int)")
    step = {
        "id": "alter-busy",
        "title": "alter a busy table",
        "lock_timeout": "200ms",
        "attempts": 10,
        "action": [{"kind": "sql", "sql": "ALTER TABLE busy ADD COLUMN note text"}],
        "rollback": {"action": [{"kind": "sql", "sql": "ALTER TABLE busy DROP COLUMN note"}]},
    }
    path = write_runbook(tmp_path / "busy.yaml", "busy", [step])
    with lock_held(database_url, "busy"):
        done = cli("run", str(path), "--yes", "-o", "json", env={"DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout.splitlines()[-1])["detail"]["run_id"]
    dom, logged, events = report(run_id, _isolate, tmp_path)
    assert ":CONSOLE" not in logged, logged
    line = timeline(events)
    assert line is not None and line.marks, "the lock wait was never met"
    assert sorted(bars(dom)) == sorted((s.step, s.phase) for s in line.segments)
    assert dom.count('class="lock-wait"') == len(line.marks)
    assert "Lock wait: " in dom and "blocked by" in dom


def test_a_run_whose_process_died_is_said_so_not_running_exit_none(tmp_path: Path) -> None:
    """A run whose process is gone rendered as `Outcome: running (exit None)`."""
    import socket

    from dcx_runbook.state import report

    ended = subprocess.Popen(["true"])
    ended.wait()  # a pid that is no process now
    data = {
        "run_id": "20261201T000000Z-abcdef",
        "runbook": {"name": "gone", "sha256": "0" * 64},
        "status": "running",
        "exit_code": None,
        "pid": ended.pid,
        "operator": {"user": "oncall", "host": socket.gethostname()},
        "steps": [{"id": "a", "title": "a", "status": "action_started"}],
    }
    text = report.markdown(data, [], "no plan, no approvals required")
    assert "did not finish: its process is gone" in text
    assert "`dcx-runbook rollback 20261201T000000Z-abcdef` settles what it left" in text
    assert "None" not in text and "running (exit" not in text
    assert "**Confirmed:** not recorded" in text
