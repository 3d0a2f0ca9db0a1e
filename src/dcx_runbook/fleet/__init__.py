"""Fleets: one runbook across many targets, in waves (docs/fleet.md)."""
