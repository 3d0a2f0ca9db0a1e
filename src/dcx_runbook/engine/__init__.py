"""Running a runbook: the runtime and its phases, a run, a dry run, undoing, rollback, rehearsal."""
