"""On whose authority a run changes anything (docs/approvals.md): the signed approvals of the plan
it runs, or `--break-glass` with its reason. What is found here goes into the journal, the
ledger and the output, so a post-incident review finds a run made without approvals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcx_runbook.engine.options import Options
from dcx_runbook.engine.plans import Planning
from dcx_runbook.errors import InvalidInput, Refused
from dcx_runbook.format.model import Runbook


def required(runbook: Runbook, options: Options) -> int:
    """The approvals this run needs: the most asked by the command line, the runbook, its
    target block and the targets file."""
    target = runbook.target.requires_approval if runbook.target is not None else 0
    return max(
        options.require_approvals, runbook.requires_approval, target, options.target_requires
    )


def check_break_glass(options: Options) -> None:
    """--break-glass is for a reason the review will read: without one, invalid (exit 2)."""
    if options.break_glass and not (options.reason or "").strip():
        raise InvalidInput('--break-glass needs --reason "INC-1234 ...": why, for the review')


def authority(
    runbook: Runbook, options: Options, planning: Planning | None
) -> dict[str, Any] | None:
    """The run's authority, for its record; raises when it has none it needs. A dry run changes
    nothing and needs none."""
    check_break_glass(options)
    need = required(runbook, options)
    plan = _plan(planning)
    if options.break_glass and need > 0 and not options.dry_run:  # else there is no glass
        return {"break_glass": True, "reason": options.reason, "required": need, **plan}
    if options.dry_run or need == 0:
        return plan or None
    if planning is None or planning.given_path is None:
        raise Refused(
            f"{runbook.name} needs {need} approval(s) here: run an approved plan (run --dry-run "
            f"--plan-out PLAN.json, dcx-runbook approve PLAN.json, run --plan PLAN.json), or "
            f'--break-glass --reason "..." (flagged everywhere)'
        )
    if not options.allowed_signers:
        raise InvalidInput(
            f"--allowed-signers FILE: {need} approval(s) are needed, and only the keys of an "
            "allowed signers file count"
        )
    from dcx_runbook import signing

    verdict = signing.check(  # the bytes the plan checks read: what is judged is what runs
        planning.given_path,
        Path(options.allowed_signers),
        need,
        signing.operator_keys(),
        planning.given_bytes,
    )
    verdict.enforce()
    return {"required": need, "approved_by": verdict.approvers, **plan}


def _plan(planning: Planning | None) -> dict[str, Any]:
    if planning is None or planning.given_path is None:
        return {}
    return {"plan": {"path": str(planning.given_path), "sha256": planning.sha256}}


def said(found: dict[str, Any] | None) -> str | None:
    """The line the output shows of it (loud for break-glass), or None."""
    if not found:
        return None
    if found.get("break_glass"):
        return (
            f"BREAK GLASS: running without the {found['required']} approval(s) it needs, "
            f"because: {found['reason']} (recorded in the journal and the target's ledger)"
        )
    if found.get("approved_by"):
        return (
            f"approved by {', '.join(found['approved_by'])} (plan sha256 {found['plan']['sha256']})"
        )
    if found.get("plan"):
        return f"running plan {found['plan']['path']} (sha256 {found['plan']['sha256']})"
    return None
