"""Status words live in one module: the documented JSON event schema uses exactly the enums'
words, and no other module of the package spells a status out (issue 13)."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path

import pytest

from dcx_runbook import statuses
from dcx_runbook.statuses import (
    CheckStatus,
    OperationStatus,
    RunStatus,
    StepOutcome,
    TargetState,
    UndoOutcome,
)

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src" / "dcx_runbook"
SCHEMA = json.loads((ROOT / "docs" / "events.schema.json").read_text())
# Answer is what a person types at a prompt (run, skip, done...), not a status of anything.
ENUMS = [
    v
    for v in vars(statuses).values()
    if isinstance(v, type) and issubclass(v, StrEnum) and v is not statuses.Answer
]
# Words that are also names of fields (of the journal, the runbook format or an event's detail):
# they may appear as keys, never as values.
FIELD_NAMES = {"dry_run", "planned", "skipped", "irreversible", "started"}


def schema_statuses(event: str) -> set[str]:
    for rule in SCHEMA["allOf"]:
        if rule["if"]["properties"]["event"]["const"] == event:
            return set(rule["then"]["properties"]["status"]["enum"])
    raise AssertionError(f"no status rule for {event}")


@pytest.mark.parametrize(
    ("event", "enum"),
    [
        ("check", CheckStatus),
        ("operation", OperationStatus),
        ("step_finished", StepOutcome),
        ("step_undone", UndoOutcome),
        ("target_finished", TargetState),
    ],
)
def test_the_event_schema_has_the_enums_words(event: str, enum: type[StrEnum]) -> None:
    assert schema_statuses(event) == {m.value for m in enum}


def test_run_finished_has_every_run_status_but_running() -> None:
    expected = {m.value for m in RunStatus} - {"running"}
    assert schema_statuses("run_finished") == expected


def test_no_module_spells_a_status_out() -> None:
    words = {m.value for enum in ENUMS for m in enum}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "statuses.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for word in re.findall(r'"([a-z_]+)"', line):
                if word not in words:
                    continue
                as_value = re.search(rf'(status\s*[=:]\s*|[=!]=\s*|Outcome\([^)]*)"{word}"', line)
                if word in FIELD_NAMES and not as_value:
                    continue
                found.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not found, "status words outside statuses.py:\n" + "\n".join(found)
