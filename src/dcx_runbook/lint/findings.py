"""A lint finding: its rule, level, message and help, where it is in the runbook, and the reason
it was waived (a waived finding is still shown, with that reason)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dcx_runbook.statuses import LintLevel


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
        return {k: str(v) if isinstance(v, LintLevel) else v for k, v in asdict(self).items()}

    def waive(self, reason: str) -> Finding:
        return replace(self, waived=reason)


def summary(findings: list[Finding]) -> str:
    """`2 warnings, 1 waived` (errors, warnings, notes, waived: those there are)."""
    counts: dict[str, int] = {}
    for f in findings:
        key = "waived" if f.waived else str(f.level)
        counts[key] = counts.get(key, 0) + 1
    words = {"error": "error", "warning": "warning", "note": "note", "waived": "waived"}
    parts = []
    for key in ("error", "warning", "note", "waived"):
        n = counts.get(key, 0)
        if n:
            parts.append(f"{n} {words[key]}{'s' if n != 1 and key != 'waived' else ''}")
    return ", ".join(parts) or "no findings"
