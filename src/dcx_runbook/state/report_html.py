"""The incident report as one self-contained HTML page (`log RUN --format html`): no script, no
request for anything, so it opens the same from a mail, a ticket or a wiki. Its timeline is an
SVG drawn here: one row per step, one bar per phase on one time axis, the undo in another colour,
lock waits marked; then each step's story (state/report.py)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from dcx_runbook.state.report import StepStory, confirmed_said, outcome, stories, utc, where
from dcx_runbook.state.timeline import Timeline, timeline

WIDTH, LABELS, ROW, BAR = 960, 200, 28, 16

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; }
dt { font-weight: 600; } dd { margin: 0; }
pre { background: #f5f5f5; padding: .6em; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: .2em .5em; }
.bar { fill: #4a7bd0; } .bar.phase-precheck, .bar.phase-done_when { fill: #8fb3e8; }
.bar.phase-verify { fill: #3c9a5f; } .bar.undo { fill: #d0643c; }
.lock-wait { stroke: #c00; stroke-width: 3; }
.axis { stroke: #999; } text { font: 12px system-ui, sans-serif; fill: #333; }
.legend span { display: inline-block; padding: 0 .6em; margin-right: .6em; color: #fff; }
"""


def html(data: dict[str, Any], events: Sequence[dict[str, Any]], authority: str) -> str:
    name, run_id = escape(str(data["runbook"]["name"])), escape(str(data["run_id"]))
    line = timeline(events)
    picture = _svg(line) if line is not None else "<p>No events were kept for this run.</p>"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{name}: run {run_id}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Runbook <code>{name}</code>: run <code>{run_id}</code></h1>",
        _facts(data, authority),
        "<h2>Timeline</h2>",
        '<p class="legend"><span style="background:#8fb3e8">checks</span>'
        '<span style="background:#4a7bd0">action</span><span style="background:#3c9a5f">'
        'verify</span><span style="background:#d0643c">undo</span>'
        '<span style="background:#c00">lock wait</span></p>',
        picture,
        *(_story(s) for s in stories(data, events)),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _facts(data: dict[str, Any], authority: str) -> str:
    target = data.get("target") or {}
    op = data.get("operator") or {}
    rows = [
        ("Outcome", outcome(data)),
        ("Target", where(target)),
        ("Operator", f"{op.get('user')}@{op.get('host')}"),
        ("Confirmed", confirmed_said(data)),
        ("Authority", authority),
        ("Started", utc(data.get("started_at"))),
        ("Finished", utc(data.get("finished_at"))),
    ]
    for rb in data.get("rollbacks") or []:
        rows.append(
            (
                "Rollback",
                f"{rb.get('status')} at {utc(rb.get('started_at'))}: {rb.get('message', '')}",
            )
        )
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{escape(str(v))}</dd>" for k, v in rows) + "</dl>"


def _svg(line: Timeline) -> str:
    span = max(line.end - line.start, 0.001)
    scale = (WIDTH - LABELS - 20) / span
    height = ROW * len(line.steps) + 30

    def x(t: float) -> float:
        return LABELS + (t - line.start) * scale

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="timeline of the run">'
    ]
    for row, step in enumerate(line.steps):
        y = row * ROW
        out.append(f'<text x="4" y="{y + 17}">{escape(step)}</text>')
        for seg in (s for s in line.segments if s.step == step):
            width = max((seg.end - seg.start) * scale, 2)
            cls = f"bar phase-{seg.phase.split('.')[-1]}" + (" undo" if seg.undo else "")
            took = f"{(seg.end - seg.start) * 1000:.0f} ms"
            out.append(
                f'<rect class="{cls}" data-step="{escape(step)}" data-phase="{escape(seg.phase)}"'
                f' x="{x(seg.start):.1f}" y="{y + 6}" width="{width:.1f}" height="{BAR}">'
                f"<title>{escape(step)}: {escape(seg.phase)}, {took}</title></rect>"
            )
        for mark in (m for m in line.marks if m.step == step):
            out.append(
                f'<line class="lock-wait" x1="{x(mark.at):.1f}" x2="{x(mark.at):.1f}" '
                f'y1="{y + 2}" y2="{y + ROW - 2}"><title>{escape(mark.what)}</title></line>'
            )
    bottom = ROW * len(line.steps) + 4
    out.append(f'<line class="axis" x1="{LABELS}" x2="{WIDTH - 20}" y1="{bottom}" y2="{bottom}"/>')
    out.append(f'<text x="{LABELS}" y="{bottom + 18}">0 s</text>')
    out.append(f'<text x="{WIDTH - 90}" y="{bottom + 18}">{span:.3f} s</text>')
    return "\n".join([*out, "</svg>"])


def _story(story: StepStory) -> str:
    out = [
        f"<h2><code>{escape(story.id)}</code> {escape(story.title)}</h2>",
        f"<p><strong>Outcome:</strong> {escape(story.outcome or story.status)}</p>",
    ]
    for phase, text in story.ran:
        out.append(f"<p>Ran ({escape(phase)}):</p><pre>{escape(text)}</pre>")
    if story.checks:
        rows = "".join(
            f"<tr><td>{escape(p)}</td><td>{escape(said)}</td><td>{escape(status)}</td></tr>"
            for p, status, said in story.checks
        )
        out.append(f"<table><tr><th>phase</th><th>check</th><th>result</th></tr>{rows}</table>")
    out += [f"<p>Lock wait: {escape(w)}</p>" for w in story.waits]
    out += [f"<p>Answered {escape(a)}</p>" for a in story.answers]
    return "\n".join(out)
