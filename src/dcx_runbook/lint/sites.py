"""Every SQL text a run could send: each sql operation of each step's action and rollback action,
with where it is in the runbook and whether it runs in a transaction; and the text squawk reads,
with each `${...}` reference as a placeholder of the same length (so columns stay true)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dcx_runbook.format.model import Runbook, Step
from dcx_runbook.kinds import OPERATIONS
from dcx_runbook.template import REF


@dataclass(frozen=True)
class Site:
    """One SQL text of a step."""

    step_index: int
    step: Step
    part: str  # "action" or "rollback"
    loc: tuple[Any, ...]  # its path: steps, 2, rollback, action, 0 and the field's name
    text: str
    in_transaction: bool

    @property
    def step_id(self) -> str:
        return self.step.id


def sites(runbook: Runbook) -> Iterator[Site]:
    for i, step in enumerate(runbook.steps):
        undo_tx = step.rollback.transaction if step.rollback is not None else None
        parts: list[tuple[str, tuple[Any, ...], list[Any], bool]] = [
            ("action", ("action",), list(step.action), step.transaction)
        ]
        if step.rollback is not None:
            in_tx = step.transaction if undo_tx is None else undo_tx
            parts.append(("rollback", ("rollback", "action"), list(step.rollback.action), in_tx))
        for part, where, ops, in_tx in parts:
            for j, op in enumerate(ops):
                for name in OPERATIONS[op.kind].op_model.sql_fields:
                    text = getattr(op, name, None)
                    if isinstance(text, str):
                        yield Site(i, step, part, ("steps", i, *where, j, name), text, in_tx)


def for_squawk(text: str) -> str:
    """The text with each reference replaced by SQL of the same length that parses where the
    reference stands: `$1` for a bound value, an identifier for `${ident:x}`, a string literal
    for `${literal:x}`."""

    def placeholder(m: Any) -> str:
        width = len(m.group())
        if m.group("mode") == "ident":
            return "x" + "_" * (width - 1)
        if m.group("mode") == "literal":
            return "'" + "x" * (width - 2) + "'"
        return "$1".ljust(width)

    return REF.sub(placeholder, text).replace("$${", "${")
