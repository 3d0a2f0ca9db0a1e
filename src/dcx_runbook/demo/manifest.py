"""What `dcx-runbook demo` sets up for a runbook, read from `fixtures/<runbook>/demo.yaml` next to
the runbook file: the demo command itself knows no runbook, so each runbook that wants a demo
ships its own schema, seed data, scratch checkout and state query, and says which of its steps need
node tools. Every problem is reported at once, located, before a sandbox starts (exit 2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcx_runbook.errors import InvalidInput, Problem, ValidationFailed
from dcx_runbook.format.loader import Loaded
from dcx_runbook.format.problems import describe_found, in_order, problem_at
from dcx_runbook.format.yaml_source import read_yaml

if TYPE_CHECKING:
    import yaml

    from dcx_runbook.format.model import Runbook

MANIFEST = "demo.yaml"
KEYS = ("load", "checkout", "state_query", "node_steps", "fleet")
MAX_MANIFEST_BYTES = 1024 * 1024  # a few lines by hand; anything near this is the wrong file


@dataclass(frozen=True)
class Checkout:
    source: Path  # the folder copied for each demo
    var: str  # the runbook variable that receives the copy's path


@dataclass(frozen=True)
class Manifest:
    path: Path
    sql: tuple[Path, ...] = ()  # loaded in this order: schema, then seed data
    checkout: Checkout | None = None
    state_query: str | None = None  # one read-only row, shown before, after the run and the undo
    node_steps: tuple[str, ...] = ()  # skipped unless prepared node tools are given
    # `demo --fleet`: the SQL files of each target of the runbook's targets example, by name.
    fleet: dict[str, tuple[Path, ...]] | None = None


def fixtures_dir(runbook_file: Path) -> Path:
    """`<dir>/fixtures/<stem>/` for `<dir>/<stem>.yaml`: the fixtures travel with the file (and
    ship in the wheel with the bundled runbooks)."""
    return runbook_file.parent / "fixtures" / runbook_file.stem


def read(loaded: Loaded) -> Manifest:
    """The runbook's demo manifest, checked against the runbook; raise InvalidInput when there is
    none and ValidationFailed listing every problem of a bad one."""
    path = fixtures_dir(loaded.path) / MANIFEST
    if not path.is_file():
        raise InvalidInput(f"no demo fixtures for {loaded.runbook.name} (expected {path})")
    node, data = _parse(path)
    checker = _Checker(path, node, loaded.runbook)
    manifest = checker.manifest(data)
    if checker.problems:
        raise ValidationFailed(in_order(checker.problems))
    return manifest


def _parse(path: Path) -> tuple[yaml.Node, dict[str, Any]]:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed([Problem(str(path), "", f"can't read: {exc}")]) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ValidationFailed([Problem(str(path), "", "too large for a demo manifest")])
    node, data, problems, duplicates = read_yaml(text, raw, str(path))
    if problems or duplicates:
        raise ValidationFailed(in_order(problems + duplicates))
    if node is None or not isinstance(data, dict):
        message = f"expected a mapping of {', '.join(KEYS)}; found {describe_found(data)}"
        raise ValidationFailed([Problem(str(path), "", message, 1, 1)])
    return node, data


class _Checker:
    """Plain checks with located problems: the manifest is four keys, and its mistakes (a file
    that isn't there, a step the runbook doesn't have) are about the files and the runbook."""

    def __init__(self, path: Path, node: yaml.Node, runbook: Runbook):
        self.path = path
        self.node = node
        self.runbook = runbook
        self.problems: list[Problem] = []

    def fail(self, loc: Sequence[Any], message: str) -> None:
        self.problems.append(problem_at(str(self.path), self.node, loc, message))

    def manifest(self, data: dict[str, Any]) -> Manifest:
        for key in data:
            if key not in KEYS:
                self.fail([key], f"unknown key; expected one of {', '.join(KEYS)}")
        checkout = self.checkout(data["checkout"]) if "checkout" in data else None
        node_steps = self.node_steps(data.get("node_steps", []))
        if node_steps and "checkout" not in data:
            self.fail(["node_steps"], "node tools go into the checkout: declare checkout too")
        return Manifest(
            path=self.path,
            sql=self.sql(data.get("load", [])),
            checkout=checkout,
            state_query=self.state_query(data.get("state_query")),
            node_steps=node_steps,
            fleet=self.fleet(data["fleet"]) if "fleet" in data else None,
        )

    def sql(self, value: Any) -> tuple[Path, ...]:
        return self.sql_at(["load"], value)

    def sql_at(self, loc: list[Any], value: Any) -> tuple[Path, ...]:
        if not isinstance(value, list):
            self.fail(loc, f"expected a list of SQL files; found {describe_found(value)}")
            return ()
        files = (
            self.inside([*loc, i], item, "SQL file", Path.is_file) for i, item in enumerate(value)
        )
        return tuple(f for f in files if f is not None)

    def fleet(self, value: Any) -> dict[str, tuple[Path, ...]] | None:
        if not isinstance(value, dict) or not value:
            found = describe_found(value)
            self.fail(["fleet"], f"expected a mapping of target names to SQL files; found {found}")
            return None
        return {str(name): self.sql_at(["fleet", name], files) for name, files in value.items()}

    def checkout(self, value: Any) -> Checkout | None:
        if not isinstance(value, dict) or set(value) != {"copy", "var"}:
            found = describe_found(value) if not isinstance(value, dict) else f"keys {list(value)}"
            self.fail(["checkout"], f"expected a mapping with copy and var; found {found}")
            return None
        source = self.inside(["checkout", "copy"], value["copy"], "folder", Path.is_dir)
        var = value["var"]
        if not isinstance(var, str) or var not in self.runbook.vars:
            known = ", ".join(self.runbook.vars) or "none"
            self.fail(
                ["checkout", "var"], f"expected a variable of the runbook ({known}); found {var!r}"
            )
            return None
        return Checkout(source, var) if source is not None else None

    def state_query(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(["state_query"], f"expected an SQL query; found {describe_found(value)}")
            return None
        return value

    def node_steps(self, value: Any) -> tuple[str, ...]:
        steps = [step.id for step in self.runbook.steps]
        if not isinstance(value, list):
            self.fail(["node_steps"], f"expected a list of step ids; found {describe_found(value)}")
            return ()
        for i, item in enumerate(value):
            if item not in steps:
                known = ", ".join(steps)
                self.fail(
                    ["node_steps", i], f"expected a step of the runbook ({known}); found {item!r}"
                )
        return tuple(item for item in value if item in steps)

    def inside(
        self, loc: Sequence[Any], value: Any, what: str, exists: Callable[[Path], bool]
    ) -> Path | None:
        """A path relative to the fixtures folder, which it may not leave."""
        if not isinstance(value, str) or not value:
            self.fail(loc, f"expected the name of a {what}; found {describe_found(value)}")
            return None
        relative = Path(value)
        if relative.is_absolute() or ".." in relative.parts:
            self.fail(loc, f"expected a path inside {self.path.parent}; found {value!r}")
            return None
        full = self.path.parent / relative
        if not exists(full):
            self.fail(loc, f"no {what} {full}")
            return None
        return full
