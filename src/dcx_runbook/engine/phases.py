"""The one sequence of a step's phases, walked by the run and by the dry run alike (alembic's
offline mode: the same loop, another output), so the preview can't drift from what runs.

skip? → step_started → done_when (already done?) → precheck → proceed? (`--step`) → action +
verify (or, without an action, verify alone). What each phase does is the walker's: for real,
or previewed."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from dcx_runbook.engine.linting import say
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.format.model import Step


class Phases(Protocol):
    def skipped(self, step: Step) -> None:
        """The operator skipped the step (--skip)."""

    def already_done(self, step: Step) -> bool:
        """Its done_when checks all hold: said, and True (nothing to do)."""
        ...

    def precheck(self, step: Step) -> None: ...

    def proceed(self, step: Step) -> bool:
        """After precheck: whether the step goes on (`--step` asks; skipped: said, False)."""
        ...

    def verify_only(self, step: Step) -> None:
        """A step without an action: its verify checks are the step."""

    def act(self, step: Step) -> None:
        """The action, then verify."""


def walk(rt: Runtime, step: Step, phases: Phases, skip: Collection[str]) -> bool:
    """Take one step through its phases; True when its action ran (for real or previewed)."""
    if step.id in skip:
        phases.skipped(step)
        return False
    rt.emit("step_started", step.id, message=step.title)
    for finding in rt.findings.get(step.id, ()):
        say(rt, finding)
    if step.done_when and phases.already_done(step):
        return False
    phases.precheck(step)
    if not phases.proceed(step):
        return False
    if not step.action:
        phases.verify_only(step)
        return False
    phases.act(step)
    return True
