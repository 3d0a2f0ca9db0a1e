"""Reading a run's record back: its snapshot, then its log's lines past it, its shape checked
(docs/journal-format.md); and what tells that a record was written since it was read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dcx_runbook.errors import JournalError
from dcx_runbook.state.entries import FORMAT, shape_problem


def _replay(data: dict[str, Any], log_path: Path) -> None:
    """Apply the log's lines newer than the snapshot. A torn last line is a write that was never
    acknowledged (nothing acted on it); a damaged line before the last is corruption."""
    try:
        lines = log_path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return
    if lines and lines[-1] == b"":
        lines.pop()
    base = int(data.get("seq", 0))
    steps = {step["id"]: i for i, step in enumerate(data["steps"])}
    for number, raw in enumerate(lines, 1):
        try:
            line = json.loads(raw)
            seq, top, changed = int(line["seq"]), line["top"], line["steps"]
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                return
            raise JournalError(
                f"journal log {log_path} is damaged at line {number}; it was left as is: inspect "
                "it, and do not delete it before the run's changes are accounted for"
            ) from None
        if seq <= base:
            continue
        data.update(top)
        data["seq"] = seq
        for step in changed:
            if step.get("id") in steps:
                data["steps"][steps[step["id"]]] = step


def read_record(path: Path) -> dict[str, Any]:
    """A run's record as last written: its snapshot, then the log's lines past it; its shape
    checked (docs/journal-format.md) before and after the log is applied."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise JournalError(
            f"journal record {path} is unreadable ({exc}); it was left as is: "
            "inspect it, and do not delete it before the run's changes are accounted for"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("format"), int) or "steps" not in data:
        raise JournalError(f"journal record {path} is not a dcx-runbook run record")
    if data["format"] > FORMAT:
        raise JournalError(
            f"journal record {path} was written by a newer dcx-runbook (journal format "
            f"{data['format']}; this one reads up to {FORMAT}): use that version or a later one"
        )
    damage = shape_problem(data)
    if damage is None:
        _replay(data, path.with_suffix(".jsonl"))
        damage = shape_problem(data)
    if damage is not None:
        raise JournalError(
            f"journal record {path} is damaged ({damage}); it was left as is: inspect it, and do "
            "not delete it before the run's changes are accounted for"
        )
    return data


def signature(path: Path) -> tuple[int, ...]:
    """What changes when a record is written: its snapshot's and its log's inode, size and
    modification time."""
    out: list[int] = []
    for file in (path, path.with_suffix(".jsonl")):
        try:
            st = os.stat(file)
        except OSError:
            out += (-1, -1, -1)
            continue
        out += (st.st_ino, st.st_size, st.st_mtime_ns)
    return tuple(out)
