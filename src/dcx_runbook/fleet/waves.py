"""Which target starts next (docs/fleet.md): the canary wave alone, one at a time, until
`canary` targets have succeeded; then the rest, `concurrency` at a time and never more than
`per_server` on one server; no new target once the failures exceed the budget, or after Ctrl-C.
Pure bookkeeping: the driver (fleet/driver.py) does the starting and the waiting."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

from dcx_runbook.errors import InvalidInput
from dcx_runbook.fleet.plan import Planned
from dcx_runbook.statuses import TargetState

# How a target's run ended that counts against the failure budget.
FAILURES = frozenset(
    {
        TargetState.FAILED,
        TargetState.REFUSED,
        TargetState.INTERRUPTED,
        TargetState.UNDO_INCOMPLETE,
    }
)


@dataclass(frozen=True)
class Limits:
    canary: int = 1
    concurrency: int = 1
    max_failures: int = 0
    per_server: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or (self.per_server is not None and self.per_server < 1):
            raise InvalidInput("--concurrency and --per-server: at least 1")
        if self.canary < 0 or self.max_failures < 0:
            raise InvalidInput("--canary and --max-failures: at least 0")


class Waves:
    def __init__(self, targets: Iterable[Planned], limits: Limits, *, canary: bool = True):
        self.queue: deque[Planned] = deque(targets)
        self.limits = limits
        self.canary_left = limits.canary if canary else 0
        self.running: dict[str, str] = {}  # name -> server
        self.failures = 0
        self.stopped: str | None = None  # why no new target starts

    @property
    def in_canary(self) -> bool:
        return self.canary_left > 0

    def next(self) -> Planned | None:
        """The next target to start now, or None (wait for one to end, or nothing is left)."""
        if self.stopped or not self.queue:
            return None
        limit = 1 if self.in_canary else max(1, self.limits.concurrency)
        if len(self.running) >= limit:
            return None
        busy = Counter(self.running.values())
        cap = self.limits.per_server
        for target in self.queue:
            if cap is None or busy[target.server] < cap:
                self.queue.remove(target)
                self.running[target.name] = target.server
                return target
        return None

    def finished(self, target: Planned, state: TargetState) -> None:
        self.running.pop(target.name, None)
        if state == TargetState.SUCCEEDED and self.canary_left > 0:
            self.canary_left -= 1
        if state in FAILURES:
            self.failures += 1
            if self.failures > self.limits.max_failures and not self.stopped:
                self.stopped = (
                    f"{self.failures} target(s) failed, more than --max-failures "
                    f"{self.limits.max_failures}: no new target starts"
                )

    def stop(self, why: str) -> None:
        self.stopped = self.stopped or why

    @property
    def done(self) -> bool:
        """Nothing running, and nothing more will start."""
        return not self.running and (self.stopped is not None or not self.queue)

    def not_reached(self) -> list[Planned]:
        return list(self.queue)
