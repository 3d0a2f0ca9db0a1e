"""Runs started in the same second keep the order they started in (issue 12, item 7): the run id
sorts by its random suffix within a second, so "the latest run" could be the older one."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from dcx_runbook import api
from dcx_runbook.engine import run as engine
from dcx_runbook.engine.session import Options
from dcx_runbook.reporters.base import Collecting
from dcx_runbook.state.journal import Journal
from tests.conftest import cli
from tests.support.ledger import balance, wallet
from tests.trust.conftest import CREDIT_AGAIN, rollback, runbook

pytestmark = pytest.mark.slow


FIRST, SECOND = "20261201T120000Z-ffffff", "20261201T120000Z-000000"  # same second


def test_runs_in_the_same_second_are_listed_and_undone_newest_first(
    tmp_path: Path, database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet(db)
    path = runbook(tmp_path, "same-second", CREDIT_AGAIN)
    ids = iter([FIRST, SECOND])
    monkeypatch.setattr(engine, "new_run_id", lambda: next(ids))
    for _ in range(2):
        outcome = api.run(
            path,
            reporter=Collecting(),
            database_url=database_url,
            options=Options(yes=True),
            journal=Journal(),
        )
        assert outcome.exit_code == 0, outcome.message
    assert balance(db) == 120

    listed = [json.loads(line)["run_id"] for line in cli("runs", "-o", "json").stdout.splitlines()]
    assert listed == [SECOND, FIRST]

    code, stream, stderr = rollback(database_url, "--dry-run")
    assert code == 0, stderr
    assert [r["run_id"] for r in stream[0]["detail"]["runs"]] == [SECOND, FIRST]
