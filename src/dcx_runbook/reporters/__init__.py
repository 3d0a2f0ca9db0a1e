"""Reporters: the engine's only way to the terminal. JSON Lines for machines, rich for humans."""

from __future__ import annotations

from dcx_runbook.reporters.base import Event, Reporter

__all__ = ["Event", "Reporter", "make_reporter"]


def make_reporter(output: str, *, fleet: bool = False) -> Reporter:
    if output == "json":
        from dcx_runbook.reporters.jsonl import JsonReporter

        return JsonReporter()
    if fleet:
        from dcx_runbook.reporters.fleet import FleetHumanReporter

        return FleetHumanReporter()
    from dcx_runbook.reporters.human import HumanReporter

    return HumanReporter()
