"""Lint: the dangerous DDL and the runbook mistakes found before a run (docs/lint.md). squawk's
rules over every SQL statement of every action and rollback action, in one process call, plus
rules only a runbook tool can know; each finding located in the YAML, waivable on the record."""
