"""Find runbooks, parse YAML with positions, validate, and report every problem at once."""

from __future__ import annotations

import copy
import datetime
import difflib
import gc
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import yaml

from dcx_runbook.errors import Problem, RunbookNotFound, ValidationFailed

if TYPE_CHECKING:
    from dcx_runbook.model import Runbook

SUFFIXES = (".yaml", ".yml")
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Found:
    name: str
    path: Path
    origin: str  # which search directory: option, env, cwd, bundled


@dataclass(frozen=True)
class Loaded:
    path: Path
    text: str
    sha256: str
    runbook: Runbook


# ---------------------------------------------------------------------------------------- search


def bundled_dir() -> Path:
    packaged = Path(__file__).parent / "runbooks"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "runbooks"  # a source checkout


def search_dirs(extra: Sequence[Path] = ()) -> list[tuple[Path, str]]:
    dirs: list[tuple[Path, str]] = [(Path(d), "--runbooks-dir") for d in extra]
    env = os.environ.get("DCX_RUNBOOK_PATH", "")
    dirs += [(Path(d), "DCX_RUNBOOK_PATH") for d in env.split(os.pathsep) if d]
    dirs.append((Path("runbooks"), "./runbooks"))
    dirs.append((bundled_dir(), "bundled"))
    seen: set[Path] = set()
    unique = []
    for d, origin in dirs:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((d, origin))
    return unique


def discover(extra: Sequence[Path] = ()) -> list[Found]:
    """Every runbook in the search path; an earlier directory shadows a later one."""
    found: dict[str, Found] = {}
    for directory, origin in search_dirs(extra):
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix in SUFFIXES and path.is_file() and path.stem not in found:
                found[path.stem] = Found(path.stem, path, origin)
    return sorted(found.values(), key=lambda f: f.name)


def locate(name_or_path: str, extra: Sequence[Path] = ()) -> Path:
    if name_or_path.endswith(SUFFIXES) or os.sep in name_or_path or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise RunbookNotFound(f"no runbook file at {name_or_path}")
        return path
    for directory, _ in search_dirs(extra):
        for suffix in SUFFIXES:
            candidate = directory / f"{name_or_path}{suffix}"
            if candidate.is_file():
                return candidate
    names = ", ".join(f.name for f in discover(extra)) or "none"
    raise RunbookNotFound(f"no runbook named {name_or_path!r} (available: {names})")


# ---------------------------------------------------------------------------------------- parse


def load(name_or_path: str, extra: Sequence[Path] = ()) -> Loaded:
    path = locate(name_or_path, extra)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationFailed([Problem(str(path), "", f"can't read: {exc.strerror}")]) from None
    return parse(raw, str(path))


def parse(raw: bytes, filename: str) -> Loaded:
    """Validate a runbook's bytes; raise ValidationFailed listing every problem."""
    # Parsing allocates tens of thousands of containers and no cycles (recursive aliases are
    # refused): the cyclic garbage collector would only run over them again and again. Pausing it
    # makes a 1000-step runbook validate about 2.5 times faster.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(raw, filename)
    finally:
        if enabled:
            gc.enable()


def _parse(raw: bytes, filename: str) -> Loaded:
    from pydantic import ValidationError

    from dcx_runbook.model import Runbook
    from dcx_runbook.semantics import check_patterns, check_semantics

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _byte_position(raw, exc.start)
        message = (
            f"not UTF-8 text: found byte {raw[exc.start]:#04x} that is not valid UTF-8; "
            "expected a UTF-8 encoded YAML file"
        )
        raise ValidationFailed([Problem(filename, "", message, line, col)]) from None
    node, data, problems = _read_yaml(text, raw, filename)
    if problems:
        raise ValidationFailed(problems)
    if node is None:
        raise ValidationFailed(
            [Problem(filename, "", "empty file: expected a runbook (a mapping of keys)", 1, 1)]
        )
    if not isinstance(data, dict):
        message = (
            f"expected a mapping (name:, title:, steps: ...) at the top level; found {_found(data)}"
        )
        raise ValidationFailed([_at(filename, node, (), message)])
    problems = _duplicate_keys(node, filename)
    # Patterns are compiled here rather than by the schema: some bad ones raise OverflowError or
    # RecursionError, which pydantic does not turn into a validation error.
    bad_patterns = check_patterns(data)
    try:
        runbook = Runbook.model_validate(_blank(data, [loc for loc, _ in bad_patterns]))
    except ValidationError as exc:
        runbook = None
        for parts, message in _schema_errors(exc.errors(include_url=False)):
            problems.append(_at(filename, node, parts, message))
    for loc, message in [*bad_patterns, *check_semantics(data)]:
        problems.append(_at(filename, node, loc, message))
    if problems or runbook is None:
        raise ValidationFailed(_in_order(problems))
    return Loaded(Path(filename), text, hashlib.sha256(raw).hexdigest(), runbook)


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


def _read_yaml(text: str, raw: bytes, filename: str) -> tuple[yaml.Node | None, Any, list[Problem]]:
    loader = _RunbookLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None, []
        # Without an anchor (&name) there is no alias, so no cycle and no expansion to check.
        refused = _graph_problem(node) if "&" in text else None
        if refused is not None:
            message, mark = refused
            return None, None, [Problem(filename, "", message, *_mark(mark))]
        return node, loader.construct_document(node), []
    except yaml.reader.ReaderError as exc:
        # libyaml counts bytes of the UTF-8 text, PyYAML characters.
        if isinstance(loader, getattr(yaml, "CSafeLoader", ())):
            line, col = _byte_position(raw, exc.position)
        else:
            before = text[: exc.position].encode()
            line, col = _byte_position(before, len(before))
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
        line, col = _mark(mark)
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


def _mark(mark: Any) -> tuple[int, int]:
    if mark is None:
        return 1, 1
    return mark.line + 1, mark.column + 1


def _byte_position(raw: bytes, offset: int) -> tuple[int, int]:
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


def _duplicate_keys(root: yaml.Node, filename: str) -> list[Problem]:
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
                            *_mark(key.start_mark),
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
    return repr(_shorten(value)) if value is not None else "here"


def _shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _blank(data: dict[str, Any], locs: Sequence[Loc]) -> dict[str, Any]:
    """A copy of the data with the values at `locs` replaced by an empty string."""
    if not locs:
        return data
    out = copy.deepcopy(data)
    for loc in locs:
        parent: Any = out
        for part in loc[:-1]:
            parent = parent[part]
        parent[loc[-1]] = ""
    return out


# ---------------------------------------------------------------------------------------- locate

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


def _at(filename: str, root: yaml.Node, loc: Sequence[Any], message: str) -> Problem:
    """A problem at a location given as a path of keys and indexes (a `_Part` marks a schema
    location's part: a mapping key, an index, or a union tag to skip)."""
    node: yaml.Node = root
    shown = ""
    for part in loc:
        kind, value = part if isinstance(part, _Part) else _Part.guess(part)
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
    line, col = _mark(node.start_mark)
    return Problem(filename, shown, message, line, col)


class _Part(tuple[str, Any]):
    """One classified part of a location: ("key" | "index" | "tag" | "member" | "key-of", value)."""

    __slots__ = ()

    def __new__(cls, kind: str, value: Any) -> _Part:
        return super().__new__(cls, (kind, value))

    @classmethod
    def guess(cls, part: Any) -> _Part:
        if isinstance(part, int) and not isinstance(part, bool):
            return cls("index", part)
        return cls("key", part)


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


def _in_order(problems: list[Problem]) -> list[Problem]:
    """Unique problems, in the order of the file."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line or 0, p.column or 0))


# -------------------------------------------------------------------------------- schema errors


def _schema_errors(errors: Sequence[Any]) -> list[tuple[list[_Part], str]]:
    """Pydantic errors as (classified location, message for an on-call engineer)."""
    classified = []
    for err in errors:
        parts = _classify(err["loc"])
        value = err.get("input")
        if err["type"] in ("invalid_key", "extra_forbidden") and parts:
            parts[-1] = _Part("key-of", parts[-1][1])
        elif err["type"] == "union_tag_invalid" and isinstance(value, dict) and "kind" in value:
            parts.append(_Part("key", "kind"))
        elif err["type"] == "value_error" and isinstance(value, dict):
            # A rule about one field, checked on the whole mapping: point at the field.
            field = next((f for m, f in _FIELD_RULES.items() if m in err["msg"]), None)
            if field in value:
                parts.append(_Part("key", field))
        classified.append((parts, err))
    return _collapse(classified)


def _collapse(errors: list[tuple[list[_Part], Any]]) -> list[tuple[list[_Part], str]]:
    """A value that matches no member of a union (str | int | dict ...) yields one error per
    member: report the members the value got furthest into, or one "expected A or B" error."""
    out: list[tuple[list[_Part], str]] = []
    groups: dict[tuple[_Part, ...], list[tuple[int, list[_Part], Any]]] = {}
    for parts, err in errors:
        at = next((i for i, p in enumerate(parts) if p[0] == "member"), None)
        if at is None:
            out.append((parts, _message(parts, err)))
        else:
            groups.setdefault(tuple(parts[:at]), []).append((at, parts, err))
    for prefix, items in groups.items():
        deeper = [
            (parts[:at] + parts[at + 1 :], err) for at, parts, err in items if len(parts) > at + 1
        ]
        if deeper:
            out += _collapse(deeper)
            continue
        members = list(
            dict.fromkeys(
                _MEMBER_NAMES.get(parts[at][1].split("[")[0], parts[at][1])
                for at, parts, _ in items
            )
        )
        value = items[0][2].get("input")
        out.append(
            (list(prefix), f"expected {_or(members)}; found {_found(value)}{_hint(members, value)}")
        )
    return out


_FIELD_RULES = {
    "a script can't contain": "script",
    "setup statements need always_rollback": "setup",
}

_MEMBER_NAMES = {
    "str": "text",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "dict": "a mapping",
    "list": "a list",
}


def _or(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _classify(loc: Sequence[Any]) -> list[_Part]:
    """Follow a pydantic location through the model's types, to tell mapping keys and list
    indexes from the union tags and union members pydantic inserts."""
    from dcx_runbook.model import Runbook

    parts: list[_Part] = []
    tp: Any = Runbook
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if part == "[key]":
            last = parts.pop() if parts else _Part("key", "")
            parts.append(_Part("key-of", last[1]))
            tp = None
            continue
        tp = _unwrap(tp)
        if _is_union(tp):
            member, kind = _member(tp, part)
            if kind:
                parts.append(_Part(kind, part))
                tp = member
                continue
            tp = _unwrap(member)
        if _is_model(tp):
            field = _field(tp, part)
            parts.append(_Part("key", part))
            tp = field.annotation if field is not None else None
        elif get_origin(tp) is list and isinstance(part, int):
            parts.append(_Part("index", part))
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            parts.append(_Part("key", part))
            tp = get_args(tp)[1]
        else:
            parts.append(_Part.guess(part))
            tp = None
    return parts


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] (a union of one type and None)."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
            continue
        if _is_union(tp):
            members = [m for m in get_args(tp) if m is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, UnionType)


def _member(union: Any, part: Any) -> tuple[Any, str]:
    """The union member a location part names: ("tag", by discriminator) or ("member", by type
    name); ("", the union itself) when the part is not about the union."""
    from pydantic import Tag

    members = [m for m in get_args(union) if m is not type(None)]
    for m in members:
        tags = [a.tag for a in getattr(m, "__metadata__", ()) if isinstance(a, Tag)]
        model = _unwrap(m)
        kind_field = _field(model, "kind")
        if kind_field is not None and get_origin(kind_field.annotation) is Literal:
            tags += list(get_args(kind_field.annotation))
        if part in tags:
            return model, "tag"
    if isinstance(part, str):
        name = part.split("[")[0]
        for m in members:
            origin = get_origin(_unwrap(m)) or _unwrap(m)
            if getattr(origin, "__name__", None) == name:
                return m, "member"
        if name in ("str", "int", "float", "bool", "dict", "list", "nullable", "union"):
            return None, "member"
    return union, ""


def _is_model(tp: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _field(model: Any, name: Any) -> Any:
    if not _is_model(model):
        return None
    for field_name, field in model.model_fields.items():
        if name in (field_name, field.alias):
            return field
    return None


def _keys(model: Any) -> list[str]:
    if not _is_model(model):
        return []
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _model_at(parts: Sequence[_Part]) -> Any:
    """The model (class) whose mapping holds the last part of a location."""
    from dcx_runbook.model import Runbook

    tp: Any = Runbook
    for kind, value in parts[:-1]:
        tp = _unwrap(tp)
        if _is_union(tp):
            member, _ = _member(tp, value)
            if kind in ("tag", "member"):
                tp = member
                continue
            tp = _unwrap(member)
        if kind == "index" and get_origin(tp) is list:
            tp = get_args(tp)[0]
        elif kind == "key" and get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif kind == "key":
            field = _field(tp, value)
            tp = field.annotation if field is not None else None
        else:
            return None
    return _unwrap(tp)


def _kinds_at(parts: Sequence[_Part]) -> list[str]:
    """The kinds a list item may have: operations under `action`, checks elsewhere."""
    from dcx_runbook.kinds import CHECK_KINDS, OPERATION_KINDS

    indexes = [i for i, (kind, _) in enumerate(parts) if kind == "index"]
    parent = parts[indexes[-1] - 1][1] if indexes and indexes[-1] > 0 else None
    return OPERATION_KINDS if parent == "action" else CHECK_KINDS


_EXPECTED = {
    "string_type": "text",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "invalid_key": "text",
}

_PATTERNS = {
    r"^[a-z0-9]+(?:-[a-z0-9]+)*$": "kebab-case: lowercase letters and digits joined by hyphens, "
    "such as fix-wallet-index",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "a name of letters, digits and underscores, not starting with "
    "a digit, such as database_url",
    r"^[A-Za-z_][A-Za-z0-9_.]*$": "an environment variable name (letters, digits, _ and .), "
    "such as DATABASE_URL",
}


def _message(parts: Sequence[_Part], err: Any) -> str:
    kind, msg, value = str(err["type"]), str(err["msg"]), err.get("input")
    ctx = err.get("ctx") or {}
    name = parts[-1][1] if parts else ""
    if kind == "extra_forbidden":
        allowed = _keys(_model_at(parts))
        out = f"unknown key {name!r}"
        close = difflib.get_close_matches(str(name), allowed, n=1)
        if close:
            out += f" (did you mean {close[0]!r}?)"
        if allowed:
            out += f"; expected one of: {', '.join(allowed)}"
        return out
    if kind == "missing":
        return f"required key {name!r} is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _kind_message(parts, value)
    if kind == "edit_kind":
        found = f"keys {', '.join(map(str, value))}" if isinstance(value, dict) else _found(value)
        return f"{msg}; found {found}"
    if kind == "invalid_key":
        return f"a key must be text; found {_found(value)} (quote it)"
    if parts and parts[-1][0] == "key-of":
        expected = _expected(kind, msg, ctx)
        return f"invalid key {_found(value)}; expected {expected}{_hint([expected], value)}"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        if isinstance(value, dict) and name in value and not isinstance(value[name], dict | list):
            return f"{msg}; found {_found(value[name])}"
        return msg if isinstance(value, dict | list) else f"{msg}; found {_found(value)}"
    expected = _expected(kind, msg, ctx)
    return f"expected {expected}; found {_found(value)}{_hint([expected], value)}"


def _expected(kind: str, msg: str, ctx: dict[str, Any]) -> str:
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "literal_error":
        return str(ctx.get("expected", "")).replace("'", "") or msg
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return _PATTERNS.get(pattern, f"text matching {pattern}")
    if kind == "string_too_short":
        return "non-empty text"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "a number " + msg.removeprefix("Input should be ")
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return f"at least {least} item{'s' if least != 1 else ''}"
    return re.sub(r"^Input should be (a valid )?", "", msg).replace("Input should be ", "")


def _kind_message(parts: Sequence[_Part], value: Any) -> str:
    from dcx_runbook.kinds import CHECK_KINDS

    allowed = _kinds_at(parts)
    choices = f"expected one of: {', '.join(allowed)}"
    if not isinstance(value, dict) or "kind" not in value:
        return f"missing `kind`; {choices}"
    found = value["kind"]
    if not isinstance(found, str):
        return f"`kind` must be text; found {_found(found)}; {choices}"
    if found in CHECK_KINDS and found not in allowed:
        return f"kind {found!r} is a check only, not an action; {choices}"
    close = difflib.get_close_matches(found, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown kind {found!r}{hint}; {choices}"


def _found(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(_shorten(value)) if value else "empty text ''"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list" if value else "an empty list"
    if isinstance(value, datetime.datetime | datetime.date):
        return f"a date ({value})"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, set | frozenset):
        return "a set"
    return type(value).__name__


def _hint(expected: Sequence[str], value: Any) -> str:
    """YAML reads `yes`, `5` or `2024-01-01` as a boolean, number or date: say how to get text."""
    wants_text = "text" in expected or any(
        e.startswith(("kebab", "a name", "an env")) for e in expected
    )
    if wants_text and isinstance(value, bool | int | float | datetime.date):
        return " (quote the value to make it text)"
    return ""
