"""The registry of step kinds: adding a kind is adding a module and an entry here. Everything
else (the model's unions, validation, the engine, the dry run, rehearsals) asks the registry and
the kinds' traits, never a kind's name."""

from __future__ import annotations

import functools
import operator
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from dcx_runbook.kinds import command, env_file, file, manual, shell, sql
from dcx_runbook.kinds.base import CheckKind, CheckSpec, OperationKind, OpSpec, Traits

CHECKS: dict[str, CheckKind] = {
    kind.name: kind for kind in (sql.KIND, shell.KIND, env_file.KIND, file.KIND, command.KIND)
}
OPERATIONS: dict[str, OperationKind] = {
    kind.name: kind for kind in (sql.KIND, shell.KIND, env_file.KIND, file.KIND, manual.KIND)
}
CHECK_KINDS = sorted(CHECKS)
OPERATION_KINDS = sorted(OPERATIONS)

if TYPE_CHECKING:
    Check = CheckSpec
    Operation = OpSpec
else:  # the discriminated unions of every registered model, as pydantic validates them
    Check = Annotated[
        functools.reduce(operator.or_, (k.check_model for k in CHECKS.values())),
        Field(discriminator="kind"),
    ]
    Operation = Annotated[
        functools.reduce(operator.or_, (k.op_model for k in OPERATIONS.values())),
        Field(discriminator="kind"),
    ]


def traits(kind: str) -> Traits:
    """The traits of a kind by name (a check kind or an operation kind)."""
    found = OPERATIONS.get(kind) or CHECKS.get(kind)
    return found.traits if found is not None else Traits()


def with_trait(name: str) -> frozenset[str]:
    """The names of the kinds that have trait `name` (validation works on raw YAML data)."""
    every: dict[str, CheckKind | OperationKind] = {**CHECKS, **OPERATIONS}
    return frozenset(k for k, v in every.items() if getattr(v.traits, name))


def path_of(spec: Any) -> str | None:
    """The file a check or operation reads or writes, unrendered (None for other kinds)."""
    field = traits(spec.kind).path_field
    value = getattr(spec, field, None) if field else None
    return value if isinstance(value, str) else None
