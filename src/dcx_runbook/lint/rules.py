"""The rules only a runbook tool can know (docs/lint.md): what a step's transaction, its verify,
its rollback, its re-runs and the runbook's variables and file say about its SQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcx_runbook.format.model import Runbook, Step
from dcx_runbook.kinds import traits
from dcx_runbook.kinds.sql import CONCURRENT_BUILDS, no_transaction_block, statements
from dcx_runbook.lint.findings import LintLevel
from dcx_runbook.lint.sites import Site
from dcx_runbook.template import refs

W = LintLevel.WARNING


@dataclass(frozen=True)
class Hit:
    rule: str
    level: LintLevel
    loc: tuple[Any, ...]
    message: str
    help: str
    step: str | None = None


RULES = {
    "no-transaction-block": "a statement PostgreSQL refuses in a transaction, in a step (or "
    "rollback) that runs in one: a validation error (exit 2)",
    "acting-step-without-done-when": "a step that acts without done_when repeats on every run",
    "concurrently-without-indisvalid-verify": "a concurrent index build whose verify doesn't "
    "check indisvalid: a failed build leaves an INVALID index that looks like success",
    "rollback-stronger-lock": "a rollback that blocks the table longer or harder than the action",
    "unbounded-update-delete": "UPDATE or DELETE without WHERE: every row, locked until COMMIT",
    "set-not-null-without-check": "SET NOT NULL with no NOT VALID check constraint before it: a "
    "full scan under ACCESS EXCLUSIVE",
    "irreversible-with-rollback": "a step both irreversible and with a rollback",
    "unused-variable": "a variable declared and never used",
    "name-differs-from-file": "a runbook whose name differs from its file's",
}


def check(runbook: Runbook, filename: str, found: Sequence[Site]) -> list[Hit]:
    hits: list[Hit] = []
    for i, step in enumerate(runbook.steps):
        hits += _step_rules(i, step)
    for site in found:
        hits += _site_rules(site, found)
    hits += _stronger_rollbacks(runbook, found)
    hits += _unused(runbook)
    stem = Path(filename).stem
    if Path(filename).suffix in (".yaml", ".yml") and stem != runbook.name:
        hits.append(
            Hit(
                "name-differs-from-file",
                W,
                ("name",),
                f"the runbook is named {runbook.name!r} but its file {Path(filename).name!r}",
                f"name the file {runbook.name}.yaml (`run {runbook.name}` finds it by name)",
            )
        )
    return hits


def _step_rules(i: int, step: Step) -> Iterator[Hit]:
    # A person's step asked again on a second run is the point: only they know if it is done.
    by_hand = all(traits(op.kind).asks_person for op in step.action)
    if step.action and not step.done_when and not by_hand:
        yield Hit(
            "acting-step-without-done-when",
            W,
            ("steps", i, "action"),
            f"step {step.id} acts but has no done_when: a second run repeats it",
            "add done_when checks that hold once its goal is reached",
            step.id,
        )
    if step.irreversible and step.rollback is not None and step.rollback.action:
        yield Hit(
            "irreversible-with-rollback",
            W,
            ("steps", i, "irreversible"),
            f"step {step.id} is declared irreversible and has a rollback action, which never runs",
            "keep one: the rollback, or the reason it can't be undone",
            step.id,
        )


def _site_rules(site: Site, found: Sequence[Site]) -> Iterator[Hit]:
    for tokens in statements(site.text):
        name = no_transaction_block(tokens)
        if name in CONCURRENT_BUILDS and not _verifies_valid(site):
            yield Hit(
                "concurrently-without-indisvalid-verify",
                W,
                site.loc,
                f"{name} without a verify of pg_index.indisvalid: a build that fails half way "
                "leaves an INVALID index, which a check of its name takes for success",
                "verify with a sql check on pg_index.indisvalid for the index",
                site.step_id,
            )
        if tokens[:1] in (["UPDATE"], ["DELETE"]) and "WHERE" not in tokens:
            yield Hit(
                "unbounded-update-delete",
                W,
                site.loc,
                f"{tokens[0]} without WHERE changes every row of the table in one statement, "
                "each row locked until COMMIT",
                "bound it with WHERE (in batches for a big table)",
                site.step_id,
            )
        if _sets_not_null(tokens) and not _checked_before(site, found):
            yield Hit(
                "set-not-null-without-check",
                W,
                site.loc,
                "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE (reads and writes "
                "wait) unless a validated CHECK (col IS NOT NULL) constraint proves it",
                "first ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, then VALIDATE "
                "CONSTRAINT, then SET NOT NULL",
                site.step_id,
            )


def _verifies_valid(site: Site) -> bool:
    step = site.step
    checks = step.rollback.verify if site.part == "rollback" and step.rollback else step.verify
    return any("indisvalid" in str(getattr(c, "query", "")).lower() for c in checks)


def _sets_not_null(tokens: list[str]) -> bool:
    text = " ".join(tokens)
    return tokens[:2] == ["ALTER", "TABLE"] and "SET NOT NULL" in text


def _checked_before(site: Site, found: Sequence[Site]) -> bool:
    for other in found:
        if other is site:
            return False
        for tokens in statements(other.text):
            text = " ".join(tokens)
            if "CHECK" in tokens and "NOT VALID" in text and "IS NOT NULL" in text:
                return True
    return False


# ------------------------------------------------------------------ rollback-stronger-lock


def impact(tokens: list[str]) -> tuple[int, str]:
    """How much a statement blocks its table, and for how long: 0 nothing to speak of, 1 a
    strong lock briefly (a catalog change), 2 a weak lock for long (a concurrent build, a
    validation, row locks), 3 writes blocked for long (an index build), 4 reads and writes
    blocked for long (a rewrite or a scan under ACCESS EXCLUSIVE)."""
    text = " ".join(tokens)
    name = no_transaction_block(tokens)
    if name in ("CREATE INDEX CONCURRENTLY", "REINDEX CONCURRENTLY", "DROP INDEX CONCURRENTLY"):
        return 2, f"{name} holds SHARE UPDATE EXCLUSIVE while it works (writes go on)"
    if tokens[:2] == ["CREATE", "INDEX"] or tokens[:3] == ["CREATE", "UNIQUE", "INDEX"]:
        return 3, "CREATE INDEX holds SHARE on its table for the whole build (writes wait)"
    if tokens[:1] == ["REINDEX"]:
        return 3, "REINDEX blocks writes for the whole rebuild"
    if tokens[:2] == ["ALTER", "TABLE"]:
        if "VALIDATE CONSTRAINT" in text:
            return 2, "VALIDATE CONSTRAINT scans under SHARE UPDATE EXCLUSIVE (writes go on)"
        if " TYPE " in f" {text} " or "SET NOT NULL" in text:
            return 4, "ALTER TABLE rewrites or scans the table under ACCESS EXCLUSIVE"
        if "ADD" in tokens and "CONSTRAINT" in tokens and "NOT VALID" not in text:
            return 4, "ADD CONSTRAINT scans the table under a lock that blocks writes"
        return 1, "ALTER TABLE takes ACCESS EXCLUSIVE briefly (a catalog change)"
    if tokens[:2] in (["VACUUM", "FULL"], ["CLUSTER"]) or tokens[:1] == ["CLUSTER"]:
        return 4, f"{tokens[0]} rewrites the table under ACCESS EXCLUSIVE"
    if tokens[:1] in (["DROP"], ["TRUNCATE"]):
        return 1, f"{' '.join(tokens[:2])} takes ACCESS EXCLUSIVE briefly"
    if tokens[:1] in (["UPDATE"], ["DELETE"]):
        return 2, f"{tokens[0]} locks every row it changes until COMMIT"
    return 0, ""


def _strongest(site_list: Sequence[Site]) -> tuple[int, str, Site | None]:
    best: tuple[int, str, Site | None] = (0, "", None)
    for site in site_list:
        for tokens in statements(site.text):
            level, said = impact(tokens)
            if level > best[0]:
                best = (level, said, site)
    return best


def _stronger_rollbacks(runbook: Runbook, found: Sequence[Site]) -> Iterator[Hit]:
    by_step: dict[int, list[Site]] = {}
    for site in found:
        by_step.setdefault(site.step_index, []).append(site)
    for i, step in enumerate(runbook.steps):
        mine = by_step.get(i, [])
        done, done_said, _ = _strongest([s for s in mine if s.part == "action"])
        undo, undo_said, where = _strongest([s for s in mine if s.part == "rollback"])
        if where is not None and undo > done and undo >= 3:  # writes (or reads) wait for long
            action = done_said or "the action takes no lock to speak of"
            yield Hit(
                "rollback-stronger-lock",
                W,
                where.loc,
                f"the rollback blocks more than the action did: {undo_said}; {action}",
                "undo without blocking (CREATE INDEX CONCURRENTLY with `rollback: "
                "{transaction: false}` and a verify of indisvalid), or waive it with the reason",
                step.id,
            )


# ------------------------------------------------------------------ unused-variable


def _unused(runbook: Runbook) -> Iterator[Hit]:
    spec = runbook.model_dump(mode="json", by_alias=True, exclude_unset=True)
    declared = spec.pop("vars", {})
    used: set[str] = set()
    for text in _strings([spec, *(declared[n] for n in declared)]):
        used.update(refs(text))
    used.update(v.default_from for v in runbook.vars.values() if v.default_from)
    for name in runbook.vars:
        if name not in used:
            yield Hit(
                "unused-variable",
                W,
                ("vars", name),
                f"variable {name} is declared and never used",
                "remove it, or use it where it was meant to go",
            )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
