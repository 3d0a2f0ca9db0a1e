"""Every status word the engine journals or reports, as enums: one place to read them, and a
typo is an AttributeError, not a status nobody checks for. They are `StrEnum`s, so the journal and
the JSON events carry the same words as before (`tests/test_statuses.py` holds the event schema to
them)."""

from __future__ import annotations

from enum import StrEnum


class StepStatus(StrEnum):
    """A step's state in the journal."""

    PENDING = "pending"
    SKIPPED = "skipped"
    ALREADY_DONE = "already_done"
    PASSED = "passed"  # a verify-only step whose checks held
    ACTION_STARTED = "action_started"  # write-ahead: something of it may have taken effect
    APPLIED = "applied"
    FAILED = "failed"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_FAILED = "rollback_failed"
    ROLLED_BACK = "rolled_back"
    IRREVERSIBLE = "irreversible"  # left as it is by an undo, as its author declared


# The journal states of a step whose effect may still be there: what a rollback looks at.
STILL_APPLIED = frozenset(
    {
        StepStatus.APPLIED,
        StepStatus.ACTION_STARTED,
        StepStatus.ROLLBACK_FAILED,
        StepStatus.ROLLBACK_STARTED,
    }
)
# Caught in the middle of its action or its undo: whether its effect is there must be found out.
UNCERTAIN = frozenset(
    {StepStatus.ACTION_STARTED, StepStatus.ROLLBACK_STARTED, StepStatus.ROLLBACK_FAILED}
)


class StepOutcome(StrEnum):
    """The status of a `step_finished` event."""

    APPLIED = "applied"
    PASSED = "passed"
    ALREADY_DONE = "already_done"
    SKIPPED = "skipped"
    WOULD_APPLY = "would_apply"  # dry run
    WOULD_VERIFY = "would_verify"  # dry run: a verify-only step whose checks depend on others


class UndoOutcome(StrEnum):
    """The status of a `step_undone` event."""

    ROLLED_BACK = "rolled_back"
    NOTHING_TO_UNDO = "nothing_to_undo"
    ROLLBACK_FAILED = "rollback_failed"
    IRREVERSIBLE = "irreversible"
    SKIPPED = "skipped"  # --skip-other-hosts: only the machine that ran it can undo it


class RunStatus(StrEnum):
    """How a run, a rollback or a rehearsal ended (`run_finished`), or that it is running."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    UNDO_INCOMPLETE = "undo_incomplete"
    REFUSED = "refused"
    DRY_RUN = "dry_run"
    ROLLED_BACK = "rolled_back"
    NOTHING_TO_UNDO = "nothing_to_undo"
    REHEARSED = "rehearsed"
    REHEARSAL_FAILED = "rehearsal_failed"
    # The runbook's `applies_when` does not hold on the target: nothing was touched there.
    NOT_APPLICABLE = "not_applicable"
    # The operator chose "stop here" at a manual step or a `--step` prompt: the steps before it
    # are left applied (journal format 2).
    STOPPED = "stopped"
    # Invalid input (exit 2): the run never started. Only in a JSON stream's last event, never
    # journaled: with -o json, every command that streams events ends with run_finished.
    INVALID = "invalid"


class TargetState(StrEnum):
    """A target's state in a fleet run (docs/fleet.md): how its run ended, or where it stands."""

    PENDING = "pending"  # not started yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    NOT_APPLICABLE = "not_applicable"
    FAILED = "failed"  # its run failed and unwound itself
    REFUSED = "refused"  # refused before any change (wrong database, lock held, preflight)
    INTERRUPTED = "interrupted"  # stopped (Ctrl-C) and unwound, or its process died mid-run
    UNDO_INCOMPLETE = "undo_incomplete"
    NOT_REACHED = "not_reached"  # never started: the failure budget was spent, or Ctrl-C
    DRY_RUN = "dry_run"
    ROLLED_BACK = "rolled_back"
    NOTHING_TO_UNDO = "nothing_to_undo"


class Answer(StrEnum):
    """What the operator answered at a manual step or a `--step` prompt (journal and ledger)."""

    DONE = "done"  # a manual step: the person did it
    RUN = "run"  # --step: run this step
    SKIP = "skip"  # --step: skip it (recorded as skipped)
    ABORT = "abort"  # undo everything done so far, and stop
    STOP = "stop"  # stop here: leave what was done applied


class CheckStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    UNMET = "unmet"  # an already-done check that does not hold yet: the step has work to do
    DEFERRED = "deferred"  # dry run: depends on an earlier step's effect


class OperationStatus(StrEnum):
    STARTED = "started"
    DONE = "done"
    PLANNED = "planned"  # dry run
    FAILED = "failed"


class LockWaitStatus(StrEnum):
    TIMEOUT = "timeout"
