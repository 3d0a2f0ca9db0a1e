"""Bytes on disk, safely: a write is whole or absent, and its directory entry durable; one
digest for every checksum the journal and the file kinds keep."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` survive a crash."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    fsync_dir(path.parent)


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
