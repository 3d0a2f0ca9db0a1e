"""Reading a runbook's YAML with node positions: syntax errors located, recursive aliases and
alias bombs refused, duplicate keys found."""

from __future__ import annotations

import re
from typing import Any

import yaml

from dcx_runbook.errors import Problem
from dcx_runbook.format.problems import format_path, mark_position, shorten

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
        raise _unreadable(node, exc) from None


def _unreadable(node: yaml.Node, exc: Exception) -> yaml.YAMLError:
    return yaml.constructor.ConstructorError(
        None,
        None,
        f"can't read the value {_snippet(node)}: {str(exc).split(';')[0]}",
        node.start_mark,
    )


# The tag of a plain scalar depends on its text only (the safe loader has no path resolvers):
# keys and kinds repeat in every step, and resolving each one again costs a Python call and
# regular expressions. Short texts only, and a bounded number of them.
_RESOLVED: dict[tuple[str, Any], str] = {}


_resolve_any: Any = _Loader.resolve  # untyped in PyYAML's stubs


def _resolve(self: Any, kind: Any, value: Any, implicit: Any) -> Any:
    if kind is not yaml.ScalarNode or len(value) > 64:
        return _resolve_any(self, kind, value, implicit)
    key = (value, implicit)
    tag = _RESOLVED.get(key)
    if tag is None:
        tag = _resolve_any(self, kind, value, implicit)
        if len(_RESOLVED) < 4096:
            _RESOLVED[key] = tag
    return tag


def _no_path(self: Any, *args: Any) -> None:
    """Path resolvers: the safe loader has none, so there is no path to follow."""


_RunbookLoader: Any = type(
    "_RunbookLoader",
    (_Loader,),
    {"construct_object": _construct_object}
    | (
        {"resolve": _resolve, "descend_resolver": _no_path, "ascend_resolver": _no_path}
        if not _Loader.yaml_path_resolvers
        else {}
    ),
)


def read_yaml(
    text: str, raw: bytes, filename: str
) -> tuple[yaml.Node | None, Any, list[Problem], list[Problem]]:
    """(root node, data, YAML errors, duplicate keys). With YAML errors there is nothing else."""
    loader = _RunbookLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None, [], []
        # Without an anchor (&name) there is no alias, so no cycle and no expansion to check.
        shared = "&" in text
        refused = _graph_problem(node) if shared else None
        if refused is not None:
            message, mark = refused
            return None, None, [Problem(filename, "", message, *mark_position(mark))], []
        data, duplicates = _Builder(loader, filename, shared).build(node)
        return node, data, [], duplicates
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
        return None, None, [Problem(filename, "", message, line, col)], []
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
        return None, None, [Problem(filename, "", f"YAML syntax error: {message}", line, col)], []
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, None, [Problem(filename, "", f"YAML error: {first_line}", 1, 1)], []
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


_STR, _MAP, _SEQ = (f"tag:yaml.org,2002:{t}" for t in ("str", "map", "seq"))
_MERGE = "tag:yaml.org,2002:merge"
_SIMPLE = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float")}


class _Builder:
    """The document's data in one pass over its nodes, finding duplicate keys on the way: what
    PyYAML's constructor and a second walk used to do, at about half the cost. Anything unusual
    (another tag, a merge key, a key that is not a scalar) is built by PyYAML's constructor, so
    the data is the same. Iterative: any depth."""

    def __init__(self, loader: Any, filename: str, shared: bool):
        self._loader = loader
        self._filename = filename
        # Aliases: one object per node, as PyYAML makes them (only with anchors in the text).
        self._made: dict[int, Any] | None = {} if shared else None
        self._todo: list[tuple[yaml.Node, Any, list[Any]]] = []
        self.problems: list[Problem] = []

    def build(self, root: yaml.Node) -> tuple[Any, list[Problem]]:
        data = self._value(root, [])
        while self._todo:
            node, container, path = self._todo.pop()
            if isinstance(container, list):
                container.extend(self._value(item, path, i) for i, item in enumerate(node.value))
                continue
            first: dict[str, yaml.Node] = {}
            for key_node, value_node in node.value:
                name = str(key_node.value)
                if name in first:
                    self.problems.append(
                        _duplicate(self._filename, path, name, first[name], key_node)
                    )
                else:
                    first[name] = key_node
                container[self._value(key_node, path)] = self._value(value_node, path, name)
        return data, self.problems

    def _value(self, node: yaml.Node, path: list[Any], last: Any = None) -> Any:
        """A scalar's value, or a container registered to be filled."""
        if self._made is not None and id(node) in self._made:
            return self._made[id(node)]
        tag = node.tag
        result: Any
        if tag == _STR and isinstance(node, yaml.ScalarNode):
            result = node.value
        elif tag in _SIMPLE and isinstance(node, yaml.ScalarNode):
            try:
                result = self._loader.yaml_constructors[tag](self._loader, node)
            except (ValueError, TypeError, OverflowError) as exc:
                raise _unreadable(node, exc) from None
        elif tag == _SEQ and isinstance(node, yaml.SequenceNode):
            result = []
            self._todo.append((node, result, path if last is None else [*path, last]))
        elif tag == _MAP and isinstance(node, yaml.MappingNode) and _plain_keys(node):
            result = {}
            self._todo.append((node, result, path if last is None else [*path, last]))
        else:
            # Before PyYAML builds it: a merge key (<<) copies the merged pairs into the node,
            # and a key that overrides a merged one is not a duplicate.
            where = path if last is None else [*path, last]
            self.problems += duplicate_keys(node, self._filename, where)
            result = self._loader.construct_object(node, deep=True)
        if self._made is not None:
            self._made[id(node)] = result
        return result


def _plain_keys(node: yaml.MappingNode) -> bool:
    return all(isinstance(k, yaml.ScalarNode) and k.tag != _MERGE for k, _ in node.value)


def _duplicate(
    filename: str, path: list[Any], name: str, first: yaml.Node, again: yaml.Node
) -> Problem:
    return Problem(
        filename,
        format_path([*path, name]),
        f"duplicate key {name!r} (first at line {first.start_mark.line + 1}): YAML would "
        "silently keep only the last one; expected each key once",
        *mark_position(again.start_mark),
    )


def duplicate_keys(root: yaml.Node, filename: str, base: list[Any] | None = None) -> list[Problem]:
    """Duplicate keys anywhere below `root` (at `base` in the document)."""
    problems = []
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, list[Any]]] = [(root, base or [])]
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
                    problems.append(_duplicate(filename, path, name, first[name], key))
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
