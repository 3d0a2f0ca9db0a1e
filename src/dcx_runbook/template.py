"""`${name}` references in runbook strings, and how each kind of consumer receives values.

Values are never spliced into SQL text or shell scripts: SQL gets bound parameters (or identifiers
and literals quoted by psycopg's `sql` module), processes get argv elements or environment entries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import sql

# ${name}, ${ident:name}, ${literal:name}; $${ is an escaped literal "${".
REF = re.compile(
    r"(?<!\$)\$\{\s*(?:(?P<mode>ident|literal):)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*\}"
)
OPENER = re.compile(r"(?<!\$)\$\{")


class TemplateError(ValueError):
    pass


def refs(text: str) -> list[str]:
    """Names referenced by `text`, in order, with duplicates."""
    return [m.group("name") for m in REF.finditer(text)]


def malformed(text: str) -> list[str]:
    """References that look like `${...}` but are not valid ones."""
    return [
        text[m.start() : m.start() + 30]
        for m in OPENER.finditer(text)
        if not REF.match(text, m.start())
    ]


def refs_in(value: Any) -> Iterable[str]:
    """Every name referenced anywhere inside a nested structure of strings, lists and dicts."""
    if isinstance(value, str):
        yield from refs(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from refs_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from refs_in(item)


def _lookup(values: Mapping[str, Any], name: str) -> Any:
    try:
        return values[name]
    except KeyError:
        raise TemplateError(f"undefined variable ${{{name}}}") from None


def render(text: str, values: Mapping[str, Any]) -> str:
    """Substitute references as plain text (paths, argv elements, env values, messages)."""

    def sub(m: re.Match[str]) -> str:
        value = _lookup(values, m.group("name"))
        return "" if value is None else str(value)

    return REF.sub(sub, text).replace("$${", "${")


def render_value(template: Any, values: Mapping[str, Any]) -> Any:
    """Like `render`, but a string that is exactly one reference keeps the value's own type."""
    if isinstance(template, str):
        m = REF.fullmatch(template.strip())
        if m and not m.group("mode"):
            return _lookup(values, m.group("name"))
        return render(template, values)
    return template


def render_sql(text: str, values: Mapping[str, Any]) -> tuple[sql.Composed, list[Any]]:
    """SQL with `${x}` as bound parameters, `${ident:x}` quoted identifiers, `${literal:x}` literals.

    Statements that can't take parameters (DDL) must use `ident` or `literal`.
    """
    from psycopg import sql

    if "${" not in text:  # no reference (and no $${ escape): the text is the statement
        return sql.Composed([sql.SQL(text)]), []
    parts: list[sql.Composable] = []
    params: list[Any] = []
    pos = 0
    has_params = any(not m.group("mode") for m in REF.finditer(text))
    for m in REF.finditer(text):
        parts.append(sql.SQL(_escape(text[pos : m.start()], has_params)))
        value = _lookup(values, m.group("name"))
        mode = m.group("mode")
        if mode == "ident":
            parts.append(sql.Identifier(str(value)))
        elif mode == "literal":
            parts.append(sql.Literal(value))
        else:
            parts.append(sql.Placeholder())
            params.append(value)
        pos = m.end()
    parts.append(sql.SQL(_escape(text[pos:], has_params)))
    return sql.Composed(parts), params


def _escape(fragment: str, has_params: bool) -> str:
    fragment = fragment.replace("$${", "${")
    # With parameters, psycopg reads % as a placeholder marker; keep literal percent signs literal.
    return fragment.replace("%", "%%") if has_params else fragment
