"""Find runbooks, parse YAML with positions, validate, and report every problem at once."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    from pydantic import ValidationError

    from dcx_runbook.model import Runbook

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            [Problem(filename, "", f"not UTF-8 text (byte {exc.start}: {raw[exc.start]:#04x})")]
        ) from None
    node, data, problems = _read_yaml(text, filename)
    if problems:
        raise ValidationFailed(problems)
    if data is None:
        raise ValidationFailed(
            [Problem(filename, "", "empty file: expected a runbook mapping", 1, 1)]
        )
    if not isinstance(data, dict):
        raise ValidationFailed(
            [_at(filename, node, (), f"expected a mapping at the top level, found {_type(data)}")]
        )
    problems = _duplicate_keys(node, filename)
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        runbook = None
        for err in exc.errors(include_url=False):
            problems.append(_at(filename, node, err["loc"], _message(err)))
    from dcx_runbook.semantics import check_semantics

    for loc, message in check_semantics(data):
        problems.append(_at(filename, node, loc, message))
    if problems or runbook is None:
        raise ValidationFailed(_unique(problems))
    return Loaded(Path(filename), text, hashlib.sha256(raw).hexdigest(), runbook)


def _read_yaml(text: str, filename: str) -> tuple[yaml.Node | None, Any, list[Problem]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return node, data, []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return None, None, [Problem(filename, "", f"YAML syntax error: {message}", line, col)]
    except yaml.YAMLError as exc:
        return None, None, [Problem(filename, "", f"YAML error: {exc}")]
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. unhashable keys
        return None, None, [Problem(filename, "", f"YAML error: {exc}")]
    finally:
        loader.dispose()


# ---------------------------------------------------------------------------------------- locate


def format_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _walk(node: yaml.Node | None, loc: Sequence[Any]) -> tuple[yaml.Node | None, list[Any]]:
    """Follow a pydantic location through the YAML tree: the deepest node and its real path."""
    path: list[Any] = []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if _scalar(k) == str(part)), None)
            if match is None:
                key = next((k for k, _ in node.value if _scalar(k) == str(part)), None)
                if key is not None:
                    node = key
                    path.append(part)
                continue  # a union tag or a missing key: stay on the mapping
            node = match
            path.append(part)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                node = node.value[part]
                path.append(part)
        # scalars: nothing deeper
    return node, path


def _scalar(node: yaml.Node) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _at(filename: str, root: yaml.Node | None, loc: Sequence[Any], message: str) -> Problem:
    node, _ = _walk(root, loc)
    clean = [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    line = col = None
    if node is not None:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
    return Problem(filename, format_path(clean), message, line, col)


def _type(value: Any) -> str:
    return {
        str: "a string",
        list: "a list",
        int: "a number",
        float: "a number",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)


def _message(err: Any) -> str:
    kind, msg, value = str(err["type"]), str(err["msg"]), err.get("input")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see `dcx-runbook schema`)"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return msg.replace("Input tag", "kind").replace("found using 'kind' ", "")
    if kind == "union_tag_not_found":
        return "missing `kind`"
    if kind == "edit_kind":
        return msg
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind.endswith("_type") or kind.startswith("model_") or kind == "literal_error":
        shown = repr(value) if isinstance(value, str | int | float | bool) else _type(value)
        return f"{msg}; found {shown}"
    return msg


def _duplicate_keys(node: yaml.Node | None, filename: str) -> list[Problem]:
    problems = []
    for mapping, path in _mappings(node, []):
        seen: set[str] = set()
        for key, _ in mapping.value:
            name = _scalar(key)
            if name is None:
                continue
            if name in seen:
                line, col = key.start_mark.line + 1, key.start_mark.column + 1
                where = format_path([*path, name])
                problems.append(Problem(filename, where, "duplicate key", line, col))
            seen.add(name)
    return problems


def _mappings(
    node: yaml.Node | None, path: list[Any]
) -> Iterator[tuple[yaml.MappingNode, list[Any]]]:
    if isinstance(node, yaml.MappingNode):
        yield node, path
        for key, value in node.value:
            yield from _mappings(value, [*path, _scalar(key)])
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _mappings(item, [*path, i])


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
