"""Putting a file back: the exact pre-run bytes and mode, or nothing where the run created it;
refused, with the difference shown, when the file changed since the run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dcx_runbook.errors import UndoFailed
from dcx_runbook.filesystem import sha256, write_atomic
from dcx_runbook.kinds.files import unified_diff
from dcx_runbook.state.sealing import unseal


def file_state(path: Path, entry: dict[str, Any]) -> tuple[str, bytes | None]:
    """("as_it_was" | "restorable" | "changed", the current bytes): whether the file is still
    what the run found, what the run left, or something else (edited since)."""
    try:
        current: bytes | None = path.read_bytes()
    except FileNotFoundError:
        current = None
    current_sha = sha256(current)
    if current_sha == entry["sha256"]:
        return "as_it_was", current
    return ("restorable" if current_sha in entry.get("planned", []) else "changed"), current


def restore_file(
    path: Path,
    entry: dict[str, Any],
    secrets: Mapping[str, str | None],
    *,
    force: bool,
    view: Callable[[bytes], bytes] | None = None,
) -> str:
    """Put back the exact bytes and mode (or remove a file the run created). `view`: how the
    kind that wrote the file shows it, should the restore be refused (an env file: keys, every
    value masked)."""
    state, current = file_state(path, entry)
    if state == "as_it_was":
        return f"{path}: already as it was"
    if state == "changed" and not force:
        before = unseal(entry["sealed"], secrets, entry["sha256"]) if entry["existed"] else None
        if view is not None:
            before = None if before is None else view(before)
            current = None if current is None else view(current)
        diff = unified_diff(path, before, current)
        raise UndoFailed(
            f"{path} changed after the run (it is neither what the run left nor what it found); "
            f"not restored. Difference from the pre-run content:\n{diff}"
            "Merge by hand, or rerun the rollback with --force to overwrite it."
        )
    if not entry["existed"]:
        if current is not None:
            path.unlink()
        return f"{path}: removed (the run created it)"
    data = unseal(entry["sealed"], secrets, entry["sha256"])
    write_atomic(path, data, entry["mode"])
    return f"{path}: restored ({len(data)} bytes, mode {entry['mode']:o})"
