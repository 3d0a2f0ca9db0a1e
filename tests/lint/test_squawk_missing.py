"""A missing or broken squawk binary: one clear message; exit 2 with --strict, a warning (exit
0) otherwise; never a traceback. The runbook's own rules still run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli

CORPUS = Path(__file__).parent / "corpus"


def broken(tmp_path: Path) -> str:
    script = tmp_path / "squawk"
    script.write_text("#!/bin/sh\necho 'squawk: something went wrong' >&2\nexit 3\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("which", ["missing", "broken"])
def test_without_a_working_squawk(tmp_path: Path, which: str) -> None:
    squawk = str(tmp_path / "nowhere" / "squawk") if which == "missing" else broken(tmp_path)
    path = CORPUS / "unbounded-update-delete.yaml"

    done = cli("validate", str(path), env={"DCX_SQUAWK": squawk})
    strict = cli("validate", "--strict", str(path), env={"DCX_SQUAWK": squawk})

    assert done.returncode == 0, done.stderr
    assert strict.returncode == 2, strict.stderr
    for result in (done, strict):
        warnings = [line for line in result.stderr.splitlines() if "squawk" in line]
        assert len(warnings) == 2, (
            result.stderr
        )  # the warning, and the summary's "(squawk not run)"
        assert "the SQL was not linted" in warnings[0]
        assert "Traceback" not in result.stderr
        assert "unbounded-update-delete" in result.stderr  # our rules still ran
