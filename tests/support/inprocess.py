"""`dcx-runbook run` and `rollback` in this process: the library call the CLI makes, with the
same arguments, and what `--output json` would have shown.

What comes back says what the real process would have: its exit code; its stdout, as the events
the JSON reporter prints (each serialised by that reporter when emitted); and, for the expected
errors the library raises (invalid input, a refusal before anything starts), the exit code and
the lines the CLI's `main` prints for them. Anything else written to stdout, stderr or a logger
during the call is kept too, so a test can say that a secret appears nowhere.

Use it for the engine's behaviour; keep a real process for what needs one: a kill, a signal, a
closed pipe, a terminal, the CLI's own argument parsing, `--help`, what gets imported."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcx_runbook import api
from dcx_runbook.errors import RunbookError
from dcx_runbook.reporters.base import Collecting, Event, Reporter
from dcx_runbook.reporters.jsonl import JsonReporter
from dcx_runbook.state.journal import Journal


class Recording(Collecting):
    """Keeps the events, and each one's line as the JSON reporter prints it at that moment.
    Prompts are answered as with `--output json` (never: runs need `yes`), unless `inner`, a
    reporter of the test's own, is given: it then sees every event first and answers."""

    def __init__(self, inner: Reporter | None = None):
        super().__init__(answer=False)
        self.inner = inner
        self.stdout = io.StringIO()
        self._json = JsonReporter(self.stdout)

    def emit(self, event: Event) -> None:
        if self.inner is not None:
            self.inner.emit(event)
        super().emit(event)
        self._json.emit(event)

    def confirm(self, question: str) -> bool:
        return self.inner.confirm(question) if self.inner is not None else False

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self._json.close()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.getvalue().splitlines()]


@dataclass
class Done:
    """How a command ended, as its process would have: `exit_code`, the `events` it printed with
    `--output json`, and `error`, the stderr lines `main` prints for an expected error (empty
    when the command returned an outcome). `outcome` is the library's answer (None when it
    raised); `message`, `status` and `run_id` read it (the error, None and None when it raised).
    """

    exit_code: int
    events: list[dict[str, Any]]
    outcome: api.Outcome | None
    error: str = ""
    stray: str = field(default="", repr=False)  # any other output: prints, log records

    @property
    def finished(self) -> dict[str, Any]:
        """The last event (a finished command's is its run_finished)."""
        return self.events[-1]

    @property
    def message(self) -> str:
        return self.outcome.message if self.outcome is not None else self.error

    @property
    def status(self) -> str | None:
        return self.outcome.status if self.outcome is not None else None

    @property
    def run_id(self) -> str | None:
        return self.outcome.run_id if self.outcome is not None else None

    def said(self) -> str:
        """Every event's message, one a line, then the error: what the human output shows."""
        lines = [e["message"] for e in self.events if e["message"]]
        return "\n".join([*lines, self.error])

    def printed(self) -> str:
        """Everything the process would have written anywhere: each event whole (message and
        detail), the error, and stray output. For "X appears nowhere"."""
        whole = [json.dumps(e, ensure_ascii=False) for e in self.events]
        return "\n".join([self.said(), *whole, self.stray])


def run(
    name: str | Path,
    *,
    var: Sequence[str] = (),
    skip: Sequence[str] = (),
    dry_run: bool = False,
    yes: bool = False,
    env_file: Path | None = None,
    database_url: str | None = None,
    runbooks_dirs: Sequence[Path] = (),
    state: Path | None = None,
    reporter: Reporter | None = None,
) -> Done:
    """`dcx-runbook run NAME [--dry-run] [--yes] [--var ...] [--skip ...] [--env-file F]
    [--database-url URL] [--runbooks-dir D ...] --output json`, with the state directory
    `state` (default: $DCX_RUNBOOK_STATE_DIR, as for the CLI)."""
    recording = Recording(reporter)
    with _as_a_process(recording) as done:
        done.outcome = api.run(
            str(name),
            reporter=recording,
            var=list(var),
            env_file=env_file,
            database_url=database_url,
            options=api.Options(dry_run=dry_run, yes=yes, skip=tuple(skip)),
            runbooks_dirs=list(runbooks_dirs),
            journal=Journal(state),
        )
    return done


def rollback(
    run_id: str | None = None,
    *,
    var: Sequence[str] = (),
    dry_run: bool = False,
    yes: bool = False,
    force: bool = False,
    env_file: Path | None = None,
    database_url: str | None = None,
    state: Path | None = None,
    reporter: Reporter | None = None,
) -> Done:
    """`dcx-runbook rollback [RUN_ID] [--dry-run] [--yes] [--force] [--var ...] [--env-file F]
    [--database-url URL] --output json`."""
    recording = Recording(reporter)
    with _as_a_process(recording) as done:
        done.outcome = api.rollback(
            run_id,
            reporter=recording,
            var=list(var),
            env_file=env_file,
            database_url=database_url,
            options=api.Options(dry_run=dry_run, yes=yes, force=force),
            journal=Journal(state),
        )
    return done


@contextlib.contextmanager
def _as_a_process(recording: Recording) -> Iterator[Done]:
    """Fill in a Done as the process would end: the outcome's exit code, or the CLI's for an
    expected error. Any other exception is a traceback in the real process: it propagates."""
    done = Done(exit_code=-1, events=[], outcome=None)
    stray = io.StringIO()
    # Unconfigured, a process prints warnings from any logger on stderr (logging.lastResort);
    # under pytest its own handlers would take them instead.
    handler = logging.StreamHandler(stray)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(stray), contextlib.redirect_stderr(stray):
            try:
                yield done
            except RunbookError as exc:
                done.exit_code, done.error = _cli_error(exc)
            else:
                assert done.outcome is not None
                done.exit_code = int(done.outcome.exit_code)
            finally:
                recording.close()
    finally:
        root.removeHandler(handler)
    done.events = recording.lines()
    done.stray = stray.getvalue()


def _cli_error(exc: RunbookError) -> tuple[int, str]:
    """The exit code and stderr of `main` for an expected error: its own code, not a copy."""
    from dcx_runbook.cli.app import _fail

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            _fail(exc)
        except SystemExit as ended:
            assert isinstance(ended.code, int)
            return ended.code, err.getvalue()
    raise AssertionError("_fail returned")
