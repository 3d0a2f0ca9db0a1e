"""Human output on stderr: a live table of steps on a terminal, plain lines elsewhere."""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dcx_runbook.reporters.base import Choices, Event, silence
from dcx_runbook.statuses import (
    CheckStatus,
    OperationStatus,
    RunStatus,
    StepOutcome,
    StepStatus,
    UndoOutcome,
)


class _Console(Console):
    """rich's console, but a reader that goes away (`| head`, `| less` then q, a dead `tee`)
    ends the output, not the run: rich's default answer to a broken pipe is SystemExit(1), which
    would stop a run between two steps with its changes applied and exit with the code that
    means "every change was undone"."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the output's reader went away")


SYMBOLS: dict[str, str] = {
    CheckStatus.PASSED: "[green]✓[/]",
    CheckStatus.FAILED: "[red]✗[/]",
    CheckStatus.DEFERRED: "[yellow]…[/]",
    CheckStatus.UNMET: "[dim]·[/]",
    StepOutcome.APPLIED: "[green]✓[/]",
    StepOutcome.ALREADY_DONE: "[cyan]=[/]",
    StepOutcome.SKIPPED: "[yellow]-[/]",
    UndoOutcome.ROLLED_BACK: "[magenta]↺[/]",
    UndoOutcome.ROLLBACK_FAILED: "[red]✗[/]",
    StepOutcome.WOULD_APPLY: "[cyan]~[/]",
    StepOutcome.WOULD_VERIFY: "[cyan]?[/]",
    UndoOutcome.IRREVERSIBLE: "[yellow]![/]",
}
STEP_WORDS: dict[str, str] = {
    StepOutcome.APPLIED: "applied and verified",
    StepOutcome.PASSED: "verified",
    StepOutcome.ALREADY_DONE: "already done",
    StepOutcome.SKIPPED: "skipped (--skip)",
    StepOutcome.WOULD_APPLY: "would apply",
    StepOutcome.WOULD_VERIFY: "would verify",
}
# The live table's own states of a step, besides the statuses of its events.
_PENDING, _RUNNING = StepStatus.PENDING, RunStatus.RUNNING


def closing_panel(console: Console, what: str, code: Any, message: str | None) -> None:
    """How a run (or a fleet) ended: its status and exit code as the title, coloured by it."""
    style = {0: "green", 1: "yellow", 4: "yellow", 5: "yellow"}.get(
        code if isinstance(code, int) else -1, "red"
    )
    console.print(
        Panel(
            escape(message or ""),
            title=f"[{style}]{what} (exit {code})[/]",
            border_style=style,
            expand=False,
        ),
        highlight=False,
    )


class HumanReporter:
    def __init__(self, console: Console | None = None):
        self.console = console or _Console(stderr=True)
        self.steps: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None
        self.lost = False  # the output went away: nothing more is written

    # ------------------------------------------------------------------ live table

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 1))
        for step_id, s in self.steps.items():
            elapsed = (s.get("end") or time.monotonic()) - s["start"] if s.get("start") else 0.0
            symbol = SYMBOLS.get(s["status"], "[blue]•[/]" if s["status"] == _RUNNING else " ")
            table.add_row(
                Text.from_markup(symbol),
                step_id,
                Text(s.get("phase", ""), style="dim"),
                f"{elapsed:5.1f}s" if s.get("start") else "",
            )
        return table

    def _print(self, renderable: Any) -> None:
        target = self.live.console if self.live is not None else self.console
        target.print(renderable, highlight=False)
        if self.live is not None:
            self.live.update(self._table())

    # ------------------------------------------------------------------ events

    def emit(self, event: Event) -> None:
        if self.lost:
            return
        handler = getattr(self, f"_on_{event.type}", None)
        try:
            if handler is not None:
                handler(event)
            elif event.message:
                self._print(escape(event.message))
        except OSError:  # the terminal or pipe went away: the run goes on, journaled
            self.lost = True
            silence(self.console.file)

    def _on_run_started(self, e: Event) -> None:
        d = e.detail
        target = d.get("target") or {}
        lines = [f"[bold]{escape(e.message or '')}[/]"]
        if target:
            lines.append(
                f"target   {escape(str(target.get('url')))}  "
                f"(database [bold]{escape(str(target.get('database')))}[/], "
                f"PostgreSQL {escape(str(target.get('server_version')))})"
            )
        # The run id is said once the run is recorded (a `log` event): a run refused before
        # that has none to look up.
        if d.get("dry_run"):
            lines.append("[yellow]dry run: nothing will be written[/]")
        self._print(Panel("\n".join(lines), expand=False))
        self.steps = {s: {"status": _PENDING} for s in d.get("steps", [])}
        if self.console.is_terminal and not d.get("dry_run"):
            self._start_live()

    def _on_log(self, e: Event) -> None:
        if (e.detail.get("authority") or {}).get("break_glass"):  # loud: the review must see it
            self._print(Panel(f"[bold red]{escape(e.message or '')}[/]", border_style="red"))
        else:
            self._print(escape(e.message or ""))

    def _on_step_started(self, e: Event) -> None:
        self.steps.setdefault(e.step or "", {}).update(
            status=_RUNNING, start=time.monotonic(), phase=""
        )
        self._print(f"[bold]▶ {escape(e.step or '')}[/] {escape(e.message or '')}")

    def _on_check(self, e: Event) -> None:
        self._phase(e)
        symbol = SYMBOLS.get(e.status or "", " ")
        self._print(f"  {symbol} {e.phase}: {escape(e.message or '')}")

    def _on_operation(self, e: Event) -> None:
        self._phase(e)
        text = escape(e.message or "")
        if e.status in (OperationStatus.STARTED, OperationStatus.PLANNED):
            body = "\n".join("      " + line for line in text.splitlines())
            verb = "would run" if e.status == OperationStatus.PLANNED else "run"
            self._print(f"  [blue]→[/] {e.phase}: {verb}\n{body}")
        elif e.status == OperationStatus.FAILED:
            self._print(f"  [red]✗[/] {e.phase}: {text}")
        elif text and text != OperationStatus.DONE:
            self._print(f"    [dim]{text}[/]")

    def _on_finding(self, e: Event) -> None:
        waived = bool(e.detail.get("waived"))
        style = "dim" if waived else {"error": "red", "warning": "yellow"}.get(e.status or "", "")
        where = f"{e.detail.get('file')}:{e.detail.get('line')}:{e.detail.get('column')}"
        lines = escape(e.message or "").splitlines() or [""]
        head = f"  [{style}]⚑ lint {e.status}[/] {lines[0]}" if style else f"  ⚑ lint {lines[0]}"
        self._print(
            "\n".join([head, *(f"    {line}" for line in lines[1:]), f"    [dim]{where}[/]"])
        )

    def _on_lock_wait(self, e: Event) -> None:
        blockers = e.detail.get("blockers") or ["no blocker seen"]
        lines = "\n".join(f"      blocked by {escape(str(b))}" for b in blockers)
        delay = e.detail.get("delay")
        retry = f"; retrying in {delay:.1f}s" if isinstance(delay, float) else "; no attempts left"
        self._print(f"  [yellow]⏳ {escape(e.message or '')}{retry}[/]\n{lines}")

    def _on_step_finished(self, e: Event) -> None:
        s = self.steps.setdefault(e.step or "", {"start": None})
        s.update(status=e.status, end=time.monotonic(), phase="")
        symbol = SYMBOLS.get(e.status or "", " ")
        word = STEP_WORDS.get(e.status or "", e.status or "")
        self._print(f"{symbol} {escape(e.step or '')}: {escape(e.message or word)}")

    def _on_unwind_started(self, e: Event) -> None:
        if e.step:
            self.steps.setdefault(e.step, {}).update(status=StepStatus.FAILED, end=time.monotonic())
        self._print(
            Panel(
                f"[red]{escape(e.message or '')}[/]\nUndoing what was done, newest first.",
                title="[red]failed[/]",
                expand=False,
            )
        )

    def _on_step_undone(self, e: Event) -> None:
        if e.step:
            self.steps.setdefault(e.step, {}).update(status=e.status)
        symbol = SYMBOLS.get(e.status or "", " ")
        self._print(f"{symbol} {escape(e.step or '')}: {escape(e.message or '')}")

    def _on_run_finished(self, e: Event) -> None:
        self._stop_live()
        # The message says what is still applied, if anything (once: not again from the detail).
        closing_panel(self.console, str(e.status), e.detail.get("exit_code"), e.message)
        if e.detail.get("undo_command"):  # on a line of its own: copied whole, never wrapped
            self.console.print(
                f"to undo: {e.detail['undo_command']}", soft_wrap=True, highlight=False
            )

    def _phase(self, e: Event) -> None:
        if e.step and e.step in self.steps:
            self.steps[e.step]["phase"] = e.phase or ""

    def _start_live(self) -> None:
        self.live = Live(self._table(), console=self.console, refresh_per_second=8, transient=True)
        self.live.start()

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            if self.steps:
                self.console.print(Group(self._table()))

    # ------------------------------------------------------------------ protocol

    def can_ask(self) -> bool:
        # Nobody can read a question whose output went away: answering blind is no answer.
        return not self.lost and sys.stdin.isatty()

    def confirm(self, question: str) -> bool:
        if not self.can_ask():
            return False
        from rich.prompt import Confirm

        with self._paused():
            return Confirm.ask(question, console=self.console, default=False)

    def choose(self, question: str, choices: Choices, body: str) -> str | None:
        """The body (Markdown) in a panel, what each answer means, then the question; asked
        again until one of the answers is typed. End of input is no answer."""
        if not self.can_ask():
            return None
        from rich.markdown import Markdown
        from rich.prompt import Prompt

        meanings = "\n".join(f"  [bold]{escape(k)}[/]: {escape(v)}" for k, v in choices)
        with self._paused():
            try:
                self.console.print(Panel(Markdown(body), title=escape(question), expand=False))
                self.console.print(meanings, highlight=False)
                return Prompt.ask(
                    escape(question), choices=[k for k, _ in choices], console=self.console
                )
            except EOFError:
                return None
            except OSError:
                self.lost = True
                silence(self.console.file)
                return None

    @contextmanager
    def _paused(self) -> Iterator[None]:
        """The live view stops while a person reads and answers, and comes back for the run."""
        live, self.live = self.live, None
        if live is not None:
            live.stop()
        try:
            yield
        finally:
            if live is not None and not self.lost:
                self._start_live()

    def close(self) -> None:
        try:
            self._stop_live()
        except OSError:
            self.lost = True
            silence(self.console.file)
