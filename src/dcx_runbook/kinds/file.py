"""`file`: targeted edits of a text file (regex replace with an expected count, ensure or remove a
line); checks that it contains or lacks a pattern. Everything else in the file is kept byte for byte."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from dcx_runbook.kinds.base import (
    ONE_FILE,
    CheckResult,
    CheckSpec,
    Context,
    OpSpec,
    Shown,
)
from dcx_runbook.kinds.files import FileWrite, plan_write
from dcx_runbook.template import render


def _valid_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


class Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Replace(Edit):
    """`replace: REGEX` `with: TEXT`, matching exactly `count` times (multiline mode)."""

    replace: str = Field(description="A regular expression (multiline mode).")
    replacement: str = Field(alias="with", description="Replacement; \\1 refers to groups.")
    count: int = Field(default=1, ge=1, description="Exactly this many matches are expected.")

    @model_validator(mode="after")
    def _regex(self) -> Replace:
        _valid_regex(self.replace)
        return self


class EnsureLine(Edit):
    """`ensure_line: TEXT`: added (after the first line matching `after`, else at the end) unless
    an identical line exists."""

    ensure_line: str
    after: str | None = Field(
        default=None, description="Insert after the first line matching this."
    )


class RemoveLine(Edit):
    """`remove_line: REGEX`: every line matching it is removed."""

    remove_line: str = Field(description="Lines matching this regular expression are removed.")
    count: int | None = Field(default=None, ge=0, description="Expected number of lines removed.")

    @model_validator(mode="after")
    def _regex(self) -> RemoveLine:
        _valid_regex(self.remove_line)
        return self


def _edit_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        for tag in ("replace", "ensure_line", "remove_line"):
            if tag in value:
                return tag
        return None
    tags: dict[type, str] = {
        Replace: "replace",
        EnsureLine: "ensure_line",
        RemoveLine: "remove_line",
    }
    return tags.get(type(value))


AnyEdit = Annotated[
    Annotated[Replace, Tag("replace")]
    | Annotated[EnsureLine, Tag("ensure_line")]
    | Annotated[RemoveLine, Tag("remove_line")],
    Discriminator(
        _edit_tag,
        custom_error_type="edit_kind",
        custom_error_message="an edit needs one of replace, ensure_line or remove_line",
    ),
]


class FileCheck(CheckSpec):
    kind: Literal["file"]
    path: str
    exists: bool | None = None
    contains: str | None = Field(default=None, description="Literal text that must be present.")
    not_contains: str | None = None
    matches: str | None = Field(default=None, description="A regular expression that must match.")
    not_matches: str | None = None

    @model_validator(mode="after")
    def _something_to_check(self) -> FileCheck:
        fields = (self.exists, self.contains, self.not_contains, self.matches, self.not_matches)
        if all(f is None for f in fields):
            raise ValueError(
                "a file check needs exists, contains, not_contains, matches or not_matches"
            )
        for pattern in (self.matches, self.not_matches):
            if pattern is not None:
                _valid_regex(pattern)
        return self


class FileOp(OpSpec):
    kind: Literal["file"]
    path: str
    edits: list[AnyEdit] = Field(min_length=1)


class EditFailed(ValueError):
    pass


def apply_edits(text: str, edits: list[Replace | EnsureLine | RemoveLine], ctx: Context) -> str:
    for edit in edits:
        if isinstance(edit, Replace):
            pattern = re.compile(edit.replace, re.MULTILINE)
            found = len(pattern.findall(text))
            if found != edit.count:
                raise EditFailed(
                    f"pattern {edit.replace!r} matched {found} time(s), expected {edit.count}"
                )
            # Values are text, not regex syntax: a backslash in a value stays a backslash.
            escaped = {k: str(v).replace("\\", "\\\\") for k, v in ctx.values.items()}
            text = pattern.sub(render(edit.replacement, escaped), text)
        elif isinstance(edit, EnsureLine):
            line = render(edit.ensure_line, ctx.values)
            lines = text.splitlines(keepends=True)
            if any(existing.rstrip("\r\n") == line for existing in lines):
                continue
            at = len(lines)
            if edit.after is not None:
                anchor = re.compile(edit.after)
                hits = [i for i, existing in enumerate(lines) if anchor.search(existing)]
                if not hits:
                    raise EditFailed(f"no line matches {edit.after!r}")
                at = hits[0] + 1
            if lines and not lines[-1].endswith("\n") and at == len(lines):
                lines[-1] += "\n"
            lines.insert(at, line + "\n")
            text = "".join(lines)
        else:
            pattern = re.compile(edit.remove_line)
            lines = text.splitlines(keepends=True)
            kept = [existing for existing in lines if not pattern.search(existing.rstrip("\r\n"))]
            removed = len(lines) - len(kept)
            if edit.count is not None and removed != edit.count:
                raise EditFailed(
                    f"{removed} line(s) match {edit.remove_line!r}, expected {edit.count}"
                )
            text = "".join(kept)
    return text


class FileKind(Shown):
    name = "file"
    traits = ONE_FILE
    check_model = FileCheck
    op_model = FileOp

    def plan(self, spec: FileOp, ctx: Context) -> FileWrite:
        path = Path(render(spec.path, ctx.values))
        before = ctx.read_file(path)
        if before is None:
            raise FileNotFoundError(f"{path} does not exist")
        try:
            after = apply_edits(before.decode(), spec.edits, ctx).encode()
        except EditFailed as exc:
            raise EditFailed(f"{path}: {exc}") from None
        return plan_write(ctx, path, before, after)

    def check(self, spec: FileCheck, ctx: Context) -> CheckResult:
        path = Path(render(spec.path, ctx.values))
        data = ctx.read_file(path)
        problems = []
        if spec.exists is not None and (data is not None) != spec.exists:
            problems.append(f"{path} {'does not exist' if data is None else 'exists'}")
        if data is None:
            if any(f is not None for f in (spec.contains, spec.matches)):
                problems.append(f"{path} does not exist")
        else:
            text = data.decode(errors="replace")
            if spec.contains is not None and render(spec.contains, ctx.values) not in text:
                problems.append(f"{path} lacks {spec.contains!r}")
            if spec.not_contains is not None and render(spec.not_contains, ctx.values) in text:
                problems.append(f"{path} still contains {spec.not_contains!r}")
            if spec.matches is not None and not re.search(spec.matches, text, re.M):
                problems.append(f"{path} has no match for {spec.matches!r}")
            if spec.not_matches is not None and re.search(spec.not_matches, text, re.M):
                problems.append(f"{path} still matches {spec.not_matches!r}")
        detail = "; ".join(problems) or f"{path} as expected"
        return CheckResult(not problems, ctx.masker(detail))


KIND = FileKind()
