"""Reading a runbook's YAML with node positions: syntax errors located, recursive aliases and
alias bombs refused, duplicate keys found."""

from __future__ import annotations

import re
from typing import Any

import yaml

from dcx_runbook.errors import Problem
from dcx_runbook.problems import format_path, mark_position, shorten

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# ------------------------------------------------------------------------------------------ YAML

# A document whose aliases expand beyond this many values is refused ("billion laughs").
MAX_VALUES = 100_000


def _construct_object(self: Any, node: yaml.Node, deep: bool = False) -> Any:
    """Like SafeConstructor's, but a value that can't be built (a date such as 2024-13-45, an
    integer too long to convert) becomes a located YAML error instead of a bare ValueError."""
    try:
        return _Loader.construct_object(self, node, deep)
    except yaml.YAMLError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"can't read the value {_snippet(node)}: {str(exc).split(';')[0]}",
            node.start_mark,
        ) from None


_RunbookLoader: Any = type("_RunbookLoader", (_Loader,), {"construct_object": _construct_object})


def read_yaml(text: str, raw: bytes, filename: str) -> tuple[yaml.Node | None, Any, list[Problem]]:
    loader = _RunbookLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None, []
        # Without an anchor (&name) there is no alias, so no cycle and no expansion to check.
        refused = _graph_problem(node) if "&" in text else None
        if refused is not None:
            message, mark = refused
            return None, None, [Problem(filename, "", message, *mark_position(mark))]
        return node, loader.construct_document(node), []
    except yaml.reader.ReaderError as exc:
        # libyaml counts bytes of the UTF-8 text, PyYAML characters.
        if isinstance(loader, getattr(yaml, "CSafeLoader", ())):
            line, col = byte_position(raw, exc.position)
        else:
            before = text[: exc.position].encode()
            line, col = byte_position(before, len(before))
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        message = (
            f"YAML syntax error: found character {char!r} ({exc.reason}); expected printable text"
        )
        return None, None, [Problem(filename, "", message, line, col)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
            message += " (a tab: YAML indents with spaces only)"
        line, col = mark_position(mark)
        lines = _lines(text)
        if line > len(lines):  # libyaml's end of stream is past the last line: point at its end
            line, col = len(lines), len(lines[-1]) + 1
            message += " (at the end of the file)"
        return None, None, [Problem(filename, "", f"YAML syntax error: {message}", line, col)]
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, None, [Problem(filename, "", f"YAML error: {first_line}", 1, 1)]
    finally:
        loader.dispose()


def _lines(text: str) -> list[str]:
    """Lines as YAML counts them: \r\n, \r, \n and the Unicode line breaks end a line."""
    return _BREAK.split(text)


_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _char_at(text: str, line: int, column: int) -> str:
    lines = _lines(text)
    if 0 <= line < len(lines) and 0 <= column < len(lines[line]):
        return lines[line][column]
    return ""


def byte_position(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of a byte offset."""
    lines = _lines(raw[: max(0, offset)].decode(errors="replace"))
    return len(lines), len(lines[-1]) + 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _graph_problem(root: yaml.Node) -> tuple[str, Any] | None:
    """A recursive alias, or aliases that expand to too many values (iterative: no recursion)."""
    size: dict[int, int] = {}
    entered: set[int] = set()  # on the current path
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            entered.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_VALUES:
                return (
                    f"the document expands to more than {MAX_VALUES} values (through aliases); "
                    "expected a runbook of reasonable size",
                    node.start_mark,
                )
            continue
        if key in size:
            continue
        if key in entered:
            return "recursive alias: this value contains itself; expected a tree", node.start_mark
        entered.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(_children(node)))
    return None


def duplicate_keys(root: yaml.Node, filename: str) -> list[Problem]:
    problems = []
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, list[Any]]] = [(root, [])]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:  # an alias: checked where it is defined
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for key, value in node.value:
                name = _scalar(key)
                if name is not None and name in first:
                    earlier = first[name].start_mark.line + 1
                    problems.append(
                        Problem(
                            filename,
                            format_path([*path, name]),
                            f"duplicate key {name!r} (first at line {earlier}): YAML would "
                            "silently keep only the last one; expected each key once",
                            *mark_position(key.start_mark),
                        )
                    )
                elif name is not None:
                    first[name] = key
                stack.append((value, [*path, name if name is not None else "?"]))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, [*path, i]) for i, item in enumerate(node.value))
    return problems


def _scalar(node: yaml.Node) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _snippet(node: yaml.Node) -> str:
    value = _scalar(node)
    return repr(shorten(value)) if value is not None else "here"
