"""Every command that reads a runbook refuses a file over 10 MB unread. The file here is a valid
runbook (one step, then 10 MB of comments), so "refused" can't be a parse error in disguise: had
the command parsed it, `show` would print it and `list` would count its step."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dcx_runbook.format.loader import MAX_RUNBOOK_BYTES, parse
from tests.conftest import cli

HEAD = b"""name: huge
title: a valid runbook past the size limit
steps:
  - id: only
    title: the only step
    verify: [{kind: shell, argv: ["true"]}]
"""
COMMENT = b"# " + b"x" * 1021 + b"\n"  # 1 KB a line


@pytest.fixture
def books(tmp_path: Path) -> Path:
    folder = tmp_path / "books"
    folder.mkdir()
    with (folder / "huge.yaml").open("wb") as fh:
        fh.write(HEAD)
        fh.write(COMMENT * (MAX_RUNBOOK_BYTES // len(COMMENT) + 1))
    assert (folder / "huge.yaml").stat().st_size > MAX_RUNBOOK_BYTES
    return folder


def test_the_file_is_a_runbook_but_for_its_size(books: Path) -> None:
    assert [s.id for s in parse((books / "huge.yaml").read_bytes(), "huge").runbook.steps] == [
        "only"
    ]


@pytest.mark.parametrize("how", ["path", "name"])
def test_show_refuses_it_unread(books: Path, how: str) -> None:
    args = [str(books / "huge.yaml")] if how == "path" else ["huge", "--runbooks-dir", str(books)]
    started = time.monotonic()

    done = cli("show", *args)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "huge.yaml: larger than 10 MB: not a runbook (is it the right file?)" in done.stderr
    assert "the only step" not in done.stdout
    assert time.monotonic() - started < 10


def test_list_names_it_invalid_without_parsing_it(books: Path) -> None:
    done = cli("list", "--runbooks-dir", str(books))

    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("huge\t")]
    assert "(not readable: run `dcx-runbook validate`)" in row, row
    assert "a valid runbook past the size limit" not in done.stdout
