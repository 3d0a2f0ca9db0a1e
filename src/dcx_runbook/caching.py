"""What a command proved once about a runbook's bytes, kept for the next command: the validated
model of a runbook file, its lint findings, a journaled runbook read back. A run after
`validate` (or after a dry run, or a first run) then neither parses, validates nor lints again
(docs/performance.md).

A cache, never a record: keyed by the sha256 of the bytes it was made from, this package's code
and Python's version; anything wrong with an entry (missing, unreadable, of another shape, not
this user's) makes it a miss, and the work is done again. Entries are pickles, so they are read
only from a directory and files that belong to this user and that nobody else can write (as ssh
treats its keys); `$DCX_RUNBOOK_CACHE_DIR=off` turns the cache off.

Only a command that writes its state anyway (a run, a rollback) keeps new entries, once it has
said so (`keeping`): a dry run, `status` and `validate` write nothing anywhere, and read only."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

_FORMAT = b"dcx-runbook cache 1"
_keeping = False


@contextlib.contextmanager
def keeping(allowed: bool) -> Iterator[None]:
    """Within: new entries are kept when `allowed` (a command that writes its state anyway)."""
    global _keeping
    before, _keeping = _keeping, allowed
    try:
        yield
    finally:
        _keeping = before


def cache_dir() -> Path | None:
    """`$DCX_RUNBOOK_CACHE_DIR`, else `cache/` in the state directory when one is set, else
    `$XDG_CACHE_HOME/dcx-runbook` (`~/.cache/dcx-runbook`); None when turned off."""
    explicit = os.environ.get("DCX_RUNBOOK_CACHE_DIR")
    if explicit:
        return None if explicit == "off" else Path(explicit)
    state = os.environ.get("DCX_RUNBOOK_STATE_DIR")
    if state:
        return Path(state) / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dcx-runbook"


@cache
def code_identity() -> bytes:
    """This package's code as it is now: each module's path, size and modification time (an
    edited checkout is another code), with Python's version."""
    package = Path(__file__).parent
    parts = [sys.version.encode(), _FORMAT]
    for directory, _, files in sorted(os.walk(package)):
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(directory, name))
                parts.append(f"{directory}/{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return hashlib.sha256(b"\0".join(parts)).digest()


def _entry(kind: str, key: bytes) -> Path | None:
    base = cache_dir()
    if base is None:
        return None
    digest = hashlib.sha256(code_identity() + kind.encode() + b"\0" + key).hexdigest()
    return base / kind / f"{digest}.pickle"


def load(kind: str, key: bytes) -> Any | None:
    """The value kept under `key`, or None (a miss)."""
    path = _entry(kind, key)
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not (
                _ours(st) and _ours(os.stat(path.parent)) and _ours(os.stat(path.parent.parent))
            ):
                return None
            return pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a torn or foreign entry is a miss, and goes
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def store(kind: str, key: bytes, value: Any) -> None:
    """Keep `value` under `key` (within `keeping(True)`); a cache that can't be written is
    no cache, never an error."""
    path = _entry(kind, key) if _keeping else None
    if path is None:
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass


def _ours(st: os.stat_result) -> bool:
    """Owned by this user, writable by nobody else."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
