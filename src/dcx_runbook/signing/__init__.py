"""Signed approvals of plan files, made and checked with OpenSSH's `ssh-keygen -Y`.

`approvals` keeps a plan's approvals in `PLAN.json.sig` and judges them; `ssh` is the only place
that runs ssh-keygen or reads the SSHSIG format."""

from __future__ import annotations

from dcx_runbook.signing.approvals import (
    Approval,
    Verdict,
    approve,
    check,
    message_for,
    sig_path,
    signers_on_file,
)
from dcx_runbook.signing.ssh import operator_keys

__all__ = [
    "Approval",
    "Verdict",
    "approve",
    "check",
    "message_for",
    "operator_keys",
    "signers_on_file",
    "sig_path",
]
