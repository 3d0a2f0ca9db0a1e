"""The commands that read: runs, status, log, list, show, validate, schema, ledger-sql. They
change nothing anywhere."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from dcx_runbook.cli.app import app
from dcx_runbook.cli.options import (
    DatabaseUrl,
    EnvFile,
    LedgerSchema,
    LogFormat,
    Output,
    RunbookArg,
    RunbooksDir,
    Select,
    TableOutput,
    TargetName,
    TargetsFile,
    Var,
    complete_run,
)
from dcx_runbook.errors import InvalidInput


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
        TableOutput,
        typer.Option(
            "--output",
            "-o",
            "--format",
            help="human (a table on a terminal; piped, tsv), tsv (a line per run, tab-separated) "
            "or json (JSON Lines, typed fields).",
        ),
    ] = TableOutput.human,
) -> None:
    """History of runs, newest first: id, runbook, target, status, whether still in effect,
    operator, started, how long it took. With a target given, its ledger's runs from every
    machine."""
    from dcx_runbook import api

    rows = api.runs(
        limit=None if all_ else limit,
        runbook=runbook,
        env_file=env_file,
        database_url=database_url,
        ledger_schema=ledger_schema,
        say=lambda message: print(f"dcx-runbook: {message}", file=sys.stderr),
    )
    fleets = api.fleets(None if all_ else limit, runbook)
    if output == TableOutput.json:
        import json

        for row in rows:
            print(json.dumps(row))
        for fleet in fleets:
            print(json.dumps(fleet, default=str))
        return
    from dcx_runbook.cli.console import print_runs, print_runs_tsv

    if output == TableOutput.tsv or not sys.stdout.isatty():
        print_runs_tsv(rows)  # fleet runs: in -o json, or on a terminal
        return
    print_runs(rows)
    _print_fleets(fleets)


def _print_fleets(fleets: list[dict[str, Any]]) -> None:
    """Fleet runs (docs/fleet.md), one row per target: its state and its child runs."""
    from dcx_runbook.cli.console import print_table

    rows = []
    for fleet in fleets:
        name = (fleet.get("runbook") or {}).get("name", "?")
        if "error" in fleet:
            rows.append([fleet["fleet_run"], "?", "?", "?", fleet["error"], ""])
            continue
        for t in fleet["targets"]:
            runs = ", ".join(t.get("runs") or [])
            state = str(t.get("state"))
            rows.append([fleet["fleet_run"], name, t["name"], state, t.get("message") or "", runs])
    if rows:
        print()
        columns = ["fleet_run", "runbook", "target", "state", "message", "runs"]
        print_table(columns, rows, empty="")


@app.command()
def status(
    var: Var = None,
    env_file: EnvFile = None,
    database_url: DatabaseUrl = None,
    ledger_schema: LedgerSchema = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="human or json (one JSON document).")
    ] = Output.human,
    targets: TargetsFile = None,
    target: TargetName = None,
    select: Select = None,
) -> None:
    """What is applied on a target now: runs still in effect and their steps, any live run, and
    drift (applied steps whose checks no longer hold). Read-only. With --targets (or --target,
    --select): every target of a targets file, one row each."""
    from dcx_runbook import api

    if targets is not None or target or select:
        if database_url is not None:
            raise InvalidInput("--database-url names one target: a fleet's are in the targets file")
        rows = api.targets_status(
            targets_file=targets,
            target_names=target or [],
            selectors=select or [],
            var=var or [],
            env_file=env_file,
            ledger_schema=ledger_schema,
        )
        _print_targets(rows, output)
        return

    found = api.status(
        var=var or [], env_file=env_file, database_url=database_url, ledger_schema=ledger_schema
    )
    if output == Output.json:
        import json

        print(json.dumps(found.as_dict(), default=str))
        return
    from dcx_runbook.cli.console import print_status

    print_status(found.as_dict())


def _print_targets(rows: list[dict[str, Any]], output: Output) -> None:
    if output == Output.json:
        import json

        print(json.dumps(rows, default=str))
        return
    from dcx_runbook.cli.console import print_table

    columns = ["target", "database", "in effect", "live", "drift", "notes"]
    print_table(columns, [_target_row(r) for r in rows], empty="no targets")


def _target_row(row: dict[str, Any]) -> list[str]:
    if "error" in row:
        return [row["target"], row["expected_database"], "?", "?", "?", row["error"]]
    in_effect = ", ".join(f"{r['run_id']} ({r['runbook']})" for r in row["in_effect"])
    live = ", ".join(f"{x['what']} {x['run_id']}" for x in row["live"])
    drift = ", ".join(f"{d['run_id']} {d['step']}" for d in row["drift"])
    return [
        row["target"],
        str(row["identity"].get("database")),
        in_effect or "nothing",
        live or "none",
        drift or "none",
        "; ".join(row.get("notes") or []),
    ]


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
    run_id: Annotated[str, typer.Argument(help="The run to show.", autocompletion=complete_run)],
    format: Annotated[
        LogFormat,
        typer.Option(
            "--format",
            "-f",
            help="text, json, or the incident report: markdown (a Mermaid timeline) or html (a "
            "self-contained page with an SVG timeline).",
        ),
    ] = LogFormat.text,
) -> None:
    """The full record of one run, or its incident report: how it ended, a timeline of its
    steps' phases, then what each step ran, checked, waited for and ended with."""
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
    runbook: RunbookArg,
    runbooks_dir: RunbooksDir = None,
) -> None:
    """The runbook's variables and steps with their phases."""
    from dcx_runbook import api
    from dcx_runbook.cli.console import show_runbook

    show_runbook(api.show(runbook, runbooks_dir or []))


@app.command()
def validate(
    runbooks: Annotated[list[str], typer.Argument(help="Runbook names or paths.")],
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit 2 on any lint warning not waived, or when squawk can't run."
        ),
    ] = False,
    pg_version: Annotated[
        str | None,
        typer.Option("--pg-version", help="The target's PostgreSQL version, for the lint."),
    ] = None,
    runbooks_dir: RunbooksDir = None,
) -> None:
    """Check runbooks; print every problem with file, line, column and path, then the lint's
    findings (docs/lint.md). Exit 0, or 2 (with --strict, also on a finding not waived)."""
    from dcx_runbook import api

    failed = False
    for loaded in api.validate(runbooks, runbooks_dir or []):
        linted = api.lint(loaded, pg_version)
        for finding in linted.findings:
            print(str(finding), file=sys.stderr)
        if linted.squawk_missing:
            print(f"dcx-runbook: warning: {linted.squawk_missing}", file=sys.stderr)
        open_ = len(linted.unwaived())
        failed = failed or (strict and (open_ > 0 or bool(linted.squawk_missing)))
        print(
            f"{loaded.path}: ok ({len(loaded.runbook.steps)} steps; lint: "
            f"{api.lint_summary(linted)})",
            file=sys.stderr,
        )
    if failed:
        print("dcx-runbook: --strict: lint findings not waived (see above)", file=sys.stderr)
        raise typer.Exit(code=2)


@app.command()
def schema() -> None:
    """The runbook format's JSON Schema (for editors and CI)."""
    import json

    from dcx_runbook import api

    print(json.dumps(api.schema(), indent=2))
