"""Rule `no-transaction-block`: statements PostgreSQL refuses inside a transaction block (CREATE
INDEX CONCURRENTLY, VACUUM, ...), found in a step's sql where the step would send them in one.
One of the whole-runbook rules of `semantics`, in a module of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dcx_runbook.kinds import OPERATIONS, with_trait
from dcx_runbook.kinds.sql import refused_in_transaction, statements

Loc = tuple[Any, ...]
# Kinds whose operations run inside the step's transaction, and the fields holding their SQL text.
_TRANSACTIONAL = {k: OPERATIONS[k].op_model.sql_fields for k in with_trait("transactional")}

NO_TRANSACTION_BLOCK = "no-transaction-block"


def transaction_blocks(steps: list[Any]) -> list[tuple[Loc, str]]:
    """Statements PostgreSQL refuses inside a transaction block (CREATE INDEX CONCURRENTLY,
    VACUUM, ...) where the step would send them in one: found by `validate`, not halfway
    through a run. A step's rollback action runs in the step's transaction mode too."""
    problems: list[tuple[Loc, str]] = []
    for i, step in enumerate(steps):
        if isinstance(step, dict):
            in_tx = step.get("transaction", True) is True
            rollback = step.get("rollback")
            undo_tx = rollback.get("transaction") if isinstance(rollback, dict) else None
            for loc, text in _sql_operations(step, ("steps", i)):
                tx = undo_tx if "rollback" in loc and isinstance(undo_tx, bool) else in_tx
                problems += _refused(loc, text, tx)
    return problems


def _sql_operations(step: dict[str, Any], loc: Loc) -> Iterator[tuple[Loc, str]]:
    """(location, text) of each sql operation of the step's action and rollback action."""
    rollback = step.get("rollback")
    lists: list[tuple[Loc, Any]] = [(("action",), step.get("action"))]
    if isinstance(rollback, dict):
        lists.append((("rollback", "action"), rollback.get("action")))
    for where, ops in lists:
        for j, op in enumerate(ops if isinstance(ops, list) else []):
            fields = _TRANSACTIONAL.get(str(op.get("kind"))) if isinstance(op, dict) else None
            for field in fields or ():
                if isinstance(op.get(field), str):
                    yield (*loc, *where, j, field), op[field]


def _refused(loc: Loc, text: str, in_tx: bool) -> list[tuple[Loc, str]]:
    """In a `transaction: true` step every such statement is refused; in a `transaction: false`
    one only a statement sent together with others (PostgreSQL runs several statements of one
    query in an implicit transaction block)."""
    found = refused_in_transaction(text)
    count = len(statements(text)) if found else 0
    if not in_tx and count < 2:
        return []
    problems = []
    for index, name in found:
        which = f" (statement {index + 1} of {count})" if count > 1 else ""
        alone = " and the statement in a sql operation of its own" if count > 1 else ""
        if in_tx and "rollback" in loc:
            mode = "this step runs its rollback's sql in one"
            fix = f"expected `transaction: false` on the rollback{alone}"
        elif in_tx:
            mode = "this step runs its sql (action and rollback) in one"
            fix = f"expected `transaction: false` on the step{alone}"
        else:
            mode = "statements sent together run in one"
            fix = "expected the statement in a sql operation of its own"
        problems.append(
            (
                loc,
                f"{NO_TRANSACTION_BLOCK}: {name}{which} can't run inside a transaction block, "
                f"and {mode}: {fix}",
            )
        )
    return problems
