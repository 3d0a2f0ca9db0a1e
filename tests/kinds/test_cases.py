"""Table-driven cases for the file-editing kinds: given content and an operation, the exact
bytes after (planned in memory, then written and compared), or the error."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from dcx_runbook.kinds import OPERATIONS
from dcx_runbook.kinds.base import Context
from dcx_runbook.kinds.env_file import EnvFileOp
from dcx_runbook.kinds.file import FileOp
from dcx_runbook.secrets import Masker

CASES = Path(__file__).parent / "cases"


def load(kind: str) -> list[dict[str, Any]]:
    return yaml.safe_load((CASES / f"{kind}.yaml").read_text())


def apply(kind: str, case: dict[str, Any], tmp_path: Path) -> bytes:
    target = tmp_path / "target"
    target.write_bytes(case["before"].encode())
    if kind == "env_file":
        op: Any = EnvFileOp(kind="env_file", path=str(target), **case["op"])
    else:
        op = FileOp(kind="file", path=str(target), edits=case["edits"])
    ctx = Context(values=case.get("values", {}), masker=Masker())
    effect = OPERATIONS[kind].plan(op, ctx)
    effect.execute(ctx)
    return target.read_bytes()


@pytest.mark.parametrize("kind", ["env_file", "file"])
def test_cases(kind: str, tmp_path: Path) -> None:
    for case in load(kind):
        work = tmp_path / case["name"].replace(" ", "-").replace("/", "-")[:60]
        work.mkdir()
        if "error" in case:
            with pytest.raises(ValueError, match=re.escape(case["error"])):
                apply(kind, case, work)
            assert (work / "target").read_bytes() == case["before"].encode(), case["name"]
            continue
        assert apply(kind, case, work) == case["after"].encode(), case["name"]
        if kind == "env_file" and "set" in case["op"]:
            parsed = dotenv_values(work / "target", interpolate=False)
            for key, value in case["op"]["set"].items():
                assert parsed[key] == value, case["name"]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_rewritten_files_keep_owner_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "backend.env"
    target.write_text("A=1\n")
    os.chown(target, 65534, 65534)
    target.chmod(0o640)
    op = EnvFileOp(kind="env_file", path=str(target), set={"B": "2"})
    ctx = Context(values={}, masker=Masker())
    OPERATIONS["env_file"].plan(op, ctx).execute(ctx)
    st = target.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o640)
    assert target.read_text() == "A=1\nB=2\n"  # the file's bare style kept
