from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.conftest import cli
from tests.support.nodetools import FIXTURES_DIR, NodeTools, make_frontend

NODE_STEPS = ("prisma-generate", "typescript-check", "wallet-test-suites")
# The plan's next steps: a person's work (manual steps), left for later unless a test asks.
MANUAL_STEPS = ("populate-wallets", "enable-wallet-api", "test-vm-provisioning", "deploy-staging")


def apply_fixture_schema(url: str, *files: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name in files:
            conn.execute((FIXTURES_DIR / name).read_text())


@pytest.fixture
def wallet_url(database_url: str) -> str:
    """A database with the broken schema exactly as Prisma created it: one wallet, no transactions."""
    apply_fixture_schema(database_url, "broken-schema.sql", "seed.sql")
    # A password in the URL (trust auth ignores it) proves it never leaks.
    return database_url.replace("postgres@", "postgres:Sup3rS3cretPw@", 1)


@dataclass
class Wallet:
    url: str
    dbname: str
    frontend: Path
    tools: NodeTools | None
    extra: list[str] = field(default_factory=list)
    manual: tuple[str, ...] = MANUAL_STEPS  # skipped unless a test clears it

    @property
    def env(self) -> dict[str, str]:
        return dict(self.tools.env) if self.tools else {}

    def args(self, *more: str) -> list[str]:
        skip = [] if self.tools else [a for s in NODE_STEPS for a in ("--skip", s)]
        skip += [a for s in self.manual for a in ("--skip", s)]
        return [
            "--database-url",
            self.url,
            "--var",
            f"expected_database={self.dbname}",
            "--var",
            f"frontend_dir={self.frontend}",
            *skip,
            *self.extra,
            *more,
        ]

    def run(self, *more: str, runbook: str = "wallet-fix"):  # type: ignore[no-untyped-def]
        return cli("run", runbook, "--yes", "--output", "json", *self.args(*more), env=self.env)

    def rollback(self, *more: str):  # type: ignore[no-untyped-def]
        return cli(
            "rollback", "--yes", "--output", "json", "--database-url", self.url, *more, env=self.env
        )

    @property
    def env_file(self) -> Path:
        return self.frontend / "backend.env"

    @property
    def schema(self) -> Path:
        return self.frontend / "src" / "prisma" / "schema.prisma"

    @property
    def client_schema(self) -> Path:
        return self.frontend / "node_modules" / ".prisma" / "client" / "schema.prisma"

    def sql(self, query: str) -> object:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query)
            row = cur.fetchone() if cur.description else None
        return row[0] if row else None


@pytest.fixture
def wallet(
    wallet_url: str, dbname: str, tmp_path: Path, node_tools: NodeTools | None
) -> Iterator[Wallet]:
    frontend = make_frontend(
        tmp_path / "frontend", node_tools, generate_client=node_tools is not None
    )
    yield Wallet(wallet_url, dbname, frontend, node_tools)
