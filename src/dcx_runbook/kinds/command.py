"""`command`: a check that a program is available on PATH."""

from __future__ import annotations

import shutil
from typing import Literal

from pydantic import Field

from dcx_runbook.kinds.base import CheckResult, CheckSpec, Context, Traits
from dcx_runbook.template import render


class CommandCheck(CheckSpec):
    kind: Literal["command"]
    command: str = Field(description="Program name looked up on PATH.")


class CommandKind:
    """Check only: is a program on PATH."""

    name = "command"
    traits = Traits()
    check_model = CommandCheck

    def check(self, spec: CommandCheck, ctx: Context) -> CheckResult:
        name = render(spec.command, ctx.values)
        found = shutil.which(name)
        return CheckResult(found is not None, f"{name}: {found or 'not found on PATH'}", found)


KIND = CommandKind()
