"""`list` reads the search path without validating (issue 18): no pydantic on its path, so it
answers at once; `validate` is what validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import cli
from tests.support.terminal import converse, screen_lines


def test_list_reads_without_pydantic() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dcx_runbook", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wallet-fix" in done.stdout and "12" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("pydantic", "psycopg")}


def test_a_file_that_is_not_a_runbook_is_listed_as_such(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("title: [unclosed\n")
    (tmp_path / "ok.yaml").write_text("name: ok\ntitle: fine\nsteps: [{id: a, title: a}]\n")
    done = cli("list", "--runbooks-dir", str(tmp_path), env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    # Piped: a tab-separated line per runbook (name, title, steps, where found).
    rows = {line.split("\t")[0]: line.split("\t") for line in done.stdout.splitlines()}
    assert rows["broken"][1:3] == ["(not readable: run `dcx-runbook validate`)", "?"]
    assert rows["ok"][1:3] == ["fine", "1"]


def test_on_a_terminal_no_word_is_broken(tmp_path: Path) -> None:
    """Every table, not only `runs`: a long title ends in an ellipsis on its own line, never
    wraps onto the next."""
    long_title = "a title long enough to overflow an eighty column terminal " * 2
    (tmp_path / "long-one.yaml").write_text(
        f"name: long-one\ntitle: {long_title.strip()}\nsteps: [{{id: a, title: a}}]\n"
    )
    code, out = converse(["list", "--runbooks-dir", str(tmp_path)], [], {"COLUMNS": "80"})
    assert code == 0, out
    lines = screen_lines(out)
    (row,) = [line for line in lines if line.startswith("long-one ")]
    assert len(row) <= 80 and "…" in row
    assert not any(line.startswith("  ") and "eighty" in line for line in lines)
