"""The fleet side of the commands (docs/fleet.md): `run` with a targets file, `resume`, and
`rollback FLEET_RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dcx_runbook.cli.app import app
from dcx_runbook.cli.options import (
    EnvFile,
    Output,
    OutputOpt,
    TargetsFile,
    Var,
    Yes,
)
from dcx_runbook.cli.options import reporter as _reporter
from dcx_runbook.errors import InvalidInput


def fleet_mode(targets: Path | None, target: list[str] | None, select: list[str] | None) -> bool:
    return targets is not None or bool(target) or bool(select)


def refuse_fleet_options(**given: Any) -> None:
    """Fleet options without a fleet: said, not ignored."""
    named = [name for name, (value, default) in given.items() if value != default]
    if named:
        raise InvalidInput(
            f"{', '.join(named)}: only for a fleet run (give --targets FILE, --target NAME or "
            "--select label=value)"
        )


def run_fleet(runbook: str, settings: dict[str, Any], *, output: Output, **kwargs: Any) -> int:
    from dcx_runbook import api

    fleet = api.fleet_options(**settings)
    reporter = _reporter(output, fleet=True)
    try:
        outcome = api.run_fleet(runbook, reporter=reporter, fleet=fleet, **kwargs)
    finally:
        reporter.close()
    return int(outcome.exit_code)


def again(command: str, fleet_run: str, output: Output, **kwargs: Any) -> int:
    from dcx_runbook import api

    reporter = _reporter(output, fleet=True)
    try:
        outcome = api.fleet_again(command, fleet_run, reporter=reporter, **kwargs)
    finally:
        reporter.close()
    return int(outcome.exit_code)


@app.command()
def resume(
    fleet_run: Annotated[str, typer.Argument(help="The fleet run to finish (fleet-...).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would run on each target; change nothing.")
    ] = False,
    yes: Yes = False,
    var: Var = None,
    env_file: EnvFile = None,
    targets: TargetsFile = None,
    output: OutputOpt = Output.human,
) -> None:
    """Run again the targets of a fleet run that failed, were not reached or were interrupted
    (a run that died in the middle is undone first); nothing else is touched."""
    from dcx_runbook.api import Options

    code = again(
        "resume",
        fleet_run,
        output,
        options=Options(dry_run=dry_run, yes=yes),
        var=var or [],
        env_file=env_file,
        targets_file=targets,
    )
    raise typer.Exit(code=code)
