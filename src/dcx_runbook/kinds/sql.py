"""`sql`: statements on the run's connection; checks compare a scalar or a row count."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from dcx_runbook.kinds.base import CheckResult, CheckSpec, Context, Deferred, OpSpec, compare
from dcx_runbook.template import render_sql, render_value

Scalar = str | int | float | bool | None
COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le", "matches")


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        unknown = set(value) - set(COMPARISONS)
        if unknown or len(value) != 1:
            raise ValueError(f"expected one comparison among {', '.join(COMPARISONS)}")
    return value


class SqlCheck(CheckSpec):
    kind: Literal["sql"]
    query: str = Field(description="A query; its first column of its first row is the value.")
    expect: Scalar | dict[str, Scalar] = Field(
        default=None,
        description="The value: a scalar (equality) or {eq|ne|gt|ge|lt|le|matches: v}.",
    )
    rows: int | str | dict[str, int | str] | None = Field(
        default=None, description="Expected row count instead of a value."
    )
    capture: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Store the value under this name for later checks (e.g. counts before/after).",
    )
    setup: list[str] = Field(
        default_factory=list,
        description="Statements run before the query, inside a transaction that is always rolled "
        "back (requires always_rollback): e.g. insert test rows, then read them back.",
    )
    always_rollback: bool = Field(
        default=False, description="Run in a transaction that is always rolled back."
    )
    sql_fields: ClassVar[tuple[str, ...]] = ("query", "setup")

    @model_validator(mode="after")
    def _one_expectation(self) -> SqlCheck:
        if self.setup and not self.always_rollback:
            raise ValueError(
                "setup statements need always_rollback: true (checks never change anything)"
            )
        _normalise(self.expect)
        _normalise(self.rows)
        if "expect" in self.model_fields_set and self.rows is not None:
            raise ValueError("give either expect or rows, not both")
        if "expect" not in self.model_fields_set and self.rows is None and not self.capture:
            raise ValueError("a sql check needs expect, rows or capture")
        return self


class SqlOp(OpSpec):
    kind: Literal["sql"]
    sql: str = Field(description="Statement(s). Without ${} references, several may be given.")
    sql_fields: ClassVar[tuple[str, ...]] = ("sql",)


@dataclass(frozen=True)
class SqlEffect:
    text: str
    params: tuple[Any, ...]
    composed: Any  # psycopg.sql.Composed
    display: str

    def describe(self) -> str:
        return self.display

    def paths(self) -> list[Path]:
        return []

    def execute(self, ctx: Context) -> str:
        if ctx.conn is None:
            raise RuntimeError("no database connection")
        with ctx.conn.cursor() as cur:
            cur.execute(self.composed, self.params or None)
            return cur.statusmessage or ""


def _expectation(spec: SqlCheck, values: dict[str, Any]) -> tuple[str, str, Any]:
    """(what, op, expected) with references rendered."""
    raw: Any
    if spec.rows is not None:
        what, raw = "rows", spec.rows
    else:
        what, raw = "value", spec.expect
    if isinstance(raw, dict):
        ((op, expected),) = raw.items()
    else:
        op, expected = "eq", raw
    return what, op, render_value(expected, values)


class SqlKind:
    name = "sql"
    check_model = SqlCheck
    op_model = SqlOp

    def plan(self, spec: SqlOp, ctx: Context) -> SqlEffect:
        composed, params = render_sql(spec.sql, ctx.values)
        text = composed.as_string(ctx.conn) if ctx.conn is not None else spec.sql
        display = text
        if params:
            shown = ", ".join(ctx.masker(repr(p)) for p in params)
            display += f"\n-- parameters: {shown}"
        return SqlEffect(text, tuple(params), composed, ctx.masker(display))

    def check(self, spec: SqlCheck, ctx: Context) -> CheckResult:
        if ctx.conn is None:
            raise Deferred("no database connection")
        if ctx.dry_run and spec.always_rollback:
            raise Deferred("it writes (then rolls back); a dry run doesn't run it")
        composed, params = render_sql(spec.query, ctx.values)
        window = (
            ctx.conn.transaction(force_rollback=True) if spec.always_rollback else nullcontext()
        )
        with window, ctx.conn.cursor() as cur:
            for statement in spec.setup:
                setup, setup_params = render_sql(statement, ctx.values)
                cur.execute(setup, setup_params or None)
            cur.execute(composed, params or None)
            rows = cur.fetchall() if cur.description else []
        value = rows[0][0] if rows and rows[0] else None
        if spec.rows is not None:
            value = len(rows)
        if "expect" not in spec.model_fields_set and spec.rows is None:
            return CheckResult(True, f"captured {spec.capture} = {value!r}", value)
        what, op, expected = _expectation(spec, ctx.values)
        ok = compare(value, expected, op)
        sign = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}.get(op, op)
        detail = f"{what} {value!r}" + ("" if ok else f", expected {sign} {expected!r}")
        return CheckResult(ok, ctx.masker(detail), value)


KIND = SqlKind()
