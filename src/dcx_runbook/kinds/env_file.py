"""`env_file`: set or unset keys in a dotenv file, parsed by python-dotenv, every other byte kept."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Literal

from dotenv.parser import Binding, parse_stream
from pydantic import Field, model_validator

from dcx_runbook.kinds.base import ONE_FILE, CheckResult, CheckSpec, Context, OpSpec
from dcx_runbook.kinds.files import FileWrite, plan_write
from dcx_runbook.secrets import MASK
from dcx_runbook.template import render

KEY = r"^[A-Za-z_][A-Za-z0-9_.]*$"
_LEADING_BLANK_LINES = re.compile(r"(?:[ \t]*\r?\n)*")
_COMMENTED_VALUE = re.compile(
    r"^([ \t]*#[ \t]*(?:export[ \t]+)?[A-Za-z_][A-Za-z0-9_.]*[ \t]*=).+$", re.M
)


class EnvFileCheck(CheckSpec):
    kind: Literal["env_file"]
    path: str
    key: str = Field(pattern=KEY)
    equals: str | None = Field(default=None, description="The key holds exactly this value.")
    present: bool | None = Field(default=None, description="The key is (or is not) set.")
    count: int | None = Field(default=None, ge=0, description="Lines that set the key.")

    @model_validator(mode="after")
    def _something_to_check(self) -> EnvFileCheck:
        if self.equals is None and self.present is None and self.count is None:
            raise ValueError("an env_file check needs equals, present or count")
        return self


class EnvFileOp(OpSpec):
    kind: Literal["env_file"]
    path: str
    set: dict[str, str] = Field(default_factory=dict, description="KEY: value (one line each).")
    unset: list[str] = Field(default_factory=list, description="Keys whose lines are removed.")
    create: bool = Field(default=False, description="Create the file if it is missing.")

    @model_validator(mode="after")
    def _keys(self) -> EnvFileOp:
        if not self.set and not self.unset:
            raise ValueError("an env_file operation needs set or unset")
        for key in [*self.set, *self.unset]:
            if not re.match(KEY, key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return self


class UnsafeValue(ValueError):
    pass


# A value that reads back the same unquoted: python-dotenv, Node's dotenv, `docker --env-file`
# and a shell's `set -a; . file` alike (no blank, quote, #, $, backslash or shell metacharacter).
_BARE = re.compile(r"[A-Za-z0-9_./:@%+,=?&~-]*")
DOUBLE, SINGLE, BARE = '"', "'", ""


def quote(value: str, style: str = DOUBLE) -> str:
    """The value as the file writes its values (`style`: double-quoted, single-quoted or bare),
    read back unchanged by python-dotenv and Node's dotenv. A value the style can't hold safely
    is double-quoted; one no style can hold is refused."""
    if any(c in value for c in "\n\r\0"):
        raise UnsafeValue("a value with a newline or NUL can't be written safely to an env file")
    if "${" in value:
        # dotenv readers expand ${NAME} inside values and offer no way to escape it.
        raise UnsafeValue("a value containing ${ would be expanded by dotenv readers; refused")
    if style == BARE and _BARE.fullmatch(value):
        return value
    if style == SINGLE and "'" not in value and "\\" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def style_of(line: str) -> str | None:
    """How a binding's line quotes its value: `"`, `'`, bare (""), or None (no value)."""
    _, eq, rest = line.partition("=")
    value = rest.strip()
    if not eq or not value:
        return None
    return value[0] if value[0] in (DOUBLE, SINGLE) else BARE


def file_style(text: str) -> str:
    """The file's own way of quoting values (its most common one; double quotes in a file with
    none): keys added to it are written the same way."""
    styles = [s for b in bindings(text) if b.key and (s := style_of(b.original.string)) is not None]
    # a tie goes to double quotes, which hold the most values
    return max(set(styles), key=lambda s: (styles.count(s), s == DOUBLE)) if styles else DOUBLE


def bindings(text: str) -> list[Binding]:
    return list(parse_stream(io.StringIO(text)))


def masked(text: str, written: dict[str, str]) -> str:
    """`text` as a diff may show it: every key kept, every value `***` but those the runbook writes.

    An env file is where secrets live, and only the runbook's own secrets are known to the masker:
    a neighbouring STRIPE_SECRET_KEY or a commented-out old password must not reach the output.
    """
    out: list[str] = []
    for b in bindings(text):
        original = b.original.string
        newline = "\r\n" if original.endswith("\r\n") else "\n" if original.endswith("\n") else ""
        if b.key is None:
            shown = MASK + newline if b.error else _COMMENTED_VALUE.sub(rf"\g<1>{MASK}", original)
        elif b.value is None or written.get(b.key) == b.value:
            shown = original  # no value, or the very value the runbook writes: nothing to hide
        else:
            head = re.match(r"(?:[ \t]*\r?\n)*[ \t]*(?:export[ \t]+)?[^=]*=", original)
            shown = (head.group(0) if head else f"{b.key}=") + (MASK if b.value else "") + newline
        out.append(shown)
    return "".join(out)


def edit(text: str, set_: dict[str, str], unset: list[str]) -> str:
    """Replace the first line of each key set, drop its duplicates and unset keys, append new ones."""
    out: list[str] = []
    done: set[str] = set()
    style = file_style(text)
    for b in bindings(text):
        original = b.original.string
        if b.key is not None and (b.key in set_ or b.key in unset):
            lead = _LEADING_BLANK_LINES.match(original)
            blank = lead.group(0) if lead else ""
            if b.key in set_ and b.key not in done:
                newline = "\n" if original.endswith("\n") else ""
                own = style_of(original) or style  # the line's own quoting, kept
                out.append(f"{blank}{b.key}={quote(set_[b.key], own)}{newline}")
                done.add(b.key)
            else:
                out.append(blank)
            continue
        out.append(original)
    result = "".join(out)
    missing = [k for k in set_ if k not in done]
    if missing and result and not result.endswith("\n"):
        result += "\n"
    for key in missing:
        result += f"{key}={quote(set_[key], style)}\n"
    return result


class EnvFileKind:
    name = "env_file"
    traits = ONE_FILE
    check_model = EnvFileCheck
    op_model = EnvFileOp

    def diff_view(self, data: bytes) -> bytes:
        """Keys kept, every value masked: an env file is where the other secrets live."""
        return masked(data.decode(errors="replace"), {}).encode()

    def plan(self, spec: EnvFileOp, ctx: Context) -> FileWrite:
        path = Path(render(spec.path, ctx.values))
        before = ctx.read_file(path)
        if before is None and not spec.create:
            raise FileNotFoundError(f"{path} does not exist")
        text = (before or b"").decode()
        values = {k: render(v, ctx.values) for k, v in spec.set.items()}
        after = edit(text, values, spec.unset)
        shown_before = None if before is None else masked(text, values).encode()
        shown = (shown_before, masked(after, values).encode())
        return plan_write(ctx, path, before, after.encode(), shown=shown)

    def check(self, spec: EnvFileCheck, ctx: Context) -> CheckResult:
        path = Path(render(spec.path, ctx.values))
        data = ctx.read_file(path)
        if data is None:
            return CheckResult(False, f"{path} does not exist")
        found = [b for b in bindings(data.decode(errors="replace")) if b.key == spec.key]
        value = found[-1].value if found else None
        problems = []
        if spec.present is not None and bool(found) != spec.present:
            problems.append(f"{spec.key} is {'not ' if not found else ''}set")
        if spec.count is not None and len(found) != spec.count:
            problems.append(f"{len(found)} lines set {spec.key}, expected {spec.count}")
        if spec.equals is not None:
            expected = render(spec.equals, ctx.values)
            if value != expected:
                shown = "unset" if not found else f"{value!r}"
                problems.append(f"{spec.key} is {shown}, expected {expected!r}")
        detail = "; ".join(problems) or f"{spec.key} in {path} as expected"
        return CheckResult(not problems, ctx.masker(detail), value)


KIND = EnvFileKind()
