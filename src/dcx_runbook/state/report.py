"""The incident report of one run (`log RUN --format markdown|html`): how it ended in words, a
timeline of its steps' phases (a Mermaid gantt in the Markdown, which GitHub and GitLab draw;
an SVG in the self-contained HTML page), then each step: what ran (SQL, argv, diffs; masked as
the output was), its checks with their values, the lock waits and blockers it met, who answered
what, and how it ended. From the journal record and the run's events (state/event_log.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dcx_runbook.state.entries import gone
from dcx_runbook.state.timeline import Timeline, timeline
from dcx_runbook.statuses import OperationStatus, RunStatus


@dataclass
class StepStory:
    """What one step went through, from its events and its journal entry."""

    id: str
    title: str
    status: str
    ran: list[tuple[str, str]] = field(default_factory=list)  # (phase, SQL/argv/diff)
    checks: list[tuple[str, str, str]] = field(default_factory=list)  # (phase, status, said)
    waits: list[str] = field(default_factory=list)  # lock waits and their blockers
    answers: list[str] = field(default_factory=list)  # who said what at a prompt
    outcome: str = ""


def outcome(data: dict[str, Any]) -> str:
    """How the run ended, in words: never "running (exit None)" for a run whose process died."""
    status, code = data.get("status"), data.get("exit_code")
    if status == RunStatus.RUNNING:
        if gone(data):
            return (
                "did not finish: its process is gone (killed, or the machine restarted); "
                f"`dcx-runbook rollback {data.get('run_id')}` settles what it left"
            )
        return "still running (or its process is on another machine)"
    said = f"{status} (exit {code})" if code is not None else str(status)
    return f"{said}: {data['message']}" if data.get("message") else said


def where(target: dict[str, Any]) -> str:
    """The target as the record knows it: a run of this machine only has none."""
    if not target:
        return "this machine (no database target)"
    return (
        f"{target.get('url', '-')} (database {target.get('database', '?')}, PostgreSQL "
        f"{target.get('server_version', '?')})"
    )


def confirmed_said(data: dict[str, Any]) -> str:
    """Who said go, and how (not recorded by versions before the incident report)."""
    said = data.get("confirmed")
    if not said:
        return "not recorded"
    how = {"--yes": "with --yes", "fleet": "once for its whole fleet run"}.get(
        str(said.get("via")), "at the prompt"
    )
    return f"{how}, by {said.get('user')}@{said.get('host')}"


def stories(data: dict[str, Any], events: Sequence[dict[str, Any]]) -> list[StepStory]:
    """Each step of the record with what its events tell."""
    found = {
        s["id"]: StepStory(s["id"], str(s.get("title", "")), str(s["status"]))
        for s in data.get("steps") or []
    }
    for e in events:
        story = found.get(str(e.get("step")))
        if story is not None:
            _tell(story, e)
    for s in data.get("steps") or []:
        story = found[s["id"]]
        story.answers += [
            f"{a.get('answer')} ({a.get('via')}, {a.get('user')}@{a.get('host')}, {a.get('at')})"
            for a in s.get("answers") or []
        ]
        if s.get("error") and not story.outcome:
            story.outcome = str(s["error"])
    return list(found.values())


def _tell(story: StepStory, e: dict[str, Any]) -> None:
    kind, phase, said = e["event"], str(e.get("phase") or ""), str(e.get("message") or "")
    if kind == "operation" and e.get("status") == OperationStatus.STARTED:
        story.ran.append((phase, said))
    elif kind == "operation" and e.get("status") == OperationStatus.FAILED:
        story.outcome = said
    elif kind == "check":
        story.checks.append((phase, str(e.get("status")), said))
    elif kind == "lock_wait":
        blockers = ", ".join(map(str, (e.get("detail") or {}).get("blockers") or [])) or "none seen"
        story.waits.append(f"{said} (blocked by: {blockers})")
    elif kind in ("step_finished", "step_undone"):
        story.outcome = f"{e.get('status')}: {said}" if said else str(e.get("status"))


def utc(iso: Any) -> str:
    if not iso:
        return "-"
    try:
        when = datetime.fromisoformat(str(iso).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return str(iso)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


# ------------------------------------------------------------------------------ Markdown


def markdown(data: dict[str, Any], events: Sequence[dict[str, Any]], authority: str) -> str:
    target = data.get("target") or {}
    op = data.get("operator") or {}
    out = [
        f"## Runbook `{data['runbook']['name']}`: run `{data['run_id']}`",
        "",
        f"- **Target:** {where(target)}",
        f"- **Operator:** {op.get('user')}@{op.get('host')}",
        f"- **Confirmed:** {confirmed_said(data)}",
        f"- **Outcome:** {_cell(outcome(data))}",
        f"- **Authority:** {authority}",
        f"- **Started:** {utc(data.get('started_at'))}; **finished:** {utc(data.get('finished_at'))}",
    ]
    line = timeline(events)
    if line is not None:
        out += ["", "### Timeline", "", *_gantt(line)]
    out += _table(data)
    for story in stories(data, events):
        out += ["", *_story_markdown(story)]
    return "\n".join(out) + "\n"


def _table(data: dict[str, Any]) -> list[str]:
    out = [
        "",
        "### Steps at a glance (times UTC)",
        "",
        "| time (UTC) | step | status | notes |",
        "|---|---|---|---|",
        f"| {utc(data.get('started_at'))} | | run started | runbook sha256 "
        f"`{data['runbook'].get('sha256', '')[:12]}` |",
    ]
    for step in data.get("steps") or []:
        notes = _cell(step.get("error") or "")
        out.append(
            f"| {utc(step.get('started_at'))} | `{step['id']}` | {step['status']} | {notes} |"
        )
    out.append(f"| {utc(data.get('finished_at'))} | | run finished | {data.get('status')} |")
    for rb in data.get("rollbacks") or []:
        who = (rb.get("operator") or {}).get("user")
        out.append(
            f"| {utc(rb.get('started_at'))} | | rollback by {who} | {rb.get('status')} "
            f"| {_cell(rb.get('message', ''))} |"
        )
    return out


def _gantt(line: Timeline) -> list[str]:
    """A Mermaid gantt: one section per step, one task per phase; the undo marked `crit`."""
    out = ["```mermaid", "gantt", "    dateFormat x", "    axisFormat %H:%M:%S"]
    for step in line.steps:
        out.append(f"    section {_mermaid(step)}")
        for n, seg in enumerate(s for s in line.segments if s.step == step):
            start, end = int(seg.start * 1000), max(int(seg.end * 1000), int(seg.start * 1000) + 1)
            tag = "crit, " if seg.undo else ""
            out.append(f"    {_mermaid(seg.phase)} :{tag}{_mermaid(step)}{n}, {start}, {end}")
        for mark in (m for m in line.marks if m.step == step):
            out.append(f"    lock wait :milestone, crit, {int(mark.at * 1000)}, 0ms")
    return [*out, "```"]


def _story_markdown(story: StepStory) -> list[str]:
    out = [
        f"### `{story.id}`: {_cell(story.title)}",
        "",
        f"**Outcome:** {_cell(story.outcome or story.status)}",
    ]
    for phase, text in story.ran:
        out += ["", f"Ran ({phase}):", "", "```", text, "```"]
    if story.checks:
        out += ["", "| phase | check | result |", "|---|---|---|"]
        out += [f"| {p} | {_cell(said)} | {status} |" for p, status, said in story.checks]
    out += [f"- lock wait: {_cell(w)}" for w in story.waits]
    out += [f"- answered {_cell(a)}" for a in story.answers]
    return out


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _mermaid(value: str) -> str:
    """A name Mermaid's gantt takes as it is (no colon, hash or semicolon)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value)
