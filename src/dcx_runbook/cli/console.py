"""Human-readable tables for the read-only commands (list, runs, show), on stdout."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from dcx_runbook.format.loader import Loaded


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> None:
    """A table on a terminal: a line per row, never a word or an id broken (the first column,
    a name or an id, is never cut; a cell that doesn't fit ends in an ellipsis). Piped: a line
    per row, its fields separated by tabs, for grep, cut and awk."""
    import sys

    if not sys.stdout.isatty():
        if not rows and empty:
            print(empty)
        for row in rows:
            print("\t".join(" ".join(str(cell).split()) for cell in row))
        return
    console = Console()
    if not rows:
        console.print(empty)
        return
    cells = [[" ".join(str(cell).split()) for cell in row] for row in rows]
    widths = _fit(
        [max(len(c), *(len(r[n]) for r in cells)) for n, c in enumerate(columns)], console.width
    )
    table = Table(box=None, pad_edge=False)
    for n, (column, width) in enumerate(zip(columns, widths, strict=True)):
        first = width if n == 0 else None  # the name or id: never cut
        table.add_column(column, no_wrap=True, overflow="ellipsis", width=width, min_width=first)
    for row in cells:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def _fit(widths: list[int], room: int) -> list[int]:
    """Column widths that fit the terminal: the widest column but the first (a name or an id,
    never cut) gives way first, down to 8 characters."""
    widths = list(widths)
    room -= 2 * (len(widths) - 1)  # rich pads each cell with a space on either side
    while sum(widths) > room:
        widest = max(range(1, len(widths)), key=lambda n: widths[n], default=None)
        if widest is None or widths[widest] <= 8:
            break
        widths[widest] -= 1
    return widths


def show_runbook(loaded: Loaded) -> None:
    """Everything that decides what a run does: variables, the target and its guard, timeouts,
    approvals, the checks, and each step's transaction mode, SQL, argv and files, as written
    (`${...}` left as references: values are a run's, and secrets are never shown)."""
    rb = loaded.runbook
    out = [f"{rb.name}: {rb.title}  ({loaded.path})"]
    if rb.description:
        out.append(rb.description.strip())
    out += _vars_lines(rb)
    out += _target_lines(rb)
    for title, checks in (("applies when", rb.applies_when), ("preflight", rb.preflight)):
        if checks:
            out += ["", f"{title}:", *(line for c in checks for line in _spec_lines(c, "  - "))]
    out += ["", "steps:"]
    for i, step in enumerate(rb.steps, 1):
        out += _step_lines(i, step)
    Console(soft_wrap=True, highlight=False).print(escape("\n".join(out)))


def _vars_lines(rb: Any) -> list[str]:
    out = ["", "variables:"] if rb.vars else []
    for name, var in rb.vars.items():
        flags = [f for f, on in (("required", var.required), ("secret", var.secret)) if on]
        source = f" from ${var.env}" if var.env else ""
        default = (
            f" (default {var.default!r})" if var.default is not None and not var.secret else ""
        )
        if var.default_from:  # a name, never a value: shown for a secret too
            default = f" (default: the value of {var.default_from})"
        out.append(f"  {name}{source}{default} {' '.join(flags)}".rstrip())
        if var.description:
            out.append(f"      {' '.join(var.description.split())}")
    return out


def _target_lines(rb: Any) -> list[str]:
    t = rb.target
    if t is None:
        return ["", "target: none: the steps act on this machine only"]
    out = ["", "target:", f"  url: {t.url}"]
    out.append(f"  database must be: {t.database}" if t.database else "  database: any (no guard)")
    if t.system_identifier:
        out.append(f"  server must be: system identifier {t.system_identifier}")
    for name in ("lock_timeout", "statement_timeout", "attempts", "retry_budget"):
        value = getattr(t, name)
        out.append(f"  {name}: {value if value is not None else _DEFAULTS[name] + ' (default)'}")
    out.append(f"  ledger schema: {t.ledger_schema or 'dcx_runbook (default)'}")
    need = max(rb.requires_approval, t.requires_approval)
    if need:
        out.append(f"  requires approval: {need} signed approval(s) (docs/approvals.md)")
    return out


_DEFAULTS = {
    "lock_timeout": "2s",
    "statement_timeout": "60s",
    "attempts": "5",
    "retry_budget": "30s",
}


def _step_lines(n: int, step: Any) -> list[str]:
    from dcx_runbook.api import talks_to_database

    out = ["", f"  {n}. {step.id}: {step.title}"]
    if talks_to_database(step.action):
        mode = "one transaction with its verify" if step.transaction else "no transaction"
        out.append(f"     its SQL runs in: {mode} (transaction: {str(step.transaction).lower()})")
    for name in ("lock_timeout", "statement_timeout", "attempts", "retry_budget"):
        if getattr(step, name) is not None:
            out.append(f"     {name}: {getattr(step, name)}")
    for phase in ("done_when", "precheck", "action", "verify"):
        for spec in getattr(step, phase):
            out += _spec_lines(spec, f"     {phase}: ")
    if step.irreversible:
        out.append(f"     irreversible: {' '.join(step.irreversible.split())}")
    elif step.rollback is not None:
        rb = step.rollback
        if rb.restore_files:
            out.append("     rollback: restore the exact bytes of every file it edited")
        for phase in ("precheck", "action", "verify"):
            for spec in getattr(rb, phase):
                out += _spec_lines(spec, f"     rollback {phase}: ")
    return out


def _spec_lines(spec: Any, lead: str) -> list[str]:
    """A check or operation as written: its kind and name, then every field it sets."""
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude_none=True)
    kind, name = data.pop("kind"), data.pop("name", None)
    out = [f"{lead}{kind}" + (f" ({name})" if name else "")]
    pad = " " * (len(lead) + 2)
    for key, value in data.items():
        text = value if isinstance(value, str) else json.dumps(value)
        body = text.strip().splitlines() or [""]
        if len(body) == 1:
            out.append(f"{pad}{key}: {body[0]}")
        else:
            out += [f"{pad}{key}:", *(f"{pad}  {line}" for line in body)]
    return out


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


# ------------------------------------------------------------------------------ runs

RUN_COLUMNS = ["run_id", "runbook", "target", "status", "in_effect", "operator", "started", "took"]


def status_said(row: Mapping[str, Any]) -> str:
    """A run's status in words: the run's, its last rollback's, and flags (break-glass; a process
    said running that is known gone, which the journal alone can't tell from one at work)."""
    shown = str(row.get("status"))
    if row.get("break_glass"):
        shown += ", BREAK GLASS"
    if row.get("rollback_status"):
        shown += f", rollback: {row['rollback_status']}"
    if row.get("process_gone"):
        shown += " (its process is gone: rollback to finish)"
    return shown


def _in_effect(row: Mapping[str, Any]) -> str:
    if row.get("in_effect") is None:
        return "?"
    return f"{row['steps_in_effect']}/{row['steps']} steps" if row["in_effect"] else "no"


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def short_time(iso: str | None, today: date | None = None) -> str:
    """Local time, `21:13` today and `12-01 21:13` on another day (`2025-12-01 21:13` in
    another year)."""
    if not iso:
        return "-"
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return iso
    today = today or datetime.now().astimezone().date()
    if when.date() == today:
        return when.strftime("%H:%M")
    return when.strftime("%m-%d %H:%M" if when.year == today.year else "%Y-%m-%d %H:%M")


# Dropped first when the terminal is too narrow for every column: they matter least at 03:00.
_DROPPED_FIRST = ("took", "operator", "target", "started")


def _run_cells(row: Mapping[str, Any]) -> dict[str, str]:
    return {
        "run_id": str(row["run_id"]),
        "runbook": str(row["runbook"]),
        "target": str(row["target"]),
        "status": status_said(row),
        "in_effect": _in_effect(row),
        "operator": str(row.get("operator")),
        "started": short_time(row.get("started")),
        "took": _took(row.get("duration_seconds")),
    }


def _fitting(cells: list[dict[str, str]], width: int) -> list[str]:
    """The columns that fit the width whole, dropping the least needed first."""
    columns = list(RUN_COLUMNS)

    def needed() -> int:
        return sum(max(len(c), *(len(r[c]) for r in cells)) + 2 for c in columns)

    for column in _DROPPED_FIRST:
        if needed() <= width:
            break
        columns.remove(column)
    return columns


def print_runs(rows: Sequence[Mapping[str, Any]]) -> None:
    """The runs table on a terminal: a line per run, never a word or an id broken. Where the
    terminal is too narrow, the least needed columns go first (took, operator, target,
    started); what still doesn't fit is cut with an ellipsis, the run id never."""
    console = Console()
    if not rows:
        console.print("no runs yet")
        return
    cells = [_run_cells(row) for row in rows]
    table = Table(box=None, pad_edge=False)
    columns = _fitting(cells, console.width)
    for column in columns:
        table.add_column(
            column.replace("_", " "),
            no_wrap=True,
            overflow="fold" if column == "run_id" else "ellipsis",
            min_width=len(cells[0]["run_id"]) if column == "run_id" else None,
        )
    for row in cells:
        table.add_row(*(escape(row[c]) for c in columns))
    console.print(table)


def print_runs_tsv(rows: Sequence[Mapping[str, Any]]) -> None:
    """One line per run, fields separated by tabs, for grep, cut and awk: run id, runbook,
    target, status (as on a terminal), in effect, operator, started (ISO 8601, UTC), seconds."""
    for row in rows:
        cells = {
            **_run_cells(row),
            "started": str(row.get("started") or "-"),
            "took": "-" if row.get("duration_seconds") is None else str(row["duration_seconds"]),
        }
        print("\t".join(" ".join(cells[c].split()) for c in RUN_COLUMNS))
