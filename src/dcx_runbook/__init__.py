"""dcx-runbook: run database emergency plans as verified, journaled, reversible runbooks."""

__version__ = "0.1.0"
