"""`run --plan PLAN.json` (docs/approvals.md): before the first change, everything the plan
pinned is checked again, and the run is refused (exit 4), naming what differs, when the runbook,
a variable, the skipped steps, the target's identity, the catalog of a relation the runbook
names, the ledger's head or a file it edits is not as reviewed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcx_runbook.engine.options import Options
from dcx_runbook.engine.plans import (
    Keeping,
    Planning,
    catalog_of,
    files_of,
    keyed,
    plan_key,
    target_of,
)
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.errors import InvalidInput, Refused
from dcx_runbook.format import plans
from dcx_runbook.format.loader import Loaded
from dcx_runbook.format.variables import Resolved
from dcx_runbook.reporters.base import Reporter


def planning_for(
    loaded: Loaded, resolved: Resolved, options: Options, state: Path, reporter: Reporter
) -> Planning | None:
    """What --plan-out or --plan brings to this run (the plan read and checked for shape)."""
    if options.plan_out is not None:
        if not options.dry_run:
            raise InvalidInput("--plan-out: only with --dry-run (a plan is what a dry run found)")
        return Planning(loaded, resolved, state, Path(options.plan_out), Keeping(reporter))
    if options.plan is None:
        return None
    if options.dry_run:
        raise InvalidInput("--plan: runs a reviewed plan; with --dry-run, make one (--plan-out)")
    given, data = plans.read(Path(options.plan))
    return Planning(
        loaded, resolved, state, given=given, given_bytes=data, given_path=Path(options.plan)
    )


def before_target(planning: Planning, skip: tuple[str, ...]) -> list[str]:
    """What differs from the plan before anything connects: the runbook, values, skips."""
    given, loaded = planning.given, planning.loaded
    assert given is not None
    diffs = []
    if given.runbook.sha256 != loaded.sha256:
        diffs.append(
            f"runbook {loaded.runbook.name}: {loaded.path} is not the file reviewed (sha256 "
            f"{given.runbook.sha256[:12]} in the plan, {loaded.sha256[:12]} now)"
        )
    diffs += _vars(given.vars, planning.resolved, plan_key(planning.state, create=False))
    if sorted(skip) != given.skip:
        planned, now_ = ", ".join(given.skip) or "none", ", ".join(sorted(skip)) or "none"
        diffs.append(f"--skip: {planned} in the plan, {now_} now")
    return diffs


def _vars(planned: Mapping[str, Any], resolved: Resolved, key: bytes | None) -> list[str]:
    diffs = []
    for name in sorted(set(planned) | set(resolved.values)):
        value = resolved.values.get(name)
        if name in resolved.secret and value is not None:
            if key is None:
                diffs.append(
                    f"variable {name}: a secret, and this machine has no plan key to compare it "
                    "with (a plan made elsewhere compares secrets only with the same "
                    "$DCX_PLAN_KEY on both machines)"
                )
                continue
            if planned.get(name) != keyed(key, value):
                diffs.append(f"variable {name}: a secret, not the value planned")
        elif planned.get(name, _ABSENT) != value:
            was = planned.get(name, _ABSENT)
            diffs.append(f"variable {name}: {_shown(was)} in the plan, {_shown(value)} now")
    return diffs


_ABSENT = object()


def _shown(value: Any) -> str:
    return "absent" if value is _ABSENT else repr(value)


def on_target(
    rt: Runtime, planning: Planning, target: Mapping[str, Any], schema: str | None
) -> list[str]:
    """What differs from the plan on the target: identity, catalog, ledger head, files."""
    given = planning.given
    assert given is not None
    diffs = []
    planned, now_ = given.target, target_of(target)
    if planned is not None and now_ is not None:
        for field in ("database", "system_identifier", "database_oid", "server_version"):
            was, is_ = getattr(planned, field), getattr(now_, field)
            if was != is_:
                diffs.append(f"target {field}: {was} in the plan, {is_} now")
    found = catalog_of(rt, schema)
    fingerprints = found.get("catalog", {})
    for relation in sorted(set(given.catalog) | set(fingerprints)):
        if relation not in fingerprints:
            diffs.append(f"relation {relation}: gone since the plan")
        elif relation not in given.catalog:
            diffs.append(f"relation {relation}: appeared since the plan")
        elif given.catalog[relation] != fingerprints[relation]:
            diffs.append(
                f"relation {relation}: its columns, indexes or constraints changed since the plan"
            )
    if found and found.get("ledger") != given.ledger:
        was, is_ = _run(given.ledger), _run(found.get("ledger"))
        diffs.append(f"the ledger's newest run: {was} in the plan, {is_} now")
    files = files_of(rt.runbook, rt.values, tuple(given.skip))
    diffs += [
        f"file {p}: changed since the plan" for p in sorted(files) if files[p] != given.files.get(p)
    ]
    return diffs


def _run(head: Mapping[str, Any] | None) -> str:
    if not head:
        return "none"
    undos = head.get("rollbacks")
    return (
        f"{head.get('run_id')} ({head.get('runbook')}, {head.get('status')}, {undos} rollback(s))"
    )


def check_before(planning: Planning, skip: tuple[str, ...]) -> None:
    """Refused (exit 4) when the runbook, a value or the skipped steps are not as planned."""
    if planning.given is not None and (diffs := before_target(planning, skip)):
        raise Refused(refusal(planning.given_path, diffs))


def recheck(rt: Runtime, planning: Planning, target: Mapping[str, Any], schema: str | None) -> None:
    """Refused (exit 4) when the target is not as planned."""
    if planning.given is not None and (diffs := on_target(rt, planning, target, schema)):
        raise Refused(refusal(planning.given_path, diffs))


def refusal(path: Path | None, diffs: list[str]) -> str:
    return (
        f"plan {path}: not what is here now, so it is not run: "
        + "; ".join(diffs)
        + ". Make a new plan (run --dry-run --plan-out) and have it reviewed again"
    )
