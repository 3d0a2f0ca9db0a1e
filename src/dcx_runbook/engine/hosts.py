"""Steps that only their own machine can undo: a run adopted from the ledger touched files or
ran processes on the machine that ran it, and its file pre-images are in that machine's journal.
`rollback` refuses them, naming the machine and the paths, unless `--skip-other-hosts` leaves
them (recorded as skipped, reported as still applied)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from socket import gethostname
from typing import Any

from dcx_runbook.engine.ledger import touches_host
from dcx_runbook.engine.scope import Pending, can_undo
from dcx_runbook.errors import Refused


@dataclass(frozen=True)
class Elsewhere:
    """An applied step of run `run_id` that only `host` can undo."""

    run_id: str
    step_id: str
    host: str
    paths: tuple[str, ...]


def elsewhere(run: Pending) -> list[Elsewhere]:
    """The applied steps of an adopted run that need the machine that ran them: they touched its
    files (their pre-images are in its journal) or their undo runs processes there."""
    adopted = run.record.data.get("adopted")
    if not adopted:
        return []
    me = gethostname()
    out = []
    for entry in run.applied():
        step = run.runbook.step(entry["id"])
        paths = tuple(entry.get("elsewhere") or ())
        if not paths and not (touches_host(step) and can_undo(step, entry)):
            continue
        host = str(entry.get("host") or adopted.get("host") or "?")
        if host == me and not paths:
            continue  # processes only: they run here as well as anywhere
        out.append(Elsewhere(run.run_id, entry["id"], host, paths))
    return out


def refuse_or_skip(todo: Sequence[Pending], skip: bool) -> dict[str, list[Elsewhere]]:
    """Refused (exit 4) naming each machine, its paths and the command to run there, unless
    `skip`; then the steps to leave, by run id."""
    found = [e for run in todo for e in elsewhere(run)]
    if found and not skip:
        raise Refused(_refusal(found))
    out: dict[str, list[Elsewhere]] = {}
    for item in found:
        out.setdefault(item.run_id, []).append(item)
    return out


def _refusal(found: Sequence[Elsewhere]) -> str:
    by_host: dict[str, list[Elsewhere]] = {}
    for item in found:
        by_host.setdefault(item.host, []).append(item)
    parts = []
    me = gethostname()
    for host, items in by_host.items():
        steps = ", ".join(f"{i.step_id} of run {i.run_id}" for i in items)
        paths = sorted({p for i in items for p in i.paths})
        touched = f" (files: {', '.join(paths)})" if paths else " (processes)"
        runs = " ".join(dict.fromkeys(i.run_id for i in items))
        where = (
            "the state directory that ran them (their pre-images are in its journal)"
            if host == me
            else "that machine and its journal"
        )
        parts.append(
            f"{steps} touched {host}{touched}: their undo needs {where}; "
            f"on {host} run: dcx-runbook rollback {runs}"
        )
    return (
        "; ".join(parts)
        + ". Nothing was changed. To undo the rest from here and leave those steps applied, "
        "pass --skip-other-hosts"
    )


def said(items: Sequence[Elsewhere]) -> str:
    return ", ".join(f"{i.step_id} (on {i.host})" for i in items)


def skipped_detail(items: Sequence[Elsewhere]) -> list[dict[str, Any]]:
    return [{"step": i.step_id, "host": i.host, "paths": list(i.paths)} for i in items]
