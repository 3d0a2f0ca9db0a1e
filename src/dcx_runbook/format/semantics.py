"""Rules that span a whole runbook: unique ids, declared variables, a way back for every change.

They work on the raw YAML data, so they are reported alongside schema errors, all at once. The
data may have any shape (the schema may have rejected it): every rule checks types before use.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Hashable, Iterator
from typing import Any

from dcx_runbook.format.transaction_blocks import NO_TRANSACTION_BLOCK, transaction_blocks
from dcx_runbook.kinds import OPERATION_KINDS, with_trait
from dcx_runbook.template import REF, malformed, refs

Loc = tuple[Any, ...]
__all__ = ["NO_TRANSACTION_BLOCK", "Loc", "check_patterns", "check_semantics", "walk"]
_NOT_RENDERED = {"title", "description", "name", "id", "kind", "irreversible"}
_CHECK_LISTS = ("applies_when", "preflight", "done_when", "precheck", "verify")
# Kinds whose files a rollback restores from their pre-images; kinds that need the database.
_FILE_KINDS = with_trait("restored_from_preimage")
_DATABASE_KINDS = with_trait("uses_connection")
_ALONE = with_trait("alone")
_EDIT_PATTERNS = ("replace", "remove_line", "after")
_CHECK_PATTERNS = ("matches", "not_matches", "stdout_matches")


def walk(data: dict[str, Any]) -> list[tuple[Loc, Any]]:
    """Every (location, value) of the document: one walk, shared by every rule."""
    return list(_items(data, ()))


def check_semantics(data: dict[str, Any], items: list[tuple[Loc, Any]]) -> list[tuple[Loc, str]]:
    """Every whole-runbook rule, always in this order: each is a small function below whose
    docstring says the rule."""
    raw_vars = data.get("vars")
    declared = {k for k in raw_vars if isinstance(k, str)} if isinstance(raw_vars, dict) else set()
    steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    assert isinstance(steps, list)
    return [
        *_yaml_only_types(items),
        *_captures_hiding_vars(items, declared),
        *_references(items, declared | set(_captures(items))),
        *_step_rules(steps, data),
        *transaction_blocks(steps),
        *_unknown_needed_by(items, steps),
        *_defaults_from_declared(raw_vars if isinstance(raw_vars, dict) else {}),
        *_var_cycles(raw_vars if isinstance(raw_vars, dict) else {}),
    ]


def _yaml_only_types(items: list[tuple[Loc, Any]]) -> list[tuple[Loc, str]]:
    """No binary or set values: YAML types the schema would quietly convert (bytes to text, a
    set, whose order is undefined, to a list)."""
    problems: list[tuple[Loc, str]] = []
    for loc, value in items:
        if isinstance(value, bytes):
            problems.append((loc, "expected text; found binary data (!!binary)"))
        elif isinstance(value, set | frozenset):
            problems.append((loc, "expected a list; found a set (!!set), whose order is undefined"))
    return problems


def _captures(items: list[tuple[Loc, Any]]) -> dict[str, Loc]:
    """Each name a check captures into, at its first capture: a variable for later steps."""
    captures: dict[str, Loc] = {}
    for loc, value in items:
        if loc and loc[-1] == "capture" and isinstance(value, str):
            captures.setdefault(value, loc)
    return captures


def _captures_hiding_vars(
    items: list[tuple[Loc, Any]], declared: set[str]
) -> list[tuple[Loc, str]]:
    """No capture takes the name of a declared variable: it would hide that variable from every
    later `${name}`."""
    return [
        (
            loc,
            f"capture {value!r} would hide the variable of that name; "
            "expected a name not declared under vars",
        )
        for loc, value in items
        if loc and loc[-1] == "capture" and isinstance(value, str) and value in declared
    ]


def _references(items: list[tuple[Loc, Any]], known: set[str]) -> list[tuple[Loc, str]]:
    """Every rendered text's references are well formed and name a declared variable or a
    capture (or `value`, in a message), checked at load rather than when the step renders."""
    sections = ("target", "applies_when", "preflight", "steps", "vars")
    problems: list[tuple[Loc, str]] = []
    for loc, value in items:
        if loc[0] in sections and isinstance(value, str) and str(loc[-1]) not in _NOT_RENDERED:
            problems += _malformed_references(loc, value)
            problems += _undeclared_references(loc, value, known)
    return problems


def _malformed_references(loc: Loc, value: str) -> list[tuple[Loc, str]]:
    """A `${` that starts no reference is a typo, not text: a literal one is written `$${`."""
    return [
        (loc, f"malformed reference {bad!r}; expected ${{name}} (or $${{ for a literal ${{)")
        for bad in malformed(value)
    ]


def _undeclared_references(loc: Loc, value: str, known: set[str]) -> list[tuple[Loc, str]]:
    """Each `${name}` is declared (or captured; a message may also say `${value}`)."""
    allowed = known | {"value"} if loc[-1] == "message" else known
    return [(loc, _undeclared(name, allowed)) for name in refs(value) if name not in allowed]


def _unknown_needed_by(items: list[tuple[Loc, Any]], steps: list[Any]) -> list[tuple[Loc, str]]:
    """Each id a `needed_by` names is the id of a step of this runbook: a misspelt one would tie
    the check to no step."""
    ids: list[str] = [
        s["id"] for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)
    ]
    problems: list[tuple[Loc, str]] = []
    for loc, value in items:
        if loc and loc[-1] == "needed_by" and isinstance(value, list):
            for j, step_id in enumerate(value):
                if isinstance(step_id, str) and step_id not in ids:
                    close = difflib.get_close_matches(step_id, ids, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    problems.append(
                        (
                            (*loc, j),
                            f"no step with id {step_id!r}{hint}; "
                            f"expected one of: {', '.join(dict.fromkeys(ids)) or 'no steps'}",
                        )
                    )
    return problems


def check_patterns(items: list[tuple[Loc, Any]]) -> list[tuple[Loc, str]]:
    """Every regular expression compiles (edits, file checks, `stdout_matches`, `matches`)."""
    problems: list[tuple[Loc, str]] = []
    for loc, value in items:
        if not (
            isinstance(value, str)
            and loc[0] in ("applies_when", "preflight", "steps")
            and _is_pattern(loc)
        ):
            continue
        try:
            re.compile(value)
        except re.error as exc:
            problems.append((loc, f"invalid regular expression {value!r}: {exc}"))
        except (OverflowError, RecursionError, ValueError) as exc:
            detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            problems.append((loc, f"invalid regular expression: {detail}"))
    return problems


def _is_pattern(loc: Loc) -> bool:
    key = loc[-1] if loc else None
    parent = loc[-3] if len(loc) >= 3 and isinstance(loc[-2], int) else None
    return (
        (key in _EDIT_PATTERNS and parent == "edits")
        or (key in _CHECK_PATTERNS and parent in _CHECK_LISTS)
        or (key == "matches" and len(loc) >= 2 and loc[-2] in ("expect", "rows"))
    )


def _undeclared(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean ${{{close[0]}}}?)" if close else ""
    declared = ", ".join(sorted(known - {"value"})) or "none"
    return f"undeclared variable ${{{name}}}{hint}: declare it under vars (declared: {declared})"


def _step_rules(steps: list[Any], data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """The rules about each step in turn (a unique id, a way back), then about the target."""
    problems: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for i, step in enumerate(steps):
        if isinstance(step, dict):
            problems += _duplicate_id(i, step, seen)
            problems += _way_back(i, step)
            problems += _alone(i, step)
    problems += _target_for_sql(steps, data)
    problems += _target_url_is_reference(data)
    return problems


def _duplicate_id(i: int, step: dict[str, Any], seen: dict[str, int]) -> list[tuple[Loc, str]]:
    """Step ids are unique: the journal, `needed_by` and `--skip` name a step by its id.
    `seen` holds each id's first step, and learns this step's."""
    step_id = step.get("id")
    if not isinstance(step_id, str):
        return []
    if step_id not in seen:
        seen[step_id] = i
        return []
    return [
        (
            ("steps", i, "id"),
            f"duplicate step id {step_id!r} (first at steps[{seen[step_id]}]); "
            "expected a unique id",
        )
    ]


def _way_back(i: int, step: dict[str, Any]) -> list[tuple[Loc, str]]:
    """A step that changes something has a rollback (an action, or restore_files) or says why it
    is irreversible; and that rollback covers each kind of change its actions make."""
    actions = step.get("action") if isinstance(step.get("action"), list) else []
    assert isinstance(actions, list)
    if not actions or step.get("irreversible"):
        return []
    rollback = step.get("rollback")
    undo = rollback.get("action") if isinstance(rollback, dict) else None
    restores = rollback.get("restore_files") is True if isinstance(rollback, dict) else False
    if not undo and not restores:
        return [
            (
                ("steps", i),
                "step changes something but has no rollback: expected `rollback` "
                "(action or restore_files) or `irreversible: <reason>`",
            )
        ]
    kinds = [a["kind"] for a in actions if isinstance(a, dict) and isinstance(a.get("kind"), str)]
    return [*_undone_by_action(i, kinds, undo), *_files_restored(i, kinds, restores)]


def _alone(i: int, step: dict[str, Any]) -> list[tuple[Loc, str]]:
    """A person's operation (`manual`) is the only one of its list: its step holds no
    transaction while the person works, and nothing runs unasked beside it."""
    rollback = step.get("rollback")
    lists: list[tuple[Loc, Any]] = [
        (("steps", i, "action"), step.get("action")),
        (("steps", i, "rollback", "action"), rollback.get("action"))
        if isinstance(rollback, dict)
        else ((), None),
    ]
    problems: list[tuple[Loc, str]] = []
    for loc, ops in lists:
        if not isinstance(ops, list) or len(ops) < 2:
            continue
        kinds = {
            op["kind"] for op in ops if isinstance(op, dict) and isinstance(op.get("kind"), str)
        }
        if kinds & _ALONE:
            only = ", ".join(sorted(str(k) for k in kinds & _ALONE))
            problems.append(
                (
                    loc,
                    f"a {only} operation is the only operation of its list: expected one "
                    "operation here, or a step of its own for the others",
                )
            )
    return problems


def _undone_by_action(i: int, kinds: list[str], undo: Any) -> list[tuple[Loc, str]]:
    """Restoring files undoes only file edits: any other operation needs a rollback action."""
    other = sorted({k for k in kinds if k in OPERATION_KINDS and k not in _FILE_KINDS})
    if not other or undo:
        return []
    return [
        (
            ("steps", i, "rollback"),
            f"restore_files only restores files, not the effect of the {', '.join(other)} "
            "action(s): expected rollback `action` for them, or `irreversible: <reason>`",
        )
    ]


def _files_restored(i: int, kinds: list[str], restores: bool) -> list[tuple[Loc, str]]:
    """A step that edits files restores them from their pre-images: a hand-written undo of an
    edit can't give back the exact bytes."""
    if not any(k in _FILE_KINDS for k in kinds) or restores:
        return []
    return [
        (
            ("steps", i, "rollback"),
            "the step edits files: expected `restore_files: true` so "
            "rollback restores their exact bytes",
        )
    ]


def _target_for_sql(steps: list[Any], data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """A runbook with an sql check or operation has a `target` to connect to: said at the
    first one, preflight before steps."""
    first_sql = (
        _first_kind(data.get("applies_when"), _DATABASE_KINDS, ("applies_when",))
        or _first_kind(data.get("preflight"), _DATABASE_KINDS, ("preflight",))
        or _first_kind(steps, _DATABASE_KINDS, ("steps",))
    )
    if first_sql is None or isinstance(data.get("target"), dict):
        return []
    return [
        (
            first_sql,
            "sql checks and operations need a database: expected a top-level "
            "`target` with `url: ${database_url}`",
        )
    ]


def _target_url_is_reference(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """The target's URL is a reference to a variable, never written in the runbook: which
    database a run changes, and its password, come from the operator (--database-url, --var,
    the environment)."""
    target = data.get("target")
    if not isinstance(target, dict) or not isinstance(target.get("url"), str):
        return []
    if REF.fullmatch(target["url"].strip()):
        return []
    return [
        (
            ("target", "url"),
            "expected a reference to a variable, such as ${database_url} "
            "(never a URL written in the runbook)",
        )
    ]


def _default_refs(spec: dict[Any, Any]) -> list[str]:
    """The variables a default refers to: those of `default`, or the one `default_from` names."""
    if isinstance(spec.get("default"), str):
        return refs(spec["default"])
    return [spec["default_from"]] if isinstance(spec.get("default_from"), str) else []


def _defaults_from_declared(raw_vars: dict[Any, Any]) -> list[tuple[Loc, str]]:
    """Each `default_from` names a declared variable."""
    named = {k: v.get("default_from") for k, v in raw_vars.items() if isinstance(v, dict)}
    bad = [(k, n) for k, n in named.items() if isinstance(n, str) and n not in raw_vars]
    return [(("vars", k, "default_from"), _undeclared(n, set(raw_vars))) for k, n in bad]


def _var_cycles(raw_vars: dict[Any, Any]) -> list[tuple[Loc, str]]:
    """No variable's default depends on itself, through any chain of other defaults: it could
    never be given a value."""
    deps = {k: _default_refs(v) for k, v in raw_vars.items() if isinstance(v, dict)}
    problems: list[tuple[Loc, str]] = []
    for start in deps:
        # Breadth first from `start`; a path back to it is a cycle.
        parent: dict[str, str] = {}
        queue = [start]
        while queue:
            name = queue.pop(0)
            if start in deps.get(name, ()):
                chain = [start, name]
                while chain[-1] != start:
                    chain.append(parent[chain[-1]])
                cycle = " -> ".join(f"${{{n}}}" for n in reversed(chain))
                key = "default" if "default" in raw_vars[start] else "default_from"
                problems.append(
                    (
                        ("vars", start, key),
                        f"${{{start}}} depends on itself ({cycle}); expected defaults "
                        "that don't refer back to each other",
                    )
                )
                break
            for dep in deps.get(name, ()):
                if dep not in parent and dep != start:
                    parent[dep] = name
                    queue.append(dep)
    return problems


def _first_kind(value: Any, kinds: frozenset[str], loc: Loc) -> Loc | None:
    return next(
        (
            item_loc
            for item_loc, v in _items(value, loc)
            if item_loc[-1] == "kind" and isinstance(v, str) and v in kinds
        ),
        None,
    )


def _items(value: Any, loc: Loc) -> Iterator[tuple[Loc, Any]]:
    """Every (location, value) below `value`, depth first, without recursion (any depth)."""
    stack: list[tuple[Loc, Any]] = [(loc, value)]
    while stack:
        here, item = stack.pop()
        children: list[tuple[Loc, Any]] = []
        if isinstance(item, dict):
            children = [
                ((*here, k), v)
                for k, v in item.items()
                if isinstance(k, str) or isinstance(k, Hashable)
            ]
        elif isinstance(item, list):
            children = [((*here, i), v) for i, v in enumerate(item)]
        yield from children
        stack.extend(reversed(children))
