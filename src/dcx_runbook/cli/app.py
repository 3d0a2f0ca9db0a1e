"""The `dcx-runbook` command. Each command parses arguments, calls one library function, and hands
the result to a reporter. Errors are caught in exactly one place: `main`. The commands that only
read are in cli/views.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from dcx_runbook import __version__
from dcx_runbook.cli.options import (
    AllowedSigners,
    BreakGlass,
    Canary,
    Concurrency,
    Confirm,
    DatabaseUrl,
    EnvFile,
    FleetOrder,
    FleetTargetsFile,
    Force,
    LedgerSchema,
    MaxFailures,
    NoLedger,
    OrderOpt,
    Output,
    OutputOpt,
    PerServer,
    PlanFile,
    PlanOut,
    Reason,
    RequireApprovals,
    RunbookArg,
    RunbooksDir,
    SandboxUrl,
    Select,
    Skip,
    SkipOtherHosts,
    StepByStep,
    TargetName,
    TargetsFile,
    UnwindAll,
    Var,
    Yes,
    complete_run,
)
from dcx_runbook.cli.options import reporter as _reporter
from dcx_runbook.errors import ExitCode, InvalidInput, RunbookError

if TYPE_CHECKING:
    from dcx_runbook.api import Outcome

app = typer.Typer(
    name="dcx-runbook",
    help="Run database emergency plans as verified, journaled, reversible runbooks.",
    no_args_is_help=True,
    # Completion of commands, options, runbook names, step ids and run ids:
    # dcx-runbook --install-completion (bash, zsh, fish, PowerShell).
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,  # locals hold connection strings
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"dcx-runbook {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Run database emergency plans as verified, journaled, reversible runbooks."""


# Set by a command whose output is JSON Lines events (-o json): an error that ends it before its
# run does (invalid input, exit 2) still ends the stream with `run_finished`.
_streaming: list[bool] = []


def _events(output: Output) -> None:
    _streaming[:] = [output == Output.json]


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _finish(outcome: Outcome) -> NoReturn:
    raise typer.Exit(code=int(outcome.exit_code))


@app.command()
def run(
    runbook: RunbookArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show exactly what would happen; change nothing.")
    ] = False,
    var: Var = None,
    env_file: EnvFile = None,
    database_url: DatabaseUrl = None,
    yes: Yes = False,
    skip: Skip = None,
    confirm: Confirm = None,
    step: StepByStep = False,
    plan_out: PlanOut = None,
    plan: PlanFile = None,
    require_approvals: RequireApprovals = 0,
    allowed_signers: AllowedSigners = None,
    break_glass: BreakGlass = False,
    reason: Reason = None,
    no_ledger: NoLedger = False,
    ledger_schema: LedgerSchema = None,
    output: OutputOpt = Output.human,
    runbooks_dir: RunbooksDir = None,
    targets: TargetsFile = None,
    target: TargetName = None,
    select: Select = None,
    canary: Canary = 1,
    concurrency: Concurrency = 1,
    max_failures: MaxFailures = 0,
    unwind_all_on_failure: UnwindAll = False,
    order: OrderOpt = FleetOrder.listed,
    per_server: PerServer = None,
) -> None:
    """Run a runbook: every step checked, done, verified; everything undone if anything fails.
    With a targets file: on each of its targets, in waves (docs/fleet.md)."""
    _events(output)
    from dcx_runbook import api

    options = api.Options(
        dry_run=dry_run,
        yes=yes,
        skip=tuple(skip or []),
        reason=reason,
        ledger=not no_ledger,
        ledger_schema=ledger_schema,
        step_by_step=step,
        confirm=tuple(confirm or []),
        plan_out=_text(plan_out),
        plan=_text(plan),
        require_approvals=require_approvals,
        allowed_signers=_text(allowed_signers),
        break_glass=break_glass,
    )
    asked = fleet.Asked(
        targets,
        target or [],
        select or [],
        {
            "canary": canary,
            "concurrency": concurrency,
            "max_failures": max_failures,
            "unwind_all": unwind_all_on_failure,
            "order": order.value,
            "per_server": per_server,
        },
    )
    if asked.fleet:
        fleet.refuse_one_targets(database_url, options)
        code = fleet.run_fleet(runbook, asked, options, output, var or [], env_file, runbooks_dir)
        raise typer.Exit(code=code)
    asked.refuse_settings()
    reporter = _reporter(output)
    try:
        outcome = api.run(
            runbook,
            reporter=reporter,
            var=var or [],
            env_file=env_file,
            database_url=database_url,
            options=options,
            runbooks_dirs=runbooks_dir or [],
        )
    finally:
        reporter.close()
    _finish(outcome)


@app.command()
def rollback(
    run_id: Annotated[
        str | None,
        typer.Argument(
            help="Run to undo (default: every run of the latest runbook that left changes, on "
            "the target given).",
            autocompletion=complete_run,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be undone.")] = False,
    yes: Yes = False,
    force: Force = False,
    confirm: Confirm = None,
    skip_other_hosts: SkipOtherHosts = False,
    var: Var = None,
    env_file: EnvFile = None,
    database_url: DatabaseUrl = None,
    reason: Reason = None,
    no_ledger: NoLedger = False,
    ledger_schema: LedgerSchema = None,
    output: OutputOpt = Output.human,
    targets: FleetTargetsFile = None,
) -> None:
    """Undo the last fix (or one run), newest step first, from this machine's journal and the
    target's ledger; resumable after a crash or a failed undo. A fleet run (fleet-...): every
    target's runs, targets concurrently."""
    _events(output)
    from dcx_runbook import api
    from dcx_runbook.api import Options

    options = Options(
        dry_run=dry_run,
        yes=yes,
        force=force,
        reason=reason,
        ledger=not no_ledger,
        ledger_schema=ledger_schema,
        skip_other_hosts=skip_other_hosts,
        confirm=tuple(confirm or []),
    )
    if run_id is not None and api.is_fleet_run(run_id):
        fleet.refuse_database_url(database_url)
        code = fleet.again(
            "rollback",
            run_id,
            output,
            options=options,
            var=var or [],
            env_file=env_file,
            targets_file=targets,
        )
        raise typer.Exit(code=code)
    if targets is not None:
        raise InvalidInput("--targets: only to roll back a fleet run (fleet-...)")
    reporter = _reporter(output)
    try:
        outcome = api.rollback(
            run_id,
            reporter=reporter,
            var=var or [],
            env_file=env_file,
            database_url=database_url,
            options=options,
        )
    finally:
        reporter.close()
    _finish(outcome)


@app.command()
def rehearse(
    runbook: RunbookArg,
    from_url: Annotated[
        str | None, typer.Option("--from-url", help="Copy the schema of this database (read only).")
    ] = None,
    schema_file: Annotated[
        Path | None, typer.Option("--schema-file", help="Or restore this schema dump.")
    ] = None,
    data_file: Annotated[
        Path | None, typer.Option("--data-file", help="Seed data to load after the schema.")
    ] = None,
    sandbox_url: SandboxUrl = None,
    var: Var = None,
    env_file: EnvFile = None,
    skip: Skip = None,
    output: OutputOpt = Output.human,
    runbooks_dir: RunbooksDir = None,
) -> None:
    """Prove the round trip on a disposable copy: run, rollback, compare schemas, run again."""
    _events(output)
    from dcx_runbook import api
    from dcx_runbook.interrupts import terminate_as_interrupt

    reporter = _reporter(output)
    with terminate_as_interrupt():
        try:
            code = api.rehearse(
                runbook,
                reporter=reporter,
                from_url=from_url,
                schema_file=schema_file,
                data_file=data_file,
                var=var or [],
                env_file=env_file,
                skip=skip or [],
                sandbox_url=sandbox_url,
                runbooks_dirs=runbooks_dir or [],
            )
        finally:
            reporter.close()
    raise typer.Exit(code=int(code))


@app.command()
def demo(
    runbook: Annotated[
        str,
        typer.Argument(
            help="Runbook name or path; it needs demo fixtures (fixtures/NAME/demo.yaml)."
        ),
    ] = "wallet-fix",
    sandbox_url: SandboxUrl = None,
    node: Annotated[
        bool,
        typer.Option(
            "--node/--no-node",
            help="Run the steps that need node tools with the ones prepared in "
            "$DCX_NODE_TOOLS_DIR (else they are skipped).",
        ),
    ] = True,
    output: OutputOpt = Output.human,
    runbooks_dir: RunbooksDir = None,
    fleet_: Annotated[
        bool,
        typer.Option(
            "--fleet",
            help="Over the runbook's targets example (NAME.targets.example.yaml), one scratch "
            "database per target, as one fleet run.",
        ),
    ] = False,
) -> None:
    """A runbook end to end on a sandbox with its demo fixtures: set up, run, verify, roll back,
    clean up."""
    from dcx_runbook.demo.run import demo as run_demo
    from dcx_runbook.interrupts import terminate_as_interrupt

    reporter = _reporter(output, fleet=fleet_)
    with terminate_as_interrupt():
        try:
            code = run_demo(
                reporter,
                runbook=runbook,
                runbooks_dirs=runbooks_dir or [],
                sandbox_url=sandbox_url,
                node=node,
                fleet=fleet_,
            )
        finally:
            reporter.close()
    raise typer.Exit(code=int(code))


from dcx_runbook.cli import fleet, plans, views  # noqa: E402, F401  (registers the other commands)


def main() -> None:
    """Entry point: expected errors are one clear line (or one per problem) and an exit code."""
    try:
        app(prog_name="dcx-runbook")
    except RunbookError as exc:
        if any(_streaming):
            _stream_end(exc)
        _fail(exc)
    except KeyboardInterrupt:
        print("dcx-runbook: interrupted", file=sys.stderr)
        sys.exit(int(ExitCode.INTERRUPTED))


def _stream_end(exc: RunbookError) -> None:
    """The JSON stream's `run_finished` for a command ended by an error before its run."""
    from dcx_runbook.reporters.base import Event
    from dcx_runbook.reporters.jsonl import JsonReporter
    from dcx_runbook.statuses import RunStatus

    status = {ExitCode.INVALID: RunStatus.INVALID, ExitCode.REFUSED: RunStatus.REFUSED}.get(
        exc.exit_code, RunStatus.UNDO_INCOMPLETE
    )
    detail = {"run_id": None, "exit_code": int(exc.exit_code)}
    JsonReporter(sys.stdout).emit(
        Event("run_finished", status=status, message=str(exc), detail=detail)
    )


def _fail(exc: RunbookError) -> NoReturn:
    from dcx_runbook.errors import ValidationFailed

    if isinstance(exc, ValidationFailed):
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
    else:
        print(f"dcx-runbook: error: {exc}", file=sys.stderr)
    sys.exit(int(exc.exit_code))
