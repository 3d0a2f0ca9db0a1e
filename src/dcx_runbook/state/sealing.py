"""Sealed bytes: a file's pre-image as the journal keeps it, every secret value replaced by a
marker naming its variable, restored from the live value and checked by hash."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from dcx_runbook.errors import JournalError
from dcx_runbook.filesystem import sha256


def _marker(name: str) -> bytes:
    return f"\x00dcx-secret:{name}\x00".encode()


def seal(data: bytes, secrets: Mapping[str, str | None]) -> str:
    for name, value in sorted(secrets.items(), key=lambda kv: -len(kv[1] or "")):
        if value:
            data = data.replace(value.encode(), _marker(name))
    return base64.b64encode(data).decode()


def unseal(sealed: str, secrets: Mapping[str, str | None], checksum: str) -> bytes:
    data = base64.b64decode(sealed)
    for name, value in secrets.items():
        if _marker(name) in data:
            if value is None:
                raise JournalError(f"restoring needs the secret variable {name}: pass it again")
            data = data.replace(_marker(name), value.encode())
    if sha256(data) != checksum:
        raise JournalError("a stored pre-image does not match its checksum; not restored")
    return data
