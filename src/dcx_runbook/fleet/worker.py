"""One target's work in its own process: forked from the driver (the runbook already parsed,
the modules already imported: no start-up cost), in its own process group, its events sent to
the driver as JSON Lines over a pipe.

A child is a whole single-target run: its own connection, run lock, journal record, ledger rows
and signal handling. Ctrl-C reaches it from the driver alone (its own process group keeps the
terminal's SIGINT away), once, and it unwinds itself as a run does. Should the driver die, the
child finishes its target and records it; its output is then dropped (a closed pipe never stops
a run)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dcx_runbook.engine.options import Outcome
from dcx_runbook.errors import ExitCode, RunbookError
from dcx_runbook.fleet.plan import Planned
from dcx_runbook.interrupts import terminate_as_interrupt
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.reporters.jsonl import JsonReporter
from dcx_runbook.secrets import Masker
from dcx_runbook.statuses import RunStatus, TargetState

Work = Callable[[Reporter], Outcome]
OUTCOME = "work_outcome"  # a child's last line: how its work ended (for the driver only)

# A run's end, as its target's state in the fleet.
_BY_STATUS = {
    RunStatus.SUCCEEDED: TargetState.SUCCEEDED,
    RunStatus.NOT_APPLICABLE: TargetState.NOT_APPLICABLE,
    RunStatus.FAILED: TargetState.FAILED,
    RunStatus.REFUSED: TargetState.REFUSED,
    RunStatus.INTERRUPTED: TargetState.INTERRUPTED,
    RunStatus.UNDO_INCOMPLETE: TargetState.UNDO_INCOMPLETE,
    RunStatus.DRY_RUN: TargetState.DRY_RUN,
    RunStatus.ROLLED_BACK: TargetState.ROLLED_BACK,
    RunStatus.NOTHING_TO_UNDO: TargetState.NOTHING_TO_UNDO,
}
# A run's child that ended without its last line (an error outside the run), by its exit code.
_BY_CODE: dict[int, TargetState] = {
    ExitCode.UNDONE: TargetState.FAILED,
    ExitCode.INVALID: TargetState.REFUSED,
    ExitCode.UNDO_INCOMPLETE: TargetState.UNDO_INCOMPLETE,
    ExitCode.REFUSED: TargetState.REFUSED,
    ExitCode.INTERRUPTED: TargetState.INTERRUPTED,
}


@dataclass
class Child:
    pid: int
    fd: int
    target: Planned
    run_id: str | None
    undo: bool = False  # its work undoes runs (else it runs the runbook, or dry-runs it)
    started: float = field(default_factory=time.monotonic)
    step: str | None = None
    last: str = ""
    outcome: dict[str, Any] | None = None  # how its work ended, as the child said (not relayed)
    pending: bytes = b""

    def lines(self, chunk: bytes) -> list[dict[str, Any]]:
        """The complete JSON lines of what the child sent so far."""
        *complete, self.pending = (self.pending + chunk).split(b"\n")
        events = []
        for line in complete:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not an event: a child's stray output is no reason to stop the fleet
            if isinstance(event, dict) and "event" in event:
                events.append(event)
        return events

    def seen(self, event: dict[str, Any]) -> bool:
        """Take note of one event; False for the child's own last word, which is not relayed."""
        kind = event["event"]
        if kind == OUTCOME:
            self.outcome = event
            return False
        if kind == "step_started":
            self.step = event.get("step")
        if event.get("message") and kind not in ("check", "operation"):
            self.last = str(event["message"]).splitlines()[0]
        return True

    def state(self, code: int, began: bool | None) -> tuple[TargetState, str]:
        """How the target ended, and in words: as its work's last line said (a rollback of
        several runs, an undo then a run, say once for all), else from how its process ended.
        `began`: whether its run made a journal record (None: not a run, an undo)."""
        said = self.outcome
        if said is not None and said.get("status") in _BY_STATUS:
            # A dry run that found a check failing would fail: said so, not "dry run".
            state = _BY_STATUS[RunStatus(said["status"])]
            if state == TargetState.DRY_RUN and code != 0:
                state = TargetState.FAILED
            return state, str(said.get("message") or "")
        how = f"its process was killed (signal {-code})" if code < 0 else f"it exited {code}"
        if began is False:  # a run that never made its record: nothing of it took effect
            return TargetState.NOT_REACHED, f"{how} before its run began: nothing was changed"
        if code < 0 or began is None:
            return TargetState.UNDO_INCOMPLETE, (
                f"{how} in the middle of its work"
                + (f" (run {self.run_id})" if self.run_id else "")
                + ": what it did is in the journal and the target's ledger; see "
                "`dcx-runbook status --targets`; `dcx-runbook resume` undoes a run that died "
                "and runs the target again"
            )
        return _BY_CODE.get(code, TargetState.UNDO_INCOMPLETE), self.last


def spawn(
    target: Planned, run_id: str | None, work: Work, inherited: Iterable[int], *, undo: bool
) -> Child:
    """Start `work` for `target` in a child process; `inherited`: the driver's descriptors the
    child closes (the other children's pipes)."""
    read_end, write_end = os.pipe()
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # none lands between fork and setpgid
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # pragma: no cover - the child: measured by the fleet tests through the CLI
        code = int(ExitCode.UNDO_INCOMPLETE)
        try:
            os.close(read_end)
            for fd in inherited:
                _close(fd)
            os.setpgid(0, 0)
            _stdin_from_devnull()  # in the background, a read of the terminal would stop it
            code = _child(work, write_end, _masker(target), signals)
        finally:
            os._exit(code)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    os.close(write_end)
    return Child(pid, read_end, target, run_id, undo)


def _masker(target: Planned) -> Masker:
    """The target's URL and secret values: what the child's own words must never show."""
    masker = target.resolved.masker() if target.resolved is not None else Masker()
    masker.add(target.url)
    return masker


def _child(work: Work, fd: int, masker: Masker, signals: set[signal.Signals]) -> int:
    reporter = JsonReporter(os.fdopen(fd, "w"))
    try:
        # Ctrl-C from here on (one that came before the fork is delivered now): before its run
        # began, the target ends not reached; within it, the run unwinds itself.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with terminate_as_interrupt():  # SIGTERM as Ctrl-C, SIGHUP ignored
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
            outcome = work(reporter)
        last = {"event": OUTCOME, "status": outcome.status, "message": masker(outcome.message)}
        if not reporter.lost:
            try:
                reporter.stream.write(json.dumps(last) + "\n")
            except OSError:  # the driver is gone: the record and the ledger have the outcome
                pass
        return int(outcome.exit_code)
    except KeyboardInterrupt:
        reporter.emit(Event("log", message="stopped by Ctrl-C or SIGTERM"))
        return int(ExitCode.INTERRUPTED)
    except RunbookError as exc:
        reporter.emit(Event("log", message=masker(f"error: {exc}")))
        return int(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - said, and the target counted as needing a look
        said = f"unexpected error {type(exc).__name__}: {str(exc).strip() or '-'}"
        reporter.emit(Event("log", message=masker(said.splitlines()[0])))
        return int(ExitCode.UNDO_INCOMPLETE)
    finally:
        reporter.close()


def _stdin_from_devnull() -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def interrupt(child: Child) -> None:
    """Ctrl-C for one child: it stops and unwinds itself."""
    try:
        os.kill(child.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
