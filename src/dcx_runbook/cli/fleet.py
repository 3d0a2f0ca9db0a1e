"""The fleet side of the commands (docs/fleet.md): `run` with a targets file, `resume`, and
`rollback FLEET_RUN`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dcx_runbook.cli.app import _events, app
from dcx_runbook.cli.options import (
    EnvFile,
    FleetTargetsFile,
    Output,
    OutputOpt,
    Var,
    Yes,
    complete_run,
)
from dcx_runbook.cli.options import reporter as _reporter
from dcx_runbook.errors import InvalidInput

if TYPE_CHECKING:
    from dcx_runbook.api import Options

_DEFAULTS = {
    "canary": 1,
    "concurrency": 1,
    "max_failures": 0,
    "unwind_all": False,
    "order": "listed",
    "per_server": None,
}


_OPTION = {"unwind_all": "--unwind-all-on-failure"}


@dataclass(frozen=True)
class Asked:
    """The fleet side of a `run`: which targets, and how (docs/fleet.md)."""

    targets: Path | None
    names: list[str]
    selectors: list[str]
    settings: dict[str, Any]

    @property
    def fleet(self) -> bool:
        return self.targets is not None or bool(self.names) or bool(self.selectors)

    def refuse_settings(self) -> None:
        """Fleet options without a fleet: said, not ignored."""
        named = [_OPTION.get(k, f"--{k.replace('_', '-')}") for k, v in self.settings.items()
                 if v != _DEFAULTS[k]]  # fmt: skip
        if named:
            raise InvalidInput(
                f"{', '.join(named)}: only for a fleet run (give --targets FILE, --target NAME "
                "or --select label=value)"
            )


def refuse_one_targets(database_url: str | None, options: Options) -> None:
    """What only a run on one target takes: --database-url, --step, --plan, --plan-out."""
    refuse_database_url(database_url)
    if options.step_by_step or options.plan or options.plan_out:
        raise InvalidInput(
            "--step, --plan and --plan-out: one target at a time (a fleet's targets have no "
            "terminal, and a plan is one target's)"
        )


def refuse_database_url(database_url: str | None) -> None:
    if database_url is not None:
        raise InvalidInput("--database-url names one target: a fleet's are in the targets file")


def run_fleet(
    runbook: str,
    asked: Asked,
    options: Any,
    output: Output,
    var: list[str],
    env_file: Path | None,
    runbooks_dir: list[Path] | None,
) -> int:
    from dcx_runbook import api

    reporter = _reporter(output, fleet=True)
    try:
        outcome = api.run_fleet(
            runbook,
            reporter=reporter,
            targets_file=asked.targets,
            target_names=asked.names,
            selectors=asked.selectors,
            var=var,
            env_file=env_file,
            options=options,
            fleet=api.fleet_options(**asked.settings),
            runbooks_dirs=runbooks_dir or [],
        )
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
    fleet_run: Annotated[
        str,
        typer.Argument(help="The fleet run to finish (fleet-...).", autocompletion=complete_run),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would run on each target; change nothing.")
    ] = False,
    yes: Yes = False,
    var: Var = None,
    env_file: EnvFile = None,
    targets: FleetTargetsFile = None,
    output: OutputOpt = Output.human,
) -> None:
    """Run again the targets of a fleet run that failed, were not reached or were interrupted
    (a run that died in the middle is undone first); nothing else is touched."""
    _events(output)
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
