"""Doing a step's operations (or its rollback's): under the step's timeouts, in its transaction
when it has one, the write-ahead record durable before anything takes effect, retried after a
lock timeout with the blockers named, an INVALID index left by a failed concurrent build
dropped."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from dcx_runbook.engine.checks import run_checks
from dcx_runbook.engine.restore import restore_file
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.errors import StepFailed, Stopped
from dcx_runbook.format.model import Step
from dcx_runbook.kinds import OPERATIONS
from dcx_runbook.kinds.base import CheckSpec, Context, Effect, OpSpec
from dcx_runbook.kinds.sql import Leftover, SqlEffect, drop_leftover, invalid_indexes, leftovers
from dcx_runbook.statuses import LockWaitStatus, OperationStatus
from dcx_runbook.target import db
from dcx_runbook.template import TemplateError

IDLE = TransactionStatus.IDLE


def _nothing() -> None:
    pass


def act(
    rt: Runtime,
    step: Step,
    phase: str,
    ops: Sequence[OpSpec],
    verify: Sequence[CheckSpec],
    journal_step: dict[str, Any],
    before_effect: Callable[[], None] = _nothing,
    commit_status: str | None = None,
    transaction: bool | None = None,
) -> None:
    """Run operations then verify checks, under the step's timeouts, retrying on lock timeout.

    With `transaction: true`, sql operations and the verify share one transaction committed
    only after verify passes; anything else undone on failure is up to the caller.
    `before_effect` returns once the caller's write-ahead record is durable: it is called
    before the first operation that takes effect at once, and before COMMIT. `commit_status`:
    the step's status once its transaction commits, written to the ledger with that COMMIT;
    `transaction`: whether sql runs in one (default: the step's `transaction`).

    An index build (`CONCURRENTLY`) that fails leaves an INVALID index behind: it is dropped
    before the step is retried, or fails (see `_drop_leftovers`)."""
    policy = rt.policy(step)
    uses_sql = rt.conn is not None and any(OPERATIONS[op.kind].traits.uses_connection for op in ops)
    in_tx = (step.transaction if transaction is None else transaction) and uses_sql
    retries = _Retries(policy, time.monotonic() + policy.retry_budget, db.backoff_delays(policy))
    # Operations whose effect outlives a failed attempt (a shell command, anything outside a
    # transaction) stay done: a retry never repeats them; in a transaction the rest runs again.
    kept: set[int] = set()
    while True:
        retries.attempt += 1
        files_before = dict(journal_step.get("files", {}))
        attempt = _Attempt(
            rt, step, phase, ops, journal_step, before_effect, policy, kept, commit_status
        )
        watch = rt.watcher().watching() if uses_sql else nullcontext(None)
        try:
            with watch as watcher:
                if in_tx:
                    _in_transaction(attempt, verify)
                else:
                    _at_once(attempt, uses_sql)
            if not in_tx:
                run_checks(rt, step.id, _verify_phase(phase), verify)
            return
        except psycopg.errors.LockNotAvailable as exc:
            blockers = [str(b) for b in (watcher.blockers if watcher else [])]
            if in_tx:  # the transaction rolled back: so do the files the attempt wrote
                _restore_attempt(rt, journal_step, files_before)
            _retry_or_fail(rt, step.id, phase, retries, exc, blockers, attempt.left)


@dataclass
class _Attempt:
    """One attempt at a step's operations."""

    rt: Runtime
    step: Step
    phase: str
    ops: Sequence[OpSpec]
    entry: dict[str, Any]
    before_effect: Callable[[], None]
    policy: db.Policy
    kept: set[int]  # operations done for good by an earlier attempt
    commit_status: str | None = None  # the ledger row's status, sent with COMMIT
    left: list[Leftover] = field(default_factory=list)  # INVALID indexes a failed build left

    def execute(self) -> None:
        _execute(self)


def _in_transaction(attempt: _Attempt, verify: Sequence[CheckSpec]) -> None:
    """The operations and verify in one transaction, committed once verify passed (and the
    write-ahead record is durable). A COMMIT whose answer is lost is journaled as in doubt."""
    rt = attempt.rt
    assert rt.conn is not None
    tx = db.Tx()
    mirror, status = rt.mirror, attempt.commit_status
    record = None
    if mirror is not None and status is not None and not rt.dry_run:
        conn = rt.conn
        record = lambda: mirror.commit_statement(conn, attempt.entry, status)  # noqa: E731
    try:
        with db.transaction(rt.conn, attempt.policy, attempt.before_effect, record) as tx:
            attempt.execute()
            run_checks(rt, attempt.step.id, _verify_phase(attempt.phase), verify)
    finally:
        if tx.in_doubt:  # the unwind asks the server what became of it
            attempt.entry["commit_in_doubt"] = tx.xid
    if record is not None and mirror is not None:
        mirror.committed()


def _at_once(attempt: _Attempt, uses_sql: bool) -> None:
    """Each operation takes effect as it runs, under session-wide timeouts."""
    if uses_sql and attempt.rt.conn is not None:
        db.set_timeouts(attempt.rt.conn, attempt.policy, local=False)
    attempt.execute()


def _retry_or_fail(
    rt: Runtime,
    step_id: str,
    phase: str,
    retries: _Retries,
    exc: psycopg.Error,
    blockers: list[str],
    left: Sequence[Leftover],
) -> None:
    """After a lock timeout: say so, drop what the attempt left, and wait before the next
    attempt. Raises StepFailed when none may follow: the attempts or the budget are spent, or
    an INVALID index the attempt left could not be dropped (the retry would take it for the
    index it builds, and skip the build)."""
    policy = retries.policy
    delay = next(retries.delays, None)
    rt.emit(
        "lock_wait",
        step_id,
        phase=phase,
        status=LockWaitStatus.TIMEOUT,
        message=f"lock timeout after {policy.lock_timeout:g}s "
        f"(attempt {retries.attempt} of {policy.attempts})",
        detail={"attempt": retries.attempt, "delay": delay, "blockers": blockers},
    )
    stuck = _drop_leftovers(rt, step_id, phase, left)
    if stuck is None and delay is not None and db.sleep_within(retries.deadline, delay):
        return
    who = "; ".join(blockers) or "no blocker seen"
    message = (
        f"could not get a lock within {policy.lock_timeout:g}s in {retries.attempt} "
        f"attempt(s): {_first_line(exc)}; blocked by: {who}"
    )
    if stuck is not None:
        message += ("; not retried: " if delay is not None else "; ") + stuck
    raise StepFailed(message, step_id=step_id, phase=phase) from None


def _drop_leftovers(rt: Runtime, step_id: str, phase: str, left: Sequence[Leftover]) -> str | None:
    """Drop each INVALID index a failed concurrent build left behind: a retry's
    `IF NOT EXISTS` would take it for the index and skip the build (verify on `indisvalid`
    then fails), and an unwind would find it standing. None when all are gone, else why one
    is not (named, so the operator can drop it)."""
    for leftover in left:
        assert rt.conn is not None
        try:
            drop_leftover(rt.conn, leftover)
        except psycopg.Error as exc:
            return (
                f"the INVALID index {leftover} that the failed statement left could not be "
                f"dropped: {_first_line(exc)} (drop it with DROP INDEX CONCURRENTLY {leftover})"
            )
        rt.emit(
            "log",
            step_id,
            phase=phase,
            message=f"dropped the INVALID index {leftover} that the failed statement left",
            detail={"index": str(leftover)},
        )
    return None


def _execute(a: _Attempt) -> None:
    """Plan and execute each operation in turn, but those in `a.kept` (done by an earlier
    attempt, for good); add to it each one whose effect outlives a rolled-back attempt.

    `effects_started` is journaled once an operation that no transaction can take back has
    started (a shell command, non-transactional sql): only then has an unwind of this step,
    failed in flight, rollback operations to run."""
    rt, step_id, phase = a.rt, a.step.id, a.phase
    ctx = rt.context(a.entry, phase)
    in_tx = rt.conn is not None and rt.conn.info.transaction_status != IDLE
    for index, spec in enumerate(a.ops):
        if index in a.kept:
            continue
        try:
            effect = OPERATIONS[spec.kind].plan(spec, ctx)
        except (OSError, ValueError, TemplateError, re.error) as exc:
            # A plan that can't be made (a missing file, an edit that doesn't match, a value
            # that can't be written safely) fails the step before anything of it is done.
            raise StepFailed(rt.masker(_first_line(exc)), step_id=step_id, phase=phase) from None
        traits = OPERATIONS[spec.kind].traits
        if not (in_tx and traits.transactional):  # it takes effect now, not at COMMIT
            a.before_effect()
        lasting = not in_tx or traits.outlives_rollback  # no ROLLBACK takes it back
        if lasting and not traits.restored_from_preimage:
            a.entry["effects_started"] = True
        started, done = OperationStatus.STARTED, OperationStatus.DONE
        rt.emit("operation", step_id, phase=phase, status=started, message=effect.describe())
        output = _perform(rt, step_id, phase, effect, ctx, in_tx, a.left)
        rt.emit("operation", step_id, phase=phase, status=done, message=output or done)
        if lasting:
            a.kept.add(index)


def _perform(
    rt: Runtime,
    step_id: str,
    phase: str,
    effect: Effect,
    ctx: Context,
    in_tx: bool,
    left: list[Leftover],
) -> str:
    """Execute one effect; its failure becomes StepFailed, but a lock timeout, which the
    caller may retry (after dropping what `left` holds). On any other failure an INVALID
    index it left is dropped here: the step fails, and the unwind must not find it."""
    try:
        return _execute_watching_builds(rt, effect, ctx, in_tx, left)
    except (psycopg.errors.LockNotAvailable, Stopped):
        raise  # retried by the caller; the operator's "stop here"
    except (psycopg.Error, OSError, ValueError, RuntimeError, TemplateError) as exc:
        if isinstance(exc, psycopg.Error) and rt.conn is not None and rt.conn.closed:
            raise StepFailed(
                f"the database connection was lost: {_first_line(exc)}",
                step_id=step_id,
                phase=phase,
            ) from None
        stuck = _drop_leftovers(rt, step_id, phase, left)
        message = _first_line(exc) + (f"; {stuck}" if stuck else "")
        raise StepFailed(message, step_id=step_id, phase=phase) from None
    except Exception as exc:  # ProcessFailed, kind errors, re.error
        raise StepFailed(rt.masker(str(exc)), step_id=step_id, phase=phase) from None


def _execute_watching_builds(
    rt: Runtime, effect: Effect, ctx: Context, in_tx: bool, left: list[Leftover]
) -> str:
    """Execute one effect. A statement that builds an index concurrently (outside a
    transaction: inside one, PostgreSQL refuses it at once) leaves an INVALID index when it
    fails; the INVALID indexes read just before it tell which are its own: added to `left`.
    No other statement pays for the read."""
    conn = rt.conn
    concurrent = isinstance(effect, SqlEffect) and effect.builds_concurrently
    if in_tx or conn is None or not concurrent:
        return effect.execute(ctx)
    before = invalid_indexes(conn)
    try:
        return effect.execute(ctx)
    except psycopg.Error:
        if not conn.closed:
            try:
                left += leftovers(conn, before)
            except psycopg.Error:
                pass  # not known: left to the step's rollback
        raise


def _restore_attempt(
    rt: Runtime, journal_step: dict[str, Any], files_before: dict[str, Any]
) -> None:
    """A retried attempt starts from the files as they were before it."""

    for key, entry in list(journal_step.get("files", {}).items()):
        if key not in files_before:
            restore_file(Path(key), entry, rt.secrets, force=True)
            del journal_step["files"][key]


@dataclass
class _Retries:
    """An act's attempts after lock timeouts: how many so far, the backoff delays left, and the
    time by which the last one must start (the retry budget)."""

    policy: db.Policy
    deadline: float
    delays: Iterator[float]
    attempt: int = 0


def _verify_phase(phase: str) -> str:
    return "rollback.verify" if phase.startswith("rollback") else "verify"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
