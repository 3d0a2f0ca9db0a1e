"""Timestamps: one format everywhere, and the cached second never goes stale."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from dcx_runbook import clock

FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_now_is_utc_to_the_millisecond() -> None:
    before = datetime.now(UTC)
    stamp = clock.now()
    after = datetime.now(UTC)
    assert FORMAT.match(stamp), stamp
    assert before - timedelta(milliseconds=1) <= parse(stamp) <= after


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1795340854.999, "2026-11-22T09:47:34.999Z"),
        (1795340855.0005, "2026-11-22T09:47:35.000Z"),
        (1795340855.25, "2026-11-22T09:47:35.250Z"),
        (1795340916.5, "2026-11-22T09:48:36.500Z"),
    ],
)
def test_each_second_is_formatted_afresh(
    monkeypatch: pytest.MonkeyPatch, t: float, expected: str
) -> None:
    monkeypatch.setattr(clock.time, "time", lambda: t)
    assert clock.now() == expected
