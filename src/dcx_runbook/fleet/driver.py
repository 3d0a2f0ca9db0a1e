"""The fleet's loop, in one thread: start children as the waves allow, relay their events as they
come, reap them as they end. Ctrl-C (or SIGTERM) is a flag here, never an exception in the middle
of the bookkeeping: no new target starts, each running child gets one SIGINT and unwinds itself,
and the loop waits for every one of them to end."""

from __future__ import annotations

import os
import selectors
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Protocol

from dcx_runbook.fleet.plan import Planned
from dcx_runbook.fleet.waves import Waves
from dcx_runbook.fleet.worker import Child, interrupt
from dcx_runbook.statuses import TargetState

TICK = 0.2  # seconds between two redraws of the live view while nothing is said

Start = Callable[[Planned, list[int]], Child]


class Progress(Protocol):
    """What the driver tells: each child's events, each target's end, and its own words."""

    def event(self, child: Child, event: dict[str, Any]) -> None: ...

    def ended(self, child: Child, state: TargetState, message: str, code: int) -> None: ...

    def not_started(self, target: Planned, message: str) -> None: ...

    def began(self, child: Child) -> bool | None: ...

    def say(self, message: str) -> None: ...

    def tick(self) -> None: ...


class Signals:
    """Ctrl-C and SIGTERM counted, never raised, from a fleet's start to its end (its record
    written, its last event sent): the bookkeeping is never cut in the middle. A closed terminal
    (SIGHUP) is ignored: the fleet goes on, its output dropped."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def held(self) -> Iterator[Signals]:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.count += 1

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Driver:
    def __init__(self, waves: Waves, start: Start, progress: Progress, signals: Signals):
        self.waves, self.start, self.progress = waves, start, progress
        self.signals, self.seen = signals, signals.count  # a Ctrl-C from before is not for us
        self.children: dict[int, Child] = {}  # by the read end of its pipe
        self.selector = selectors.DefaultSelector()
        self.interrupted = False
        self._told_stop = False

    def run(self) -> None:
        """Until every target that started has ended and no other will start."""
        while True:
            if self.signals.count > self.seen and not self.interrupted:
                self._interrupt()
            if not self.interrupted:
                self._launch()
            if self.waves.done and not self.children:
                return
            for key, _ in self.selector.select(timeout=TICK):
                self._read(key.data)
            self.progress.tick()

    def _launch(self) -> None:
        while (target := self.waves.next()) is not None:
            try:
                child = self.start(target, list(self.children))
            except OSError as exc:  # no process could be made (EAGAIN, ENOMEM): nothing began
                self.waves.finished(target, TargetState.REFUSED)
                self.progress.not_started(target, f"could not start its process: {exc}")
                continue
            self.children[child.fd] = child
            self.selector.register(child.fd, selectors.EVENT_READ, child)

    def _read(self, child: Child) -> None:
        try:
            chunk = os.read(child.fd, 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            self._reap(child)
            return
        for event in child.lines(chunk):
            if child.seen(event):
                self.progress.event(child, event)

    def _reap(self, child: Child) -> None:
        self.selector.unregister(child.fd)
        os.close(child.fd)
        del self.children[child.fd]
        _, status = os.waitpid(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        state, message = child.state(code, self.progress.began(child))
        self.waves.finished(child.target, state)
        self.progress.ended(child, state, message, code)
        if self.waves.stopped and self.waves.queue and not self._told_stop:
            self._told_stop = True
            self.progress.say(self.waves.stopped)

    def _interrupt(self) -> None:
        self.interrupted = self._told_stop = True
        self.waves.stop("stopped by Ctrl-C or SIGTERM: no new target starts")
        running = [c.target.name for c in self.children.values()]
        self.progress.say(
            "Ctrl-C: no new target starts; "
            + (
                f"stopping and unwinding {', '.join(running)}"
                if running
                else "no target was running"
            )
        )
        for child in self.children.values():
            interrupt(child)
