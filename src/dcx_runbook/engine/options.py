"""What a command asks of a run or rollback, and how it ended: light enough for the CLI to import
without the database driver."""

from __future__ import annotations

from dataclasses import dataclass, field

from dcx_runbook.errors import ExitCode
from dcx_runbook.statuses import RunStatus


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    yes: bool = False
    skip: tuple[str, ...] = ()
    force: bool = False
    # The database name the guard expects instead of the runbook's (rehearsals and the demo run
    # against a scratch database).
    expect_database: str | None = None


@dataclass
class Outcome:
    exit_code: ExitCode
    status: RunStatus
    run_id: str | None = None
    message: str = ""
    still_applied: list[str] = field(default_factory=list)
