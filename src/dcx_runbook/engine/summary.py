"""What the confirmation shows before a run changes anything: where (the server's identity),
each step with a line of what it will do, planned now, the lint's summary, and the warnings of
variables left at their default."""

from __future__ import annotations

from collections.abc import Collection

from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.format.model import Step
from dcx_runbook.format.variables import default_warnings
from dcx_runbook.kinds import OPERATIONS

LINE = 79  # a step's line is cut to fit an 80-column terminal


def step_lines(rt: Runtime, skip: Collection[str]) -> list[str]:
    """`  3. step-id  what it will do` for every step, in order."""
    width = max(len(s.id) for s in rt.runbook.steps)
    room = max(LINE - width - 8, 24)
    lines = []
    for n, step in enumerate(rt.runbook.steps, 1):
        said = "skipped (--skip)" if step.id in skip else _one_line(rt, step)
        said = said if len(said) <= room else said[: room - 1] + "…"
        lines.append(f"  {n:>2}. {step.id:<{width}}  {said}")
    return lines


def _one_line(rt: Runtime, step: Step) -> str:
    if not step.action:
        return f"checks only: {step.title}"
    ctx = rt.context()
    said = []
    for op in step.action:
        try:
            effect = OPERATIONS[op.kind].plan(op, ctx)
            paths = effect.paths()
            # A file edit by its file's name first (its diff's first line is only a header).
            text = "; ".join(f"edits {p.name} (in {p.parent})" for p in paths) or effect.describe()
        except Exception:  # noqa: BLE001 - a plan that can't be made now: the step says why later
            text = f"{op.kind}: {op.name or step.title}"
        said.append(_first(rt.masker(text)))
    return "; ".join(said)


def _first(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] + (" …" if len(lines) > 1 else "")


def question(rt: Runtime, where: str, lint: str, skip: Collection[str]) -> str:
    steps = rt.runbook.steps
    head = f"Run {rt.runbook.name} ({len(steps)} steps) against {where}:"
    # What the operator must weigh before saying yes: a variable left at a default its runbook
    # warns about (said before too, but the answer is given here).
    warned = [rt.masker(w) for w in default_warnings(rt.runbook, rt.values)]
    return "\n".join([head, *step_lines(rt, skip), f"lint: {lint}", *warned, "Go ahead?"])
