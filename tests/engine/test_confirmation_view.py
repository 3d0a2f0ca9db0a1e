"""The confirmation (issue 18), golden: before a run changes anything, it says where (the
server's identity), each step with a line of what it will do, and the lint's summary, at 80 and
160 columns on a real terminal; a no is "not confirmed"; piped, nobody is asked, and it says so."""

from __future__ import annotations

import re

import pytest

from tests.conftest import cli, schema_dump
from tests.engine.conftest import MIXED, Mixed
from tests.support.terminal import converse, screen_lines

STEPS = """\
   1. create-table  CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NU…
   2. env-setting   edits app.env (in DIR
   3. edit-config   edits config.ini (in DIR
   4. add-column    ALTER TABLE widgets ADD COLUMN note text
lint: 3 warnings
Go ahead? [y/n] (n): n"""
WHERE = (
    "Run mixed (4 steps) against database DB (oid N) on the server with system identifier N "
    "at HOST (postgresql://postgres@HOST/DB):"
)


def normalised(text: str, mixed: Mixed) -> str:
    text = text.replace(mixed.dbname, "DB")
    text = re.sub(r"127\.0\.0\.1:\d+", "HOST", text)
    text = re.sub(r"\(in /\S*", "(in DIR", text)  # the test's directory, cut to fit
    return re.sub(r"\b\d{4,}\b", "N", text)


@pytest.mark.parametrize("columns", [80, 160])
def test_the_question_lists_the_steps_the_server_and_the_lint(mixed: Mixed, columns: int) -> None:
    before = schema_dump(mixed.url)
    code, out = converse(
        ["run", MIXED, *mixed.args()], [(b"[y/n]", b"n\n")], {"COLUMNS": str(columns)}
    )
    assert code == 4, out
    lines = screen_lines(out)
    start = next(n for n, line in enumerate(lines) if line.startswith("Run mixed"))
    end = next(n for n, line in enumerate(lines) if line.startswith("Go ahead?"))
    asked = lines[start : end + 1]
    steps_at = next(n for n, line in enumerate(asked) if line.startswith("   1. "))
    assert normalised(" ".join(asked[:steps_at]), mixed) == WHERE  # wrapped as the width says
    assert normalised("\n".join(asked[steps_at:]), mixed) == STEPS
    assert all(len(line) <= columns for line in asked)
    assert "not confirmed; nothing was changed" in " ".join(lines)
    assert schema_dump(mixed.url) == before


def test_piped_nobody_is_asked_and_it_says_so(mixed: Mixed) -> None:
    done = cli("run", MIXED, *mixed.args(), env={"COLUMNS": "80"})
    assert done.returncode == 4
    said = " ".join(done.stderr.split())
    assert "Go ahead?" not in said
    assert "not confirmed: nobody could be asked (no terminal; pass --yes)" in said
