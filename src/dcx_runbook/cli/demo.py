"""`dcx-runbook demo`: the wallet fix from start to finish on a machine with nothing set up.

A sandbox PostgreSQL gets the broken wallet schema (shipped with the package), a scratch frontend
directory gets the broken Prisma schema, wallet-fix runs with its full live output, the state of the
database is shown, everything is rolled back, and the sandbox is removed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dcx_runbook import api
from dcx_runbook.engine.rehearse import load_sql
from dcx_runbook.engine.run import Options, Outcome
from dcx_runbook.errors import ExitCode
from dcx_runbook.format.loader import bundled_dir
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.state.journal import Journal
from dcx_runbook.target import sandbox

NODE_STEPS = ("prisma-generate", "typescript-check")


def fixtures() -> Path:
    return bundled_dir() / "fixtures" / "wallet-fix"


def node_cache() -> Path:
    """Where the demo installs the Prisma CLI and TypeScript once ($DCX_NODE_TOOLS_DIR overrides)."""
    if os.environ.get("DCX_NODE_TOOLS_DIR"):
        return Path(os.environ["DCX_NODE_TOOLS_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dcx-runbook" / "node-tools"


def database_state(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM pg_indexes
                        WHERE indexname = 'wallet_transactions_walletId_key'),
                      (SELECT count(*) FROM "OrganisationWallet"),
                      (SELECT count(*) FROM wallet_transactions)"""
        ).fetchone()
    assert row is not None
    index = (
        "present (one transaction per wallet)" if row[0] else "gone (many transactions per wallet)"
    )
    return f'unique index "wallet_transactions_walletId_key": {index}; wallets: {row[1]}; transactions: {row[2]}'


def demo(reporter: Reporter, *, sandbox_url: str | None = None, node: bool = True) -> ExitCode:
    def say(message: str) -> None:
        reporter.emit(Event("log", message=message))

    with (
        tempfile.TemporaryDirectory(prefix="dcx-demo-") as tmp,
        sandbox.server(sandbox_url) as srv,
        sandbox.scratch_database(srv, "dcx_demo") as url,
    ):
        root = Path(tmp)
        say(f"sandbox PostgreSQL ({srv.provider}); scratch database {url.rsplit('/', 1)[1]}")
        load_sql(url, (fixtures() / "broken-schema.sql").read_text())
        load_sql(url, (fixtures() / "seed.sql").read_text())
        frontend = root / "frontend"
        shutil.copytree(fixtures() / "frontend", frontend)
        skip = _node_tools(frontend, node, say)
        say("before: " + database_state(url))
        common: dict[str, Any] = {
            "reporter": reporter,
            "database_url": url,
            "journal": Journal(root / "state"),
        }
        dbname = url.rsplit("/", 1)[1]
        done: Outcome = api.run(
            "wallet-fix",
            var=[f"frontend_dir={frontend}"],
            options=Options(yes=True, skip=skip, expect_database=dbname),
            **common,
        )
        say("after the fix: " + database_state(url))
        if done.exit_code != ExitCode.OK or done.run_id is None:
            return done.exit_code
        undone = api.rollback(done.run_id, options=Options(yes=True), **common)
        say("after the rollback: " + database_state(url))
        say("cleaning up the sandbox")
        return undone.exit_code


def _node_tools(frontend: Path, wanted: bool, say: Any) -> tuple[str, ...]:
    """Set up the real Prisma CLI and TypeScript when node and npm are here; else skip their steps."""
    from dcx_runbook.nodetools import ensure_node_tools, link_node_modules

    if not wanted:
        say("--no-node: the Prisma and TypeScript steps are skipped")
        return NODE_STEPS
    try:
        tools = ensure_node_tools(node_cache())
    except (OSError, RuntimeError) as exc:
        say(
            f"could not install the Prisma CLI and TypeScript ({str(exc).splitlines()[0]}): "
            "the Prisma and TypeScript steps are skipped"
        )
        return NODE_STEPS
    if tools is None:
        say("node and npm are not installed: the Prisma and TypeScript steps are skipped")
        return NODE_STEPS
    link_node_modules(frontend, tools)
    os.environ.update(tools.env)  # the run's child processes find prisma offline
    return ()
