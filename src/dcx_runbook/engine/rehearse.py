"""Rehearse a runbook on a disposable copy of the target's schema: run, rollback, compare schema
dumps, run again. The real database is only read (pg_dump in a read-only, short-timeout session);
file steps act on temporary copies of the directories the runbook touches."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcx_runbook.engine.ledger import schema_for
from dcx_runbook.engine.person import manual_steps
from dcx_runbook.engine.rollback import rollback_run
from dcx_runbook.engine.run import Options, Outcome, run
from dcx_runbook.errors import ExitCode, InvalidInput, Refused
from dcx_runbook.format.loader import Loaded
from dcx_runbook.format.variables import Resolved
from dcx_runbook.kinds import path_of
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.secrets import mask_url
from dcx_runbook.state.journal import Journal
from dcx_runbook.target import sandbox
from dcx_runbook.target.ledger import DEFAULT_SCHEMA as DEFAULT_LEDGER
from dcx_runbook.template import render

DUMP_TIMEOUT = 120


@dataclass
class Phase:
    name: str
    ok: bool
    seconds: float
    note: str = ""


@dataclass
class Rehearsal:
    phases: list[Phase] = field(default_factory=list)
    diff: str = ""

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.phases) and not self.diff


def dump_schema(
    url: str, *, read_only: bool = False, exclude: Sequence[str] = (DEFAULT_LEDGER,)
) -> str:
    """`pg_dump --schema-only`; for a real target, in a read-only session with short timeouts.
    The ledger's schema (`exclude`) is left out: it records runs, it is not what they change."""
    env = dict(os.environ)
    if read_only:
        env["PGOPTIONS"] = (
            "-c default_transaction_read_only=on -c statement_timeout=60s -c lock_timeout=5s"
        )
    try:
        done = subprocess.run(
            [
                "pg_dump",
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                *(f"--exclude-schema={name}" for name in exclude),
                url,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=DUMP_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise Refused("pg_dump is not installed (PostgreSQL client tools)") from None
    if done.returncode != 0:
        raise Refused(f"pg_dump {mask_url(url)} failed: {done.stderr.strip()[-400:]}")
    noise = ("-- Dumped", "\\restrict", "\\unrestrict")
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith(noise)) + "\n"


def server_major(url: str) -> int | None:
    """The target's PostgreSQL major version (a Docker sandbox uses the same one)."""
    import psycopg

    try:
        with psycopg.connect(
            url, connect_timeout=10, options="-c default_transaction_read_only=on"
        ) as conn:
            return conn.info.server_version // 10000
    except psycopg.Error:
        return None


def load_sql(url: str, text: str) -> None:
    """Execute a SQL script (a pg_dump file; psql meta-commands are dropped)."""
    import psycopg

    script = "\n".join(line for line in text.splitlines() if not line.startswith("\\"))
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute(script.encode())
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InvalidInput(f"the schema or data file does not load: {first}") from None


def copy_dirs(loaded: Loaded, resolve: Callable[[list[str]], Resolved], root: Path) -> list[str]:
    """Copy every directory variable that holds a file the runbook reads or writes; return the
    --var overrides that point the runbook at the copies (defaults such as
    ${frontend_dir}/backend.env follow their directory)."""
    base = resolve([])
    paths = _touched_paths(loaded, base.values)
    overrides: list[str] = []
    for name, value in base.values.items():
        if not value or name in base.secret:
            continue
        directory = Path(value).resolve()
        if directory.is_dir() and any(_inside(p, directory) for p in paths):
            copy = root / "files" / name
            shutil.copytree(directory, copy, symlinks=True)
            overrides.append(f"{name}={copy}")
    outside = [p for p in _touched_paths(loaded, resolve(overrides).values) if not _inside(p, root)]
    if outside:
        raise InvalidInput(
            "a rehearsal never touches real files, but these are not under a directory variable "
            f"it can copy: {', '.join(map(str, outside))}"
        )
    return overrides


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def _touched_paths(loaded: Loaded, values: dict[str, Any]) -> list[Path]:
    from dcx_runbook.template import TemplateError

    out = []
    for step in loaded.runbook.steps:
        items: list[Any] = [*step.done_when, *step.precheck, *step.action, *step.verify]
        if step.rollback is not None:
            items += [*step.rollback.precheck, *step.rollback.action, *step.rollback.verify]
        for item in [*loaded.runbook.preflight, *items]:
            path = path_of(item)
            if path is not None:
                try:
                    out.append(Path(render(path, values)))
                except TemplateError:
                    continue
    return out


def rehearse(
    loaded: Loaded,
    resolved_for: Any,
    schema_sql: str,
    *,
    data_sql: str | None,
    reporter: Reporter,
    skip: Sequence[str] = (),
    sandbox_url: str | None = None,
    major: int | None = None,
) -> Rehearsal:
    """`resolved_for(extra_vars, database_url)` resolves the runbook's variables."""
    result = Rehearsal()
    with (
        tempfile.TemporaryDirectory(prefix="dcx-rehearse-") as tmp,
        sandbox.server(sandbox_url, major=major) as srv,
        sandbox.scratch_database(srv, "dcx_rehearse") as url,
    ):
        root = Path(tmp)
        journal = Journal(root / "state")
        _log(reporter, f"sandbox: {srv.provider}, scratch database {url.rsplit('/', 1)[1]}")
        timed(result, "restore schema", lambda: load_sql(url, schema_sql))
        if data_sql:
            timed(result, "load data", lambda: load_sql(url, data_sql))
        overrides = copy_dirs(loaded, lambda extra: resolved_for(extra, url), root)
        resolved: Resolved = resolved_for(overrides, url)
        by_hand = [s.id for s in manual_steps(loaded.runbook) if s.id not in skip]
        if by_hand:  # nobody does a person's step in a sandbox: said, and left out
            _log(reporter, f"skipping {', '.join(by_hand)}: a person's work is not rehearsed")
        options = Options(yes=True, skip=(*skip, *by_hand), expect_database=url.rsplit("/", 1)[1])
        _round_trip(
            result,
            url,
            lambda: run(loaded, resolved, options, reporter, journal),
            lambda run_id: rollback_run(
                journal.load(run_id), journal, lambda *_: resolved, Options(yes=True), reporter
            ),
            sorted({DEFAULT_LEDGER, schema_for(loaded.runbook, None)}),
        )
    return result


def _round_trip(
    result: Rehearsal,
    url: str,
    run_once: Callable[[], Outcome],
    undo: Callable[[str], Outcome],
    ledgers: Sequence[str],
) -> None:
    """run → rollback → compare schema dumps → run again; stop at the first phase that fails."""
    before = dump_schema(url, exclude=ledgers)
    first = timed_run(result, "run", run_once)
    if first.exit_code != ExitCode.OK or not first.run_id:
        return
    run_id = first.run_id
    if timed_run(result, "rollback", lambda: undo(run_id)).exit_code != ExitCode.OK:
        return
    after = dump_schema(url, exclude=ledgers)
    result.diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            "schema before run",
            "schema after rollback",
        )
    )
    result.phases.append(
        Phase("compare schema", not result.diff, 0.0, "identical" if not result.diff else "differs")
    )
    if not result.diff:
        timed_run(result, "run again", run_once)


def timed(result: Rehearsal, name: str, fn: Any) -> None:
    start = time.monotonic()
    fn()
    result.phases.append(Phase(name, True, time.monotonic() - start))


def timed_run(result: Rehearsal, name: str, fn: Any) -> Outcome:
    start = time.monotonic()
    outcome: Outcome = fn()
    ok = outcome.exit_code == ExitCode.OK
    result.phases.append(
        Phase(name, ok, time.monotonic() - start, f"exit {int(outcome.exit_code)}")
    )
    return outcome


def _log(reporter: Reporter, message: str) -> None:
    reporter.emit(Event("log", message=message))
