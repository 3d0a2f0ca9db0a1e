"""The waves' bookkeeping, for any fleet, limits and outcomes (hypothesis): the canary alone, never
more than --concurrency at work nor --per-server on one server, no new target once the failures
exceed the budget, and every target started once or said not reached."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dcx_runbook.fleet.plan import Planned
from dcx_runbook.fleet.waves import FAILURES, Limits, Waves
from dcx_runbook.format.targets import TargetSpec
from dcx_runbook.statuses import TargetState

ENDS = [TargetState.SUCCEEDED, TargetState.NOT_APPLICABLE, TargetState.FAILED, TargetState.REFUSED]


def target(n: int, server: int) -> Planned:
    spec = TargetSpec(name=f"t{n}", url=f"postgresql://h{server}/d{n}", database=f"d{n}")
    return Planned(spec, spec.url or "", f"h{server}:5432", None)


@settings(max_examples=300, deadline=None)
@given(
    servers=st.lists(st.integers(0, 3), min_size=1, max_size=25),
    canary=st.integers(0, 3),
    concurrency=st.integers(1, 6),
    max_failures=st.integers(0, 3),
    per_server=st.one_of(st.none(), st.integers(1, 3)),
    data=st.data(),
)
def test_the_waves_keep_their_limits(
    servers: list[int],
    canary: int,
    concurrency: int,
    max_failures: int,
    per_server: int | None,
    data: Any,
) -> None:
    targets = [target(n, s) for n, s in enumerate(servers)]
    waves = Waves(targets, Limits(canary, concurrency, max_failures, per_server))
    running: dict[str, Planned] = {}
    started: list[str] = []
    failures = 0
    while not waves.done:
        while (t := waves.next()) is not None:
            assert failures <= max_failures  # nothing starts once the budget is spent
            running[t.name] = t
            started.append(t.name)
        limit = 1 if waves.in_canary else concurrency
        assert 0 < len(running) <= limit
        if per_server is not None:
            assert max(Counter(t.server for t in running.values()).values()) <= per_server
        name = data.draw(st.sampled_from(sorted(running)))
        state = data.draw(st.sampled_from(ENDS))
        failures += state in FAILURES
        waves.finished(running.pop(name), state)
    assert len(started) == len(set(started))
    assert set(started) | {t.name for t in waves.not_reached()} == {t.name for t in targets}
    assert bool(waves.not_reached()) == (failures > max_failures and bool(waves.queue))
