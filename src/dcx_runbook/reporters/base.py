"""Events the engine emits. Their JSON form is documented in docs/events.md."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, Any, Literal, Protocol

from dcx_runbook.clock import now

# One encoder for every event: json.dumps with any option builds a new one per call.
_ENCODER = json.JSONEncoder(default=str)

EventType = Literal[
    "run_started",  # detail: run_id, runbook, target, steps, dry_run, mode (run|rollback)
    "step_started",
    "check",  # phase, status passed|failed|deferred, message; detail.name
    "operation",  # phase, status started|done|planned|failed, message: the exact SQL, argv or diff
    "lock_wait",  # detail: attempt, delay, blockers
    "step_finished",  # status: a StepOutcome (statuses.py)
    "unwind_started",
    "step_undone",  # status: rolled_back|nothing_to_undo|rollback_failed|irreversible
    "log",
    "finding",
    "run_finished",  # status: a RunStatus; detail: run_id, exit_code, still_applied
    # A fleet run (docs/fleet.md): its start, each target's end, its end. Every event of a
    # fleet's target carries that target's name (Event.target).
    "fleet_started",  # detail: fleet_run, runbook, targets, dry_run, canary, concurrency, ...
    "target_finished",  # status: a TargetState; detail: run_id, exit_code, database
    "fleet_finished",  # status: a RunStatus; detail: fleet_run, exit_code, targets (by state)
]


@dataclass(frozen=True)
class Event:
    type: EventType
    step: str | None = None
    phase: str | None = None
    status: str | None = None
    message: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=now)
    target: str | None = None  # in a fleet run: the target's name (its runs' events and its end)

    def to_json(self) -> dict[str, Any]:
        out = {
            "event": self.type,
            "step": self.step,
            "phase": self.phase,
            "status": self.status,
            "message": self.message,
            "detail": self.detail,
            "time": self.time,
        }
        if self.target is not None:
            out["target"] = self.target
        return out

    @cached_property
    def line(self) -> str:
        """Its JSON form as one line, encoded once for all its outlets (`--output json`, the
        run's event log)."""
        return _ENCODER.encode(self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, Any], target: str | None = None) -> Event:
        """An event read back from its JSON form (a fleet's child run sends its events so)."""
        return cls(
            data["event"],
            data.get("step"),
            data.get("phase"),
            data.get("status"),
            data.get("message"),
            data.get("detail") or {},
            data.get("time") or now(),
            target,
        )


# The answers a person may give, each with what it means: (answer, meaning).
Choices = Sequence[tuple[str, str]]


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...

    def confirm(self, question: str) -> bool:
        """Ask the operator; False when nobody can answer (no terminal)."""
        ...

    def can_ask(self) -> bool:
        """Whether a person can answer here (a terminal, and its output still there)."""
        ...

    def choose(self, question: str, choices: Choices, body: str) -> str | None:
        """Show `body` (Markdown), ask `question`, return the answer chosen; None when nobody
        can answer (no terminal, end of input)."""
        ...

    def close(self) -> None: ...


class Collecting:
    """Keeps events in memory: for tests and for library callers."""

    def __init__(self, answer: bool = True, answers: Sequence[str] = ()):
        self.events: list[Event] = []
        self.answer = answer
        self.answers = list(answers)  # what choose() answers, in turn; then nobody answers
        self.asked: list[str] = []  # the questions choose() was asked

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def confirm(self, question: str) -> bool:
        return self.answer

    def can_ask(self) -> bool:
        return bool(self.answers)

    def choose(self, question: str, choices: Choices, body: str) -> str | None:
        self.asked.append(question)
        return self.answers.pop(0) if self.answers else None

    def close(self) -> None:
        pass


def silence(stream: IO[str]) -> None:
    """After a write to `stream` failed (its reader closed the pipe, the terminal went away), send
    what is still buffered, and the interpreter's final flush, to /dev/null instead of failing.
    The run goes on: output is a view of it, the journal is its record (`dcx-runbook log`)."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # not a file (a StringIO): nothing is flushed at exit anyway
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)
