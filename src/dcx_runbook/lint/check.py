"""`lint`: squawk's findings and the runbook's own, located, waived where a step (or the
runbook) says why, in the order of the file."""

from __future__ import annotations

from dataclasses import dataclass, field

from dcx_runbook.format.loader import Loaded
from dcx_runbook.lint import rules, squawk
from dcx_runbook.lint.findings import Finding, LintLevel
from dcx_runbook.lint.locate import Locator
from dcx_runbook.lint.sites import sites


@dataclass
class Linted:
    findings: list[Finding] = field(default_factory=list)
    # Why squawk's rules were not applied (not installed, broken), if they were not.
    squawk_missing: str | None = None

    def unwaived(self, level: LintLevel | None = None) -> list[Finding]:
        return [f for f in self.findings if not f.waived and (level is None or f.level == level)]

    def of_step(self, step_id: str) -> list[Finding]:
        return [f for f in self.findings if f.step == step_id]


def lint(loaded: Loaded, pg_version: str | None = None) -> Linted:
    runbook = loaded.runbook
    filename = str(loaded.path)
    found = list(sites(runbook))
    locator = Locator(loaded.text, loaded.root)
    out = Linted()
    version = pg_version or (runbook.target.pg_version if runbook.target else None)
    try:
        raw = squawk.run(found, version)
    except squawk.SquawkMissing as exc:
        out.squawk_missing = str(exc)
        raw = []
    for hit in raw:
        line, column, path = locator.at(hit.site.loc, hit.line, hit.column)
        level = LintLevel.ERROR if hit.level == LintLevel.ERROR else LintLevel.WARNING
        out.findings.append(
            Finding(
                hit.rule,
                level,
                hit.message,
                hit.help,
                filename,
                path,
                line,
                column,
                hit.site.step_id,
                "squawk",
            )
        )
    for own in rules.check(runbook, filename, found):
        line, column, path = locator.at(own.loc)
        out.findings.append(
            Finding(
                own.rule, own.level, own.message, own.help, filename, path, line, column, own.step
            )
        )
    out.findings = [_waived(loaded, f) for f in out.findings]
    out.findings.sort(key=lambda f: (f.line or 0, f.column or 0, f.rule))
    return out


def _waived(loaded: Loaded, finding: Finding) -> Finding:
    runbook = loaded.runbook
    allow = runbook.lint.allow if runbook.lint is not None else {}
    if finding.step is not None:
        step = runbook.step(finding.step)
        allow = {**allow, **(step.lint.allow if step.lint is not None else {})}
    reason = allow.get(finding.rule)
    return finding.waive(reason) if reason else finding
