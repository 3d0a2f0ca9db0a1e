"""The fleet commands' library (docs/fleet.md): a runbook across the targets of a targets
file, `resume` and `rollback` of a fleet run, `status --targets`, the fleet runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcx_runbook.engine.options import Options, Outcome
from dcx_runbook.errors import InvalidInput
from dcx_runbook.format.loader import load

if TYPE_CHECKING:
    from dcx_runbook.fleet.run import FleetOptions
    from dcx_runbook.reporters.base import Reporter


def run_fleet(
    name: str,
    *,
    reporter: Reporter,
    targets_file: Path | None,
    target_names: Sequence[str] = (),
    selectors: Sequence[str] = (),
    var: Sequence[str] = (),
    env_file: Path | None = None,
    options: Options | None = None,
    fleet: FleetOptions | None = None,
    runbooks_dirs: Sequence[Path] = (),
) -> Outcome:
    """One runbook across the targets of a targets file, in waves (docs/fleet.md)."""
    from dcx_runbook.fleet.plan import plan
    from dcx_runbook.fleet.run import FleetOptions, run_fleet
    from dcx_runbook.format.targets import select

    loaded = load(name, runbooks_dirs)
    if loaded.runbook.target is None:
        raise InvalidInput(
            f"{loaded.runbook.name} has no database target: a fleet has nothing to run it on"
        )
    steps = [s.id for s in loaded.runbook.steps]
    unknown = [s for s in (options.skip if options else ()) if s not in steps]
    if unknown:  # said once, up front: not once per target by each target's run
        raise InvalidInput(f"--skip {', '.join(unknown)}: no such step (steps: {', '.join(steps)})")
    targets = _targets(targets_file, loaded.path)
    fleet = fleet or FleetOptions()
    planned = plan(
        loaded.runbook, select(targets, target_names, selectors), var, env_file, fleet.order
    )
    _approvals(loaded.runbook, planned, options or Options())
    _persons(loaded.runbook, options or Options())
    return run_fleet(
        loaded, str(targets.path.resolve()), planned, options or Options(), fleet, reporter
    )


def _approvals(runbook: Any, planned: Sequence[Any], options: Options) -> None:
    """Approvals are of one target's plan: a fleet with a target (or a runbook) that needs them
    is refused before anything starts, unless --break-glass (each target's run flagged)."""
    from dcx_runbook.engine.authority import check_break_glass, required
    from dcx_runbook.errors import Refused

    check_break_glass(options)
    if options.dry_run or options.break_glass:
        return
    needing = [
        p.name
        for p in planned
        if required(runbook, replace(options, target_requires=p.spec.requires_approval))
    ]
    if needing:
        raise Refused(
            f"approvals needed on {', '.join(needing)}: a fleet runs no plan file; run each from "
            "an approved plan (run --database-url URL --plan PLAN.json), or --break-glass --reason"
        )


def _persons(runbook: Any, options: Options) -> None:
    """A fleet's targets run in child processes nobody can answer: a manual step neither
    confirmed (--confirm) nor skipped refuses the fleet before anything starts."""
    from dcx_runbook.engine.person import check_options, manual_steps
    from dcx_runbook.errors import Refused

    check_options(runbook, options)
    waiting = [s.id for s in manual_steps(runbook) if s.id not in (*options.skip, *options.confirm)]
    if waiting and not options.dry_run:
        raise Refused(
            f"{', '.join(waiting)}: a person's step, and a fleet's targets have no terminal to "
            f"ask: once done, confirm with {' '.join('--confirm ' + s for s in waiting)}, or "
            "leave out with --skip"
        )


def is_fleet_run(run_id: str | None) -> bool:
    """Whether a run id names a fleet run (fleet-...)."""
    from dcx_runbook.state.fleets import is_fleet_id

    return is_fleet_id(run_id)


def fleet_options(
    *,
    canary: int = 1,
    concurrency: int = 1,
    max_failures: int = 0,
    per_server: int | None = None,
    order: str = "listed",
    unwind_all: bool = False,
) -> FleetOptions:
    """How a fleet runs: its waves, its failure budget, its order."""
    from dcx_runbook.fleet.plan import Order
    from dcx_runbook.fleet.run import FleetOptions
    from dcx_runbook.fleet.waves import Limits

    limits = Limits(canary, concurrency, max_failures, per_server)
    return FleetOptions(limits, Order(order), unwind_all)


def fleet_again(
    command: str,
    fleet_run: str,
    *,
    reporter: Reporter,
    options: Options | None = None,
    var: Sequence[str] = (),
    env_file: Path | None = None,
    targets_file: Path | None = None,
) -> Outcome:
    """`resume FLEET_RUN` or `rollback FLEET_RUN`."""
    from dcx_runbook.fleet.commands import resume_fleet, rollback_fleet
    from dcx_runbook.format.variables import parse_assignments

    parse_assignments(var)  # a malformed --var is exit 2 before anything starts

    act = resume_fleet if command == "resume" else rollback_fleet
    return act(
        fleet_run,
        options or Options(),
        reporter,
        var=var,
        env_file=env_file,
        targets_path=targets_file,
    )


def targets_status(
    *,
    targets_file: Path | None,
    target_names: Sequence[str] = (),
    selectors: Sequence[str] = (),
    var: Sequence[str] = (),
    env_file: Path | None = None,
    ledger_schema: str | None = None,
) -> list[dict[str, Any]]:
    """`status --targets`: every chosen target's truth, read-only."""
    from dcx_runbook.fleet.plan import Planned, server_of
    from dcx_runbook.fleet.status import targets_status as status_
    from dcx_runbook.format.targets import select, url_of
    from dcx_runbook.format.variables import read_env_file

    targets = _targets(targets_file, None)
    file_values = read_env_file(env_file) if env_file else {}
    environ = {**os.environ, **{k: v for k, v in file_values.items() if v is not None}}
    chosen = select(targets, target_names, selectors)
    planned, unknown = [], {}
    for spec in chosen:
        try:
            url = url_of(spec, environ)
            server = server_of(url, spec.system_identifier, spec.name)
        except InvalidInput as exc:  # read-only: a row saying why, not the end of the view
            unknown[spec.name] = {"target": spec.name, "expected_database": spec.database,
                                  "error": str(exc)}  # fmt: skip
            continue
        planned.append(Planned(spec, url, server, None))
    from dcx_runbook.state.journal import Journal

    rows = {r["target"]: r for r in status_(planned, ledger_schema, Journal(), var, env_file)}
    return [rows.get(t.name) or unknown[t.name] for t in chosen]


def fleets(limit: int | None = None, runbook: str | None = None) -> list[dict[str, Any]]:
    """This machine's fleet runs (of `runbook`), newest first, each with its targets' states."""
    from dcx_runbook.state.fleets import Fleets

    return Fleets().records(limit, runbook)


def _targets(given: Path | None, runbook_path: Path | None) -> Any:
    from dcx_runbook.format.targets import default_path, load_targets

    path = given or (default_path(runbook_path) if runbook_path else None)
    if path is None:
        raise InvalidInput(
            "no targets file: give --targets FILE"
            + (" (or put NAME.targets.yaml next to the runbook)" if runbook_path else "")
        )
    return load_targets(path)
