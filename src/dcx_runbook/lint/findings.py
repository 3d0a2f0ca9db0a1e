"""A lint finding: its rule, level, message and help, where it is in the runbook, and the reason
it was waived (a waived finding is still shown, with that reason)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any


class LintLevel(StrEnum):
    """How serious a lint finding is (docs/lint.md): a level, not a status."""

    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Finding:
    rule: str
    level: LintLevel
    message: str
    help: str = ""
    file: str = ""
    path: str = ""  # inside the runbook: steps[2].rollback.action[0].sql
    line: int | None = None
    column: int | None = None
    step: str | None = None
    source: str = "dcx-runbook"  # or "squawk"
    waived: str | None = None  # the reason given in `lint.allow`
    context: list[str] = field(default_factory=list)  # the live target's, in a dry run

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        at = f" {self.path}:" if self.path else ""
        said = f"{where}:{at} {self.level} {self.rule}: {self.message}"
        if self.help:
            said += f" ({self.help})"
        if self.waived:
            said += f" [waived: {self.waived}]"
        return said

    def as_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict (its deep copy was a tenth of a 1000-step run).
        out = {name: getattr(self, name) for name in _FIELDS}
        out["level"] = str(self.level)
        out["context"] = list(self.context)
        return out

    def waive(self, reason: str) -> Finding:
        return replace(self, waived=reason)


_FIELDS = tuple(f.name for f in fields(Finding))


def summary(findings: list[Finding]) -> str:
    """`2 warnings, 1 waived` (errors, warnings, notes, waived: those there are)."""
    levels = [f.level for f in findings if not f.waived]
    parts = [
        f"{levels.count(level)} {level}{'s' if levels.count(level) != 1 else ''}"
        for level in LintLevel
        if level in levels
    ]
    waived = sum(1 for f in findings if f.waived)
    if waived:
        parts.append(f"{waived} waived")
    return ", ".join(parts) or "no findings"
