"""The plan commands' library (docs/approvals.md): `approve` signs a plan, `show-plan` renders it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def approve(plan: Path, key: Path) -> str:
    """Sign the plan's hash with an SSH key into PLAN.json.sig; returns what to say."""
    from dcx_runbook import signing
    from dcx_runbook.format import plans

    plans.read(plan)  # a plan, and whole: nobody approves a file that isn't one
    approval = signing.approve(plan, key)
    return (
        f"approved {plan} with key {approval.key} ({approval.user}@{approval.host}); "
        f"signature in {signing.sig_path(plan)}"
    )


def show_plan(plan: Path) -> str:
    """The plan as Markdown, with the keys that signed it so far (not checked here: `run
    --plan --allowed-signers` judges them)."""
    from dcx_runbook import signing
    from dcx_runbook.format import plans

    given, data = plans.read(plan)
    signed = signing.signers_on_file(plan)
    return plans.markdown(given, hashlib.sha256(data).hexdigest(), signed)
