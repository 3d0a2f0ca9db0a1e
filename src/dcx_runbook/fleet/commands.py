"""`rollback FLEET_RUN` and `resume FLEET_RUN`: each locks the fleet run (refused while its
driver, or a child run it started, is still at work), reads every target's truth, confirms once,
then drives the targets' work in waves like the run did."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from dcx_runbook.engine.options import Options, Outcome
from dcx_runbook.errors import ExitCode, InvalidInput, Refused
from dcx_runbook.fleet.again import (
    AGAIN,
    applied_runs,
    finish_again,
    given_vars,
    located,
    refused_targets,
    truth,
    undo_limits,
    undo_work,
    unwind_succeeded,
)
from dcx_runbook.fleet.driver import Signals
from dcx_runbook.fleet.plan import Planned, plan
from dcx_runbook.fleet.progress import Recorder
from dcx_runbook.fleet.run import drive, run_work
from dcx_runbook.fleet.waves import FAILURES, Limits, Waves
from dcx_runbook.fleet.worker import Work
from dcx_runbook.format.loader import Loaded, load
from dcx_runbook.format.targets import Targets, TargetSpec, load_targets
from dcx_runbook.format.variables import parse_assignments
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.state.fleets import FleetRecord, Fleets
from dcx_runbook.state.journal import Journal
from dcx_runbook.statuses import RunStatus, TargetState


def rollback_fleet(
    fleet_run: str,
    options: Options,
    reporter: Reporter,
    *,
    var: Sequence[str] = (),
    env_file: Path | None = None,
    targets_path: Path | None = None,
    fleets: Fleets | None = None,
) -> Outcome:
    with _locked(fleet_run, fleets, targets_path) as (record, targets):
        journal = Journal()
        planned, missing = located(record, targets, env_file)
        work = {p.name: applied_runs(record.target(p.name), journal) for p in planned}
        _declared(journal, [r for runs in work.values() for r in runs], var)
        chosen = [p for p in planned if work[p.name]]
        recorder = Recorder(None if options.dry_run else record, reporter, fleet_run)
        names = ", ".join(p.name for p in chosen) or "none"
        question = f"Undo fleet run {fleet_run} on {len(chosen)} target(s) ({names})?"
        if not _confirmed(options, reporter, question, recorder):
            return _not_confirmed(recorder)
        with Signals().held() as signals:
            _said_started(recorder, record, [p.name for p in chosen], options.dry_run)
            refused_targets(recorder, missing)
            for p in planned:
                if not work[p.name]:
                    _left(recorder, p.name, TargetState.NOTHING_TO_UNDO, "nothing of it is applied")
            waves = Waves(chosen, undo_limits(_limits(record, 0), len(chosen)), canary=False)
            driver = drive(
                waves,
                recorder,
                lambda t, _: undo_work(work[t.name], t.url, options, given_vars(t, var), env_file),
                signals,
                new_ids=False,
                undo=True,
            )
            if not chosen:  # nothing to undo: the fleet's record keeps how it ended
                recorder.record = None
            done = RunStatus.ROLLED_BACK if chosen else RunStatus.NOTHING_TO_UNDO
            done = RunStatus.DRY_RUN if options.dry_run else done
            return finish_again(recorder, driver.interrupted, done)


def resume_fleet(
    fleet_run: str,
    options: Options,
    reporter: Reporter,
    *,
    var: Sequence[str] = (),
    env_file: Path | None = None,
    targets_path: Path | None = None,
    fleets: Fleets | None = None,
) -> Outcome:
    with _locked(fleet_run, fleets, targets_path) as (record, targets):
        loaded = _same_runbook(record)
        _not_undone(record)
        options = _as_recorded(record, options)
        recorder = Recorder(None if options.dry_run else record, reporter, fleet_run)
        found, missing = located(record, targets, env_file)
        todo, dead = _what_again(record, found, recorder)
        planned = plan(loaded.runbook, todo, var, env_file)
        names = ", ".join(p.name for p in planned) or "none"
        question = f"Resume fleet run {fleet_run}: run {len(planned)} target(s) ({names})?"
        if not _confirmed(options, reporter, question, recorder):
            return _not_confirmed(recorder)
        with Signals().held() as signals:
            _said_started(recorder, record, [p.name for p in planned], options.dry_run)
            refused_targets(recorder, missing)
            for name, state in list(recorder.states.items()):
                if state not in AGAIN:
                    _left(recorder, name, state, "left as it is")
            succeeded = any(s == TargetState.SUCCEEDED for s in recorder.states.values())
            limits = _limits(record, canary=0 if succeeded else None)
            waves = Waves(planned, limits, canary=not options.dry_run)
            driver = drive(
                waves,
                recorder,
                lambda t, run_id: _again(loaded, t, options, fleet_run, run_id, dead[t.name]),
                signals,
                new_ids=not options.dry_run,
            )
            recorder.not_reached(waves.not_reached(), waves.stopped or "not started")
            if _unwind_all(record, options, driver.interrupted, recorder):
                fresh = {p.name: p for p in planned}  # with the values resolved for this run
                every = [fresh.get(p.name, p) for p in found]
                unwind_succeeded(record, every, options, recorder, (limits, signals))
            done = RunStatus.DRY_RUN if options.dry_run else RunStatus.SUCCEEDED
            return finish_again(recorder, driver.interrupted, done)


@contextmanager
def _locked(
    fleet_run: str, fleets: Fleets | None, targets_path: Path | None
) -> Iterator[tuple[FleetRecord, Targets]]:
    """The fleet run's record, locked (refused while its driver or a child it started is at
    work), and its targets file: the recorded one, or the one given."""
    record = (fleets or Fleets()).load(fleet_run)
    record.lock()
    try:
        yield record, load_targets(targets_path or Path(record.data["targets_file"]))
    finally:
        record.unlock()


def _what_again(
    record: FleetRecord, found: Sequence[Planned], recorder: Recorder
) -> tuple[list[TargetSpec], dict[str, list[str]]]:
    """The targets to run again, and for each, its runs that died in the middle (undone
    first); every target's state as its runs' records have it."""
    journal = Journal()
    todo, dead = [], {}
    for p in found:
        state, dead_runs = truth(record.target(p.name), journal)
        recorder.states[p.name] = state
        dead[p.name] = dead_runs
        if state in AGAIN:
            todo.append(p.spec)
    return todo, dead


def _again(
    loaded: Loaded,
    target: Planned,
    options: Options,
    fleet_run: str,
    run_id: str | None,
    dead_runs: list[str],
) -> Work:
    """The target's run again; first, the undo of its runs that died in the middle."""
    run = run_work(loaded, target, options, fleet_run, run_id)
    if not dead_runs:
        return run
    undo = undo_work(dead_runs, target.url, options, given_vars(target, ()))

    def work(reporter: Reporter) -> Outcome:
        said = ", ".join(dead_runs)
        reporter.emit(Event("log", message=f"run {said} died in the middle: undoing it first"))
        undone = undo(reporter)
        if undone.exit_code != ExitCode.OK:
            return undone
        return run(reporter)

    return work


def _declared(journal: Journal, run_ids: Sequence[str], var: Sequence[str]) -> None:
    """A --var that none of the runs to undo declares is a typo: exit 2 before anything."""
    given = set(parse_assignments(var))
    declared: set[str] = set()
    for run_id in run_ids:
        spec = journal.load(run_id).data["runbook"].get("spec") or {}
        declared |= set(spec.get("vars") or {})
    unknown = sorted(given - declared)
    if unknown and run_ids:
        raise InvalidInput(
            f"--var {', '.join(unknown)}: no run to undo declares such a variable "
            f"(they have: {', '.join(sorted(declared)) or 'none'})"
        )


def _left(recorder: Recorder, name: str, state: TargetState, why: str) -> None:
    recorder.states[name] = state
    recorder.emit(Event("target_finished", status=state, message=why), name)


def _unwind_all(
    record: FleetRecord, options: Options, interrupted: bool, recorder: Recorder
) -> bool:
    """The fleet run was asked --unwind-all-on-failure, and a target failed (not Ctrl-C)."""
    asked = bool((record.data.get("options") or {}).get("unwind_all"))
    failed = any(state in FAILURES for state in recorder.states.values())
    return asked and failed and not options.dry_run and not interrupted


def _as_recorded(record: FleetRecord, options: Options) -> Options:
    """What each target's run was asked (--skip, --reason, the ledger's, --confirm,
    --break-glass): `resume` asks the same; only --dry-run and --yes are its own."""
    kept = record.data.get("options") or {}
    return replace(
        options,
        skip=tuple(kept.get("skip") or ()),
        reason=record.data.get("reason"),
        ledger=bool(kept.get("ledger", True)),
        ledger_schema=kept.get("ledger_schema"),
        confirm=tuple(kept.get("confirm") or ()),
        break_glass=bool(kept.get("break_glass", False)),
    )


def _not_undone(record: FleetRecord) -> None:
    """A fleet run that was undone (by `rollback FLEET_RUN` or --unwind-all-on-failure) is over:
    resuming it would apply the fix to some of its targets and leave the others undone."""
    undone = [t["name"] for t in record.data["targets"] if t["state"] == TargetState.ROLLED_BACK]
    if undone:
        raise Refused(
            f"fleet run {record.fleet_run} was rolled back on {', '.join(undone)}: it is over; "
            "start a new fleet run instead. Nothing was changed"
        )


def _same_runbook(record: FleetRecord) -> Loaded:
    """The runbook the fleet ran, unchanged: resuming with another would mix two fixes."""
    ref = record.data["runbook"]
    loaded = load(ref["path"])
    if loaded.sha256 != ref["sha256"]:
        raise Refused(
            f"{ref['path']} changed since fleet run {record.fleet_run} started: resume runs the "
            "same runbook on the rest; start a new fleet run instead. Nothing was changed"
        )
    return loaded


def _limits(record: FleetRecord, canary: int | None) -> Limits:
    kept = record.data.get("options") or {}
    limits = Limits(
        canary=int(kept.get("canary", 1)),
        concurrency=int(kept.get("concurrency", 1)),
        max_failures=int(kept.get("max_failures", 0)),
        per_server=kept.get("per_server"),
    )
    return limits if canary is None else replace(limits, canary=canary)


def _confirmed(options: Options, reporter: Reporter, question: str, recorder: Recorder) -> bool:
    return options.dry_run or options.yes or reporter.confirm(question)


def _not_confirmed(recorder: Recorder) -> Outcome:
    message = "not confirmed; nothing was changed (without a terminal, pass --yes)"
    outcome = Outcome(ExitCode.REFUSED, RunStatus.REFUSED, recorder.fleet_run, message)
    recorder.record = None  # the fleet's record stays as it was
    recorder.finish(RunStatus.REFUSED, outcome)
    return outcome


def _said_started(recorder: Recorder, record: FleetRecord, names: list[str], dry_run: bool) -> None:
    runbook = record.data["runbook"]["name"]
    recorder.emit(
        Event(
            "fleet_started",
            message=f"{runbook}: fleet run {record.fleet_run}, {len(names)} target(s) to do",
            detail={
                "fleet_run": record.fleet_run,
                "runbook": runbook,
                "dry_run": dry_run,
                "targets": [t["name"] for t in record.data["targets"]],
            },
        )
    )
