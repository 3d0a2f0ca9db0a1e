"""Plan files (docs/approvals.md): `run --dry-run --plan-out PLAN.json` writes what the dry run
found; `run --plan PLAN.json` checks all of it again before the first change and refuses (exit 4),
naming what differs, when the runbook, a variable, the skipped steps, the target, the catalog of a
relation the runbook names, the ledger's head or a file it edits is not as reviewed."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcx_runbook.clock import now
from dcx_runbook.engine.ledger import planned_paths
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.filesystem import sha256, write_atomic
from dcx_runbook.format import plans
from dcx_runbook.format.loader import Loaded
from dcx_runbook.format.model import Runbook
from dcx_runbook.format.variables import Resolved
from dcx_runbook.reporters.base import Choices, Event, Reporter
from dcx_runbook.state.entries import operator
from dcx_runbook.statuses import OperationStatus
from dcx_runbook.target import catalog

KEY_FILE = "plan.key"  # in the state directory; $DCX_PLAN_KEY instead, to share it


class Keeping:
    """A reporter that keeps a copy of every event it passes on: the dry run's findings."""

    def __init__(self, inner: Reporter):
        self.inner, self.events = inner, list[Event]()

    def emit(self, event: Event) -> None:
        self.events.append(event)
        self.inner.emit(event)

    def confirm(self, question: str) -> bool:
        return self.inner.confirm(question)

    def can_ask(self) -> bool:
        return self.inner.can_ask()

    def choose(self, question: str, choices: Choices, body: str) -> str | None:
        return self.inner.choose(question, choices, body)

    def close(self) -> None:
        self.inner.close()


def plan_key(state: Path, *, create: bool) -> bytes | None:
    """The key of the plans' keyed hashes: $DCX_PLAN_KEY, else this state directory's key file
    (made, 0600, when a plan is first written). None when there is none to check with."""
    given = os.environ.get("DCX_PLAN_KEY")
    if given:
        return given.encode()
    path = state / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
    key = secrets.token_hex(32).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, key, 0o600)
    return key


def keyed(key: bytes, value: str) -> str:
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def planned_vars(resolved: Resolved, key: bytes) -> dict[str, Any]:
    """Public values as they are; each secret as its keyed hash, never its value."""
    return {
        name: keyed(key, value) if name in resolved.secret and value is not None else value
        for name, value in sorted(resolved.values.items())
    }


def sql_texts(runbook: Runbook) -> Iterator[str]:
    """Every SQL text of the runbook: checks, actions, rollbacks, preflight, applies_when."""
    specs: list[Any] = [*runbook.preflight, *runbook.applies_when]
    for step in runbook.steps:
        specs += [*step.done_when, *step.precheck, *step.action, *step.verify]
        if step.rollback is not None:
            specs += [*step.rollback.precheck, *step.rollback.action, *step.rollback.verify]
    for spec in specs:
        for name in type(spec).sql_fields:
            value = getattr(spec, name, None)
            yield from [value] if isinstance(value, str) else (value or [])


def files_of(
    runbook: Runbook, values: Mapping[str, Any], skip: tuple[str, ...]
) -> dict[str, str | None]:
    """The sha256 of each file the steps that run would edit (None: not there)."""
    out: dict[str, str | None] = {}
    for step in runbook.steps:
        if step.id in skip:
            continue
        for path in planned_paths(step, values):
            try:
                out[path] = sha256(Path(path).read_bytes())
            except OSError:
                out[path] = None
    return out


@dataclass
class Planning:
    """What `--plan-out` (a dry run) or `--plan` (a run) brings: the plan, the runbook and values
    it is about, this machine's state directory (for the key)."""

    loaded: Loaded
    resolved: Resolved
    state: Path
    out: Path | None = None  # --plan-out
    kept: Keeping | None = None  # the dry run's events, for --plan-out
    given: plans.Plan | None = None  # --plan
    given_bytes: bytes = b""
    given_path: Path | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.given_bytes).hexdigest()


def write(
    rt: Runtime,
    planning: Planning,
    target: Mapping[str, Any],
    schema: str | None,
    skip: tuple[str, ...],
) -> str:
    """The dry run's plan, written atomically; returns what to say of it."""
    assert planning.out is not None and planning.kept is not None
    loaded = planning.loaded
    plan = plans.Plan(
        created_at=now(),
        created_by=dict(operator()),
        runbook=plans.PlannedRunbook(
            name=loaded.runbook.name, path=str(loaded.path), sha256=loaded.sha256
        ),
        vars=planned_vars(planning.resolved, plan_key(planning.state, create=True) or b""),
        secret_vars=sorted(planning.resolved.secret),
        skip=sorted(skip),
        target=target_of(target),
        files=files_of(rt.runbook, rt.values, skip),
        **catalog_of(rt, schema),
        **from_events(planning.kept.events),
    )
    data = plans.dump(plan)
    write_atomic(planning.out, data, 0o644)
    return f"plan written to {planning.out} (sha256 {hashlib.sha256(data).hexdigest()})"


def target_of(target: Mapping[str, Any]) -> plans.PlannedTarget | None:
    if not target:
        return None
    return plans.PlannedTarget(
        url=str(target.get("url", "")),
        database=str(target["database"]),
        system_identifier=target.get("system_identifier"),
        server_version=target.get("server_version"),
        database_oid=target.get("database_oid"),
    )


def catalog_of(rt: Runtime, schema: str | None) -> dict[str, Any]:
    """The fingerprints of the relations the runbook names, and the ledger's head."""
    if rt.conn is None:
        return {}
    names = catalog.names_in(sql_texts(rt.runbook))
    return {
        "catalog": catalog.fingerprints(rt.conn, names),
        "ledger": catalog.ledger_head(rt.conn, schema) if schema else None,
    }


def from_events(events: list[Event]) -> dict[str, Any]:
    """The dry run's checks, lint findings and planned effects, from its events."""
    checks, effects, lint = [], [], []
    for e in events:
        if e.type == "check":
            checks.append(
                plans.PlannedCheck(step=e.step, phase=e.phase, status=e.status, message=e.message)
            )
        elif e.type == "operation" and e.status == OperationStatus.PLANNED:
            effects.append(plans.PlannedEffect(step=e.step, phase=e.phase, effect=e.message or ""))
        elif e.type == "finding":
            lint.append({"step": e.step, "level": e.status, "message": e.message, **e.detail})
    return {"checks": checks, "effects": effects, "lint": lint}
