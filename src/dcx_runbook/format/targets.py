"""A targets file (docs/fleet.md): the named databases one runbook runs across, each with its URL
(or the environment variable holding it), the database it must be, labels and variables.
Validated like a runbook: every problem at once, located by line, column and path."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from dcx_runbook.errors import InvalidInput, Problem, ValidationFailed
from dcx_runbook.format.loader import read_runbook
from dcx_runbook.format.model import IDENT, Model, ScalarDefault
from dcx_runbook.format.problems import describe_found, in_order, problem_at
from dcx_runbook.format.schema_messages import Part
from dcx_runbook.format.yaml_source import read_yaml

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
SUFFIX = ".targets.yaml"


class TargetSpec(Model):
    name: str = Field(pattern=NAME, description="Unique in the file; used by --target.")
    url: str | None = Field(
        default=None,
        description="The database URL. A password in it is masked everywhere; prefer url_env.",
    )
    url_env: str | None = Field(
        default=None, pattern=IDENT, description="The environment variable holding the URL."
    )
    database: str = Field(
        min_length=1, description="The database this target must be: any other is refused."
    )
    system_identifier: str | None = Field(
        default=None, description="The server it must be (pg_control_system()), when given."
    )
    requires_approval: int = Field(
        default=0,
        ge=0,
        description="Signed approvals a run on this target needs (docs/approvals.md).",
    )
    labels: dict[str, ScalarDefault] = Field(
        default_factory=dict, description="For --select label=value."
    )
    vars: dict[Annotated[str, Field(pattern=IDENT)], ScalarDefault] = Field(
        default_factory=dict, description="The runbook's variables for this target (--var wins)."
    )

    @model_validator(mode="after")
    def _one_url(self) -> TargetSpec:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("expected exactly one of url and url_env")
        return self


class TargetsFile(Model):
    version: Literal[1] = 1
    targets: list[TargetSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Targets:
    path: Path
    file: TargetsFile

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.file.targets]


def default_path(runbook_path: Path) -> Path | None:
    """`NAME.targets.yaml`, else `targets.yaml`, next to the runbook."""
    stem = runbook_path.name.rsplit(".", 1)[0]
    for candidate in (
        runbook_path.with_name(stem + SUFFIX),
        runbook_path.with_name("targets.yaml"),
    ):
        if candidate.is_file():
            return candidate
    return None


def load_targets(path: Path) -> Targets:
    """Parse and validate a targets file; raise ValidationFailed listing every problem."""
    raw = read_runbook(path)
    filename = str(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed([Problem(filename, "", "not UTF-8 text", 1, 1)]) from None
    node, data, problems, duplicates = read_yaml(text, raw, filename)
    if problems:
        raise ValidationFailed(problems)
    if node is None or not isinstance(data, dict):
        found = "an empty file" if node is None else describe_found(data)
        message = f"expected a mapping with `targets:` (a list of targets); found {found}"
        raise ValidationFailed([Problem(filename, "", message, 1, 1)])
    problems = list(duplicates)
    parsed = None
    try:
        parsed = TargetsFile.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            problems.append(problem_at(filename, node, _loc(err), _message(err)))
    seen: set[str] = set()
    for index, item in enumerate(data.get("targets") or []):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in seen:
            loc = ("targets", index, "name")
            problems.append(problem_at(filename, node, loc, f"duplicate target name {name!r}"))
        seen.add(str(name))
    if problems or parsed is None:
        raise ValidationFailed(in_order(problems))
    return Targets(path, parsed)


def _loc(err: Mapping[str, Any]) -> tuple[object, ...]:
    """Where pydantic's error is: an unknown key at the key itself (a model validator's error sits
    on the model: pydantic adds no part for it)."""
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden" and loc:
        return (*loc[:-1], Part("key-of", loc[-1]))
    return loc


def _message(err: Mapping[str, Any]) -> str:
    kind, loc = err["type"], err["loc"]
    last = loc[-1] if isinstance(loc, tuple) and loc else ""
    if kind == "extra_forbidden":
        return f"unknown key {last!r}"
    if kind == "missing":
        return f"missing key {last!r}"
    if kind == "string_pattern_mismatch" and last == "name":
        return "expected a name of letters, digits, '_', '.' and '-' (at most 63), such as db-01"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


# ------------------------------------------------------------------------------ choosing


def select(targets: Targets, names: Sequence[str], selectors: Sequence[str]) -> list[TargetSpec]:
    """The targets chosen, in the file's order: those named by --target (all when none), whose
    labels match every --select label=value."""
    known = set(targets.names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput(
            f"--target {', '.join(unknown)}: no such target in {targets.path} "
            f"(targets: {', '.join(targets.names)})"
        )
    wanted = dict(_selector(s) for s in selectors)
    chosen = [
        t
        for t in targets.file.targets
        if (not names or t.name in names) and all(t.labels.get(k) == v for k, v in wanted.items())
    ]
    if not chosen:
        said = " ".join([*(f"--target {n}" for n in names), *(f"--select {s}" for s in selectors)])
        raise InvalidInput(f"no target of {targets.path} matches {said}")
    return chosen


def _selector(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InvalidInput(f"--select {text!r}: expected label=value, such as env=prod")
    return key.strip(), value.strip()


def url_of(target: TargetSpec, env: Mapping[str, str] | None = None) -> str:
    """The target's URL: as written, or from its environment variable (or --env-file)."""
    if target.url is not None:
        return target.url
    assert target.url_env is not None
    value = (env if env is not None else os.environ).get(target.url_env)
    if not value:
        raise InvalidInput(
            f"target {target.name}: ${target.url_env} is not set (url_env: {target.url_env})"
        )
    return value
