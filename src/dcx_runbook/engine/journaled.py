"""Runtimes for journaled runs: each run's own variables, captured values and record, the
rollback's one connection shared between them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dcx_runbook.engine.person import Person
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.engine.scope import Pending
from dcx_runbook.engine.session import Options, runtime_for
from dcx_runbook.format.model import Runbook
from dcx_runbook.format.variables import Resolved
from dcx_runbook.reporters.base import Reporter
from dcx_runbook.state.journal import RunRecord

# The variables of a journaled run, resolved again: its public values, then what the operator
# gives now (secrets are never journaled: the URL must be given again).
Resolve = Callable[[RunRecord, Runbook], Resolved]


def runtime_of(
    run: Pending,
    resolved: Resolved,
    reporter: Reporter,
    options: Options,
    *,
    expected_database: str | None = None,
    guard: bool = True,
) -> Runtime:
    """The runtime of a rollback of `run`: its values with what its checks captured."""
    captured = dict(run.record.data.get("captured") or {})  # by preflight checks
    for entry in run.record.data["steps"]:
        captured.update(entry.get("captured", {}))
    rt = runtime_for(
        run.runbook,
        resolved,
        reporter,
        run.run_id,
        dry_run=options.dry_run,
        role="rollback",
        expected_database=expected_database,
        guard=guard,
        captured=captured,
    )
    rt.person = Person(rt, undos=options.confirm)  # --confirm of a rollback: undone by hand
    return rt


@contextmanager
def borrowed(owner: Runtime, run: Pending, resolve: Resolve, options: Options) -> Iterator[Runtime]:
    """A run's own runtime (its variables, captured values, record) on the rollback's
    connection."""
    rt = runtime_of(run, resolve(run.record, run.runbook), owner.reporter, options)
    rt.conn = owner.conn
    try:
        yield rt
    finally:
        rt.conn = None  # the owner's: closed by it
        rt.close()
