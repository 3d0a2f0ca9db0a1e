"""What one run or rollback holds while it works, and the phases every step goes through."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from dcx_runbook.errors import StepFailed
from dcx_runbook.filesystem import sha256
from dcx_runbook.format.model import Runbook, Step, Timeouts
from dcx_runbook.interrupts import terminate_as_interrupt
from dcx_runbook.kinds import CHECKS, OPERATIONS
from dcx_runbook.kinds.base import CheckSpec, Context, Deferred, Effect, OpSpec
from dcx_runbook.kinds.sql import Leftover, SqlEffect, drop_leftover, invalid_indexes, leftovers
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.secrets import Masker
from dcx_runbook.state.entries import new_file
from dcx_runbook.state.journal import RunRecord
from dcx_runbook.state.sealing import seal
from dcx_runbook.statuses import CheckStatus, LockWaitStatus, OperationStatus
from dcx_runbook.target import db
from dcx_runbook.template import TemplateError, render

IDLE = TransactionStatus.IDLE


def _nothing() -> None:
    pass


@dataclass
class Runtime:
    runbook: Runbook
    values: dict[str, Any]
    secrets: dict[str, str | None]
    masker: Masker
    reporter: Reporter
    url: str | None = None
    app_name: str = "dcx-runbook"
    expected_database: str | None = None  # the guard: any other database is refused
    conn: psycopg.Connection[Any] | None = None
    record: RunRecord | None = None
    dry_run: bool = False
    overlay: dict[Path, bytes | None] = field(default_factory=dict)
    blocker_watch: db.BlockerWatch | None = None
    # Values captured by preflight checks: a later rollback's checks may use them too.
    captured: dict[str, Any] = field(default_factory=dict)
    # A rollback's entry under the record's `rollbacks`: where its outcome is journaled.
    rollback_entry: dict[str, Any] | None = None

    # ------------------------------------------------------------------ output

    def emit(
        self,
        type_: Any,
        step: str | None = None,
        *,
        phase: str | None = None,
        status: str | None = None,
        message: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Every event leaves through here, masked: no secret reaches a reporter."""
        masked_detail: Any = self.masker.deep(detail or {})
        text = self.masker(message) if message else message
        self.reporter.emit(Event(type_, step, phase, status, text, masked_detail))

    def save(self, *entries: dict[str, Any], durable: bool = True) -> None:
        """Journal these step entries (and the run's status); durable unless told otherwise."""
        if self.record is not None and not self.dry_run:
            self.record.save(*entries, durable=durable)

    def save_ahead(self, entry: dict[str, Any]) -> Callable[[], None]:
        """Journal a write-ahead entry; the function returned waits until it is durable."""
        if self.record is None or self.dry_run:
            return _nothing
        return self.record.save_ahead(entry)

    # ------------------------------------------------------------------ context

    def context(self, step: dict[str, Any] | None = None) -> Context:
        def before_write(path: Path, planned: bytes) -> None:
            """The pre-image (first touch) and the content about to be written, made durable
            before the first byte changes: after a crash, rollback knows both."""
            if step is None:
                return
            files = step.setdefault("files", {})
            key = str(path.resolve())
            if key not in files:
                try:
                    data: bytes | None = path.read_bytes()
                    mode: int | None = path.stat().st_mode & 0o7777
                except FileNotFoundError:
                    data, mode = None, None
                sealed = seal(data, self.secrets) if data is not None else None
                files[key] = new_file(data is not None, mode, sha256(data), sealed)
            files[key]["planned"].append(sha256(planned))
            self.save(step)

        return Context(
            values=self.values,
            masker=self.masker,
            conn=self.conn,
            dry_run=self.dry_run,
            overlay=self.overlay,
            before_write=before_write,
        )

    def policy(self, step: Timeouts | None = None) -> db.Policy:
        base = db.Policy()
        out = {}
        for name in ("lock_timeout", "statement_timeout", "attempts", "retry_budget"):
            value = getattr(step, name, None) if step is not None else None
            if value is None and self.runbook.target is not None:
                value = getattr(self.runbook.target, name)
            out[name] = value if value is not None else getattr(base, name)
        return db.Policy(**out)

    # ------------------------------------------------------------------ checks

    def run_checks(
        self,
        step_id: str | None,
        phase: str,
        specs: Sequence[CheckSpec],
        *,
        fail_fast: bool = True,
        deferred_holds: bool = True,
    ) -> bool:
        """Evaluate checks; True when all passed. Raises StepFailed on a failure when fail_fast.
        A check deferred (a dry run can't evaluate it) counts as passed unless `deferred_holds`
        is False: "already done" must be known, not assumed."""
        ok = True
        ctx = self.context()  # checks write nothing: one context serves them all
        for index, spec in enumerate(specs):
            label = spec.name or f"{spec.kind} check {index + 1}"
            kind = CHECKS[spec.kind]
            try:
                result = kind.check(spec, ctx)
            except Deferred as why:
                self.emit(
                    "check",
                    step_id,
                    phase=phase,
                    status=CheckStatus.DEFERRED,
                    message=f"{label}: {why}",
                    detail={"name": label},
                )
                ok = ok and deferred_holds
                continue
            except (psycopg.Error, OSError, TemplateError, ValueError, re.error) as exc:
                if isinstance(exc, psycopg.Error) and self.conn is not None and self.conn.closed:
                    raise
                result_ok, detail = False, f"{type(exc).__name__}: {_first_line(exc)}"
                self._check_event(step_id, phase, label, result_ok, detail, spec, None)
                if fail_fast:
                    raise StepFailed(
                        f"{label}: {self.masker(detail)}", step_id=step_id, phase=phase
                    ) from None
                ok = False
                continue
            capture = getattr(spec, "capture", None)
            if capture and result.ok:
                self.values[capture] = result.value
                if step_id is None:  # preflight: journaled with the run's record
                    self.captured[capture] = _jsonable(result.value)
                elif self.record is not None:
                    self.record.step(step_id).setdefault("captured", {})[capture] = _jsonable(
                        result.value
                    )
            self._check_event(step_id, phase, label, result.ok, result.detail, spec, result.value)
            if not result.ok:
                ok = False
                if fail_fast:
                    message = f"{label}: {result.detail}"
                    if spec.message:
                        message += f"\n{self._render_message(spec.message, result.value)}"
                    raise StepFailed(message, step_id=step_id, phase=phase)
        return ok

    def _render_message(self, template: str, value: Any) -> str:
        try:
            return render(template, {**self.values, "value": value})
        except TemplateError:
            return template

    def _check_event(
        self,
        step_id: str | None,
        phase: str,
        label: str,
        ok: bool,
        detail: str,
        spec: CheckSpec,
        value: Any,
    ) -> None:
        """The check's event; a failed check's message shows `${value}` as the failure raised
        after it does: the value the check found."""
        message = f"{label}: {detail}"
        if not ok and spec.message and phase != "done_when":
            message += f" ({self._render_message(spec.message, value)})"
        # An unmet already-done check is not a failure: it means the step has work to do.
        status = (
            CheckStatus.PASSED
            if ok
            else (CheckStatus.UNMET if phase == "done_when" else CheckStatus.FAILED)
        )
        self.emit(
            "check",
            step_id,
            phase=phase,
            status=status,
            message=message,  # emit masks it
            detail={"name": label},
        )

    # ------------------------------------------------------------------ actions

    def plan(self, specs: Sequence[OpSpec], ctx: Context) -> Iterator[Effect]:
        """Effects are planned one at a time, so each sees the files as the previous one left them."""
        for spec in specs:
            yield OPERATIONS[spec.kind].plan(spec, ctx)

    def act(
        self,
        step: Step,
        phase: str,
        ops: Sequence[OpSpec],
        verify: Sequence[CheckSpec],
        journal_step: dict[str, Any],
        before_effect: Callable[[], None] = _nothing,
    ) -> None:
        """Run operations then verify checks, under the step's timeouts, retrying on lock timeout.

        With `transaction: true`, sql operations and the verify share one transaction committed
        only after verify passes; anything else undone on failure is up to the caller.
        `before_effect` returns once the caller's write-ahead record is durable: it is called
        before the first operation that takes effect at once, and before COMMIT.

        An index build (`CONCURRENTLY`) that fails leaves an INVALID index behind: it is dropped
        before the step is retried, or fails (see `_drop_leftovers`)."""
        policy = self.policy(step)
        uses_sql = any(OPERATIONS[op.kind].traits.uses_connection for op in ops)
        uses_sql = uses_sql and self.conn is not None
        in_tx = step.transaction and uses_sql
        deadline = time.monotonic() + policy.retry_budget
        retries = _Retries(policy, deadline, db.backoff_delays(policy))
        # Operations whose effect outlives a failed attempt (a shell command; anything outside a
        # transaction) stay done: a retry after a lock timeout never repeats them. Inside a
        # transaction the rest is rolled back and runs again.
        kept: set[int] = set()
        while True:
            retries.attempt += 1
            files_before = dict(journal_step.get("files", {}))
            left: list[Leftover] = []  # INVALID indexes left by this attempt's failed statement
            watch = self._watcher().watching() if uses_sql and self.conn else nullcontext(None)
            try:
                with watch as watcher:
                    if in_tx:
                        assert self.conn is not None
                        tx = db.Tx()
                        try:
                            with db.transaction(self.conn, policy, before_effect) as tx:
                                self._execute(
                                    step.id, phase, ops, journal_step, kept, before_effect, left
                                )
                                self.run_checks(step.id, _verify_phase(phase), verify)
                        finally:
                            if tx.in_doubt:  # the unwind asks the server what became of it
                                journal_step["commit_in_doubt"] = tx.xid
                    else:
                        if uses_sql and self.conn is not None:
                            db.set_timeouts(self.conn, policy, local=False)
                        self._execute(step.id, phase, ops, journal_step, kept, before_effect, left)
                if not in_tx:
                    self.run_checks(step.id, _verify_phase(phase), verify)
                return
            except psycopg.errors.LockNotAvailable as exc:
                blockers = [str(b) for b in (watcher.blockers if watcher else [])]
                if in_tx:  # the transaction rolled back: so do the files the attempt wrote
                    self._restore_attempt(journal_step, files_before)
                self._retry_or_fail(step.id, phase, retries, exc, blockers, left)

    def _retry_or_fail(
        self,
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
        self.emit(
            "lock_wait",
            step_id,
            phase=phase,
            status=LockWaitStatus.TIMEOUT,
            message=f"lock timeout after {policy.lock_timeout:g}s "
            f"(attempt {retries.attempt} of {policy.attempts})",
            detail={"attempt": retries.attempt, "delay": delay, "blockers": blockers},
        )
        stuck = self._drop_leftovers(step_id, phase, left)
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

    def _drop_leftovers(self, step_id: str, phase: str, left: Sequence[Leftover]) -> str | None:
        """Drop each INVALID index a failed concurrent build left behind: a retry's
        `IF NOT EXISTS` would take it for the index and skip the build (verify on `indisvalid`
        then fails), and an unwind would find it standing. None when all are gone, else why one
        is not (named, so the operator can drop it)."""
        for leftover in left:
            assert self.conn is not None
            try:
                drop_leftover(self.conn, leftover)
            except psycopg.Error as exc:
                return (
                    f"the INVALID index {leftover} that the failed statement left could not be "
                    f"dropped: {_first_line(exc)} (drop it with DROP INDEX CONCURRENTLY {leftover})"
                )
            self.emit(
                "log",
                step_id,
                phase=phase,
                message=f"dropped the INVALID index {leftover} that the failed statement left",
                detail={"index": str(leftover)},
            )
        return None

    def close(self) -> None:
        if self.blocker_watch is not None:
            self.blocker_watch.close()
        if self.conn is not None:
            self.conn.close()

    def _watcher(self) -> db.BlockerWatch:
        if self.blocker_watch is None:
            assert self.conn is not None
            url, app = self.url or "", self.app_name + "/monitor"
            self.blocker_watch = db.BlockerWatch(
                lambda: db.connect(url, app), self.conn.info.backend_pid
            )
        return self.blocker_watch

    def _execute(
        self,
        step_id: str,
        phase: str,
        ops: Sequence[OpSpec],
        journal_step: dict[str, Any],
        kept: set[int],
        before_effect: Callable[[], None],
        left: list[Leftover],
    ) -> None:
        """Plan and execute each operation in turn, but those in `kept` (done by an earlier
        attempt, for good); add to it each one whose effect outlives a rolled-back attempt.

        `journal_step["effects_started"]` is set once an operation that no transaction can take
        back has started (a shell command, non-transactional sql): only then has an unwind of
        this step, failed in flight, rollback operations to run."""
        ctx = self.context(journal_step)
        in_tx = self.conn is not None and self.conn.info.transaction_status != IDLE
        for index, spec in enumerate(ops):
            if index in kept:
                continue
            try:
                effect = OPERATIONS[spec.kind].plan(spec, ctx)
            except (OSError, ValueError, TemplateError, re.error) as exc:
                # A plan that can't be made (a missing file, an edit that doesn't match, a value
                # that can't be written safely) fails the step before anything of it is done.
                raise StepFailed(
                    self.masker(_first_line(exc)), step_id=step_id, phase=phase
                ) from None
            traits = OPERATIONS[spec.kind].traits
            if not (in_tx and traits.transactional):  # it takes effect now, not at COMMIT
                before_effect()
            lasting = not in_tx or traits.outlives_rollback  # no ROLLBACK takes it back
            if lasting and not traits.restored_from_preimage:
                journal_step["effects_started"] = True
            description = effect.describe()
            self.emit(
                "operation",
                step_id,
                phase=phase,
                status=OperationStatus.STARTED,
                message=description,
            )
            output = self._perform(step_id, phase, effect, ctx, in_tx, left)
            self.emit(
                "operation",
                step_id,
                phase=phase,
                status=OperationStatus.DONE,
                message=output or OperationStatus.DONE,
            )
            if lasting:
                kept.add(index)

    def _perform(
        self,
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
            return self._execute_watching_builds(effect, ctx, in_tx, left)
        except psycopg.errors.LockNotAvailable:
            raise
        except (psycopg.Error, OSError, ValueError, RuntimeError, TemplateError) as exc:
            if isinstance(exc, psycopg.Error) and self.conn is not None and self.conn.closed:
                raise StepFailed(
                    f"the database connection was lost: {_first_line(exc)}",
                    step_id=step_id,
                    phase=phase,
                ) from None
            stuck = self._drop_leftovers(step_id, phase, left)
            message = _first_line(exc) + (f"; {stuck}" if stuck else "")
            raise StepFailed(message, step_id=step_id, phase=phase) from None
        except Exception as exc:  # ProcessFailed, kind errors, re.error
            raise StepFailed(self.masker(str(exc)), step_id=step_id, phase=phase) from None

    def _execute_watching_builds(
        self, effect: Effect, ctx: Context, in_tx: bool, left: list[Leftover]
    ) -> str:
        """Execute one effect. A statement that builds an index concurrently (outside a
        transaction: inside one, PostgreSQL refuses it at once) leaves an INVALID index when it
        fails; the INVALID indexes read just before it tell which are its own: added to `left`.
        No other statement pays for the read."""
        conn = self.conn
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

    def _restore_attempt(self, journal_step: dict[str, Any], files_before: dict[str, Any]) -> None:
        """A retried attempt starts from the files as they were before it."""
        from dcx_runbook.engine.undo import restore_file

        for key, entry in list(journal_step.get("files", {}).items()):
            if key not in files_before:
                restore_file(Path(key), entry, self.secrets, force=True)
                del journal_step["files"][key]

    # ------------------------------------------------------------------ interrupts

    def interruptible(self) -> AbstractContextManager[None]:
        """SIGTERM behaves like Ctrl-C while the run works; the caller unwinds."""
        return terminate_as_interrupt()


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


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
