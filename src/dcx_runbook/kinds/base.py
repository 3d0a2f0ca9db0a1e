"""What every step kind provides, and what the engine gives it.

A kind turns a spec (validated at load time, still holding `${var}` references) into effects the
engine either executes or previews: the dry run and the real run come from the same plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from dcx_runbook.secrets import Masker

if TYPE_CHECKING:
    import psycopg


class Spec(BaseModel):
    """Base of every check and operation spec: strict, immutable, typo-proof."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str | None = Field(default=None, description="A short description shown in output.")

    # Fields whose strings are SQL text: `${x}` there becomes a bound parameter, never text.
    sql_fields: ClassVar[tuple[str, ...]] = ()


class CheckSpec(Spec):
    message: str | None = Field(
        default=None,
        description="Shown when the check fails, to say what it means and what to do; "
        "${value} is the value found.",
    )
    needed_by: list[str] | None = Field(
        default=None,
        description="Preflight only: step ids that need this check; it is not run when all of "
        "them are skipped.",
    )


class OpSpec(Spec):
    pass


Phase = Literal[
    "preflight",
    "done_when",
    "precheck",
    "action",
    "verify",
    "rollback.precheck",
    "rollback.action",
    "rollback.verify",
]


@dataclass
class Context:
    """Everything a kind may use while planning or executing. Built by the engine."""

    values: dict[str, Any]
    masker: Masker
    conn: psycopg.Connection[Any] | None = None
    dry_run: bool = False
    # In a dry run, planned file contents stand in for the real files (path -> bytes or None).
    overlay: dict[Path, bytes | None] = field(default_factory=dict)
    # Called with a path and the bytes about to be written, before the first byte of it changes
    # (the write-ahead pre-image).
    before_write: Callable[[Path, bytes], None] = lambda path, planned: None

    def read_file(self, path: Path) -> bytes | None:
        if path in self.overlay:
            return self.overlay[path]
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    value: Any = None


class Deferred(Exception):  # noqa: N818 - a signal, not an error
    """In a dry run: this check can't be evaluated before earlier effects exist."""


class Effect(Protocol):
    """One planned change. `describe` is what the dry run prints; `execute` does it."""

    def describe(self) -> str: ...

    def execute(self, ctx: Context) -> str: ...

    def paths(self) -> list[Path]: ...


class Kind(Protocol):
    """A registered step kind (sql, shell, env_file, file, command)."""

    @property
    def name(self) -> str: ...

    @property
    def check_model(self) -> type[CheckSpec] | None: ...

    @property
    def op_model(self) -> type[OpSpec] | None: ...

    def check(self, spec: Any, ctx: Context) -> CheckResult: ...

    def plan(self, spec: Any, ctx: Context) -> Effect: ...


def compare(actual: Any, expected: Any, op: str) -> bool:
    """Compare a value read from the system with an expectation, tolerating text vs number."""
    a, e = _coerce(actual, expected)
    match op:
        case "eq":
            return bool(a == e)
        case "ne":
            return bool(a != e)
        case "gt":
            return bool(a > e)
        case "ge":
            return bool(a >= e)
        case "lt":
            return bool(a < e)
        case "le":
            return bool(a <= e)
        case "matches":
            return re.search(str(e), "" if a is None else str(a)) is not None
    raise ValueError(f"unknown comparison {op!r}")


def _coerce(actual: Any, expected: Any) -> tuple[Any, Any]:
    if type(actual) is int and type(expected) is int:  # the common count(*) = 1: exact already
        return actual, expected
    if isinstance(actual, bool) or isinstance(expected, bool):
        return _as_bool(actual), _as_bool(expected)
    if actual is None or expected is None:
        return actual, expected
    try:
        from decimal import Decimal

        return Decimal(str(actual)), Decimal(str(expected))
    except ArithmeticError:
        return str(actual), str(expected)


def _as_bool(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in (
        "true",
        "t",
        "yes",
        "1",
        "false",
        "f",
        "no",
        "0",
    ):
        return value.lower() in ("true", "t", "yes", "1")
    return value
