"""The sandbox provider (also behind the test fixture) and `rehearse` (`demo`: test_demo.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from dcx_runbook.errors import Refused
from dcx_runbook.target import sandbox
from tests.conftest import RUNBOOKS, cli, schema_dump
from tests.support.nodetools import FRONTEND_TEMPLATE
from tests.wallet.conftest import apply_fixture_schema

BINARIES = sandbox.find_binaries()
needs_binaries = pytest.mark.skipif(BINARIES is None, reason="no initdb/pg_ctl here")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_docker_check_answers_fast_when_no_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    assert sandbox.docker_available() is False
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # nothing listens on discard
    assert sandbox.docker_available() is False


def test_explicit_url_comes_first(
    pg_server: sandbox.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCX_SANDBOX_URL", pg_server.admin_url)
    with sandbox.server() as srv, sandbox.scratch_database(srv, "dcx_t") as url:
        assert srv.provider == "url"
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
    with psycopg.connect(pg_server.admin_url) as admin:
        assert admin.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone() == (0,)


@needs_binaries
@pytest.mark.slow
def test_without_url_or_docker_local_binaries_start_and_clean_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DCX_SANDBOX_URL", raising=False)
    if sandbox.docker_available():
        pytest.skip("a Docker engine answers here; the binaries come third")
    with sandbox.server() as srv:
        assert srv.provider == "binaries"
        port = int(srv.admin_url.rsplit(":", 1)[1].split("/")[0])
        with psycopg.connect(srv.admin_url) as conn:
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        assert port_open(port)
    assert not port_open(port)
    assert not Path(data_dir).exists()


@needs_binaries
@pytest.mark.slow
def test_local_server_is_cleaned_up_after_a_failure() -> None:
    assert BINARIES is not None
    with pytest.raises(RuntimeError), sandbox.local_server(BINARIES) as srv:
        port = int(srv.admin_url.rsplit(":", 1)[1].split("/")[0])
        with psycopg.connect(srv.admin_url) as conn:
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        raise RuntimeError("the rehearsal failed")
    assert not port_open(port)
    assert not Path(data_dir).exists()


def test_no_provider_names_the_three_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DCX_SANDBOX_URL", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sandbox, "BINARY_DIRS", str(tmp_path / "nowhere" / "*" / "bin"))
    with pytest.raises(Refused) as error, sandbox.server():
        pass
    message = str(error.value)
    assert "--sandbox-url" in message and "Docker" in message and "initdb" in message


# --------------------------------------------------------------------------- rehearse


@pytest.fixture
def broken_db(database_url: str) -> str:
    apply_fixture_schema(database_url, "broken-schema.sql", "seed.sql")
    return database_url


def counts(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            'SELECT (SELECT count(*) FROM "OrganisationWallet"), (SELECT count(*) FROM wallet_transactions)'
        ).fetchone()


def test_rehearse_wallet_fix_from_url_is_clean_and_leaves_the_source_untouched(
    broken_db: str, pg_server: sandbox.Server, tmp_path: Path
) -> None:
    import shutil

    frontend = tmp_path / "frontend"
    shutil.copytree(FRONTEND_TEMPLATE, frontend)
    files_before = {p: p.read_bytes() for p in frontend.rglob("*") if p.is_file()}
    dump_before, counts_before = schema_dump(broken_db), counts(broken_db)

    result = cli(
        "rehearse",
        "wallet-fix",
        "--from-url",
        broken_db,
        "--sandbox-url",
        pg_server.admin_url,
        "--var",
        f"frontend_dir={frontend}",
        "--skip",
        "prisma-generate",
        "--skip",
        "typescript-check",
        "--skip",
        "wallet-test-suites",
        "--output",
        "json",
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    import json

    end = json.loads(result.stdout.splitlines()[-1])
    assert end["status"] == "rehearsed"
    assert end["detail"]["diff"] == ""
    assert [p["name"] for p in end["detail"]["phases"]] == [
        "restore schema",
        "run",
        "rollback",
        "compare schema",
        "run again",
    ]
    assert schema_dump(broken_db) == dump_before
    assert counts(broken_db) == counts_before
    assert {p: p.read_bytes() for p in frontend.rglob("*") if p.is_file()} == files_before


def rehearse_leaky(srv: sandbox.Server, tmp_path: Path, schema_sql: str):  # type: ignore[no-untyped-def]
    """Rehearse tests/runbooks/leaky.yaml (its rollback forgets a table) on this schema."""
    schema = tmp_path / "schema.sql"
    schema.write_text(schema_sql)
    return cli(
        "rehearse",
        str(RUNBOOKS / "leaky.yaml"),
        "--schema-file",
        str(schema),
        "--sandbox-url",
        srv.admin_url,
    )


def test_a_rollback_that_leaks_fails_rehearsal_with_the_schema_diff(
    database_url: str, pg_server: sandbox.Server, tmp_path: Path
) -> None:
    result = rehearse_leaky(pg_server, tmp_path, "CREATE TABLE orders (id int);\n")
    assert result.returncode == 1, result.stderr
    assert "schema differs after rollback" in result.stderr
    assert "+CREATE TABLE public.audit" in result.stderr
    assert "compare schema   FAILED" in result.stderr


def test_rehearse_needs_exactly_one_schema_source(pg_server: sandbox.Server) -> None:
    result = cli("rehearse", "wallet-fix", "--sandbox-url", pg_server.admin_url)
    assert result.returncode == 2
    assert "exactly one of --from-url or --schema-file" in result.stderr


def test_a_schema_file_that_does_not_load_is_invalid_input(
    pg_server: sandbox.Server, tmp_path: Path
) -> None:
    result = rehearse_leaky(pg_server, tmp_path, "CREATE TABLE (;\n")
    assert result.returncode == 2, result.stderr
    assert "the schema or data file does not load" in result.stderr
    assert "Traceback" not in result.stderr
