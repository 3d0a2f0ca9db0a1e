"""Where a problem is: file, line, column and path inside the runbook. What it says, for a schema
error, comes from `schema_messages` (pydantic's errors in words); the names the rest of the
package imports from here are re-exported."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from dcx_runbook.errors import Problem
from dcx_runbook.format.schema_messages import Part, describe_found, schema_errors, shorten

__all__ = [
    "Loc",
    "describe_found",
    "format_path",
    "in_order",
    "mark_position",
    "problem_at",
    "schema_errors",
    "shorten",
]

Loc = tuple[Any, ...]


def format_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _key_text(part)
    return out


def _key_text(key: Any) -> str:
    """A key as shown in a path: as written, or quoted when it holds a newline or the like."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def problem_at(filename: str, root: yaml.Node, loc: Sequence[Any], message: str) -> Problem:
    """A problem at a location given as a path of keys and indexes (a `Part` marks a schema
    location's part: a mapping key, an index, or a union tag to skip)."""
    node: yaml.Node = root
    shown = ""
    for part in loc:
        kind, value = part if isinstance(part, Part) else Part.guess(part)
        if kind in ("tag", "member"):
            continue
        if kind == "key-of":  # the problem is the key itself, not its value
            key = _key_node(node, value)
            shown += ("." if shown else "") + _key_text(value if key is None else key.value)
            if key is not None:
                node = key
            continue
        if kind == "index":
            shown += f"[{value}]"
            if isinstance(node, yaml.SequenceNode) and 0 <= value < len(node.value):
                node = node.value[value]
            continue
        shown += ("." if shown else "") + _key_text(value)
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if _same_key(k, value)), None)
            if found is not None:
                node = found
        # a missing key, or a scalar: stay on the nearest node that exists
    line, col = mark_position(node.start_mark)
    return Problem(filename, shown, message, line, col)


def _key_node(node: yaml.Node, name: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((k for k, _ in node.value if _same_key(k, name)), None)
    return None


def _same_key(key: yaml.Node, name: Any) -> bool:
    if not isinstance(key, yaml.ScalarNode):
        return False
    if name is None or name == "None":
        return key.tag.endswith(":null") or key.value == "None"
    if isinstance(name, bool):
        return key.tag.endswith(":bool") and key.value.lower() in (
            ("true", "yes", "on") if name else ("false", "no", "off")
        )
    return str(key.value) == str(name)


def in_order(problems: list[Problem]) -> list[Problem]:
    """Unique problems, in the order of the file."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line or 0, p.column or 0))


def mark_position(mark: Any) -> tuple[int, int]:
    if mark is None:
        return 1, 1
    return mark.line + 1, mark.column + 1
