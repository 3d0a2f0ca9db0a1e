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
    # The server the targets file pins for this target (system_identifier), besides the runbook's.
    expect_system: str | None = None
    # The target's ledger (docs/ledger.md): off only when asked (--no-ledger), and said so.
    ledger: bool = True
    ledger_schema: str | None = None
    reason: str | None = None  # --reason: free text, in the journal and the ledger
    # rollback: steps that touched another machine are left (said, recorded) instead of refused
    skip_other_hosts: bool = False
    # A fleet's child run (docs/fleet.md): its id, handed out by the fleet before it starts, and
    # (fleet run id, target name), recorded with the target in the journal and the ledger.
    run_id: str | None = None
    fleet: tuple[str, str] | None = None
    # A person in the loop (engine/person.py): `--step` asks before each step; `--confirm ID`
    # says a manual step is done (of a run: its action; of a rollback: its undo).
    step_by_step: bool = False
    confirm: tuple[str, ...] = ()
    # Plans and approvals (docs/approvals.md): a dry run's --plan-out, a run's --plan, the
    # approvals it needs (the most of --require-approvals and the runbook's and target's
    # `requires_approval`), who may give them, and --break-glass (with --reason) without them.
    plan_out: str | None = None
    plan: str | None = None
    require_approvals: int = 0
    allowed_signers: str | None = None
    break_glass: bool = False
    # A targets file's `requires_approval` for this target (a fleet's child run).
    target_requires: int = 0


@dataclass
class Outcome:
    exit_code: ExitCode
    status: RunStatus
    run_id: str | None = None
    message: str = ""
    still_applied: list[str] = field(default_factory=list)
