"""`show` prints everything that decides what a run does (issue 18): the target and its guard,
timeouts, each step's transaction mode, SQL, argv and files, its rollback; golden, the same on a
terminal at 80 and 160 columns as piped (long lines are the terminal's to wrap, never cut)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli
from tests.support.terminal import converse, screen_lines

ROOT = Path(__file__).parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "show-mixed.txt"
MIXED = "tests/runbooks/mixed.yaml"  # relative: the golden file names it so


def test_piped_it_is_the_golden_text() -> None:
    done = cli("show", MIXED, env={"COLUMNS": "80"}, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == GOLDEN.read_text()
    for needed in (
        "database must be: ${expected_database}",
        "lock_timeout: 2s (default)",
        "its SQL runs in: one transaction with its verify (transaction: true)",
        "sql: CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL)",
        'argv: ["test", "${step3_precheck}", "=", "yes"]',
        "path: ${workdir}/config.ini",
        "rollback: restore the exact bytes of every file it edited",
        "rollback action: sql",
    ):
        assert needed in done.stdout, needed


@pytest.mark.parametrize("columns", ["80", "160"])
def test_on_a_terminal_the_same_lines(columns: str) -> None:
    code, out = converse(["show", str(ROOT / MIXED)], [], {"COLUMNS": columns})
    assert code == 0, out
    expected = [line.rstrip() for line in GOLDEN.read_text().splitlines() if line.strip()]
    expected[0] = expected[0].replace(f"({MIXED})", f"({ROOT / MIXED})")
    assert screen_lines(out) == expected
