"""The plan commands (docs/approvals.md): `approve` signs a reviewed plan with an SSH key;
`show-plan` renders one for review. `run --plan` is in cli/app.py."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dcx_runbook.cli.app import app

PlanArg = Annotated[Path, typer.Argument(help="The plan file (from run --dry-run --plan-out).")]


class PlanFormat(StrEnum):
    text = "text"
    markdown = "markdown"


@app.command()
def approve(
    plan: PlanArg,
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            help="Your SSH key (private, or .pub with the private half in ssh-agent): the one "
            "the allowed signers file lists for you.",
        ),
    ],
) -> None:
    """Sign a reviewed plan (ssh-keygen -Y sign -n dcx-runbook) into PLAN.json.sig; several
    approvals collect there."""
    from dcx_runbook import api

    print(api.approve_plan(plan, key))


@app.command("show-plan")
def show_plan(
    plan: PlanArg,
    format: Annotated[
        PlanFormat, typer.Option("--format", "-f", help="text (on a terminal) or markdown.")
    ] = PlanFormat.text,
) -> None:
    """A plan for review: what it runs, where, with which values, what its dry run found."""
    from dcx_runbook import api

    text = api.show_plan(plan)
    if format == PlanFormat.markdown:
        sys.stdout.write(text)
        return
    from dcx_runbook.cli.console import print_markdown

    print_markdown(text)
