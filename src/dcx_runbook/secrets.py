"""Masking: secret values and URL passwords never reach output, JSON, the journal or errors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"
MIN_SECRET_LENGTH = 3  # masking a one-letter secret everywhere would make output unreadable
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]*)(?=@)")
_CONNINFO_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)")


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url)


class Masker:
    """Replaces every known secret, and any password inside a URL or conninfo, with ***."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        candidates = {secret}
        try:
            parts = urlsplit(secret)
        except ValueError:
            parts = None
        if parts is not None and parts.scheme and parts.netloc and parts.password is not None:
            # A secret URL stays readable (host, database); its password is what is hidden.
            candidates = {parts.password, unquote(parts.password)}
        elif parts is not None and parts.scheme and parts.netloc:
            candidates = set()
        for value in candidates:
            if len(value) >= MIN_SECRET_LENGTH and value not in self._secrets:
                self._secrets.append(value)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        # Every event's text passes here: the patterns run only where they could match.
        if "://" in text:
            text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
        if "password" in text:
            text = _CONNINFO_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def deep(self, value: object) -> object:
        """Mask every string inside a JSON-like structure."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(str(k)): self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value
