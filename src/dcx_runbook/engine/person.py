"""A person in the loop: a manual step's question, `run --step`'s question before each step, and
the preflight that refuses a run nobody could answer.

Every answer is journaled on its step (`answers`: what, how, who, when) before the run acts on
it, and goes to the target's ledger with the step's row. `--yes` never answers for a person."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from dcx_runbook.clock import now
from dcx_runbook.engine.options import Options
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.engine.scope import Pending
from dcx_runbook.errors import InvalidInput, Refused, StepFailed, Stopped
from dcx_runbook.format.model import Runbook, Step
from dcx_runbook.kinds import OPERATIONS
from dcx_runbook.state.entries import operator
from dcx_runbook.statuses import Answer, StepStatus

_ABORT = (Answer.ABORT, "undo everything this run did, and stop")
_STOP = (Answer.STOP, "stop here: what was done stays applied (dcx-runbook rollback undoes it)")
MANUAL = ((Answer.DONE, "I have done it: go on"), _ABORT, _STOP)
MANUAL_UNDO = (
    (Answer.DONE, "I have undone it: go on"),
    (Answer.STOP, "stop the undo here: what is not undone yet stays applied"),
)
STEP = (
    (Answer.RUN, "run this step"),
    (Answer.SKIP, "skip it (journaled as skipped)"),
    _ABORT,
    _STOP,
)


def manual_steps(runbook: Runbook) -> list[Step]:
    """Steps whose action a person does."""
    return [s for s in runbook.steps if any(_asks(op) for op in s.action)]


def manual_undo(step: Step) -> bool:
    """Whether undoing the step is a person's work."""
    return step.rollback is not None and any(_asks(op) for op in step.rollback.action)


def _asks(op: Any) -> bool:
    return OPERATIONS[op.kind].traits.asks_person


def check_options(runbook: Runbook, options: Options) -> None:
    """`--confirm` names manual steps of this runbook (exit 2 otherwise); `--step` is a run's."""
    if options.step_by_step and options.dry_run:
        raise InvalidInput("--step and --dry-run: a dry run asks nothing; give one of them")
    ids = [s.id for s in runbook.steps]
    manual = {s.id for s in manual_steps(runbook)}
    for step_id in options.confirm:
        if step_id not in ids:
            raise InvalidInput(f"--confirm {step_id}: no such step (steps: {', '.join(ids)})")
        if step_id not in manual:
            raise InvalidInput(f"--confirm {step_id}: it is not a manual step; nothing to confirm")


def preflight(rt: Runtime, options: Options) -> None:
    """Refused (exit 4, before any change) when a manual step would wait for a person nobody can
    ask: no terminal, and not confirmed with --confirm."""
    waiting = [
        s.id
        for s in manual_steps(rt.runbook)
        if s.id not in options.skip and s.id not in options.confirm
    ]
    if options.step_by_step and not rt.reporter.can_ask():
        raise Refused("--step asks before each step, and nobody can be asked here (no terminal)")
    if waiting and not rt.reporter.can_ask():
        flags = " ".join(f"--confirm {s}" for s in waiting)
        raise Refused(
            f"step{'s' if len(waiting) > 1 else ''} {', '.join(waiting)} must be done by a "
            f"person, and nobody can be asked here (no terminal; --yes never confirms a manual "
            f"step): once done, confirm with {flags}, or leave out with --skip"
        )


def undo_preflight(rt: Runtime, todo: Sequence[Pending], options: Options) -> None:
    """A rollback: `--confirm` names steps whose undo is a person's (exit 2 otherwise), and one
    that would wait for a person nobody can ask is refused before any undo (exit 4)."""
    manual = {
        e["id"] for run in todo for e in run.undoable() if manual_undo(run.runbook.step(e["id"]))
    }
    for step_id in options.confirm:
        if step_id not in manual:
            raise InvalidInput(
                f"--confirm {step_id}: no step to undo here is undone by a person "
                f"({', '.join(sorted(manual)) or 'none is'})"
            )
    waiting = sorted(manual - set(options.confirm))
    if waiting and not rt.reporter.can_ask() and not options.dry_run:
        raise Refused(
            f"the undo of {', '.join(waiting)} is a person's, and nobody can be asked here (no "
            f"terminal): once undone by hand, run this again with "
            + " ".join(f"--confirm {s}" for s in waiting)
        )


class Person:
    """The manual operations' callback (`Runtime.person`): ask, journal the answer, act on it."""

    def __init__(self, rt: Runtime, *, actions: Collection[str] = (), undos: Collection[str] = ()):
        # --confirm: of a run, the steps' actions; of a rollback, their undos (never both)
        self.rt, self.actions, self.undos = rt, frozenset(actions), frozenset(undos)

    def __call__(self, entry: dict[str, Any], phase: str, instruction: str) -> None:
        step_id, undoing = entry["id"], phase.startswith("rollback")
        if step_id in (self.undos if undoing else self.actions):
            answer, via = Answer.DONE, "--confirm"
        else:
            asked = self.rt.reporter.choose(
                f"{step_id}: {'undo by hand' if undoing else 'a manual step'}",
                MANUAL_UNDO if undoing else MANUAL,
                instruction,
            )
            if asked is None and undoing:
                raise StepFailed(
                    f"a person must undo this, and nobody answered: {_first(instruction)}; once "
                    f"undone, run dcx-runbook rollback --confirm {step_id}",
                    step_id=step_id,
                    phase=phase,
                )
            # Nobody answered (end of input): nothing more happens; what was done stays.
            answer, via = (Answer(asked), "prompt") if asked else (Answer.STOP, "no answer")
        if answer in (Answer.ABORT, Answer.STOP) and not undoing:
            entry["status"] = StepStatus.PENDING  # not done: its undo has nothing to undo
            entry.pop("effects_started", None)
        record(self.rt, entry, phase, answer, via)
        act_on(answer, step_id, phase, undoing=undoing)


def record(rt: Runtime, entry: dict[str, Any], phase: str, answer: Answer, via: str) -> None:
    """The answer on its step, durably in the journal and in the ledger, before it is acted on."""
    who = operator()
    said = {"phase": phase, "answer": str(answer), "via": via, **who, "at": now()}
    entry.setdefault("answers", []).append(said)
    rt.save(entry)
    rt.emit(
        "log",
        entry["id"],
        phase=phase,
        message=f"answered {answer} ({via}, {who['user']}@{who['host']})",
        detail={"answer": str(answer), "via": via, "operator": who},
    )


def act_on(answer: Answer, step_id: str, phase: str, *, undoing: bool = False) -> None:
    """Abort and stop end the step here: abort unwinds the run, stop leaves it as it is."""
    if answer == Answer.ABORT:
        raise StepFailed(
            "the operator chose to undo everything and stop", step_id=step_id, phase=phase
        )
    if answer == Answer.STOP and undoing:
        raise StepFailed(
            "the operator stopped the undo here: not undone", step_id=step_id, phase=phase
        )
    if answer == Answer.STOP:
        raise Stopped(f"the operator chose to stop at step {step_id}", step_id=step_id)


def ask_step(rt: Runtime, step: Step, entry: dict[str, Any]) -> Answer:
    """`--step`: what the step will do (its operations as planned now, its rollback), then the
    question. Nobody to ask (end of input) is a stop, never a yes."""
    body = _what_it_does(rt, step)
    asked = rt.reporter.choose(f"{step.id}: {step.title}", STEP, body)
    answer, via = (Answer(asked), "--step") if asked is not None else (Answer.STOP, "no answer")
    record(rt, entry, "action", answer, via)
    return answer


def _what_it_does(rt: Runtime, step: Step) -> str:
    """The step's operations as they would run now (SQL, argv, file diffs), and its way back."""
    parts = [f"**{step.title}**"]
    parts += _planned(rt, step.action) if step.action else ["No action: its checks only."]
    if step.verify:
        parts.append("Then verify: " + ", ".join(c.name or f"{c.kind} check" for c in step.verify))
    if step.rollback is not None and step.rollback.action:
        parts += ["Its way back:", *_planned(rt, step.rollback.action)]
    elif step.irreversible:
        parts.append(f"Irreversible: {step.irreversible}")
    return "\n\n".join(parts)


def _planned(rt: Runtime, ops: Sequence[Any]) -> list[str]:
    shown: list[str] = []
    ctx = rt.context()
    for op in ops:
        try:
            text = OPERATIONS[op.kind].plan(op, ctx).describe()
        except Exception as exc:  # noqa: BLE001 - shown, not raised: the step itself will fail
            text = f"{op.kind}: can't be planned now: {exc}"
        shown.append("```\n" + rt.masker(text) + "\n```")
    return shown


def _first(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
