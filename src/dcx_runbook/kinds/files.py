"""Whole-file effects shared by `file` and `env_file`: computed in memory, written atomically."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from dcx_runbook.filesystem import sha256, write_atomic
from dcx_runbook.kinds.base import Context

__all__ = ["sha256", "write_atomic"]  # re-exported: the file kinds' callers use them here


def unified_diff(path: Path, before: bytes | None, after: bytes | None) -> str:
    a = (before or b"").decode(errors="replace").splitlines(keepends=True)
    b = (after or b"").decode(errors="replace").splitlines(keepends=True)
    shown = str(path.absolute())  # which file, wherever the command ran
    old = shown if before is not None else "/dev/null"
    new = shown if after is not None else "/dev/null"
    lines = difflib.unified_diff(a, b, old, new)
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


@dataclass(frozen=True)
class FileWrite:
    """Replace `path`'s content with `after` (it was `before`)."""

    path: Path
    before: bytes | None
    after: bytes
    display: str

    def describe(self) -> str:
        return self.display

    def paths(self) -> list[Path]:
        return [self.path]

    def execute(self, ctx: Context) -> str:
        current = ctx.read_file(self.path)
        if current != self.before:
            raise RuntimeError(f"{self.path} changed while the step was running; not written")
        if self.before == self.after:
            return "unchanged"
        if ctx.dry_run:
            ctx.overlay[self.path] = self.after
            return "previewed, not written (dry run)"
        ctx.before_write(self.path, self.after)
        mode = self.path.stat().st_mode & 0o7777 if self.before is not None else None
        write_atomic(self.path, self.after, mode)
        return "written"


def plan_write(
    ctx: Context,
    path: Path,
    before: bytes | None,
    after: bytes,
    shown: tuple[bytes | None, bytes] | None = None,
) -> FileWrite:
    """`shown`, if given, is what the diff shows in place of (before, after): an env file's,
    with the values of its other keys masked."""
    if before == after:
        diff = f"{path}: no change\n"
    else:
        diff = unified_diff(path, *(shown or (before, after)))
        diff = diff or f"{path}: changed (only in what the diff does not show)\n"
    return FileWrite(path, before, after, ctx.masker(diff))
