"""Find runbooks, parse YAML with positions, validate, and report every problem at once."""

from __future__ import annotations

import copy
import gc
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcx_runbook import caching
from dcx_runbook.errors import Problem, RunbookNotFound, ValidationFailed

if TYPE_CHECKING:  # a run whose runbook is cached (caching.py) reads no YAML: imported then
    import yaml

    from dcx_runbook.format.model import Runbook
    from dcx_runbook.format.problems import Loc

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Found:
    name: str
    path: Path
    origin: str  # which search directory: option, env, cwd, bundled

    def read(self) -> bytes:
        """Its bytes through the size guard: `list` reads every runbook it finds, and a dump left
        in a runbook folder must not cost it seconds and gigabytes."""
        return read_runbook(self.path)


@dataclass(frozen=True)
class Loaded:
    path: Path
    text: str
    sha256: str
    runbook: Runbook
    # The YAML's node tree, with positions: where lint findings are located.
    root: yaml.Node | None = field(default=None, compare=False, repr=False)


# ---------------------------------------------------------------------------------------- search


def bundled_dir() -> Path:
    package = Path(__file__).resolve().parents[1]  # dcx_runbook/
    packaged = package / "runbooks"
    if packaged.is_dir():
        return packaged
    return package.parents[1] / "runbooks"  # a source checkout: src/dcx_runbook/../../runbooks


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
        if not _exists(directory, origin, Path.is_dir):
            continue
        try:
            entries = sorted(directory.iterdir())
        except OSError as exc:
            raise _unreadable(directory, origin, exc) from None
        for path in entries:
            if (
                path.suffix in SUFFIXES
                and not is_targets_file(path)
                and path.stem not in found
                and _exists(path, origin, Path.is_file)
            ):
                found[path.stem] = Found(path.stem, path, origin)
    return sorted(found.values(), key=lambda f: f.name)


def is_targets_file(path: Path) -> bool:
    """A targets file next to the runbooks (docs/fleet.md): `targets.yaml`, `NAME.targets.yaml`,
    `NAME.targets.example.yaml`. Not a runbook."""
    return path.stem == "targets" or ".targets" in path.stem


def _exists(path: Path, origin: str, test: Callable[[Path], bool]) -> bool:
    """`test(path)`, but a folder of the search path that can't be read is an error: skipping it
    could run another runbook of the same name from a later folder."""
    try:
        return test(path)
    except OSError as exc:
        raise _unreadable(path, origin, exc) from None


def _unreadable(path: Path, origin: str, exc: OSError) -> RunbookNotFound:
    return RunbookNotFound(f"can't read {path} (from {origin}): {exc.strerror or exc}")


def locate(name_or_path: str, extra: Sequence[Path] = ()) -> Path:
    if name_or_path.endswith(SUFFIXES) or os.sep in name_or_path or "/" in name_or_path:
        path = Path(name_or_path)
        if not _exists(path, "the command line", Path.is_file):
            raise RunbookNotFound(f"no runbook file at {name_or_path}")
        return path
    for directory, origin in search_dirs(extra):
        for suffix in SUFFIXES:
            candidate = directory / f"{name_or_path}{suffix}"
            if _exists(candidate, origin, Path.is_file):
                return candidate
    names = ", ".join(f.name for f in discover(extra)) or "none"
    raise RunbookNotFound(f"no runbook named {name_or_path!r} (available: {names})")


# ---------------------------------------------------------------------------------------- parse


# A runbook is written by hand: wallet-fix is 10 KB, 1000 generated steps 330 KB. Far beyond this
# is a wrong file (a dump, a log), whose parse would take seconds and gigabytes.
MAX_RUNBOOK_BYTES = 10 * 1024 * 1024


def load(name_or_path: str, extra: Sequence[Path] = (), *, cached: bool = False) -> Loaded:
    """The runbook found by that name or path, validated. `cached`: a runbook whose bytes were
    validated before (by a run) is read back from the cache (caching.py) instead; a miss is
    validated, and kept for the next run when this process keeps new entries (a run does)."""
    path = locate(name_or_path, extra)
    raw = read_runbook(path)
    if not cached:
        return parse(raw, str(path))
    from pydantic.version import VERSION  # a pickle of a model is pydantic's own

    key = VERSION.encode() + b"\0" + raw
    runbook = caching.load("runbook", key)
    if runbook is not None:
        return Loaded(path, raw.decode("utf-8"), hashlib.sha256(raw).hexdigest(), runbook)
    loaded = parse(raw, str(path))
    caching.store("runbook", key, loaded.runbook)
    return loaded


def read_runbook(path: Path) -> bytes:
    """A runbook file's bytes, refused unread past MAX_RUNBOOK_BYTES: every command that reads a
    runbook (run, validate, show, list, rehearse) goes through here, so none parses a wrong file
    whole."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_RUNBOOK_BYTES + 1)
    except OSError as exc:
        raise ValidationFailed([Problem(str(path), "", f"can't read: {exc.strerror}")]) from None
    if len(raw) > MAX_RUNBOOK_BYTES:
        message = (
            f"larger than {MAX_RUNBOOK_BYTES // (1024 * 1024)} MB: not a runbook "
            "(is it the right file?)"
        )
        raise ValidationFailed([Problem(str(path), "", message)])
    return raw


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

    from dcx_runbook.format.model import Runbook
    from dcx_runbook.format.problems import describe_found, in_order, problem_at, schema_errors
    from dcx_runbook.format.semantics import check_patterns, check_semantics, walk
    from dcx_runbook.format.yaml_source import byte_position, read_yaml

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = byte_position(raw, exc.start)
        message = (
            f"not UTF-8 text: found byte {raw[exc.start]:#04x} that is not valid UTF-8; "
            "expected a UTF-8 encoded YAML file"
        )
        raise ValidationFailed([Problem(filename, "", message, line, col)]) from None
    node, data, problems, duplicates = read_yaml(text, raw, filename)
    if problems:
        raise ValidationFailed(problems)
    if node is None:
        raise ValidationFailed(
            [Problem(filename, "", "empty file: expected a runbook (a mapping of keys)", 1, 1)]
        )
    if not isinstance(data, dict):
        message = f"expected a mapping (name:, title:, steps: ...) at the top level; found {describe_found(data)}"
        raise ValidationFailed([problem_at(filename, node, (), message)])
    problems = duplicates
    # Patterns are compiled here rather than by the schema: some bad ones raise OverflowError or
    # RecursionError, which pydantic does not turn into a validation error.
    items = walk(data)
    bad_patterns = check_patterns(items)
    try:
        runbook = Runbook.model_validate(_blank(data, [loc for loc, _ in bad_patterns]))
    except ValidationError as exc:
        runbook = None
        for parts, message in schema_errors(exc.errors(include_url=False)):
            problems.append(problem_at(filename, node, parts, message))
    for loc, message in [*bad_patterns, *check_semantics(data, items)]:
        problems.append(problem_at(filename, node, loc, message))
    if problems or runbook is None:
        raise ValidationFailed(in_order(problems))
    return Loaded(Path(filename), text, hashlib.sha256(raw).hexdigest(), runbook, node)


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
