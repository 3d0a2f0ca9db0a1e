"""A small runbook, its plans, and SSH keys (real ssh-keygen) for the plan and approval tests."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import cli

RUNBOOK = """\
name: addcol
title: add a column to accounts
vars:
  database_url: {required: true, secret: true, env: DATABASE_URL}
  col: {default: note}
target: {url: "${database_url}"}
steps:
  - id: add
    title: add the column
    precheck:
      - kind: sql
        name: the column is not there yet
        query: SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = ${col}
        expect: 0
    action:
      - {kind: sql, sql: "ALTER TABLE accounts ADD COLUMN ${ident:col} text"}
    rollback:
      action:
        - {kind: sql, sql: "ALTER TABLE accounts DROP COLUMN ${ident:col}"}
"""


@dataclass
class Planned:
    """The runbook, its database, a home directory for the operator, and the CLI around them."""

    dir: Path
    url: str
    home: Path
    state: Path

    @property
    def runbook(self) -> Path:
        return self.dir / "addcol.yaml"

    @property
    def plan(self) -> Path:
        return self.dir / "plan.json"

    def env(self, **more: str) -> dict[str, str]:
        return {"DATABASE_URL": self.url, "HOME": str(self.home), "SSH_AUTH_SOCK": "", **more}

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, env=self.env(**env))

    def make_plan(self, *more: str) -> subprocess.CompletedProcess[str]:
        done = self.cli("run", str(self.runbook), "--dry-run", "--plan-out", str(self.plan), *more)
        assert done.returncode == 0, done.stderr
        return done

    def run_plan(self, *more: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "run", str(self.runbook), "--plan", str(self.plan), "--yes", "-o", "json", *more, **env
        )

    def columns(self) -> set[str]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts'"
            ).fetchall()
        return {r[0] for r in rows}

    def sql(self, statement: str) -> Any:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchone() if cur.description else None

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.state / "runs").glob("*.json"))]

    def plan_sha256(self) -> str:
        return hashlib.sha256(self.plan.read_bytes()).hexdigest()


def finished(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The run_finished event of a JSON run."""
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return next(e for e in events if e["event"] == "run_finished")


@pytest.fixture
def planned(tmp_path: Path, database_url: str, _isolate: Path) -> Planned:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, n int)")
    (tmp_path / "addcol.yaml").write_text(RUNBOOK)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    # A password in the URL (trust auth ignores it) proves it never reaches the plan.
    url = database_url.replace("postgres@", "postgres:Sup3rS3cret@", 1)
    return Planned(tmp_path, url, home, _isolate)


@dataclass
class Keys:
    dir: Path

    def private(self, name: str) -> Path:
        return self.dir / name

    def public_line(self, name: str) -> str:
        return (self.dir / f"{name}.pub").read_text().strip()

    def allowed(self, *names: str) -> Path:
        """An allowed signers file listing `names` as NAME@example.com."""
        path = self.dir / ("allowed-" + "-".join(names))
        path.write_text(
            "".join(
                f'{n}@example.com namespaces="dcx-runbook" {self.public_line(n)}\n' for n in names
            )
        )
        return path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    where = tmp_path_factory.mktemp("keys")
    for name in ("alice", "bob", "carol", "operator"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(where / name)],
            check=True,
        )
    return Keys(where)
