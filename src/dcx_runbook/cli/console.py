"""Human-readable tables for the read-only commands (list, runs, show), on stdout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from dcx_runbook.format.loader import Loaded


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> None:
    console = Console()
    if not rows:
        console.print(empty)
        return
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=column in ("run_id", "name"), overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def show_runbook(loaded: Loaded) -> None:
    rb = loaded.runbook
    console = Console()
    console.print(
        f"[bold]{escape(rb.name)}[/]: {escape(rb.title)}  [dim]({escape(str(loaded.path))})[/]"
    )
    if rb.description:
        console.print(escape(rb.description.strip()))
    if rb.vars:
        console.print("\n[bold]variables[/]")
        for name, var in rb.vars.items():
            flags = [f for f, on in (("required", var.required), ("secret", var.secret)) if on]
            source = f" from ${var.env}" if var.env else ""
            default = (
                f" (default {var.default!r})" if var.default is not None and not var.secret else ""
            )
            line = escape(f"  {name}{source}{default} {' '.join(flags)}")
            console.print(f"{line}  [dim]{escape(var.description)}[/]")
    if rb.preflight:
        console.print(f"\n[bold]preflight[/]: {len(rb.preflight)} check(s)")
        for check in rb.preflight:
            console.print(f"  - {check.kind}: {escape(check.name or '')}")
    console.print("\n[bold]steps[/]")
    for i, step in enumerate(rb.steps, 1):
        console.print(f"  {i}. [bold]{step.id}[/] {escape(step.title)}")
        for phase in ("done_when", "precheck", "action", "verify"):
            items = getattr(step, phase)
            if items:
                names = ", ".join(escape(x.name or x.kind) for x in items)
                console.print(f"     {phase}: {names}")
        if step.irreversible:
            console.print(f"     [yellow]irreversible[/]: {escape(step.irreversible)}")
        elif step.rollback is not None:
            parts = (["restore files"] if step.rollback.restore_files else []) + [
                escape(x.name or x.kind) for x in step.rollback.action
            ]
            console.print(f"     rollback: {', '.join(parts)}")


def print_status(found: Mapping[str, Any]) -> None:
    """`status`: the target, its ledger, live runs, runs in effect with their steps, drift."""
    console = Console()
    ledger = found["ledger"]
    kept = f"version {ledger['version']}" if ledger["exists"] else "not created yet"
    console.print(f"[bold]target[/]  {escape(found['target'])}")
    console.print(f"[bold]ledger[/]  {escape(ledger['schema'])} ({kept})")
    for note in found["notes"]:
        console.print(f"[dim]reconciled in memory: {escape(note)}[/]")
    console.print("\n[bold]live[/]" + ("" if found["live"] else "  none"))
    for live in found["live"]:
        state = live["what"]
        if live["backend_pid"] is None:  # said running, with no session left on the server
            state += " (no session left on the server)"
        elif live.get("process_gone"):
            state += " (its process is gone; the server has not ended its session yet)"
        console.print(
            escape(
                f"  {state}: run {live['run_id']} of {live['runbook']} by {live['operator']} "
                f"(pid {live['pid']}, backend pid {live['backend_pid']}), since {live['since']}"
            )
        )
    console.print("\n[bold]in effect[/]" + ("" if found["in_effect"] else "  nothing"))
    for run in found["in_effect"]:
        why = f", reason: {run['reason']}" if run["reason"] else ""
        why += f", {run['authority']}" if run.get("authority") else ""
        console.print(
            escape(
                f"  run {run['run_id']} of {run['runbook']} by {run['operator']}, started "
                f"{run['started_at']} ({run['source']}){why}"
            )
        )
        for step in run["steps"]:
            mark = {True: "ok", False: "DRIFT", None: "?"}[step["holds"]]
            console.print(
                escape(f"    {mark:<5} {step['status']:<16} {step['step_id']}  {step['note']}")
            )
    if found["drift"]:
        console.print(
            f"\n[bold red]drift[/]: {len(found['drift'])} step(s) applied but no longer holding"
        )


def print_markdown(text: str) -> None:
    """Markdown on stdout, rendered for a terminal (plain text when piped)."""
    from rich.markdown import Markdown

    Console().print(Markdown(text))
