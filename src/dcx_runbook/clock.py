"""Timestamps of events and journal entries: UTC, to the millisecond, `2026-11-26T09:47:34.123Z`."""

from __future__ import annotations

import time

_second: tuple[int, str] = (-1, "")  # the last whole second seen, already formatted


def now() -> str:
    """Formats the date once per second: a run stamps several events per step."""
    global _second
    whole, millis = divmod(int(time.time() * 1000), 1000)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{millis:03d}Z"
