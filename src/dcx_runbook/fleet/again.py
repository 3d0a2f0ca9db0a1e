"""A fleet run afterwards (docs/fleet.md): `rollback FLEET_RUN` undoes every target's runs
(targets concurrently, each target's runs newest first); `resume FLEET_RUN` runs again the
targets that failed, were not reached or were interrupted, and nothing else. Both read each
target's truth from its child runs' records, not only from the fleet's: after a crash of the
driver, that is where it is."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dcx_runbook.engine.options import Options, Outcome
from dcx_runbook.engine.resolving import resolver, with_ledger_said
from dcx_runbook.engine.rollback import rollback_run
from dcx_runbook.errors import ExitCode, RunbookError
from dcx_runbook.fleet.driver import Signals
from dcx_runbook.fleet.plan import Planned, server_of
from dcx_runbook.fleet.progress import Recorder, conclude
from dcx_runbook.fleet.run import drive
from dcx_runbook.fleet.waves import Limits, Waves
from dcx_runbook.fleet.worker import Work
from dcx_runbook.format.targets import Targets, url_of
from dcx_runbook.format.variables import read_env_file
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.state.fleets import FleetRecord
from dcx_runbook.state.journal import Journal, RunRecord
from dcx_runbook.statuses import STILL_APPLIED, RunStatus, TargetState

# A run's record status, as its target's state in the fleet.
_FROM_RUN = {
    RunStatus.SUCCEEDED: TargetState.SUCCEEDED,
    RunStatus.FAILED: TargetState.FAILED,
    RunStatus.REFUSED: TargetState.REFUSED,
    RunStatus.INTERRUPTED: TargetState.INTERRUPTED,
    RunStatus.UNDO_INCOMPLETE: TargetState.UNDO_INCOMPLETE,
}
# Run again by `resume`; every other state is left as it is.
AGAIN = frozenset(
    {
        TargetState.PENDING,
        TargetState.NOT_REACHED,
        TargetState.FAILED,
        TargetState.REFUSED,
        TargetState.INTERRUPTED,
    }
)


def truth(entry: Mapping[str, Any], journal: Journal) -> tuple[TargetState, list[str]]:
    """A target's state as its child runs' records have it (the fleet's record may be behind:
    its driver may have died), and its runs that died in the middle (their process gone, their
    record still said running), newest first: they must be undone before the target runs again.
    The newest run with a record decides; a run with none never began."""
    state = TargetState(entry.get("state") or TargetState.PENDING)
    records = []
    for run_id in reversed(entry.get("runs") or []):
        try:
            records.append(journal.load(run_id))
        except RunbookError:
            continue
    dead = [r.run_id for r in records if r.data.get("status") == RunStatus.RUNNING and _gone(r)]
    if not records:
        return (TargetState.NOT_REACHED if state == TargetState.RUNNING else state), dead
    newest = records[0]
    status = newest.data.get("status")
    if status == RunStatus.RUNNING:
        return (TargetState.INTERRUPTED if dead else TargetState.RUNNING), dead
    rollbacks = newest.data.get("rollbacks") or [{}]
    if rollbacks[-1].get("status") == RunStatus.ROLLED_BACK and state in (
        TargetState.ROLLED_BACK,
        TargetState.SUCCEEDED,
    ):
        return TargetState.ROLLED_BACK, dead
    return _FROM_RUN.get(RunStatus(str(status)), state), dead


def _gone(record: RunRecord) -> bool:
    """No process holds the run's record lock: whatever ran it has ended."""
    if not record.try_lock():
        return False
    record.unlock()
    return True


def applied_runs(entry: Mapping[str, Any], journal: Journal) -> list[str]:
    """The target's child runs with something still applied, newest first."""
    found = []
    for run_id in reversed(entry.get("runs") or []):
        try:
            data = journal.load(run_id).data
        except RunbookError:
            continue
        if data.get("status") == RunStatus.RUNNING or any(
            s.get("status") in STILL_APPLIED for s in data.get("steps", [])
        ):
            found.append(run_id)
    return found


def undo_work(
    run_ids: Sequence[str],
    url: str,
    options: Options,
    var: Sequence[str],
    env_file: Path | None = None,
) -> Work:
    """Undo `run_ids` on one target, newest first, stopping at the first that does not end
    undone; how it went is said once for all (the target's state). Each run's values are its
    journaled ones first, then `var` (the target's own, then --var) and `env_file`."""
    child_options = replace(options, yes=True)

    def work(reporter: Reporter) -> Outcome:
        journal = Journal()
        if options.ledger:
            journal = with_ledger_said(journal, url, options, reporter, write=not options.dry_run)
        resolve = resolver(var, env_file, url)
        outcome = Outcome(ExitCode.OK, RunStatus.NOTHING_TO_UNDO, None, "nothing to undo")
        undone: list[str] = []
        for run_id in run_ids:
            got = rollback_run(journal.load(run_id), journal, resolve, child_options, reporter)
            if got.exit_code != ExitCode.OK or got.status == RunStatus.DRY_RUN:
                return got  # a dry run says what it would undo: that is its outcome
            if got.status == RunStatus.ROLLED_BACK:
                undone.append(run_id)
                outcome = Outcome(
                    ExitCode.OK, RunStatus.ROLLED_BACK, run_id, f"undone: {', '.join(undone)}"
                )
        return outcome

    return work


def unwind_succeeded(
    record: FleetRecord | None,
    planned: Sequence[Planned],
    options: Options,
    recorder: Recorder,
    how: tuple[Limits, Signals],
) -> None:
    """--unwind-all-on-failure: the targets that succeeded in this fleet run are undone too."""
    if record is None:
        return
    journal = Journal()
    done = [p for p in planned if recorder.states.get(p.name) == TargetState.SUCCEEDED]
    if not done:
        return
    recorder.say(
        "--unwind-all-on-failure: a target failed; undoing the targets that succeeded: "
        + ", ".join(p.name for p in done)
    )
    work = {p.name: applied_runs(record.target(p.name), journal) for p in done}
    limits, signals = how
    waves = Waves(done, undo_limits(limits, len(done)), canary=False)

    def undo(target: Planned, _: str | None) -> Work:
        if target.resolved is None:  # not run this time: its values from the targets file
            given = given_vars(target, ())
        else:
            given = [f"{k}={v}" for k, v in target.resolved.values.items() if v is not None]
        return undo_work(work[target.name], target.url, options, given)

    drive(waves, recorder, undo, signals, new_ids=False, undo=True)


def undo_limits(limits: Limits, targets: int) -> Limits:
    """An undo goes on after a target's undo fails: each one left is one more still applied."""
    return replace(limits, canary=0, max_failures=targets)


def given_vars(target: Planned, var: Sequence[str]) -> list[str]:
    """The target's variables from the targets file, then --var (which wins)."""
    return [*(f"{k}={v}" for k, v in target.spec.vars.items() if v is not None), *var]


def located(
    record: FleetRecord, targets: Targets, env_file: Path | None
) -> tuple[list[Planned], dict[str, str]]:
    """The fleet's targets as its targets file has them now (their URLs); those it no longer
    has, with why."""
    file_values = read_env_file(env_file) if env_file else {}
    environ = {**os.environ, **{k: v for k, v in file_values.items() if v is not None}}
    specs = {t.name: t for t in targets.file.targets}
    found, missing = [], {}
    for entry in record.data["targets"]:
        spec = specs.get(entry["name"])
        if spec is None:
            missing[entry["name"]] = f"no longer in {targets.path}: nothing was done there"
            continue
        try:
            url = url_of(spec, environ)
            server = server_of(url, spec.system_identifier, spec.name)
        except RunbookError as exc:
            missing[entry["name"]] = f"{exc}: nothing was done there"
            continue
        found.append(Planned(spec, url, server, None))
    return found, missing


def refused_targets(recorder: Recorder, missing: Mapping[str, str]) -> None:
    for name, why in missing.items():
        recorder.states[name] = TargetState.REFUSED
        recorder.emit(Event("target_finished", status=TargetState.REFUSED, message=why), name)


def finish_again(recorder: Recorder, interrupted: bool, done: RunStatus) -> Outcome:
    status, code, said = conclude(recorder.states, interrupted, done)
    outcome = Outcome(code, status, recorder.fleet_run, f"targets: {said}")
    recorder.finish(status, outcome)
    return outcome
