"""Views of the journal: the runs table and one run's log as text, JSON or Markdown."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from dcx_runbook.errors import JournalError
from dcx_runbook.state.entries import gone
from dcx_runbook.state.journal import Journal
from dcx_runbook.statuses import STILL_APPLIED, RunStatus


def _seconds(data: dict[str, Any]) -> float | None:
    """How long the run took, in seconds; None while it runs (or never said when it ended)."""
    try:
        start = datetime.fromisoformat(data["started_at"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(data["finished_at"].replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return round((end - start).total_seconds(), 3)


def runs(
    journal: Journal, limit: int | None = None, runbook: str | None = None
) -> list[dict[str, Any]]:
    """The newest `limit` runs (all with None), of `runbook` when given, newest first."""
    rows = []
    for path, data in journal.records(limit, runbook):
        if isinstance(data, JournalError):
            rows.append(
                {
                    "run_id": path.stem,
                    "runbook": "?",
                    "target": "?",
                    "status": "unreadable",
                    "rollback_status": None,
                    "in_effect": None,  # not known
                    "operator": "?",
                    "started": None,
                    "duration_seconds": None,
                    "error": str(data),
                }
            )
            continue
        rows.append(row(data, "journal"))
    return rows


def row(data: dict[str, Any], source: str) -> dict[str, Any]:
    """One run as the runs table shows it: whether it is still in effect, and by how many
    steps; `source`: this machine's journal, or the target's ledger."""
    target = data.get("target") or {}
    op = data.get("operator") or {}
    steps = data["steps"]
    applied = sum(1 for s in steps if s["status"] in STILL_APPLIED)
    where = f"{target.get('database', '-')}@{target.get('host', '-')}"
    named = target.get("name")  # a fleet's child run: its target's name in the targets file
    rollbacks = data.get("rollbacks") or []
    last = rollbacks[-1] if rollbacks else data
    said = authority_said(data)
    return {
        "run_id": data["run_id"],
        "runbook": data["runbook"]["name"],
        "target": f"{named} ({where})" if named else where,
        "fleet_run": target.get("fleet_run"),
        "status": str(data.get("status", "?")),
        "rollback_status": str(last.get("status")) if rollbacks else None,
        # Said running, by a process known to have ended: a rollback finishes it.
        "process_gone": last.get("status") == RunStatus.RUNNING and gone(last),
        "in_effect": applied > 0,
        "steps": len(steps),
        "steps_in_effect": applied,
        "operator": f"{op.get('user')}@{op.get('host')}",
        "started": data.get("started_at"),
        "finished": data.get("finished_at"),
        "duration_seconds": _seconds(data),
        "reason": data.get("reason"),
        "authority": said,
        "break_glass": bool(said and said.startswith("BREAK GLASS")),
        "source": source,
    }


def authority_said(data: dict[str, Any]) -> str | None:
    """On whose authority the run acted, in a few words (docs/approvals.md); break-glass is
    loud: a post-incident review must find it. From the journal, or an adopted run's ledger row."""
    found = data.get("authority") or (data.get("target") or {}).get("authority")
    if not found:
        return None
    if found.get("break_glass"):
        return f"BREAK GLASS ({found.get('reason')})"
    if found.get("approved_by"):
        return f"approved by {', '.join(found['approved_by'])}"
    plan = found.get("plan") or {}
    return f"plan {str(plan.get('sha256', ''))[:12]}" if plan else None


def log(data: dict[str, Any], fmt: str, events: list[dict[str, Any]] | None = None) -> str:
    """One run as text, JSON, or its incident report (Markdown, HTML), with its events."""
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    if fmt in ("markdown", "html"):
        from dcx_runbook.state import report, report_html

        said = authority_said(data) or "no plan, no approvals required"
        render = report.markdown if fmt == "markdown" else report_html.html
        return render(data, events or [], said)
    return _text(data)


def _step_lines(step: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in (step.get("captured") or {}).items():
        lines.append(f"captured {key} = {value!r}")
    for path in step.get("files") or {}:
        lines.append(f"file pre-image kept: {path}")
    for said in step.get("answers") or []:
        lines.append(
            f"answered {said.get('answer')} ({said.get('via')}, {said.get('user')}@"
            f"{said.get('host')}, {said.get('at')})"
        )
    if step.get("error"):
        lines.append(f"error: {step['error']}")
    return lines


def _text(data: dict[str, Any]) -> str:
    target = data.get("target") or {}
    op = data.get("operator") or {}
    out = [
        f"run       {data['run_id']}",
        f"runbook   {data['runbook']['name']} (sha256 {data['runbook'].get('sha256', '')[:12]})",
        f"target    {target.get('url', '-')} (PostgreSQL {target.get('server_version', '?')})",
        f"operator  {op.get('user')}@{op.get('host')}",
        f"started   {data.get('started_at')}  finished {data.get('finished_at')}",
        f"status    {data.get('status')} (exit {data.get('exit_code')})",
    ]
    if said := authority_said(data):
        out.append(f"authority {said}")
    if data.get("message"):
        out.append(f"message   {data['message']}")
    out.append("steps:")
    for step in data["steps"]:
        out.append(f"  {step['status']:<16} {step['id']}  {step.get('title', '')}")
        out += [f"      {line}" for line in _step_lines(step)]
    for rb in data.get("rollbacks", []):
        out.append(
            f"rollback  {rb.get('started_at')} → {rb.get('finished_at')}: {rb.get('status')}"
            + (f" (exit {rb['exit_code']}): {rb.get('message', '')}" if "exit_code" in rb else "")
        )
    return "\n".join(out) + "\n"
