"""`runs` readable at any width and when piped (issue 18): a line per run, never an id or a word
broken; piped, tab-separated fields that grep, cut and awk read; JSON fields typed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import cli, write_runbook
from tests.support.terminal import converse, screen_lines

STEP = {
    "id": "make-table",
    "title": "make the table",
    "action": [{"kind": "sql", "sql": "CREATE TABLE IF NOT EXISTS noted (id int)"}],
    "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE IF EXISTS noted"}]},
}
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


@pytest.fixture
def history(tmp_path: Path, database_url: str, _isolate: Path) -> list[dict]:
    """Three runs: one rolled back, two still in effect (the last a second run of the same)."""
    path = write_runbook(tmp_path / "invoices-index.yaml", "invoices-index", [STEP])
    env = {"DATABASE_URL": database_url}
    assert cli("run", str(path), "--yes", env=env).returncode == 0
    assert cli("rollback", "--yes", env=env).returncode == 0
    for _ in range(2):
        assert cli("run", str(path), "--yes", env=env).returncode == 0
    return [json.loads(line) for line in cli("runs", "-o", "json").stdout.splitlines()]


def test_json_fields_are_typed(history: list[dict]) -> None:
    oldest = history[-1]
    assert oldest["status"] == "succeeded" and oldest["rollback_status"] == "rolled_back"
    assert oldest["in_effect"] is False and oldest["steps_in_effect"] == 0
    assert history[0]["rollback_status"] is None and history[0]["in_effect"] is True
    for row in history:
        assert isinstance(row["duration_seconds"], float)
        assert row["started"].endswith("Z") and "T" in row["started"]
        assert row["finished"] >= row["started"]


def test_piped_it_is_one_tab_separated_line_per_run(history: list[dict]) -> None:
    piped = cli("runs", env={"COLUMNS": "80"}).stdout.splitlines()
    assert [line.split("\t")[0] for line in piped] == [r["run_id"] for r in history]
    assert all(len(line.split("\t")) == 8 for line in piped)
    succeeded = [line for line in piped if "succeeded" in line]  # what `grep -c` counts
    assert len(succeeded) == sum(r["status"] == "succeeded" for r in history) == 3
    assert [line.split("\t")[4] for line in piped] == ["1/1 steps", "1/1 steps", "no"]
    assert cli("runs", "--format", "tsv").stdout.splitlines() == piped


@pytest.mark.parametrize("columns", ["80", "160"])
def test_on_a_terminal_each_run_is_one_line_with_its_id_whole(
    history: list[dict], columns: str
) -> None:
    code, out = converse(["runs"], [], {"COLUMNS": columns})
    assert code == 0, out
    lines = screen_lines(out)
    header, rows = lines[0], lines[1:]
    assert header.split()[:2] == ["run", "id"]
    assert len(rows) == len(history)  # nothing wrapped onto a line of its own
    for line, run in zip(rows, history, strict=True):
        assert RUN_ID.findall(line) == [run["run_id"]]
        assert len(line) <= int(columns)
    if columns == "160":  # room for everything: nothing cut
        assert "invoices-index" in rows[0] and "succeeded, rollback: rolled_back" in rows[-1]
