"""Runbook format v1: validated once at load time; `dcx-runbook schema` publishes it as JSON Schema."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from dcx_runbook.kinds import Check, Operation
from dcx_runbook.kinds.base import Printable

KEBAB = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def _seconds(value: Any) -> Any:
    """`2s`, `500ms`, `1m` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 2s, 500ms or 1m")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            scale = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]
            return float(m.group(1)) * scale
    raise ValueError("expected a duration such as 2s, 500ms or 1m")


Duration = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


def _text(value: Any) -> Any:
    """Variables are text: YAML's `true` and `5` become "true" and "5"."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return value


ScalarDefault = Annotated[str | None, BeforeValidator(_text)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Var(Model):
    description: Printable = ""
    default: ScalarDefault = Field(
        default=None, description="May reference other variables: ${frontend_dir}/backend.env."
    )
    required: bool = False
    secret: bool = Field(default=False, description="Masked everywhere; never journaled.")
    env: str | None = Field(
        default=None,
        pattern=IDENT,
        description="Environment variable (or --env-file key) that supplies the value. Without "
        "it, only --var or the default can.",
    )
    default_from: str | None = Field(
        default=None,
        pattern=IDENT,
        description="The variable whose value this one takes when nothing gives it one: "
        "default: ${name}, but kept in the journal for a secret (a secret's default is not), "
        "so a rollback and status find it again.",
    )
    default_warning: Printable | None = Field(
        default=None,
        min_length=1,
        description="Said as a warning before a run changes anything (its dry run, its "
        "confirmation) while the variable holds its default: why another value is wanted.",
    )

    @model_validator(mode="after")
    def _one_default(self) -> Var:
        if self.default is not None and self.default_from is not None:
            raise ValueError("give default or default_from, not both")
        return self

    @property
    def fallback(self) -> str | None:
        """The default as a template: `default`, or a reference to `default_from`."""
        return f"${{{self.default_from}}}" if self.default_from else self.default


class Timeouts(Model):
    lock_timeout: Duration | None = Field(default=None, description="Per attempt (default 2s).")
    statement_timeout: Duration | None = Field(default=None, description="Default 60s.")
    attempts: int | None = Field(default=None, ge=1, description="On lock timeout (default 5).")
    retry_budget: Duration | None = Field(default=None, description="All attempts (default 30s).")


class Target(Timeouts):
    url: str = Field(description="A reference to the variable holding the URL: ${database_url}.")
    database: str | None = Field(
        default=None, description="Expected database name; any other is refused before any change."
    )
    system_identifier: str | None = Field(
        default=None,
        description="Expected cluster (SELECT system_identifier FROM pg_control_system()): a "
        "runbook that must only ever touch one server refuses any other, whatever its database "
        "is called.",
    )
    ledger_schema: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The schema of the ledger in the target (default dcx_runbook): where every "
        "run records what it did, for any engineer on any machine (docs/ledger.md).",
    )
    requires_approval: int = Field(
        default=0,
        ge=0,
        description="Signed approvals a run against this target needs (docs/approvals.md): it "
        "runs only from an approved plan (run --plan), or with --break-glass --reason.",
    )
    pg_version: str | None = Field(
        default=None,
        pattern=r"^\d+(\.\d+)?$",
        description="The target's PostgreSQL version for `validate`'s lint (a dry run asks the "
        "server): e.g. 15.",
    )


class Rollback(Model):
    precheck: list[Check] = Field(
        default_factory=list, description="Must hold before undoing (e.g. no data would be lost)."
    )
    restore_files: bool = Field(
        default=False, description="Restore the exact pre-run bytes of every file the step edited."
    )
    action: list[Operation] = Field(default_factory=list)
    verify: list[Check] = Field(default_factory=list)
    transaction: bool | None = Field(
        default=None,
        description="Run the rollback's sql and verify in one transaction (default: as the "
        "step). False for CREATE INDEX CONCURRENTLY undoing a DROP INDEX.",
    )


class Lint(Model):
    allow: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict,
        description="Findings waived for this step, by rule, each with its reason: shown in the "
        "dry run, the confirmation and the journal, never dropped (docs/lint.md).",
    )


class Step(Timeouts):
    id: str = Field(pattern=KEBAB, description="Unique, kebab-case; used by --skip and in events.")
    title: Printable
    description: Printable = ""
    done_when: list[Check] = Field(
        default_factory=list,
        description="When all hold, the step's goal is already reached: reported, not run.",
    )
    precheck: list[Check] = Field(default_factory=list)
    action: list[Operation] = Field(default_factory=list)
    verify: list[Check] = Field(default_factory=list)
    rollback: Rollback | None = None
    irreversible: Printable | None = Field(
        default=None, min_length=1, description="Why this step can't be undone."
    )
    transaction: bool = Field(
        default=True,
        description="Run sql action and verify in one transaction, committed only when verify "
        "passes. Set false for statements such as CREATE INDEX CONCURRENTLY.",
    )
    lint: Lint | None = Field(default=None, description="Waivers of lint findings.")


class Runbook(Model):
    version: Literal[1] = 1
    name: str = Field(pattern=KEBAB)
    title: Printable
    description: Printable = ""
    vars: dict[Annotated[str, Field(pattern=IDENT)], Var] = Field(default_factory=dict)
    target: Target | None = None
    applies_when: list[Check] = Field(
        default_factory=list,
        description="Read-only checks of whether this runbook concerns the target at all: where "
        "one does not hold (and the target's ledger records no run of it still in effect), the "
        "target is reported not applicable, with that check's message, and left untouched.",
    )
    preflight: list[Check] = Field(
        default_factory=list, description="Checks that must hold before any step acts."
    )
    steps: list[Step] = Field(min_length=1)
    requires_approval: int = Field(
        default=0,
        ge=0,
        description="Signed approvals every run of this runbook needs (docs/approvals.md): it "
        "runs only from an approved plan (run --plan), or with --break-glass --reason.",
    )
    lint: Lint | None = Field(
        default=None, description="Waivers of the lint findings of the whole runbook."
    )

    def step(self, step_id: str) -> Step:
        return self._steps_by_id[step_id]

    @cached_property
    def _steps_by_id(self) -> dict[str, Step]:
        """Each step by its id (unique: checked by validation), built once: a rollback of 1000
        steps asked for each one six times."""
        index: dict[str, Step] = {}
        for step in self.steps:
            index.setdefault(step.id, step)
        return index

    @property
    def url_var(self) -> str | None:
        """The variable that --database-url supplies."""
        from dcx_runbook.template import REF

        if self.target is None:
            return None
        m = REF.fullmatch(self.target.url.strip())
        return m.group("name") if m else None


def json_schema() -> dict[str, Any]:
    schema = Runbook.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dcx-runbook runbook (format v1)"
    return schema
