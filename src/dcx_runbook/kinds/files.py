"""Whole-file effects shared by `file` and `env_file`: computed in memory, written atomically."""

from __future__ import annotations

import difflib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dcx_runbook.kinds.base import Context


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def unified_diff(path: Path, before: bytes | None, after: bytes | None) -> str:
    a = (before or b"").decode(errors="replace").splitlines(keepends=True)
    b = (after or b"").decode(errors="replace").splitlines(keepends=True)
    old = str(path) if before is not None else "/dev/null"
    new = str(path) if after is not None else "/dev/null"
    lines = difflib.unified_diff(a, b, old, new)
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def write_atomic(path: Path, data: bytes, mode: int | None) -> None:
    """Write via a temporary file in the same directory, fsync, rename: never a half-written file.

    Through a symbolic link, the file it points to is written and the link stays: renaming onto
    the link would replace it with a copy and leave the real file (the one the journal keeps the
    pre-image of) untouched."""
    path = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".dcx-tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        _keep_owner(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _keep_owner(path: Path, tmp: str) -> None:
    """The rewritten file keeps its owner and group (when we are allowed to set them)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    try:
        os.chown(tmp, st.st_uid, st.st_gid)
    except PermissionError:
        pass  # not root: the file is ours anyway, or the owner can't be given away


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
            return "planned"
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
