"""Shared fixtures: a real PostgreSQL (one fresh database per test), an isolated state directory,
and helpers to run the real CLI in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dcx_runbook import sandbox
from dcx_runbook.errors import Refused
from dcx_runbook.nodetools import NodeTools, ensure_node_tools

TESTS = Path(__file__).parent
RUNBOOKS = TESTS / "runbooks"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[sandbox.Server]:
    """$DCX_TEST_DATABASE_URL, else Docker (testcontainers), else local binaries, else skip."""
    try:
        with sandbox.server(os.environ.get("DCX_TEST_DATABASE_URL")) as srv:
            yield srv
    except Refused as exc:
        if os.environ.get("DCX_REQUIRE_DB"):
            pytest.fail(f"no PostgreSQL for the tests and DCX_REQUIRE_DB is set: {exc}")
        pytest.skip(f"no PostgreSQL: {exc}")


@pytest.fixture
def database_url(pg_server: sandbox.Server) -> Iterator[str]:
    with sandbox.scratch_database(pg_server, "dcx_test") as url:
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def dbname(database_url: str) -> str:
    return database_url.rsplit("/", 1)[1]


@pytest.fixture(scope="session")
def node_tools(tmp_path_factory: pytest.TempPathFactory) -> NodeTools | None:
    """The real Prisma CLI and TypeScript, installed once (CI pre-installs into
    $DCX_TEST_NODE_CACHE); None where node/npm are missing."""
    cache = os.environ.get("DCX_TEST_NODE_CACHE")
    cache_dir = Path(cache) if cache else tmp_path_factory.mktemp("node-tools")
    tools = ensure_node_tools(cache_dir)
    if tools is None and os.environ.get("DCX_REQUIRE_NODE"):
        pytest.fail("node and npm are required here (DCX_REQUIRE_NODE is set)")
    return tools


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing a test does may write outside its tmp_path: state, HOME, cwd."""
    state = tmp_path / "state"
    monkeypatch.setenv("DCX_RUNBOOK_STATE_DIR", str(state))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DCX_RUNBOOK_PATH", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return state


def cli(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `dcx-runbook` in a real process."""
    return subprocess.run(
        [sys.executable, "-m", "dcx_runbook", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=timeout,
        check=False,
    )


def schema_dump(url: str) -> str:
    """`pg_dump --schema-only`, the reference for "the database is as it was"."""
    done = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", url],
        capture_output=True,
        text=True,
        check=True,
    )
    # Dump headers and pg_dump's random \restrict keys differ between two dumps of one schema.
    noise = ("-- Dumped", "\\restrict", "\\unrestrict")
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith(noise))


def snapshot(*paths: Path) -> dict[str, tuple[bytes, int] | None]:
    """Exact bytes and mode of each file (None when it doesn't exist)."""
    out: dict[str, tuple[bytes, int] | None] = {}
    for p in paths:
        out[str(p)] = (p.read_bytes(), p.stat().st_mode & 0o7777) if p.exists() else None
    return out
