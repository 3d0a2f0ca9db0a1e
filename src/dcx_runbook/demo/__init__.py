"""`dcx-runbook demo`: a runbook end to end on a sandbox, from the fixtures that ship beside it.
Drives the library (`dcx_runbook.api`) like any other caller."""
