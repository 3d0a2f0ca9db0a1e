"""The `dcx-runbook` command. Each command parses arguments, calls one library function, and hands
the result to a reporter. Errors are caught in exactly one place: `main`."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from dcx_runbook import __version__
from dcx_runbook.errors import ExitCode, RunbookError

if TYPE_CHECKING:
    from dcx_runbook.api import Outcome

app = typer.Typer(
    name="dcx-runbook",
    help="Run database emergency plans as verified, journaled, reversible runbooks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold connection strings
    rich_markup_mode=None,
)


class Output(StrEnum):
    human = "human"
    json = "json"


class LogFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


RunbooksDir = Annotated[
    list[Path] | None,
    typer.Option(
        "--runbooks-dir", help="Extra folder of runbooks (repeatable); also $DCX_RUNBOOK_PATH."
    ),
]
Var = Annotated[list[str] | None, typer.Option("--var", help="KEY=VALUE (repeatable).")]
EnvFile = Annotated[
    Path | None,
    typer.Option("--env-file", help="dotenv file supplying variables such as DATABASE_URL."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="Target URL (else $DATABASE_URL or the env file)."),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Don't ask for confirmation.")]
Skip = Annotated[
    list[str] | None, typer.Option("--skip", help="Step id to skip (repeatable; recorded).")
]
SandboxUrl = Annotated[
    str | None,
    typer.Option(
        "--sandbox-url",
        envvar="DCX_SANDBOX_URL",
        help="Admin URL of a server for scratch databases.",
    ),
]
Reason = Annotated[
    str | None,
    typer.Option("--reason", help="Why (an incident, a ticket): in the journal and the ledger."),
]
NoLedger = Annotated[
    bool,
    typer.Option(
        "--no-ledger",
        help="Record in this machine's journal only, not in the target's ledger (said so).",
    ),
]
LedgerSchema = Annotated[
    str | None,
    typer.Option(
        "--ledger-schema", help="The ledger's schema in the target (default: dcx_runbook)."
    ),
]
OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="human (stderr) or json (JSON Lines on stdout).")
]


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


def _finish(outcome: Outcome) -> NoReturn:
    raise typer.Exit(code=int(outcome.exit_code))


def _reporter(output: Output) -> Any:
    from dcx_runbook.reporters import make_reporter

    return make_reporter(output.value)


@app.command()
def run(
    runbook: Annotated[str, typer.Argument(help="Runbook name or path to a .yaml file.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show exactly what would happen; change nothing.")
    ] = False,
    var: Var = None,
    env_file: EnvFile = None,
    database_url: DatabaseUrl = None,
    yes: Yes = False,
    skip: Skip = None,
    reason: Reason = None,
    no_ledger: NoLedger = False,
    ledger_schema: LedgerSchema = None,
    output: OutputOpt = Output.human,
    runbooks_dir: RunbooksDir = None,
) -> None:
    """Run a runbook: every step checked, done, verified; everything undone if anything fails."""
    from dcx_runbook import api
    from dcx_runbook.api import Options

    reporter = _reporter(output)
    try:
        outcome = api.run(
            runbook,
            reporter=reporter,
            var=var or [],
            env_file=env_file,
            database_url=database_url,
            options=Options(
                dry_run=dry_run,
                yes=yes,
                skip=tuple(skip or []),
                reason=reason,
                ledger=not no_ledger,
                ledger_schema=ledger_schema,
            ),
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
            "the target given)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be undone.")] = False,
    yes: Yes = False,
    force: Annotated[
        bool, typer.Option("--force", help="Restore files even if they changed since the run.")
    ] = False,
    skip_other_hosts: Annotated[
        bool,
        typer.Option(
            "--skip-other-hosts",
            help="Leave the steps that touched another machine's files or processes (said, "
            "recorded as skipped, still applied) instead of refusing.",
        ),
    ] = False,
    var: Var = None,
    env_file: EnvFile = None,
    database_url: DatabaseUrl = None,
    reason: Reason = None,
    no_ledger: NoLedger = False,
    ledger_schema: LedgerSchema = None,
    output: OutputOpt = Output.human,
) -> None:
    """Undo the last fix (or one run), newest step first, from this machine's journal and the
    target's ledger; resumable after a crash or a failed undo."""
    from dcx_runbook import api
    from dcx_runbook.api import Options

    reporter = _reporter(output)
    try:
        outcome = api.rollback(
            run_id,
            reporter=reporter,
            var=var or [],
            env_file=env_file,
            database_url=database_url,
            options=Options(
                dry_run=dry_run,
                yes=yes,
                force=force,
                reason=reason,
                ledger=not no_ledger,
                ledger_schema=ledger_schema,
                skip_other_hosts=skip_other_hosts,
            ),
        )
    finally:
        reporter.close()
    _finish(outcome)


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", min=1, help="The newest N runs.")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="Every run (no limit).")] = False,
    runbook: Annotated[
        str | None, typer.Option("--runbook", help="Only the runs of this runbook.")
    ] = None,
    env_file: EnvFile = None,
    database_url: DatabaseUrl = None,
    ledger_schema: LedgerSchema = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="human (a table) or json (JSON Lines).")
    ] = Output.human,
) -> None:
    """History of runs, newest first: id, runbook, target, status, whether still in effect,
    operator, started, duration. With a target given, its ledger's runs from every machine."""
    from dcx_runbook import api

    rows = api.runs(
        limit=None if all_ else limit,
        runbook=runbook,
        env_file=env_file,
        database_url=database_url,
        ledger_schema=ledger_schema,
        say=lambda message: print(f"dcx-runbook: {message}", file=sys.stderr),
    )
    if output == Output.json:
        import json

        for row in rows:
            print(json.dumps(row))
        return
    from dcx_runbook.cli.console import print_table

    columns = [
        "run_id",
        "runbook",
        "target",
        "status",
        "in_effect",
        "operator",
        "started",
        "duration",
    ]
    print_table(columns, [[str(r.get(c, "")) for c in columns] for r in rows], empty="no runs yet")


@app.command()
def status(
    var: Var = None,
    env_file: EnvFile = None,
    database_url: DatabaseUrl = None,
    ledger_schema: LedgerSchema = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="human or json (one JSON document).")
    ] = Output.human,
) -> None:
    """What is applied on a target now: runs still in effect and their steps, any live run, and
    drift (applied steps whose checks no longer hold). Read-only."""
    from dcx_runbook import api

    found = api.status(
        var=var or [], env_file=env_file, database_url=database_url, ledger_schema=ledger_schema
    )
    if output == Output.json:
        import json

        print(json.dumps(found.as_dict(), default=str))
        return
    from dcx_runbook.cli.console import print_status

    print_status(found.as_dict())


@app.command("ledger-sql")
def ledger_sql(
    ledger_schema: LedgerSchema = None,
    grant_to: Annotated[
        str | None,
        typer.Option("--grant-to", help="The role that runs runbooks: granted DML only."),
    ] = None,
) -> None:
    """The SQL that creates the ledger, for a DBA to run where the runbook's role may not."""
    from dcx_runbook import api

    sys.stdout.write(api.ledger_sql(ledger_schema, grant_to))


@app.command()
def log(
    run_id: Annotated[str, typer.Argument(help="The run to show.")],
    format: Annotated[
        LogFormat, typer.Option("--format", "-f", help="text, json or markdown.")
    ] = LogFormat.text,
) -> None:
    """The full record of one run (Markdown: an incident-ready timeline)."""
    from dcx_runbook import api

    sys.stdout.write(api.log(run_id, format.value))


@app.command("list")
def list_(runbooks_dir: RunbooksDir = None) -> None:
    """Runbooks in the search path: name, title, steps, where found."""
    from dcx_runbook import api
    from dcx_runbook.cli.console import print_table

    rows = api.runbooks(runbooks_dir or [])
    print_table(["name", "title", "steps", "found in"], rows, empty="no runbooks found")


@app.command()
def show(
    runbook: Annotated[str, typer.Argument(help="Runbook name or path.")],
    runbooks_dir: RunbooksDir = None,
) -> None:
    """The runbook's variables and steps with their phases."""
    from dcx_runbook import api
    from dcx_runbook.cli.console import show_runbook

    show_runbook(api.show(runbook, runbooks_dir or []))


@app.command()
def validate(
    runbooks: Annotated[list[str], typer.Argument(help="Runbook names or paths.")],
    runbooks_dir: RunbooksDir = None,
) -> None:
    """Check runbooks; print every problem with file, line, column and path. Exit 0 or 2."""
    from dcx_runbook import api

    for loaded in api.validate(runbooks, runbooks_dir or []):
        print(f"{loaded.path}: ok ({len(loaded.runbook.steps)} steps)", file=sys.stderr)


@app.command()
def schema() -> None:
    """The runbook format's JSON Schema (for editors and CI)."""
    import json

    from dcx_runbook import api

    print(json.dumps(api.schema(), indent=2))


@app.command()
def rehearse(
    runbook: Annotated[str, typer.Argument(help="Runbook name or path.")],
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
) -> None:
    """A runbook end to end on a sandbox with its demo fixtures: set up, run, verify, roll back,
    clean up."""
    from dcx_runbook.demo.run import demo as run_demo
    from dcx_runbook.interrupts import terminate_as_interrupt

    reporter = _reporter(output)
    with terminate_as_interrupt():
        try:
            code = run_demo(
                reporter,
                runbook=runbook,
                runbooks_dirs=runbooks_dir or [],
                sandbox_url=sandbox_url,
                node=node,
            )
        finally:
            reporter.close()
    raise typer.Exit(code=int(code))


def main() -> None:
    """Entry point: expected errors are one clear line (or one per problem) and an exit code."""
    try:
        app(prog_name="dcx-runbook")
    except RunbookError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        print("dcx-runbook: interrupted", file=sys.stderr)
        sys.exit(int(ExitCode.INTERRUPTED))


def _fail(exc: RunbookError) -> NoReturn:
    from dcx_runbook.errors import ValidationFailed

    if isinstance(exc, ValidationFailed):
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
    else:
        print(f"dcx-runbook: error: {exc}", file=sys.stderr)
    sys.exit(int(exc.exit_code))
