"""The plan file (`run --dry-run --plan-out PLAN.json`): what a dry run found, for review,
approval and `run --plan` (docs/approvals.md). Its model, and reading it back: a file that is
not a plan is one clear error (exit 2), never half read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dcx_runbook.errors import InvalidInput

FORMAT = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlannedRunbook(_Strict):
    name: str
    path: str
    sha256: str


class PlannedTarget(_Strict):
    url: str  # masked
    database: str
    system_identifier: str | None = None
    server_version: str | None = None
    database_oid: int | None = None


class PlannedCheck(_Strict):
    step: str | None
    phase: str | None
    status: str | None
    message: str | None


class PlannedEffect(_Strict):
    step: str | None
    phase: str | None
    effect: str  # the exact SQL, argv or file diff, masked


class Plan(_Strict):
    """Everything `run --plan` checks again, and everything a reviewer reads."""

    format: Literal[1] = 1
    kind: Literal["dcx-runbook plan"] = "dcx-runbook plan"
    created_at: str
    created_by: dict[str, str]
    runbook: PlannedRunbook
    # Public values as they are; a secret as "hmac-sha256:<hex>" under this machine's plan key.
    vars: dict[str, Any]
    secret_vars: list[str] = Field(default_factory=list)  # the names whose value is a hash
    skip: list[str] = Field(default_factory=list)
    target: PlannedTarget | None = None
    catalog: dict[str, str] = Field(default_factory=dict)  # relation -> fingerprint
    ledger: dict[str, Any] | None = None  # the ledger's head: its newest run
    files: dict[str, str | None] = Field(default_factory=dict)  # path -> sha256 (None: absent)
    checks: list[PlannedCheck] = Field(default_factory=list)
    lint: list[dict[str, Any]] = Field(default_factory=list)
    effects: list[PlannedEffect] = Field(default_factory=list)


def dump(plan: Plan) -> bytes:
    """The plan's bytes: what is hashed and signed, so written once and never re-serialised."""
    return (json.dumps(plan.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n").encode()


def read(path: Path) -> tuple[Plan, bytes]:
    """The plan and its exact bytes (their sha256 is the plan's identity)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"plan {path}: can't be read: {exc.strerror or exc}") from None
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(
            f"plan {path}: not JSON ({exc}); expected a file from --plan-out"
        ) from None
    if not isinstance(document, dict) or document.get("kind") != "dcx-runbook plan":
        raise InvalidInput(f"plan {path}: not a dcx-runbook plan; expected a file from --plan-out")
    if isinstance(document.get("format"), int) and document["format"] > FORMAT:
        raise InvalidInput(
            f"plan {path}: written by a newer dcx-runbook (plan format {document['format']}; "
            f"this one reads {FORMAT})"
        )
    try:
        return Plan.model_validate(document), data
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"plan {path}: damaged at {where}: {first['msg']}") from None


def markdown(plan: Plan, sha256: str, approvals: list[str] | None = None) -> str:
    """The plan for review, as Markdown: what it runs, where, with what, and what it found."""
    t = plan.target
    lines = [
        f"# Plan: {plan.runbook.name}",
        "",
        f"- plan sha256: `{sha256}`",
        f"- made {plan.created_at} by {plan.created_by.get('user')}@{plan.created_by.get('host')}",
        f"- runbook: `{plan.runbook.path}` (sha256 `{plan.runbook.sha256}`)",
    ]
    if t is not None:
        lines.append(
            f"- target: database `{t.database}` (oid {t.database_oid}), PostgreSQL "
            f"{t.server_version}, system identifier {t.system_identifier}, `{t.url}`"
        )
    lines.append(f"- skipped steps: {', '.join(plan.skip) or 'none'}")
    if approvals is not None:
        lines.append(f"- approvals on file: {', '.join(approvals) or 'none'}")
    lines += ["", "## Variables", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | `{_cell(v)}` |" for k, v in plan.vars.items()]
    lines += ["", "## Effects", ""]
    for e in plan.effects:
        lines += [f"**{e.step}** ({e.phase})", "", "```", e.effect, "```", ""]
    lines += ["## Checks", "", "| step | phase | status | check |", "|---|---|---|---|"]
    lines += [
        f"| {c.step or '-'} | {c.phase} | {c.status} | {_cell(c.message)} |" for c in plan.checks
    ]
    lines += ["", "## Lint", ""]
    lines += [f"- {f.get('level')}: {_cell(f.get('message'))}" for f in plan.lint] or ["- none"]
    lines += ["", "## Files it edits", ""]
    lines += [
        f"- `{p}`: sha256 `{h}`" if h else f"- `{p}`: not there yet" for p, h in plan.files.items()
    ] or ["- none"]
    lines += ["", "## Catalog fingerprint", "", "| relation | fingerprint |", "|---|---|"]
    lines += [f"| {rel} | `{digest}` |" for rel, digest in plan.catalog.items()]
    head = plan.ledger
    lines += [
        "",
        f"Ledger head: {head['run_id'] + ' (' + str(head['status']) + ')' if head else 'none'}",
    ]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|") if value is not None else ""
