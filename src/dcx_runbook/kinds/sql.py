"""`sql`: statements on the run's connection; checks compare a scalar or a row count.

Also what the engine and `validate` need to know about a statement's text: which statements
PostgreSQL refuses inside a transaction block, and the INVALID index a failed concurrent build
leaves behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from dcx_runbook.kinds.base import (
    DATABASE,
    CheckResult,
    CheckSpec,
    Context,
    Deferred,
    OpSpec,
    Shown,
    Traits,
    compare,
)
from dcx_runbook.template import render_sql, render_value

if TYPE_CHECKING:
    import psycopg

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

    @property
    def builds_concurrently(self) -> bool:
        """A statement here builds an index concurrently: should it fail, it may leave an
        INVALID index behind."""
        return any(name in CONCURRENT_BUILDS for _, name in refused_in_transaction(self.text))

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


class SqlKind(Shown):
    name = "sql"
    traits = Traits(
        uses_connection=True,
        transactional=True,
        reads=frozenset({DATABASE}),
        writes=frozenset({DATABASE}),
    )
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


# ---------------------------------------------------------------------------- statement text

# Every statement below holds one of these words: text without any is not tokenized at all.
_TRIGGERS = ("VACUUM", "CONCURRENTLY", "DATABASE", "SYSTEM", "TABLESPACE", "SCHEMA", "CLUSTER")
_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>--[^\n]*)
      | (?P<block>/\*)
      | (?P<estring>[Ee]'(?:[^'\\]|\\.|'')*'?)
      | (?P<string>'(?:[^']|'')*'?)
      | (?P<ident>"(?:[^"]|"")*"?)
      | (?P<dollar>\$(?:[^\W\d]\w*)?\$)
      | (?P<word>[^\W\d][\w$]*)
      | (?P<number>\d[\w.]*)
      | (?P<semi>;)
      | (?P<other>.)""",
    re.X | re.S,
)
_BLOCK_EDGE = re.compile(r"/\*|\*/")
STRING = "''"  # the token that stands for any string literal
CONCURRENT_BUILDS = ("CREATE INDEX CONCURRENTLY", "REINDEX CONCURRENTLY")


def refused_in_transaction(text: str) -> list[tuple[int, str]]:
    """(index, name) of each statement of `text` that PostgreSQL refuses to run inside a
    transaction block."""
    upper = text.upper()
    if not any(word in upper for word in _TRIGGERS):
        return []
    found = ((i, no_transaction_block(tokens)) for i, tokens in enumerate(statements(text)))
    return [(i, name) for i, name in found if name is not None]


def statements(text: str) -> list[list[str]]:
    """The statements of `text`, each as its tokens: words upper-cased, quoted identifiers kept
    in their quotes (never mistaken for a keyword), every string literal as `''`; comments and
    dollar-quoted bodies left out. What a keyword search on the raw text would get wrong: an
    UPDATE setting a column to 'VACUUM' is not a VACUUM."""
    out: list[list[str]] = []
    current: list[str] = []
    for token in _tokens(text.replace("$${", "${")):  # $${ is the runbook's escaped ${
        if token == ";":
            if current:
                out.append(current)
            current = []
        else:
            current.append(token)
    if current:
        out.append(current)
    return out


def _tokens(text: str) -> Iterator[str]:
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m is not None  # `other` matches any character
        kind, pos = m.lastgroup, m.end()
        if kind == "block":
            pos = _block_end(text, pos)
        elif kind == "dollar":
            end = text.find(m.group(), pos)
            pos = len(text) if end < 0 else end + len(m.group())
            yield STRING
        elif kind in ("estring", "string"):
            yield STRING
        elif kind == "word":
            yield m.group().upper()
        elif kind not in ("space", "comment"):
            yield m.group()


def _block_end(text: str, pos: int) -> int:
    """Where a /* comment that started before `pos` ends: PostgreSQL's comments nest."""
    depth = 1
    for m in _BLOCK_EDGE.finditer(text, pos):
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return m.end()
    return len(text)


def no_transaction_block(tokens: list[str]) -> str | None:
    """The statement's name when PostgreSQL refuses to run it inside a transaction block (as
    its error says it: "VACUUM cannot run inside a transaction block"); else None."""
    if not tokens:
        return None
    head = " ".join(tokens[:2])
    if tokens[0] == "VACUUM":
        return "VACUUM"
    if head in _PLAIN:
        return head
    if tokens[0] == "REINDEX":
        return _reindex(tokens[1:])
    if tokens[:3] in (["CREATE", "INDEX", "CONCURRENTLY"], ["DROP", "INDEX", "CONCURRENTLY"]):
        return " ".join(tokens[:3])
    if tokens[:4] == ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY"]:
        return "CREATE INDEX CONCURRENTLY"
    return _alter(tokens) if tokens[0] == "ALTER" else _cluster(tokens)


_PLAIN = (
    "CREATE DATABASE",
    "DROP DATABASE",
    "ALTER SYSTEM",
    "CREATE TABLESPACE",
    "DROP TABLESPACE",
)


def _reindex(rest: list[str]) -> str | None:
    """REINDEX [(options)] {INDEX|TABLE|SCHEMA|DATABASE|SYSTEM} [CONCURRENTLY] name."""
    options, rest = _options(rest)
    what = rest[0] if rest else ""
    if what in ("SCHEMA", "DATABASE", "SYSTEM"):
        return f"REINDEX {what}"
    if rest[1:2] == ["CONCURRENTLY"] or options.get("CONCURRENTLY", False):
        return "REINDEX CONCURRENTLY"
    return None


def _options(tokens: list[str]) -> tuple[dict[str, bool], list[str]]:
    """A leading `(name [value], ...)` as {name: on?}, and the tokens after it."""
    if tokens[:1] != ["("]:
        return {}, tokens
    end = tokens.index(")") if ")" in tokens else len(tokens)
    options: dict[str, bool] = {}
    for option in " ".join(tokens[1:end]).split(","):
        words = option.split()
        if words:
            options[words[0]] = words[1:2] not in (["FALSE"], ["OFF"], ["0"])
    return options, tokens[end + 1 :]


def _alter(tokens: list[str]) -> str | None:
    what = tokens[1:2]
    if what == ["TABLE"] and "DETACH" in tokens and tokens[-1] == "CONCURRENTLY":
        return "ALTER TABLE ... DETACH CONCURRENTLY"
    if what == ["DATABASE"] and tokens[3:5] == ["SET", "TABLESPACE"]:
        return "ALTER DATABASE SET TABLESPACE"
    return None


def _cluster(tokens: list[str]) -> str | None:
    """CLUSTER without a table clusters every table it can: not in a transaction block."""
    if tokens[0] != "CLUSTER":
        return None
    _, rest = _options(tokens[1:])
    return "CLUSTER" if rest in ([], ["VERBOSE"]) else None


# ---------------------------------------------------------------------- INVALID index leftovers


@dataclass(frozen=True)
class Leftover:
    """An INVALID index a failed CREATE INDEX / REINDEX ... CONCURRENTLY left behind."""

    oid: int
    schema: str
    name: str

    def __str__(self) -> str:
        """As SQL would name it: `public.t_v_idx`, `"Odd"."Name"`."""
        return f"{_ident(self.schema)}.{_ident(self.name)}"


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


_INVALID = """
SELECT i.indexrelid::int8, n.nspname, c.relname
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT i.indisvalid AND i.indislive
"""
# Another session's concurrent build in progress has an INVALID index too: never ours.
_NOT_BUILDING = """
   AND NOT EXISTS (SELECT FROM pg_stat_progress_create_index p
                    WHERE p.index_relid = i.indexrelid AND p.pid <> pg_backend_pid())
"""


def invalid_indexes(conn: psycopg.Connection[Any]) -> set[int]:
    """The INVALID indexes now: read before a concurrent build, so that those it leaves are known
    from those that were already there (which are not its to drop)."""
    return {row[0] for row in conn.execute(_INVALID).fetchall()}


def leftovers(conn: psycopg.Connection[Any], before: set[int]) -> list[Leftover]:
    """The INVALID indexes that were not INVALID before a failed concurrent build, other than
    those another session is building right now: what that build left behind."""
    query = _INVALID + (_NOT_BUILDING if conn.info.server_version >= 120000 else "")
    rows = conn.execute(query).fetchall()
    return [Leftover(*row) for row in rows if row[0] not in before]


def drop_leftover(conn: psycopg.Connection[Any], leftover: Leftover) -> None:
    """DROP INDEX CONCURRENTLY (outside any transaction, under the session's timeouts): the
    table's readers and writers go on while it waits."""
    from psycopg import sql

    statement = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
        sql.Identifier(leftover.schema, leftover.name)
    )
    conn.execute(statement)
