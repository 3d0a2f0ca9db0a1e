"""One exception root, one exit code per family (README: Exit codes)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNDONE = 1  # a step failed and every change was undone
    INVALID = 2  # invalid input; nothing was touched
    UNDO_INCOMPLETE = 3  # manual intervention needed
    REFUSED = 4  # refused before any change
    STOPPED = 5  # the operator stopped the run at a step: what was done is still applied
    INTERRUPTED = 130


class RunbookError(Exception):
    """Root of every expected error. The CLI prints `str(error)` and exits with `exit_code`."""

    exit_code: ExitCode = ExitCode.INVALID

    def __init__(self, message: str, *, step_id: str | None = None, phase: str | None = None):
        self.message = message
        self.step_id = step_id
        self.phase = phase
        super().__init__(message)

    def in_step(self) -> str:
        """The message where the step is already named (a step's own line): its phase only."""
        return f"{self.phase}: {self.message}" if self.phase else self.message

    def __str__(self) -> str:
        where = ""
        if self.step_id:
            where = f"step {self.step_id}" + (f" ({self.phase})" if self.phase else "") + ": "
        return where + self.message


@dataclass(frozen=True)
class Problem:
    """One located validation problem."""

    file: str
    path: str  # path inside the runbook, e.g. steps[2].verify[0].sql
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        at = f" {self.path}:" if self.path else ""
        return f"{where}:{at} {self.message}"


class ValidationFailed(RunbookError):
    """A runbook (or several) failed validation; every problem is reported at once."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        count = len(problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found")

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class InvalidInput(RunbookError):
    """Bad arguments or variables."""


class RunbookNotFound(RunbookError):
    """No runbook by that name or path."""


class Refused(RunbookError):
    """Refused before any change: not confirmed, locked, wrong database, preflight failed."""

    exit_code = ExitCode.REFUSED


class JournalError(RunbookError):
    """The journal can't be read or written; nothing is guessed."""

    exit_code = ExitCode.UNDO_INCOMPLETE
    run_id: str | None = None  # the record's, when a record is what can't be read


class StepFailed(RunbookError):
    """A phase of a step failed; the engine unwinds."""

    exit_code = ExitCode.UNDONE


class Stopped(RunbookError):
    """The operator chose "stop here" (a manual step, `--step`): the run ends, what it did is left
    applied, and the output says how to undo it."""

    exit_code = ExitCode.STOPPED


class UndoFailed(RunbookError):
    """Undoing a step failed: the undo stops there; what is left is said."""

    exit_code = ExitCode.UNDO_INCOMPLETE
