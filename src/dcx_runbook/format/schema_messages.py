"""Pydantic's errors turned into messages for an on-call engineer: each names what was found and
what was expected, at a location whose parts are told apart (mapping key, list index, union tag).

`problems` says where such a message is in the YAML file; this module says what it is."""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Sequence
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin


class Part(tuple[str, Any]):
    """One classified part of a location: ("key" | "index" | "tag" | "member" | "key-of", value)."""

    __slots__ = ()

    def __new__(cls, kind: str, value: Any) -> Part:
        return super().__new__(cls, (kind, value))

    @classmethod
    def guess(cls, part: Any) -> Part:
        if isinstance(part, int) and not isinstance(part, bool):
            return cls("index", part)
        return cls("key", part)


def schema_errors(errors: Sequence[Any]) -> list[tuple[list[Part], str]]:
    """Pydantic errors as (classified location, message for an on-call engineer)."""
    classified = []
    for err in errors:
        parts = _classify(err["loc"])
        value = err.get("input")
        if err["type"] in ("invalid_key", "extra_forbidden") and parts:
            parts[-1] = Part("key-of", parts[-1][1])
        elif err["type"] == "union_tag_invalid" and isinstance(value, dict) and "kind" in value:
            parts.append(Part("key", "kind"))
        elif err["type"] == "value_error" and isinstance(value, dict):
            # A rule about one field, checked on the whole mapping: point at the field.
            field = next((f for m, f in _FIELD_RULES.items() if m in err["msg"]), None)
            if field in value:
                parts.append(Part("key", field))
        classified.append((parts, err))
    return _collapse(classified)


def _collapse(errors: list[tuple[list[Part], Any]]) -> list[tuple[list[Part], str]]:
    """A value that matches no member of a union (str | int | dict ...) yields one error per
    member: report the members the value got furthest into, or one "expected A or B" error."""
    out: list[tuple[list[Part], str]] = []
    groups: dict[tuple[Part, ...], list[tuple[int, list[Part], Any]]] = {}
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
            (
                list(prefix),
                f"expected {_or(members)}; found {describe_found(value)}{_hint(members, value)}",
            )
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


def _classify(loc: Sequence[Any]) -> list[Part]:
    """Follow a pydantic location through the model's types, to tell mapping keys and list
    indexes from the union tags and union members pydantic inserts."""
    from dcx_runbook.format.model import Runbook

    parts: list[Part] = []
    tp: Any = Runbook
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if part == "[key]":
            last = parts.pop() if parts else Part("key", "")
            parts.append(Part("key-of", last[1]))
            tp = None
            continue
        tp = _unwrap(tp)
        if _is_union(tp):
            member, kind = _member(tp, part)
            if kind:
                parts.append(Part(kind, part))
                tp = member
                continue
            tp = _unwrap(member)
        if _is_model(tp):
            field = _field(tp, part)
            parts.append(Part("key", part))
            tp = field.annotation if field is not None else None
        elif get_origin(tp) is list and isinstance(part, int):
            parts.append(Part("index", part))
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            parts.append(Part("key", part))
            tp = get_args(tp)[1]
        else:
            parts.append(Part.guess(part))
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


def _model_at(parts: Sequence[Part]) -> Any:
    """The model (class) whose mapping holds the last part of a location."""
    from dcx_runbook.format.model import Runbook

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


def _kinds_at(parts: Sequence[Part]) -> list[str]:
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


def _message(parts: Sequence[Part], err: Any) -> str:
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
        found = (
            f"keys {', '.join(map(str, value))}"
            if isinstance(value, dict)
            else describe_found(value)
        )
        return f"{msg}; found {found}"
    if kind == "invalid_key":
        return f"a key must be text; found {describe_found(value)} (quote it)"
    if parts and parts[-1][0] == "key-of":
        expected = _expected(kind, msg, ctx)
        return f"invalid key {describe_found(value)}; expected {expected}{_hint([expected], value)}"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        if isinstance(value, dict) and name in value and not isinstance(value[name], dict | list):
            return f"{msg}; found {describe_found(value[name])}"
        return msg if isinstance(value, dict | list) else f"{msg}; found {describe_found(value)}"
    expected = _expected(kind, msg, ctx)
    return f"expected {expected}; found {describe_found(value)}{_hint([expected], value)}"


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


def _kind_message(parts: Sequence[Part], value: Any) -> str:
    from dcx_runbook.kinds import CHECK_KINDS

    allowed = _kinds_at(parts)
    choices = f"expected one of: {', '.join(allowed)}"
    if not isinstance(value, dict) or "kind" not in value:
        return f"missing `kind`; {choices}"
    found = value["kind"]
    if not isinstance(found, str):
        return f"`kind` must be text; found {describe_found(found)}; {choices}"
    if found in CHECK_KINDS and found not in allowed:
        return f"kind {found!r} is a check only, not an action; {choices}"
    close = difflib.get_close_matches(found, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown kind {found!r}{hint}; {choices}"


def describe_found(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(shorten(value)) if value else "empty text ''"
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


def shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
