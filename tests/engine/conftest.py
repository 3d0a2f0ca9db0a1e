from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import RUNBOOKS, cli
from tests.support import inprocess

MIXED = str(RUNBOOKS / "mixed.yaml")
EVENTS_SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "events.schema.json").read_text())
ENV_TEXT = b"# app settings\nAPP_MODE=dev\n\nOTHER='keep me'\n"
CONFIG_TEXT = b"[feature]\nenabled = false\n# trailing comment, no newline"


@dataclass
class Mixed:
    url: str
    dbname: str
    work: Path

    def args(self, *extra: str) -> list[str]:
        return [
            "--database-url",
            self.url,
            "--var",
            f"expected_database={self.dbname}",
            "--var",
            f"workdir={self.work}",
            *extra,
        ]

    def run(self, *extra: str, output: str = "json"):  # type: ignore[no-untyped-def]
        return cli("run", MIXED, "--yes", "--output", output, *self.args(*extra))

    def rollback(self, *extra: str, output: str = "json"):  # type: ignore[no-untyped-def]
        return cli("rollback", "--yes", "--output", output, "--database-url", self.url, *extra)

    def run_in_process(
        self, *, var: Sequence[str] = (), skip: Sequence[str] = (), dry_run: bool = False
    ) -> inprocess.Done:
        """`run` as above, in this process (`--yes` but for a dry run, which asks nothing)."""
        return inprocess.run(
            MIXED,
            yes=not dry_run,
            dry_run=dry_run,
            database_url=self.url,
            var=[f"expected_database={self.dbname}", f"workdir={self.work}", *var],
            skip=skip,
        )

    def rollback_in_process(
        self,
        run_id: str | None = None,
        *,
        var: Sequence[str] = (),
        dry_run: bool = False,
        force: bool = False,
    ) -> inprocess.Done:
        """`rollback` as above, in this process."""
        return inprocess.rollback(
            run_id, yes=True, dry_run=dry_run, force=force, database_url=self.url, var=var
        )

    @property
    def files(self) -> list[Path]:
        return [self.work / "app.env", self.work / "config.ini", self.work / "marker"]


@pytest.fixture
def mixed(database_url: str, dbname: str, tmp_path: Path) -> Mixed:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.env").write_bytes(ENV_TEXT)
    (work / "app.env").chmod(0o640)
    (work / "config.ini").write_bytes(CONFIG_TEXT)
    return Mixed(database_url, dbname, work)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@functools.cache
def _events_validator() -> Any:
    cls = jsonschema.validators.validator_for(EVENTS_SCHEMA)
    cls.check_schema(EVENTS_SCHEMA)
    return cls(EVENTS_SCHEMA)


def validate_events(stream: list[dict]) -> None:
    """Every event against docs/events.schema.json (jsonschema.validate's check, with the schema
    checked and compiled once: validate() does both for every event, some 15 ms each)."""
    validator = _events_validator()
    for event in stream:
        validator.validate(event)
