"""One runbook across many targets (docs/fleet.md): confirmed once, recorded as one fleet run
with one child run per target, driven in waves; each target's run is a whole run of its own,
which unwinds itself when it fails. With --unwind-all-on-failure, a failure anywhere also undoes
the targets that succeeded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dcx_runbook.engine.options import Options, Outcome
from dcx_runbook.engine.run import run as engine_run
from dcx_runbook.errors import ExitCode, JournalError
from dcx_runbook.fleet.driver import Driver, Signals
from dcx_runbook.fleet.plan import Order, Planned
from dcx_runbook.fleet.progress import Recorder, conclude
from dcx_runbook.fleet.waves import FAILURES, Limits, Waves
from dcx_runbook.fleet.worker import Child, Work, spawn
from dcx_runbook.format.loader import Loaded
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.secrets import Masker
from dcx_runbook.state.fleets import Fleets, new_fleet, new_fleet_id
from dcx_runbook.state.journal import Journal, new_run_id
from dcx_runbook.statuses import RunStatus, TargetState


@dataclass(frozen=True)
class FleetOptions:
    limits: Limits = Limits()
    order: Order = Order.listed
    unwind_all: bool = False


def run_fleet(
    loaded: Loaded,
    targets_file: str,
    planned: Sequence[Planned],
    options: Options,
    fleet: FleetOptions,
    reporter: Reporter,
    fleets: Fleets | None = None,
) -> Outcome:
    dry = options.dry_run
    fleet_run = None if dry else new_fleet_id()
    if not dry and not (options.yes or reporter.confirm(_question(loaded, planned, fleet))):
        return _refused(
            reporter, "not confirmed; nothing was changed (without a terminal, pass --yes)"
        )
    with Signals().held() as signals:  # from the record's creation to its last write
        record = None
        if fleet_run is not None:
            data = _new_record(loaded, targets_file, planned, options, fleet, fleet_run)
            try:
                record = (fleets or Fleets()).create(data)
            except JournalError as exc:  # nothing has started anywhere: a refusal
                return _refused(reporter, f"{exc}: nothing was changed")
        try:
            recorder = Recorder(record, reporter, fleet_run)
            return _drive_run(loaded, planned, options, fleet, recorder, signals)
        finally:
            if record is not None:
                record.unlock()


def _drive_run(
    loaded: Loaded,
    planned: Sequence[Planned],
    options: Options,
    fleet: FleetOptions,
    recorder: Recorder,
    signals: Signals,
) -> Outcome:
    dry, fleet_run = options.dry_run, recorder.fleet_run
    recorder.emit(_started_event(loaded, planned, fleet, fleet_run, dry))
    waves = Waves(planned, fleet.limits, canary=not dry)
    driver = drive(
        waves,
        recorder,
        lambda target, run_id: run_work(loaded, target, options, fleet_run, run_id),
        signals,
        new_ids=not dry,
    )
    recorder.not_reached(waves.not_reached(), waves.stopped or "not started")
    # Ctrl-C leaves the finished targets as they are, whatever else was asked.
    if fleet.unwind_all and not dry and not driver.interrupted and _any_failed(recorder):
        from dcx_runbook.fleet.again import unwind_succeeded

        unwind_succeeded(recorder.record, planned, options, recorder, (fleet.limits, signals))
    done = RunStatus.DRY_RUN if dry else RunStatus.SUCCEEDED
    status, code, said = conclude(recorder.states, driver.interrupted, done)
    outcome = Outcome(code, status, fleet_run, _closing(said, driver.interrupted, recorder))
    recorder.finish(status, outcome)
    return outcome


def _refused(reporter: Reporter, message: str) -> Outcome:
    outcome = Outcome(ExitCode.REFUSED, RunStatus.REFUSED, None, message)
    Recorder(None, reporter, None).finish(RunStatus.REFUSED, outcome)
    return outcome


def _new_record(
    loaded: Loaded,
    targets_file: str,
    planned: Sequence[Planned],
    options: Options,
    fleet: FleetOptions,
    fleet_run: str,
) -> dict[str, Any]:
    runbook = loaded.runbook
    ref = {"name": runbook.name, "path": str(loaded.path.resolve()), "sha256": loaded.sha256}
    settings = {
        **fleet.limits.__dict__,
        "order": fleet.order,
        "unwind_all": fleet.unwind_all,
        # What each target's run was asked: `resume` asks the same.
        "skip": list(options.skip),
        "ledger": options.ledger,
        "ledger_schema": options.ledger_schema,
        "confirm": list(options.confirm),  # manual steps confirmed done
        "break_glass": options.break_glass,
    }
    data = new_fleet(fleet_run, ref, targets_file, settings, [p.describe() for p in planned])
    data["reason"] = _masker(planned)(options.reason) if options.reason else None
    return data


def drive(
    waves: Waves,
    recorder: Recorder,
    work_for: Callable[[Planned, str | None], Work],
    signals: Signals,
    *,
    new_ids: bool,
    undo: bool = False,
) -> Driver:
    """Start each target's work as the waves allow, until all that started have ended."""

    def start(target: Planned, inherited: list[int]) -> Child:
        run_id = new_run_id() if new_ids else None
        recorder.started(target, run_id)  # in the record before the child exists
        try:
            return spawn(target, run_id, work_for(target, run_id), inherited, undo=undo)
        except OSError:
            if run_id is not None:
                recorder.forget(target.name, run_id)
            raise

    driver = Driver(waves, start, recorder, signals)
    driver.run()
    return driver


def run_work(
    loaded: Loaded, target: Planned, options: Options, fleet_run: str | None, run_id: str | None
) -> Work:
    child_options = replace(
        options,
        yes=True,  # the fleet was confirmed as a whole
        run_id=run_id,
        fleet=(fleet_run, target.name) if fleet_run else None,
        expect_database=target.spec.database,
        expect_system=target.spec.system_identifier,
        target_requires=target.spec.requires_approval,
    )
    resolved = target.resolved
    assert resolved is not None  # planned to run: its values were resolved
    return lambda reporter: engine_run(loaded, resolved, child_options, reporter, Journal())


def _masker(planned: Sequence[Planned]) -> Masker:
    """Every target's URL and secret values: what the fleet's own record must never hold."""
    masker = Masker([p.url for p in planned])
    for p in planned:
        if p.resolved is not None:
            for name in p.resolved.secret:
                masker.add(p.resolved.values.get(name))
    return masker


def _any_failed(recorder: Recorder) -> bool:
    return any(state in FAILURES for state in recorder.states.values())


def _closing(said: str, interrupted: bool, recorder: Recorder) -> str:
    if not interrupted:
        return f"targets: {said}"
    intact = sorted(n for n, s in recorder.states.items() if s == TargetState.SUCCEEDED)
    kept = f"; finished and left applied: {', '.join(intact)}" if intact else ""
    return f"stopped by Ctrl-C: targets: {said}{kept}"


def _question(loaded: Loaded, planned: Sequence[Planned], fleet: FleetOptions) -> str:
    names = ", ".join(p.name for p in planned[:10]) + (" …" if len(planned) > 10 else "")
    limits = fleet.limits
    waves = (
        f"canary {limits.canary}, then {limits.concurrency} at a time"
        + (f", at most {limits.per_server} per server" if limits.per_server else "")
        + f"; stop after {limits.max_failures + 1} failure(s)"
    )
    return f"Run {loaded.runbook.name} on {len(planned)} target(s) ({names}): {waves}?"


def _started_event(
    loaded: Loaded,
    planned: Sequence[Planned],
    fleet: FleetOptions,
    fleet_run: str | None,
    dry: bool,
) -> Event:
    runbook = loaded.runbook
    return Event(
        "fleet_started",
        message=f"{runbook.name}: {runbook.title} on {len(planned)} target(s)",
        detail={
            "fleet_run": fleet_run,
            "runbook": runbook.name,
            "dry_run": dry,
            "targets": [p.name for p in planned],
            **fleet.limits.__dict__,
            "order": fleet.order,
            "unwind_all_on_failure": fleet.unwind_all,
        },
    )
