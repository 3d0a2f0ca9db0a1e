"""squawk (the `squawk-cli` package's native binary) over every SQL text of a runbook, in one
process call: a temporary file per text, `--reporter json`, findings mapped back to their text.

`require-lock-timeout` and `require-statement-timeout` are satisfied by the engine (it sets both
for every statement: docs/safety.md); `prefer-robust-stmts` by its transactions and `done_when`
(a step already done is not run again; a failed concurrent build's INVALID index is dropped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError

from dcx_runbook.lint.sites import Site, for_squawk

SATISFIED = ("require-lock-timeout", "require-statement-timeout", "prefer-robust-stmts")
TIMEOUT = 60


class SquawkMissing(Exception):
    """squawk can't be run: not installed, broken, or its output not understood."""


@dataclass(frozen=True)
class Raw:
    """One squawk finding in one text: 0-based line and column inside it."""

    site: Site
    rule: str
    level: str
    message: str
    help: str
    line: int
    column: int


def binary() -> str:
    """The squawk binary: `$DCX_SQUAWK`, else next to this interpreter (the squawk-cli wheel's
    script), else on $PATH."""
    explicit = os.environ.get("DCX_SQUAWK")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "squawk"
    if beside.exists():
        return str(beside)
    found = shutil.which("squawk")
    if found is None:
        raise SquawkMissing(
            "squawk is not installed (pip install squawk-cli): the SQL was not linted"
        )
    return found


def identity() -> str:
    """Which squawk would lint, as a cache key: its path, size and modification time."""
    try:
        path = binary()
        st = os.stat(path)
    except (SquawkMissing, OSError):
        return "missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def run(texts: Sequence[Site], pg_version: str | None) -> list[Raw]:
    """squawk's findings for every text, from one process call."""
    if not texts:
        return []
    command = [binary(), "--reporter", "json", "--exclude", ",".join(SATISFIED)]
    if pg_version:
        command.append(f"--pg-version={pg_version}")
    try:
        with tempfile.TemporaryDirectory(prefix="dcx-lint-", dir=_fast_dir()) as tmp:
            names = {}
            for index, site in enumerate(texts):
                path = Path(tmp) / f"{index:06d}.sql"
                path.write_text(for_squawk(site.text))
                names[str(path)] = site
            done = subprocess.run(
                [*command, *names], capture_output=True, text=True, timeout=TIMEOUT, check=False
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        # Not installed, not runnable, no room for its files: the lint is incomplete, said so.
        raise SquawkMissing(f"squawk could not run ({exc}): the SQL was not linted") from None
    return _parse(done, names)


class _Item(BaseModel):
    """One entry of squawk's JSON report."""

    file: str
    rule_name: str
    level: str = "Warning"
    message: str
    help: str | None = None
    line: int
    column: int


def _fast_dir() -> str | None:
    """Memory (/dev/shm) where there is one: a thousand small files there take 0.1 s, against
    2 s on this machine's disk."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def _parse(done: subprocess.CompletedProcess[str], names: dict[str, Site]) -> list[Raw]:
    try:
        if done.returncode not in (0, 1):  # 1: it found something; anything else: it failed
            raise ValueError(done.returncode)
        items = TypeAdapter(list[_Item]).validate_json(done.stdout or "[]")
        return [
            Raw(
                names[item.file],
                item.rule_name,
                item.level.lower(),
                item.message,
                item.help or "",
                item.line,
                item.column,
            )
            for item in items
            if item.file in names
        ]
    except (ValidationError, ValueError, KeyError):
        said = (done.stderr or done.stdout).strip().splitlines()
        raise SquawkMissing(
            f"squawk's output was not understood (exit {done.returncode}: "
            f"{said[0] if said else 'no output'}): the SQL was not linted"
        ) from None
