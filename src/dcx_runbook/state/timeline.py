"""A run's timeline from its events (state/event_log.py): each step's phases as segments on one
time axis, the undo's apart, lock waits as marks. What the incident report draws (an SVG in the
HTML, a Mermaid gantt in the Markdown)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_ENDS = ("step_finished", "step_undone")


@dataclass(frozen=True)
class Segment:
    step: str
    phase: str  # precheck, action, verify, rollback.action, ...
    start: float  # seconds since the epoch
    end: float

    @property
    def undo(self) -> bool:
        return self.phase.startswith("rollback")


@dataclass(frozen=True)
class Mark:
    step: str
    at: float
    what: str  # a lock wait, with its blockers


@dataclass(frozen=True)
class Timeline:
    steps: list[str]  # in the order they first appear
    segments: list[Segment]
    marks: list[Mark]
    start: float
    end: float


def when(event: dict[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


def timeline(events: Sequence[dict[str, Any]]) -> Timeline | None:
    """The segments: each run of a step's events in one phase, from its first event to the
    next event of that step (another phase, or how the step ended). None without events."""
    timed = [(t, e) for e in events if (t := when(e)) is not None]
    if not timed:
        return None
    steps: list[str] = []
    segments: list[Segment] = []
    marks: list[Mark] = []
    open_: dict[str, tuple[str, float]] = {}  # step -> (phase, since)
    for t, e in timed:
        step = e.get("step")
        if not step:
            continue
        if step not in steps:
            steps.append(step)
        if e["event"] == "lock_wait":
            blockers = ", ".join(map(str, (e.get("detail") or {}).get("blockers") or [])) or "-"
            marks.append(
                Mark(step, t, f"lock wait: {e.get('message') or ''} (blockers: {blockers})")
            )
        phase = e.get("phase")
        current = open_.get(step)
        if current is not None and (e["event"] in _ENDS or (phase and phase != current[0])):
            segments.append(Segment(step, current[0], current[1], t))
            del open_[step]
        if phase and e["event"] not in _ENDS and step not in open_:
            open_[step] = (phase, t)
    last = timed[-1][0]
    segments += [Segment(s, p, since, last) for s, (p, since) in open_.items()]
    return Timeline(steps, segments, marks, timed[0][0], max(last, timed[0][0]))
