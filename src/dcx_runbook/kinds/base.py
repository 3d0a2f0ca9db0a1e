"""What every step kind provides, and what the engine gives it.

A kind turns a spec (validated at load time, still holding `${var}` references) into effects the
engine either executes or previews: the dry run and the real run come from the same plan.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dcx_runbook.secrets import Masker

if TYPE_CHECKING:
    import psycopg


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(value: str) -> str:
    """Text shown to the operator: an escape sequence in a title could recolour or clear their
    terminal, or hide what a step does."""
    found = _CONTROL.search(value)
    if found:
        raise ValueError(
            f"expected printable text; found the control character U+{ord(found.group()):04X} "
            f"at character {found.start() + 1}"
        )
    return value


# Titles, descriptions, names and messages: printed as they are, so without control characters
# (line breaks and tabs are fine).
Printable = Annotated[str, AfterValidator(_printable)]


class Spec(BaseModel):
    """Base of every check and operation spec: strict, immutable, typo-proof."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: Printable | None = Field(default=None, description="A short description shown in output.")

    # Fields whose strings are SQL text: `${x}` there becomes a bound parameter, never text.
    sql_fields: ClassVar[tuple[str, ...]] = ()


class CheckSpec(Spec):
    message: Printable | None = Field(
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
    # Called with the process group of each process started, as soon as it has started: should
    # the tool die, a rollback must know it may still be at work.
    started_process: Callable[[int], None] = lambda pgid: None
    # Shows a manual step's instruction to the operator and returns once they said it is done;
    # raises otherwise (abort, stop here, nobody to ask).
    ask_person: Callable[[str], None] = field(default=lambda instruction: _nobody(instruction))

    def read_file(self, path: Path) -> bytes | None:
        if path in self.overlay:
            return self.overlay[path]
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None


def _nobody(instruction: str) -> None:
    raise RuntimeError(f"a person must do this, and nobody is asked here: {instruction}")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    value: Any = None


class Deferred(Exception):  # noqa: N818 - a signal, not an error
    """This check is not evaluated: in a dry run, it can't be before earlier effects exist; or
    it says there is nothing here to check (a shell check's `skip_exit`). Said, never passed."""


class Effect(Protocol):
    """One planned change. `describe` is what the dry run prints; `execute` does it."""

    def describe(self) -> str: ...

    def execute(self, ctx: Context) -> str: ...

    def paths(self) -> list[Path]: ...


DATABASE, FILES = "database", "files"  # what a kind's checks read and its operations write


@dataclass(frozen=True)
class Traits:
    """What the engine, the dry run, validation and rehearsals need to know of a kind, declared by
    the kind: no kind's name appears outside `kinds/`."""

    uses_connection: bool = False  # it talks to the target database: the runbook needs `target`
    # An operation that takes effect at COMMIT when its step runs in a transaction.
    transactional: bool = False
    outlives_rollback: bool = False  # an operation no ROLLBACK takes back (a process)
    restored_from_preimage: bool = False  # it writes files whose exact pre-image is journaled
    reads: frozenset[str] = frozenset()  # checks: what they look at
    writes: frozenset[str] = frozenset()  # operations: what they may change
    previewed: bool = False  # operations: a dry run applies them to its in-memory file overlay
    sees_preview: bool = False  # checks: read files through that overlay
    path_field: str | None = None  # the spec field naming the file it reads or writes
    # Operations: the only operation of its action (and of its rollback's): a step waiting for a
    # person holds no transaction, and nothing runs unasked beside it.
    alone: bool = False
    asks_person: bool = False  # operations: a person does it; without a terminal, --confirm

    def dry_run_waits(self, operation: Traits) -> bool:
        """Whether a check of this kind can only be evaluated after `operation` really ran: it
        reads what the operation may change, and no preview shows it the change."""
        seen = operation.previewed and self.sees_preview
        return bool(self.reads & operation.writes) and not seen


# A kind that edits one file in place (file, env_file): restored from its journaled pre-image,
# previewed in a dry run's in-memory overlay, named by its `path`.
ONE_FILE = Traits(
    restored_from_preimage=True,
    reads=frozenset({FILES}),
    writes=frozenset({FILES}),
    previewed=True,
    sees_preview=True,
    path_field="path",
)


class CheckKind(Protocol):
    """A kind that checks (sql, shell, env_file, file, command)."""

    @property
    def name(self) -> str: ...

    @property
    def traits(self) -> Traits: ...

    @property
    def check_model(self) -> type[CheckSpec]: ...

    def check(self, spec: Any, ctx: Context) -> CheckResult: ...


class OperationKind(Protocol):
    """A kind that changes something (sql, shell, env_file, file)."""

    @property
    def name(self) -> str: ...

    @property
    def traits(self) -> Traits: ...

    @property
    def op_model(self) -> type[OpSpec]: ...

    def plan(self, spec: Any, ctx: Context) -> Effect: ...

    def diff_view(self, data: bytes) -> bytes:
        """A file this kind wrote, as a refused restore may show it (an env file: values masked)."""
        ...


class Shown:
    """Mixin: files shown as they are."""

    def diff_view(self, data: bytes) -> bytes:
        return data


def compare(actual: Any, expected: Any, op: str) -> bool:
    """Compare a value read from the system with an expectation, tolerating text vs number.

    A value that can't be ordered against the expectation (NULL, text against a number) does not
    meet `gt`/`ge`/`lt`/`le`: the check fails, it doesn't crash the run."""
    a, e = _coerce(actual, expected)
    match op:
        case "eq":
            return bool(a == e)
        case "ne":
            return bool(a != e)
        case "gt" | "ge" | "lt" | "le":
            if a is None or e is None:
                return False
            try:
                return bool(_ORDER[op](a, e))
            except TypeError:
                return False
        case "matches":
            try:
                return re.search(str(e), "" if a is None else str(a)) is not None
            except re.error as exc:  # the pattern came from a variable: validation never saw it
                raise ValueError(f"invalid regular expression {str(e)!r}: {exc}") from None
    raise ValueError(f"unknown comparison {op!r}")


_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


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
