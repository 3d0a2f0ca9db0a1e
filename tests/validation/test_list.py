"""`list` reads the search path without validating (issue 18): no pydantic on its path, so it
answers at once; `validate` is what validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import cli


def test_list_reads_without_pydantic() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dcx_runbook", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wallet-fix" in done.stdout and "10" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("pydantic", "psycopg")}


def test_a_file_that_is_not_a_runbook_is_listed_as_such(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("title: [unclosed\n")
    (tmp_path / "ok.yaml").write_text("name: ok\ntitle: fine\nsteps: [{id: a, title: a}]\n")
    done = cli("list", "--runbooks-dir", str(tmp_path), env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "not readable: run `dcx-runbook validate`" in lines["broken"]
    assert "fine" in lines["ok"] and " 1 " in lines["ok"]
