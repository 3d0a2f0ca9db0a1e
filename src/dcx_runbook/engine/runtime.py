"""What one run or rollback holds while it works: its runbook and values, the connection, the
record, the masker, and the one outlet of its events (`emit`, masked). Checks are
engine/checks.py, operations engine/acting.py, the phases engine/phases.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from socket import gethostname
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from dcx_runbook.engine.ledger import Mirror, planned_paths
from dcx_runbook.filesystem import sha256
from dcx_runbook.format.model import Runbook, Step, Timeouts
from dcx_runbook.interrupts import terminate_as_interrupt
from dcx_runbook.kinds import OPERATIONS
from dcx_runbook.kinds.base import Context, Effect, OpSpec
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.secrets import Masker
from dcx_runbook.state.entries import new_file
from dcx_runbook.state.event_log import EventLog, path_of
from dcx_runbook.state.journal import RunRecord
from dcx_runbook.state.sealing import seal
from dcx_runbook.target import db

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
    expected_system: str | None = None  # and any other server, when a targets file pins one
    guard_hint: str | None = None  # how to change the expected database, when not by --var
    conn: psycopg.Connection[Any] | None = None
    record: RunRecord | None = None
    dry_run: bool = False
    overlay: dict[Path, bytes | None] = field(default_factory=dict)
    blocker_watch: db.BlockerWatch | None = None
    # Values captured by preflight checks: a later rollback's checks may use them too.
    captured: dict[str, Any] = field(default_factory=dict)
    # A rollback's entry under the record's `rollbacks`: where its outcome is journaled.
    rollback_entry: dict[str, Any] | None = None
    # The record's rows in the target's ledger (None: --no-ledger, no target, a dry run).
    mirror: Mirror | None = None
    # The lint's findings by step id ("": the runbook's own), said at each step's start.
    findings: dict[str, list[Any]] = field(default_factory=dict)
    # Asks the operator about a manual operation (engine/person.py): its step's entry, the
    # phase, the instruction. None: nobody is asked (a status view).
    person: Callable[[dict[str, Any], str, str], None] | None = None
    # On whose authority the run acts (engine/authority.py): its plan, approvers, break-glass.
    authority: dict[str, Any] | None = None
    # The events beside the record (state/event_log.py); those before it, until it exists.
    event_log: EventLog | None = None
    early: list[Event] = field(default_factory=list)

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
        event = Event(type_, step, phase, status, text, masked_detail)
        self.reporter.emit(event)
        self._keep(event)

    def _keep(self, event: Event) -> None:
        """The run's events beside its record, for the incident report: those before the record
        existed are kept in memory and written when it does."""
        if self.dry_run:
            return
        if self.record is None:
            self.early.append(event)
            return
        if self.event_log is None:
            self.event_log = EventLog(path_of(self.record.path))
            for early in self.early:
                self.event_log.append(early.line)
            self.early.clear()
        self.event_log.append(event.line)

    def save(
        self, *entries: dict[str, Any], durable: bool = True, ledger: bool | None = None
    ) -> None:
        """Journal these step entries (and the run's status); durable unless told otherwise.
        The ledger's rows are written now at a durable save (unless a transaction is open, or
        `ledger` is False: then with the next ledger write)."""
        if self.record is not None and not self.dry_run:
            self.record.save(*entries, durable=durable)
            if self.mirror is not None:
                self.mirror.mark(entries)
                if durable if ledger is None else ledger:
                    self.mirror.flush(self.conn)

    def save_ahead(self, entry: dict[str, Any]) -> Callable[[], None]:
        """Journal a write-ahead entry; the function returned waits until it is durable."""
        if self.record is None or self.dry_run:
            return _nothing
        if self.mirror is not None:
            self.mirror.mark((entry,))
        return self.record.save_ahead(entry)

    def ledger_intent(self, step: Step) -> None:
        """The step's row in the ledger before its first effect: `action_started`, this host,
        the files it is about to write. Raises StepFailed when it can't be written."""
        if self.mirror is not None and not self.dry_run:
            self.mirror.expect_files(step.id, planned_paths(step, self.values))
            self.mirror.flush(self.conn, strict=True)

    # ------------------------------------------------------------------ context

    def context(self, step: dict[str, Any] | None = None, phase: str = "action") -> Context:
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
            self.save(step, ledger=False)  # the ledger has the path since the step's intent

        def started_process(pgid: int) -> None:
            """Journaled (durably) while the process runs: if this process dies, a rollback
            refuses while the group is still at work instead of undoing under it."""
            if step is not None:
                step.setdefault("processes", []).append({"pgid": pgid, "host": gethostname()})
                self.save(step, ledger=False)  # the ledger has this host since the intent

        def ask_person(instruction: str) -> None:
            if self.person is None or step is None:
                raise RuntimeError(f"a person must do this, and nobody is asked: {instruction}")
            self.person(step, phase, instruction)

        return Context(
            values=self.values,
            masker=self.masker,
            conn=self.conn,
            dry_run=self.dry_run,
            overlay=self.overlay,
            before_write=before_write,
            started_process=started_process,
            ask_person=ask_person,
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

    def plan(self, specs: Sequence[OpSpec], ctx: Context) -> Iterator[Effect]:
        """Effects are planned one at a time, so each sees the files as the previous one left them."""
        for spec in specs:
            yield OPERATIONS[spec.kind].plan(spec, ctx)

    def close(self) -> None:
        if self.event_log is not None:
            self.event_log.close()
        if self.blocker_watch is not None:
            self.blocker_watch.close()
        if self.conn is not None:
            self.conn.close()

    def watcher(self) -> db.BlockerWatch:
        if self.blocker_watch is None:
            assert self.conn is not None
            url, app = self.url or "", self.app_name + "/monitor"
            self.blocker_watch = db.BlockerWatch(
                lambda: db.connect(url, app),
                self.conn.info.backend_pid,
                connect_timeout=db.CONNECT_TIMEOUT,
            )
        return self.blocker_watch

    # ------------------------------------------------------------------ interrupts

    def interruptible(self) -> AbstractContextManager[None]:
        """SIGTERM behaves like Ctrl-C while the run works; the caller unwinds."""
        return terminate_as_interrupt()
