"""Human output of a fleet run, on stderr: one row per target (state, current step, elapsed, last
message) redrawn in place on a terminal; elsewhere, plain lines, each starting with its target's
name. The rich view is redrawn by the driver's loop (no refresh thread: the driver forks)."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dcx_runbook.reporters.base import Choices, Event, silence
from dcx_runbook.reporters.human import _Console, closing_panel
from dcx_runbook.statuses import TargetState

STATE_STYLE: dict[str, str] = {
    TargetState.PENDING: "dim",
    TargetState.RUNNING: "blue",
    TargetState.SUCCEEDED: "green",
    TargetState.NOT_APPLICABLE: "cyan",
    TargetState.DRY_RUN: "cyan",
    TargetState.FAILED: "yellow",
    TargetState.REFUSED: "yellow",
    TargetState.INTERRUPTED: "yellow",
    TargetState.UNDO_INCOMPLETE: "red",
    TargetState.NOT_REACHED: "dim",
    TargetState.ROLLED_BACK: "magenta",
    TargetState.NOTHING_TO_UNDO: "dim",
}
# A target's events worth a line of their own when there is no live table.
_PLAIN = ("step_finished", "step_undone", "unwind_started", "lock_wait", "log")


class FleetHumanReporter:
    def __init__(self, console: Console | None = None):
        self.console = console or _Console(stderr=True)
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None
        self.lost = False

    def _table(self) -> Table:
        table = Table(box=None, padding=(0, 1), show_edge=False)
        for column in ("target", "state", "step", "elapsed", "last message"):
            table.add_column(column, no_wrap=column != "last message", overflow="ellipsis")
        for name, row in self.rows.items():
            start, end = row.get("start"), row.get("end")
            elapsed = f"{(end or time.monotonic()) - start:5.1f}s" if start else ""
            state = str(row["state"])
            table.add_row(
                name,
                Text(state, style=STATE_STYLE.get(state, "")),
                row.get("step") or "",
                elapsed,
                Text(row.get("last", "")),
            )
        return table

    def _print(self, renderable: Any) -> None:
        (self.live.console if self.live is not None else self.console).print(
            renderable, highlight=False
        )
        self.tick()

    def emit(self, event: Event) -> None:
        if self.lost:
            return
        try:
            self._emit(event)
        except OSError:  # the terminal or pipe went away: the fleet goes on, journaled
            self.lost = True
            silence(self.console.file)

    def _emit(self, e: Event) -> None:
        if e.type == "fleet_started":
            self._started(e)
        elif e.type == "fleet_finished":
            self._finished(e)
        elif e.target is None:
            if e.message:
                self._print(escape(e.message))
        else:
            self._target_event(e.target, e)

    def _started(self, e: Event) -> None:
        d = e.detail
        lines = [f"[bold]{escape(e.message or '')}[/]"]
        if d.get("fleet_run"):
            lines.append(f"fleet run {d['fleet_run']}")
        if d.get("dry_run"):
            lines.append("[yellow]dry run: nothing will be written[/]")
        self._print(Panel("\n".join(lines), expand=False))
        self.rows = {t: {"state": TargetState.PENDING} for t in d.get("targets", [])}
        if self.console.is_terminal:
            # No stand-ins for sys.stdout and sys.stderr: the forked children inherit them.
            self.live = Live(
                self._table(),
                console=self.console,
                auto_refresh=False,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.live.start()

    def _target_event(self, name: str, e: Event) -> None:
        row = self.rows.setdefault(name, {"state": TargetState.PENDING})
        if e.type == "run_started":
            row.update(state=TargetState.RUNNING, start=row.get("start") or time.monotonic())
        elif e.type == "step_started":
            row["step"] = e.step
        elif e.type == "target_finished":
            row.update(state=e.status, end=time.monotonic(), last=_first(e.message))
            style = STATE_STYLE.get(e.status or "", "")
            said = f": {_first(e.message)}" if e.message else ""
            self._print(f"[{style}]{escape(name)}: {e.status}[/]{escape(said)}")
            return
        if e.message and e.type not in ("check", "operation", "finding"):
            row["last"] = _first(e.message)
        if self.live is None and e.type in _PLAIN and e.message:
            where = f"{e.step}: " if e.step else ""
            self._print(f"{escape(name)}: {escape(where + _first(e.message))}")
        else:
            self.tick()

    def _finished(self, e: Event) -> None:
        self._stop_live()
        closing_panel(self.console, f"fleet {e.status}", e.detail.get("exit_code"), e.message)

    def tick(self) -> None:
        if self.live is not None and not self.lost:
            self.live.update(self._table(), refresh=True)

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.rows:
            self.console.print(Group(self._table()), highlight=False)

    def confirm(self, question: str) -> bool:
        if self.lost or not sys.stdin.isatty():
            return False
        from rich.prompt import Confirm

        return Confirm.ask(question, console=self.console, default=False)

    def can_ask(self) -> bool:
        return False  # a fleet's targets run in child processes, whose stdin is /dev/null

    def choose(self, question: str, choices: Choices, body: str) -> str | None:
        return None

    def close(self) -> None:
        try:
            if self.live is not None:
                self._stop_live()
        except OSError:
            self.lost = True
            silence(self.console.file)


def _first(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
