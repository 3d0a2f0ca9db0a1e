"""The database a runbook acts on: connecting, its identity, the run lock, timeouts, blockers; and
disposable servers for rehearsals and the demo."""
