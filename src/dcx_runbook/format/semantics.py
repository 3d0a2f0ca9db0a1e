"""Rules that span a whole runbook: unique ids, declared variables, a way back for every change.

They work on the raw YAML data, so they are reported alongside schema errors, all at once. The
data may have any shape (the schema may have rejected it): every rule checks types before use.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Hashable, Iterator
from typing import Any

from dcx_runbook.kinds import OPERATION_KINDS, OPERATIONS, with_trait
from dcx_runbook.kinds.sql import refused_in_transaction, statements
from dcx_runbook.template import REF, malformed, refs

Loc = tuple[Any, ...]
_NOT_RENDERED = {"title", "description", "name", "id", "kind", "irreversible"}
_CHECK_LISTS = ("preflight", "done_when", "precheck", "verify")
# Kinds whose files a rollback restores from their pre-images; kinds that need the database; kinds
# whose operations run inside the step's transaction (their SQL text is checked for statements
# that refuse one).
_FILE_KINDS = with_trait("restored_from_preimage")
_DATABASE_KINDS = with_trait("uses_connection")
_TRANSACTIONAL = {k: OPERATIONS[k].op_model.sql_fields for k in with_trait("transactional")}
_EDIT_PATTERNS = ("replace", "remove_line", "after")
_CHECK_PATTERNS = ("matches", "not_matches", "stdout_matches")


def walk(data: dict[str, Any]) -> list[tuple[Loc, Any]]:
    """Every (location, value) of the document: one walk, shared by every rule."""
    return list(_items(data, ()))


def check_semantics(data: dict[str, Any], items: list[tuple[Loc, Any]]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    raw_vars = data.get("vars")
    declared = {k for k in raw_vars if isinstance(k, str)} if isinstance(raw_vars, dict) else set()
    steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    assert isinstance(steps, list)

    for loc, value in items:
        # YAML types that the schema would quietly convert: bytes to text, a set to a list.
        if isinstance(value, bytes):
            problems.append((loc, "expected text; found binary data (!!binary)"))
        elif isinstance(value, set | frozenset):
            problems.append((loc, "expected a list; found a set (!!set), whose order is undefined"))

    captures: dict[str, Loc] = {}
    for loc, value in items:
        if loc and loc[-1] == "capture" and isinstance(value, str):
            if value in declared:
                problems.append(
                    (
                        loc,
                        f"capture {value!r} would hide the variable of that name; "
                        "expected a name not declared under vars",
                    )
                )
            captures.setdefault(value, loc)

    known = declared | set(captures)
    sections = ("target", "preflight", "steps", "vars")
    rendered = (
        (loc, value)
        for loc, value in items
        if loc[0] in sections and isinstance(value, str) and str(loc[-1]) not in _NOT_RENDERED
    )
    for loc, value in rendered:
        for bad in malformed(value):
            problems.append(
                (
                    loc,
                    f"malformed reference {bad!r}; expected ${{name}} (or $${{ for a literal ${{)",
                )
            )
        allowed = known | {"value"} if loc[-1] == "message" else known
        for name in refs(value):
            if name not in allowed:
                problems.append((loc, _undeclared(name, allowed)))

    problems += _step_rules(steps, data)
    problems += _transaction_blocks(steps)
    ids: list[str] = [
        s["id"] for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)
    ]
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
    problems += _var_cycles(raw_vars if isinstance(raw_vars, dict) else {})
    return problems


def check_patterns(items: list[tuple[Loc, Any]]) -> list[tuple[Loc, str]]:
    """Every regular expression compiles (edits, file checks, `stdout_matches`, `matches`)."""
    problems: list[tuple[Loc, str]] = []
    for loc, value in items:
        if not (isinstance(value, str) and loc[0] in ("preflight", "steps") and _is_pattern(loc)):
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
    problems: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        step_id = step.get("id")
        if isinstance(step_id, str):
            if step_id in seen:
                problems.append(
                    (
                        ("steps", i, "id"),
                        f"duplicate step id {step_id!r} (first at steps[{seen[step_id]}]); "
                        "expected a unique id",
                    )
                )
            else:
                seen[step_id] = i
        actions = step.get("action") if isinstance(step.get("action"), list) else []
        assert isinstance(actions, list)
        if not actions or step.get("irreversible"):
            continue
        rollback = step.get("rollback")
        undo = rollback.get("action") if isinstance(rollback, dict) else None
        restores = rollback.get("restore_files") is True if isinstance(rollback, dict) else False
        if not undo and not restores:
            problems.append(
                (
                    ("steps", i),
                    "step changes something but has no rollback: expected `rollback` "
                    "(action or restore_files) or `irreversible: <reason>`",
                )
            )
            continue
        kinds = [
            a["kind"] for a in actions if isinstance(a, dict) and isinstance(a.get("kind"), str)
        ]
        other = sorted({k for k in kinds if k in OPERATION_KINDS and k not in _FILE_KINDS})
        if other and not undo:
            problems.append(
                (
                    ("steps", i, "rollback"),
                    f"restore_files only restores files, not the effect of the {', '.join(other)} "
                    "action(s): expected rollback `action` for them, or `irreversible: <reason>`",
                )
            )
        if any(k in _FILE_KINDS for k in kinds) and not restores:
            problems.append(
                (
                    ("steps", i, "rollback"),
                    "the step edits files: expected `restore_files: true` so "
                    "rollback restores their exact bytes",
                )
            )
    first_sql = _first_kind(data.get("preflight"), _DATABASE_KINDS, ("preflight",)) or (
        _first_kind(steps, _DATABASE_KINDS, ("steps",))
    )
    if first_sql is not None and not isinstance(data.get("target"), dict):
        problems.append(
            (
                first_sql,
                "sql checks and operations need a database: expected a top-level "
                "`target` with `url: ${database_url}`",
            )
        )
    target = data.get("target")
    if isinstance(target, dict) and isinstance(target.get("url"), str):
        if not REF.fullmatch(target["url"].strip()):
            problems.append(
                (
                    ("target", "url"),
                    "expected a reference to a variable, such as ${database_url} "
                    "(never a URL written in the runbook)",
                )
            )
    return problems


NO_TRANSACTION_BLOCK = "no-transaction-block"


def _transaction_blocks(steps: list[Any]) -> list[tuple[Loc, str]]:
    """Statements PostgreSQL refuses inside a transaction block (CREATE INDEX CONCURRENTLY,
    VACUUM, ...) where the step would send them in one: found by `validate`, not halfway
    through a run. A step's rollback action runs in the step's transaction mode too."""
    problems: list[tuple[Loc, str]] = []
    for i, step in enumerate(steps):
        if isinstance(step, dict):
            in_tx = step.get("transaction", True) is True
            for loc, text in _sql_operations(step, ("steps", i)):
                problems += _refused(loc, text, in_tx)
    return problems


def _sql_operations(step: dict[str, Any], loc: Loc) -> Iterator[tuple[Loc, str]]:
    """(location, text) of each sql operation of the step's action and rollback action."""
    rollback = step.get("rollback")
    lists: list[tuple[Loc, Any]] = [(("action",), step.get("action"))]
    if isinstance(rollback, dict):
        lists.append((("rollback", "action"), rollback.get("action")))
    for where, ops in lists:
        for j, op in enumerate(ops if isinstance(ops, list) else []):
            fields = _TRANSACTIONAL.get(str(op.get("kind"))) if isinstance(op, dict) else None
            for field in fields or ():
                if isinstance(op.get(field), str):
                    yield (*loc, *where, j, field), op[field]


def _refused(loc: Loc, text: str, in_tx: bool) -> list[tuple[Loc, str]]:
    """In a `transaction: true` step every such statement is refused; in a `transaction: false`
    one only a statement sent together with others (PostgreSQL runs several statements of one
    query in an implicit transaction block)."""
    found = refused_in_transaction(text)
    count = len(statements(text)) if found else 0
    if not in_tx and count < 2:
        return []
    problems = []
    for index, name in found:
        which = f" (statement {index + 1} of {count})" if count > 1 else ""
        alone = " and the statement in a sql operation of its own" if count > 1 else ""
        if in_tx:
            mode = "this step runs its sql (action and rollback) in one"
            fix = f"expected `transaction: false` on the step{alone}"
        else:
            mode = "statements sent together run in one"
            fix = "expected the statement in a sql operation of its own"
        problems.append(
            (
                loc,
                f"{NO_TRANSACTION_BLOCK}: {name}{which} can't run inside a transaction block, "
                f"and {mode}: {fix}",
            )
        )
    return problems


def _var_cycles(raw_vars: dict[Any, Any]) -> list[tuple[Loc, str]]:
    deps = {
        name: refs(spec["default"])
        for name, spec in raw_vars.items()
        if isinstance(name, str) and isinstance(spec, dict) and isinstance(spec.get("default"), str)
    }
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
                problems.append(
                    (
                        ("vars", start, "default"),
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
