"""Masking: secret values and URL passwords never reach output, JSON, the journal or errors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"
MIN_SECRET_LENGTH = 3  # masking a one-letter secret everywhere would make output unreadable
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# `scheme://user:` then the rest of the word; the password is the part of the rest before an '@'.
_URL_USERINFO = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:(?P<rest>\S*)")
_QUERY_PASSWORD = re.compile(r"(?<=[?&])password=(?P<pw>[^&#\s]*)")
_CONNINFO_PASSWORD = re.compile(r"(?<![\w?&])password\s*=\s*(?P<pw>'(?:[^'\\]|\\.)*'|\S+)")


def _password_spans(text: str) -> list[tuple[int, int]]:
    """Where the passwords in `text` are: URL userinfo, a URL's ?password=, conninfo password=."""
    spans: list[tuple[int, int]] = []
    if "://" in text:
        for m in _URL_USERINFO.finditer(text):
            # libpq ends the userinfo at an '@', but a password may hold '@', '/' or '?' itself:
            # the last '@' hides it whole (and, if a query holds an '@' too, hides more than
            # the password rather than less).
            end = m.group("rest").rfind("@")
            if end >= 0:
                spans.append((m.start("rest"), m.start("rest") + end))
    if "password" in text:
        for pattern in (_QUERY_PASSWORD, _CONNINFO_PASSWORD):
            spans.extend(m.span("pw") for m in pattern.finditer(text))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _mask_passwords(text: str) -> str:
    for start, end in reversed(_password_spans(text)):
        text = text[:start] + MASK + text[end:]
    return text


def passwords(text: str) -> list[str]:
    """The passwords written in a URL or conninfo string (unquoted), as `mask_url` finds them."""
    found = []
    for start, end in _password_spans(text):
        value = text[start:end]
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(value)
    return found


def mask_url(url: str) -> str:
    """The URL or conninfo string with every password in it replaced by ***."""
    return _mask_passwords(url)


class Masker:
    """Replaces every known secret, and any password inside a URL or conninfo, with ***."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        candidates = set() if _URL.match(secret) else {secret}
        for password in passwords(secret):
            # A secret URL stays readable (host, database); its password is what is hidden. libpq
            # may split a password holding '@' or '/' and quote a piece as a host or database.
            for value in (password, unquote(password)):
                candidates.update({value, *re.split(r"[@/]", value)})
        for value in candidates:
            if len(value) >= MIN_SECRET_LENGTH and value not in self._secrets:
                self._secrets.append(value)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        # Known secrets first: a password that a URL pattern would cut in two is still hidden whole.
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        # Every event's text passes here: the patterns run only where they could match.
        if "://" in text or "password" in text:
            text = _mask_passwords(text)
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
