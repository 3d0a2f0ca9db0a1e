"""A corpus of dangerous runbooks (tests/lint/corpus/, one per rule, squawk's and ours): each
gives exactly the findings expected, at their line and column, through the real CLI; the clean
one gives none. Each file is named after the rule it shows (and so is the runbook in it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dcx_runbook.lint.rules import RULES
from tests.conftest import cli

CORPUS = Path(__file__).parent / "corpus"
FOUND = re.compile(r"^.+?:(\d+):(\d+): \S+: (?:warning|error|note) ([a-z-]+):", re.M)

# (rule, line, column) of every finding each file gives. Besides its own rule, a file may show
# the ones its rollback can't avoid (a DROP COLUMN undoing an ADD COLUMN).
EXPECTED: dict[str, list[tuple[str, int, int]]] = {
    "acting-step-without-done-when": [("acting-step-without-done-when", 11, 7)],
    "adding-field-with-default": [
        ("adding-field-with-default", 14, 61),
        ("ban-drop-column", 18, 30),
    ],
    "adding-foreign-key-constraint": [
        ("adding-foreign-key-constraint", 14, 32),
        ("ban-drop-constraint", 18, 30),
        ("constraint-missing-not-valid", 14, 28),
    ],
    "adding-required-field": [("adding-required-field", 14, 28), ("ban-drop-column", 18, 30)],
    "ban-drop-column": [("ban-drop-column", 14, 28)],
    "changing-column-type": [("changing-column-type", 14, 43)],
    "clean": [],
    "concurrently-without-indisvalid-verify": [("concurrently-without-indisvalid-verify", 15, 14)],
    "constraint-missing-not-valid": [
        ("ban-drop-constraint", 18, 30),
        ("constraint-missing-not-valid", 14, 28),
    ],
    "irreversible-with-rollback": [("irreversible-with-rollback", 10, 19)],
    "name-differs-from-file": [("name-differs-from-file", 2, 7)],
    "renaming-column": [("renaming-column", 14, 28), ("renaming-column", 18, 30)],
    "require-concurrent-index-creation": [
        ("require-concurrent-index-creation", 14, 14),
        ("require-concurrent-index-deletion", 18, 16),
    ],
    "require-concurrent-index-deletion": [("require-concurrent-index-deletion", 14, 14)],
    "rollback-stronger-lock": [
        ("require-concurrent-index-creation", 18, 16),
        ("require-concurrent-index-deletion", 14, 14),
        ("rollback-stronger-lock", 18, 16),
    ],
    "set-not-null-without-check": [
        ("adding-not-nullable-field", 14, 43),
        ("ban-drop-not-null", 18, 45),
        ("set-not-null-without-check", 14, 14),
    ],
    "unbounded-update-delete": [("unbounded-update-delete", 14, 14)],
    "unused-variable": [("unused-variable", 5, 14)],
    # squawk's other rules
    "renaming-table": [("renaming-table", 14, 28)],
    "ban-drop-table": [("ban-drop-table", 14, 14)],
    "ban-drop-database": [("ban-drop-database", 15, 14)],
    "ban-truncate-cascade": [("ban-truncate-cascade", 14, 25)],
    "disallowed-unique-constraint": [
        ("constraint-missing-not-valid", 14, 28),
        ("disallowed-unique-constraint", 14, 32),
    ],
    "adding-serial-primary-key-field": [
        ("adding-serial-primary-key-field", 14, 53),
        ("prefer-identity", 14, 43),
    ],
    "ban-char-field": [("ban-char-field", 14, 46)],
    "prefer-text-field": [("prefer-text-field", 14, 46)],
    "prefer-timestamp-tz": [("prefer-timestamp-tz", 14, 44)],
    "prefer-bigint-over-int": [("prefer-bigint-over-int", 14, 33)],
    "prefer-bigint-over-smallint": [("prefer-bigint-over-smallint", 14, 33)],
    "prefer-identity": [("prefer-identity", 14, 33)],
    "ban-create-domain-with-constraint": [("ban-create-domain-with-constraint", 14, 40)],
    "ban-alter-domain-with-add-constraint": [("ban-alter-domain-with-add-constraint", 14, 29)],
    "ban-drop-not-null": [("ban-drop-not-null", 14, 43)],
    "ban-drop-constraint": [("ban-drop-constraint", 14, 28)],
    "transaction-nesting": [("transaction-nesting", 15, 22)],
    "ban-uncommitted-transaction": [("ban-uncommitted-transaction", 15, 15)],
    "ban-drop-function": [("ban-drop-function", 14, 14)],
    "ban-drop-sequence": [("ban-drop-sequence", 14, 14)],
    "ban-duplicate-column-assignments": [
        ("ban-duplicate-column-assignments", 14, 27),
        ("ban-duplicate-column-assignments", 14, 34),
    ],
    "require-enum-value-ordering": [("require-enum-value-ordering", 14, 28)],
    "require-concurrent-partition-detach": [("require-concurrent-partition-detach", 14, 28)],
}


def test_the_corpus_has_a_runbook_for_every_rule_of_ours() -> None:
    assert {p.stem for p in CORPUS.glob("*.yaml")} == set(EXPECTED)
    ours = set(RULES) - {"no-transaction-block"}  # a validation error: tests/validation/
    assert ours <= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_runbook_gives_exactly_its_findings(name: str) -> None:
    path = CORPUS / f"{name}.yaml"
    done = cli("validate", str(path))
    assert done.returncode == 0, done.stderr  # warnings: exit 0 without --strict
    found = sorted((rule, int(line), int(col)) for line, col, rule in FOUND.findall(done.stderr))
    assert found == sorted(EXPECTED[name]), done.stderr
    assert all(line.startswith(str(path)) for line in done.stderr.splitlines()[:-1]), done.stderr
    strict = cli("validate", "--strict", str(path))
    assert strict.returncode == (0 if not EXPECTED[name] else 2), strict.stderr


def test_a_waiver_keeps_the_finding_on_the_record_with_its_reason(tmp_path: Path) -> None:
    text = (CORPUS / "unbounded-update-delete.yaml").read_text()
    reason = "t holds one row per region (12 rows), all of which the fix resets"
    waived = text.replace(
        "    title: everything\n",
        f"    title: everything\n    lint:\n      allow:\n        unbounded-update-delete: {reason}\n",
    )
    path = tmp_path / "unbounded-update-delete.yaml"
    path.write_text(waived)
    done = cli("validate", "--strict", str(path))
    assert done.returncode == 0, done.stderr
    assert "unbounded-update-delete: UPDATE without WHERE" in done.stderr
    assert f"[waived: {reason}]" in done.stderr and "lint: 1 waived" in done.stderr


def test_wallet_fix_passes_strict() -> None:
    """Its rollback rebuilds the index without blocking writes; its two deliberate choices are
    waived with reasons a DBA can read."""
    done = cli("validate", "--strict", "wallet-fix")
    assert done.returncode == 0, done.stderr
    assert "lint: 2 waived" in done.stderr
    assert "[waived: The drop runs in the step's transaction" in done.stderr
