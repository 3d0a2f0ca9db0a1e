from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RUNBOOKS, cli

MIXED = str(RUNBOOKS / "mixed.yaml")
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
