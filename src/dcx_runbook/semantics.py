"""Rules that span a whole runbook: unique ids, declared variables, a way back for every change.

They work on the raw YAML data, so they are reported alongside schema errors, all at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dcx_runbook.template import REF, malformed, refs

Loc = tuple[Any, ...]
_NOT_RENDERED = {"title", "description", "name", "id", "kind", "irreversible"}


def check_semantics(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    raw_vars = data.get("vars")
    declared = set(raw_vars) if isinstance(raw_vars, dict) else set()
    steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    assert isinstance(steps, list)

    captures: dict[str, Loc] = {}
    for loc, value in _items(data, ()):
        if loc and loc[-1] == "capture" and isinstance(value, str):
            if value in declared:
                problems.append((loc, f"capture {value!r} would hide the variable of that name"))
            captures.setdefault(value, loc)

    known = declared | set(captures)
    for section in ("target", "preflight", "steps", "vars"):
        for loc, value in _strings(data.get(section), (section,)):
            for bad in malformed(value):
                problems.append((loc, f"malformed reference {bad!r}: use ${{name}}"))
            allowed = known | {"value"} if loc[-1] == "message" else known
            for name in refs(value):
                if name not in allowed:
                    problems.append(
                        (loc, f"undeclared variable ${{{name}}}: declare it under vars")
                    )

    problems += _step_rules(steps, data)
    ids = {s.get("id") for s in steps if isinstance(s, dict)}
    for loc, value in _items(data, ()):
        if loc and loc[-1] == "needed_by" and isinstance(value, list):
            for j, step_id in enumerate(value):
                if step_id not in ids:
                    problems.append(((*loc, j), f"no step with id {step_id!r}"))
    problems += _var_cycles(raw_vars if isinstance(raw_vars, dict) else {})
    return problems


def _step_rules(steps: list[Any], data: dict[str, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    uses_sql = _uses_kind(data.get("preflight"), "sql")
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        step_id = step.get("id")
        if isinstance(step_id, str):
            if step_id in seen:
                problems.append(
                    (
                        (("steps", i, "id")),
                        f"duplicate step id {step_id!r} (first at steps[{seen[step_id]}])",
                    )
                )
            else:
                seen[step_id] = i
        uses_sql = uses_sql or _uses_kind(step, "sql")
        actions = step.get("action") if isinstance(step.get("action"), list) else []
        assert isinstance(actions, list)
        if not actions or step.get("irreversible"):
            continue
        rollback = step.get("rollback")
        if not isinstance(rollback, dict) or not (
            rollback.get("action") or rollback.get("restore_files")
        ):
            problems.append(
                (
                    ("steps", i),
                    "step changes something but has no rollback: add rollback "
                    "(action or restore_files) or declare `irreversible: <reason>`",
                )
            )
            continue
        edits_files = any(
            isinstance(a, dict) and a.get("kind") in ("file", "env_file") for a in actions
        )
        if edits_files and not rollback.get("restore_files"):
            problems.append(
                (
                    ("steps", i, "rollback"),
                    "the step edits files: set `restore_files: true` so "
                    "rollback restores their exact bytes",
                )
            )
    if uses_sql and not isinstance(data.get("target"), dict):
        problems.append(((), "sql checks or operations need a `target` (the database)"))
    target = data.get("target")
    if isinstance(target, dict) and isinstance(target.get("url"), str):
        if not REF.fullmatch(target["url"].strip()):
            problems.append(
                (("target", "url"), "expected a reference to a variable: ${database_url}")
            )
    return problems


def _var_cycles(raw_vars: dict[str, Any]) -> list[tuple[Loc, str]]:
    deps = {
        name: set(refs(spec["default"]))
        for name, spec in raw_vars.items()
        if isinstance(spec, dict) and isinstance(spec.get("default"), str)
    }
    problems: list[tuple[Loc, str]] = []
    for start in deps:
        stack, seen = [start], set()
        while stack:
            name = stack.pop()
            for dep in deps.get(name, ()):
                if dep == start:
                    problems.append((("vars", start, "default"), f"${{{start}}} depends on itself"))
                    stack = []
                    break
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
    return problems


def _uses_kind(value: Any, kind: str) -> bool:
    return any(loc and loc[-1] == "kind" and v == kind for loc, v in _items(value, ()))


def _items(value: Any, loc: Loc) -> Iterator[tuple[Loc, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*loc, k), v
            yield from _items(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _items(v, (*loc, i))


def _strings(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    for item_loc, item in _items(value, loc):
        if isinstance(item, str) and str(item_loc[-1]) not in _NOT_RENDERED:
            yield item_loc, item
