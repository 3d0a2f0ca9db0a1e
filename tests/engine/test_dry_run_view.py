"""The dry run says what it could not evaluate and why (issue 18): a later step's done_when that
depends on an earlier change, the rollback prechecks, and a check that read a file's planned
content is marked simulated; its diffs name the file by its absolute path. On a terminal at 80
and 160 columns it shows the same lines as piped."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import cli
from tests.engine.conftest import MIXED, Mixed
from tests.support.terminal import converse, screen_lines


def checks(mixed: Mixed) -> list[dict]:
    done = mixed.run("--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_every_check_not_evaluated_is_said_with_why(mixed: Mixed) -> None:
    events = checks(mixed)
    deferred = {
        (e["step"], e["phase"]): e["message"]
        for e in events
        if e["event"] == "check" and e["status"] == "deferred"
    }
    # add-column's done_when reads the database create-table changes: not silently dropped.
    assert "depends on the effect of create-table" in deferred[("add-column", "done_when")]
    assert "checked when the rollback runs" in deferred[("create-table", "rollback.precheck")]
    simulated = [
        e["message"]
        for e in events
        if e["event"] == "check" and e["step"] == "env-setting" and e["phase"] == "verify"
    ]
    assert simulated and all("(simulated: against the content planned" in m for m in simulated)
    diffs = [
        e["message"] for e in events if e["event"] == "operation" and "---" in (e["message"] or "")
    ]
    assert diffs and all(f"--- {mixed.work}/" in d for d in diffs)
    assert all(os.path.isabs(d.split("--- ", 1)[1].split()[0]) for d in diffs)


@pytest.mark.parametrize("columns", ["80", "160"])
def test_on_a_terminal_the_same_lines_as_piped(mixed: Mixed, columns: str) -> None:
    args = ["run", MIXED, "--dry-run", *mixed.args()]
    piped = cli(*args, env={"COLUMNS": columns})
    assert piped.returncode == 0, piped.stderr
    code, out = converse(args, [], {"COLUMNS": columns})
    assert code == 0, out
    assert screen_lines(out) == screen_lines(piped.stderr)
    assert all(len(line) <= int(columns) for line in screen_lines(out))
