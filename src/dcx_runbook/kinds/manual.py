"""`manual`: what only a person can do ("run the wallet population scripts", "tell #billing").

The run stops at it, shows the instruction and asks the operator whether it is done; nothing else
happens in its step. The engine asks (`Context.ask_person`): the kind only renders the text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from dcx_runbook.kinds.base import DATABASE, FILES, Context, OpSpec, Printable, Shown, Traits
from dcx_runbook.template import render


class ManualOp(OpSpec):
    kind: Literal["manual"]
    instruction: Printable = Field(
        min_length=1,
        description="What the person must do (Markdown); ${var} references are rendered, secret "
        "values masked.",
    )


@dataclass(frozen=True)
class ManualEffect:
    instruction: str  # rendered and masked: shown as it is

    def describe(self) -> str:
        return f"manual: {self.instruction}"

    def execute(self, ctx: Context) -> str:
        ctx.ask_person(self.instruction)  # raises unless the person says it is done
        return "done, as the operator confirmed"

    def paths(self) -> list[Path]:
        return []


class ManualKind(Shown):
    """An operation only: a person does it, and says so."""

    name = "manual"
    # A person may change anything, and nothing takes it back but another person: later checks
    # wait for it in a dry run, and its rollback runs once it was asked (effects started).
    traits = Traits(
        outlives_rollback=True, writes=frozenset({DATABASE, FILES}), alone=True, asks_person=True
    )
    op_model = ManualOp

    def plan(self, spec: ManualOp, ctx: Context) -> ManualEffect:
        return ManualEffect(ctx.masker(render(spec.instruction, ctx.values)))


KIND = ManualKind()
