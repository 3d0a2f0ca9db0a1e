"""The `dcx-runbook` command."""

from dcx_runbook.cli.app import app, main

__all__ = ["app", "main"]
