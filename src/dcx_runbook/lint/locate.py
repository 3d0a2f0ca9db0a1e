"""Where a finding is in the YAML: the node of its path, and inside a SQL scalar, the line and
column of squawk's position (block scalars start on the line after their indicator, quoted ones
one column after the quote)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from dcx_runbook.format.problems import format_path, mark_position


class Locator:
    def __init__(self, text: str, root: yaml.Node | None = None):
        self.lines = text.splitlines()
        self.root = root if root is not None else _compose(text)

    def node(self, loc: Sequence[Any]) -> yaml.Node | None:
        node = self.root
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if str(k.value) == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part] if 0 <= part < len(node.value) else None
            else:
                return node
        return node

    def at(self, loc: Sequence[Any], line: int = 0, column: int = 0) -> tuple[int, int, str]:
        """1-based line and column of `loc`, moved `line`/`column` (0-based) into its text."""
        path = format_path(loc)
        node = self.node(loc)
        if node is None:
            return 1, 1, path
        start_line, start_col = mark_position(node.start_mark)
        style = getattr(node, "style", None)
        if style in ("|", ">"):
            first = start_line  # 0-based index of the line after the indicator
            indent = _indent(self.lines[first]) if first < len(self.lines) else 0
            return first + 1 + line, indent + 1 + column, path
        if line == 0:
            return start_line, start_col + (1 if style in ("'", '"') else 0) + column, path
        return start_line + line, column + 1, path


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))
