"""What the operator typed on this command line wins over the environment; where two sources
disagree, the run says which one it took and why (issue 12, item 6). An exported $DATABASE_URL
used to beat an explicit --env-file: the change went to the ambient variable's database."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.conftest import cli, write_runbook
from tests.trust.conftest import CREATE_T, events, exists


def test_an_explicit_env_file_beats_an_exported_database_url(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    path = write_runbook(tmp_path / "rb.yaml", "sources", [CREATE_T])
    env_file = tmp_path / "ops.env"
    env_file.write_text(f"DATABASE_URL={database_url}\n")
    ambient = database_url.rsplit("/", 1)[0] + "/postgres"  # another database, same server

    result = cli(
        "run", str(path), "--yes", "-o", "json", "--env-file", str(env_file),
        env={"DATABASE_URL": ambient},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr + result.stdout
    stream = events(result.stdout)
    assert stream[0]["detail"]["target"]["database"] == db.info.dbname
    assert exists(db, "t")
    notes = [e["message"] for e in stream if e["event"] == "log"]
    assert (
        "database_url: took the value of --env-file DATABASE_URL, not the different one of "
        "environment DATABASE_URL (what is typed on the command line wins over the environment)"
    ) in notes
    assert all("postgres@" not in note for note in notes)  # names only, never values


def test_no_note_when_the_sources_agree(tmp_path: Path, database_url: str) -> None:
    path = write_runbook(tmp_path / "rb.yaml", "agree", [CREATE_T])
    env_file = tmp_path / "ops.env"
    env_file.write_text(f"DATABASE_URL={database_url}\n")
    result = cli(
        "run", str(path), "--yes", "-o", "json", "--env-file", str(env_file),
        env={"DATABASE_URL": database_url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    logs = [e["message"] for e in events(result.stdout) if e["event"] == "log"]
    logs = [m for m in logs if not m.startswith("recorded as run ")]  # said by every run
    assert logs == [f"created the ledger dcx_runbook in {database_url.rsplit('/', 1)[1]}"]
