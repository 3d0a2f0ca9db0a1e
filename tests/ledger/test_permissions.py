"""A role that may not create the ledger is refused before any change, with what a DBA must run;
with the ledger made by a DBA and only DML granted, it runs. --no-ledger is explicit and said."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import cli, write_runbook
from tests.ledger.conftest import events, last
from tests.support.ledger import CREDIT, balance, wallet


@pytest.fixture
def app_role(database_url: str, db: psycopg.Connection, dbname: str) -> Iterator[str]:
    """A login role that may change the wallet and nothing else (no CREATE anywhere)."""
    role = f"dcx_app_{secrets.token_hex(3)}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT CONNECT ON DATABASE {dbname} TO {role}")
    db.execute(f"REVOKE CREATE ON SCHEMA public FROM {role}")
    wallet(db)
    db.execute(f"GRANT SELECT, UPDATE ON wallet TO {role}")
    yield role
    db.execute(f"DROP OWNED BY {role}")
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f"DROP ROLE {role}")


def as_role(url: str, role: str) -> str:
    return url.replace("postgres@", f"{role}@", 1)


def test_a_role_that_may_not_create_the_ledger_is_refused_before_any_change(
    tmp_path: Path, database_url: str, db: psycopg.Connection, app_role: str
) -> None:
    path = write_runbook(tmp_path / "credit.yaml", "credit", [CREDIT])

    result = cli("run", str(path), "--yes", "-o", "json", "--database-url",
                 as_role(database_url, app_role))  # fmt: skip

    assert result.returncode == 4, result.stdout + result.stderr
    message = last(result)["message"]
    assert f'CREATE SCHEMA "dcx_runbook" AUTHORIZATION "{app_role}";' in message
    assert f'GRANT USAGE ON SCHEMA "dcx_runbook" TO "{app_role}";' in message
    assert (
        f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "dcx_runbook" TO "{app_role}";'
        in message
    )
    assert "nothing was changed" in message
    assert balance(db) == 100
    assert db.execute("SELECT to_regnamespace('dcx_runbook')").fetchone() == (None,)
    assert not (tmp_path / "state" / "runs").exists() or not list(
        (tmp_path / "state" / "runs").glob("*.json")
    )


def test_with_the_ledger_made_by_a_dba_and_only_dml_granted_the_run_works(
    tmp_path: Path, database_url: str, db: psycopg.Connection, app_role: str
) -> None:
    script = cli("ledger-sql", "--grant-to", app_role)
    assert script.returncode == 0, script.stderr
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", database_url], input=script.stdout,
                   text=True, check=True, capture_output=True)  # fmt: skip
    path = write_runbook(tmp_path / "credit.yaml", "credit", [CREDIT])
    url = as_role(database_url, app_role)

    result = cli("run", str(path), "--yes", "-o", "json", "--database-url", url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert balance(db) == 110
    row = db.execute(
        "SELECT r.session_user_name, s.status FROM dcx_runbook.runs r "
        "JOIN dcx_runbook.steps s USING (run_id)"
    ).fetchall()
    assert row == [(app_role, "applied")]
    undo = cli("rollback", "--yes", "-o", "json", "--database-url", url)
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert balance(db) == 100
    assert db.execute("SELECT status FROM dcx_runbook.steps").fetchall() == [("rolled_back",)]


def test_no_ledger_runs_on_this_machine_only_and_says_so(
    tmp_path: Path, database_url: str, db: psycopg.Connection, app_role: str
) -> None:
    path = write_runbook(tmp_path / "credit.yaml", "credit", [CREDIT])
    url = as_role(database_url, app_role)

    result = cli("run", str(path), "--yes", "-o", "json", "--no-ledger", "--database-url", url)

    assert result.returncode == 0, result.stdout + result.stderr
    said = [e["message"] for e in events(result.stdout) if e["event"] == "log"]
    assert any(m.startswith("--no-ledger: this run is recorded in this machine's journal only")
               for m in said), said  # fmt: skip
    assert db.execute("SELECT to_regnamespace('dcx_runbook')").fetchone() == (None,)
    record = json.loads(cli("log", last(result)["detail"]["run_id"], "-f", "json").stdout)
    assert record["ledger"] == {"schema": None, "off": "--no-ledger"}
    undo = cli("rollback", "--yes", "-o", "json", "--no-ledger", "--database-url", url)
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert balance(db) == 100
