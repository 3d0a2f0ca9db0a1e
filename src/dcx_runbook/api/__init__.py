"""The library behind each command: one function per command, a few lines each."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcx_runbook import caching
from dcx_runbook.engine.options import Options, Outcome
from dcx_runbook.errors import ExitCode, InvalidInput, Problem, RunbookError, ValidationFailed
from dcx_runbook.format.loader import Loaded, load
from dcx_runbook.statuses import RunStatus

__all__ = [
    "Options",
    "Outcome",
    "fleet_again",
    "fleet_options",
    "fleets",
    "is_fleet_run",
    "run_fleet",
    "targets_status",
    "ledger_sql",
    "log",
    "rollback",
    "run",
    "runbooks",
    "runs",
    "schema",
    "show",
    "status",
]

if TYPE_CHECKING:  # the engine imports psycopg: only the commands that run need it
    from dcx_runbook.engine.rehearse import Rehearsal
    from dcx_runbook.engine.status import Status
    from dcx_runbook.lint.check import Linted
    from dcx_runbook.reporters.base import Reporter
    from dcx_runbook.state.journal import Journal


def run(
    name: str,
    *,
    reporter: Reporter,
    var: Sequence[str] = (),
    env_file: Path | None = None,
    database_url: str | None = None,
    options: Options | None = None,
    runbooks_dirs: Sequence[Path] = (),
    journal: Journal | None = None,
) -> Outcome:
    from dcx_runbook.engine import run as engine
    from dcx_runbook.engine.resolving import resolve_for
    from dcx_runbook.state.journal import Journal

    options = options or engine.Options()
    with caching.keeping(not options.dry_run):
        loaded = load(name, runbooks_dirs, cached=True)
        if options.plan is not None:  # its values, unless given otherwise
            var = [*_planned_values(Path(options.plan)), *var]
        resolved = resolve_for(loaded.runbook, var, env_file, database_url)
        return engine.run(loaded, resolved, options, reporter, journal or Journal())


def approve_plan(plan: Path, key: Path) -> str:
    from dcx_runbook.api.plans import approve

    return approve(plan, key)


def show_plan(plan: Path) -> str:
    from dcx_runbook.api.plans import show_plan as shown

    return shown(plan)


def talks_to_database(ops: Sequence[Any]) -> bool:
    """Whether any of these operations talks to the target database (its kind's trait)."""
    from dcx_runbook.kinds import traits

    return any(traits(op.kind).uses_connection for op in ops)


def _planned_values(plan: Path) -> list[str]:
    """A plan's public values as --var arguments (a secret is only its keyed hash there: it
    comes from where it always does, and must match)."""
    from dcx_runbook.format import plans

    given, _ = plans.read(plan)
    secret = set(given.secret_vars)
    return [f"{k}={v}" for k, v in given.vars.items() if k not in secret and v is not None]


def rollback(
    run_id: str | None,
    *,
    reporter: Reporter,
    var: Sequence[str] = (),
    env_file: Path | None = None,
    database_url: str | None = None,
    options: Options | None = None,
    journal: Journal | None = None,
) -> Outcome:
    """`rollback RUN_ID` undoes that run; bare `rollback` every run of the latest runbook that
    left changes, on the target given."""
    from dcx_runbook.engine import run as engine

    journal = journal or _journal()
    options = options or engine.Options()
    with caching.keeping(not options.dry_run):
        return _rollback(run_id, journal, options, reporter, var, env_file, database_url)


def _rollback(
    run_id: str | None,
    journal: Journal,
    options: Options,
    reporter: Reporter,
    var: Sequence[str],
    env_file: Path | None,
    database_url: str | None,
) -> Outcome:
    from dcx_runbook.engine import rollback as undo

    url = target_url(env_file, database_url)
    if run_id and url is None:
        url = _journaled_url(journal, run_id)
    if url is not None and options.ledger:
        from dcx_runbook.engine.resolving import with_ledger_said

        journal = with_ledger_said(journal, url, options, reporter, write=not options.dry_run)
    resolve = _resolver(var, env_file, database_url)
    if run_id:
        return undo.rollback_run(journal.load(run_id), journal, resolve, options, reporter)
    given = database_url is not None or env_file is not None
    return undo.rollback_latest(journal, resolve, options, reporter, url_given=given)


def status(
    *,
    var: Sequence[str] = (),
    env_file: Path | None = None,
    database_url: str | None = None,
    ledger_schema: str | None = None,
    journal: Journal | None = None,
) -> Status:
    """What is applied on the target now (its ledger and this machine's journal), live runs,
    and drift; nothing is written anywhere."""
    from dcx_runbook.engine.status import status as status_

    url = target_url(env_file, database_url)
    if url is None:
        raise InvalidInput(
            "no target: give --database-url, --env-file (with DATABASE_URL) or $DATABASE_URL"
        )
    resolve = _resolver(var, env_file, url)
    return status_(url, ledger_schema, journal or _journal(), resolve)


def ledger_sql(schema: str | None, grant_to: str | None) -> str:
    """The statements that create the ledger, for a DBA to run (docs/ledger.md)."""
    from dcx_runbook.target.ledger import ddl, schema_name

    return ddl(schema_name(schema), grant_to)


def target_url(env_file: Path | None, database_url: str | None) -> str | None:
    """The target named by the command: --database-url, else DATABASE_URL from the env file or
    the environment."""
    if database_url:
        return database_url
    if env_file is not None:
        from dcx_runbook.format.variables import read_env_file  # the runbook models: not before

        found = read_env_file(env_file).get("DATABASE_URL")
        if found:
            return str(found)
    return os.environ.get("DATABASE_URL") or None


def _journaled_url(journal: Journal, run_id: str) -> str | None:
    """A run's own target, when its journaled URL is whole (no password was in it)."""
    from dcx_runbook.secrets import MASK

    try:
        url = (journal.load(run_id).data.get("target") or {}).get("url")
    except RunbookError:
        return None
    return str(url) if url and MASK not in url else None


def _resolver(var: Sequence[str], env_file: Path | None, database_url: str | None) -> Any:
    from dcx_runbook.engine.resolving import resolver

    return resolver(var, env_file, database_url)


def _resolve_for(runbook: Any, var: Sequence[str], env_file: Path | None, url: str | None) -> Any:
    from dcx_runbook.engine.resolving import resolve_for

    return resolve_for(runbook, var, env_file, url)


def _journal() -> Journal:
    from dcx_runbook.state.journal import Journal

    return Journal()


def runs(
    journal: Journal | None = None,
    *,
    limit: int | None = None,
    runbook: str | None = None,
    env_file: Path | None = None,
    database_url: str | None = None,
    ledger_schema: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """The runs table, newest first (an unreadable record is a row saying so): this machine's
    journal, and with a target given, its ledger's runs from every machine."""
    from dcx_runbook.state import records

    rows = records.runs(journal or _journal(), limit, runbook)
    url = target_url(env_file, database_url)
    if url is None:
        return rows
    from dcx_runbook.engine.adopt import ledger_runs

    # The target's ledger speaks for the runs it holds: another machine may have rolled back a
    # run this journal still calls in effect (`rollback` and `status` reconcile the two).
    theirs = {
        data["run_id"]: records.row(data, "ledger")
        for data in ledger_runs(url, ledger_schema, limit=limit, runbook=runbook, say=say)
    }
    rows = [row for row in rows if row["run_id"] not in theirs] + list(theirs.values())
    rows.sort(key=lambda row: str(row.get("started") or row["run_id"]), reverse=True)
    return rows if limit is None else rows[:limit]


def log(run_id: str, fmt: str, journal: Journal | None = None) -> str:
    """One run's full record as text or JSON, or its incident report (Markdown, HTML)."""
    from dcx_runbook.state import event_log, records

    record = (journal or _journal()).load(run_id)
    return records.log(record.data, fmt, event_log.read(record.path))


def runbooks(runbooks_dirs: Sequence[Path] = ()) -> list[list[str]]:
    """Every runbook in the search path: name, title, steps, where found. Read, not validated
    (`validate` does that): no pydantic on the path, so `list` answers at once. One that isn't
    a runbook's YAML says so instead of its title."""
    import yaml

    from dcx_runbook.format.loader import discover

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where it is built
    rows = []
    for found in discover(runbooks_dirs):
        try:
            document = yaml.load(found.read(), Loader=loader)  # noqa: S506 - a safe loader
            title, steps = str(document["title"]), str(len(document["steps"]))
        except (yaml.YAMLError, OSError, RunbookError, KeyError, TypeError):
            title, steps = "(not readable: run `dcx-runbook validate`)", "?"
        rows.append([found.name, " ".join(title.split()), steps, f"{found.path} ({found.origin})"])
    return rows


def show(name: str, runbooks_dirs: Sequence[Path] = ()) -> Loaded:
    return load(name, runbooks_dirs)


def schema() -> dict[str, Any]:
    """The runbook format's JSON Schema."""
    from dcx_runbook.format.model import json_schema

    return json_schema()


def validate(names: Sequence[str], runbooks_dirs: Sequence[Path] = ()) -> list[Loaded]:
    """Load every runbook named; raise one ValidationFailed listing every problem of all of them."""
    from dcx_runbook.errors import RunbookNotFound

    loaded, problems = [], []
    for name in names:
        try:
            loaded.append(load(name, runbooks_dirs))
        except ValidationFailed as exc:
            problems += exc.problems
        except RunbookNotFound as exc:
            problems.append(Problem(name, "", str(exc)))
    if problems:
        raise ValidationFailed(problems)
    return loaded


def lint(loaded: Loaded, pg_version: str | None = None) -> Linted:
    """squawk's findings and the runbook's own (docs/lint.md), located and waived."""
    from dcx_runbook.lint.check import lint as lint_

    return lint_(loaded, pg_version)


def lint_summary(linted: Linted) -> str:
    from dcx_runbook.lint.findings import summary

    return summary(linted.findings) + (" (squawk not run)" if linted.squawk_missing else "")


def rehearse(
    name: str,
    *,
    reporter: Reporter,
    from_url: str | None,
    schema_file: Path | None,
    data_file: Path | None = None,
    var: Sequence[str] = (),
    env_file: Path | None = None,
    skip: Sequence[str] = (),
    sandbox_url: str | None = None,
    runbooks_dirs: Sequence[Path] = (),
) -> ExitCode:
    from dcx_runbook.engine.rehearse import dump_schema, server_major
    from dcx_runbook.engine.rehearse import rehearse as rehearse_

    if (from_url is None) == (schema_file is None):
        raise InvalidInput("give exactly one of --from-url or --schema-file")
    loaded = load(name, runbooks_dirs)
    schema = dump_schema(from_url, read_only=True) if from_url else _read(schema_file)
    data = _read(data_file) if data_file else None
    result = rehearse_(
        loaded,
        lambda extra, url: _resolve_for(loaded.runbook, [*var, *extra], env_file, url),
        schema,
        data_sql=data,
        reporter=reporter,
        skip=skip,
        sandbox_url=sandbox_url,
        major=server_major(from_url) if from_url else None,
    )
    return _rehearsal_finished(result, reporter)


def _rehearsal_finished(result: Rehearsal, reporter: Reporter) -> ExitCode:
    """Report the rehearsal as a run's end: a table of its phases (and the schema diff left after
    rollback, if any) for people, the phases and diff as data for machines. Exit 0 when it
    passed; 1 otherwise, as for a run whose every change was undone: the rehearsal changed only
    a sandbox."""
    from dcx_runbook.reporters.base import Event

    table = "\n".join(
        f"{p.name:<16} {'ok' if p.ok else 'FAILED':<7} {p.seconds:6.2f}s  {p.note}"
        for p in result.phases
    )
    code = ExitCode.OK if result.ok else ExitCode.UNDONE
    message = table + (f"\nschema differs after rollback:\n{result.diff}" if result.diff else "")
    reporter.emit(
        Event(
            "run_finished",
            status=RunStatus.REHEARSED if result.ok else RunStatus.REHEARSAL_FAILED,
            message=message,
            detail={
                "run_id": None,
                "exit_code": int(code),
                "phases": [p.__dict__ for p in result.phases],
                "diff": result.diff,
            },
        )
    )
    return code


def _read(path: Path | None) -> str:

    assert path is not None
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"can't read {path}: {exc}") from None


from dcx_runbook.api.fleets import (  # noqa: E402
    fleet_again,
    fleet_options,
    fleets,
    is_fleet_run,
    run_fleet,
    targets_status,
)
