"""`dcx-runbook demo [RUNBOOK]` through the real CLI: the wallet fix with and without prepared node
tools, any runbook that ships demo fixtures, the manifest's and the prepared tools' mistakes, and
interrupts (the sandbox always goes)."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from pathlib import Path

import psycopg
import pytest
import yaml

from dcx_runbook.target import sandbox
from tests.conftest import cli
from tests.faults.support import start, wait_until
from tests.support.nodetools import NodeTools

BINARIES = sandbox.find_binaries()
needs_binaries = pytest.mark.skipif(BINARIES is None, reason="no initdb/pg_ctl here")
# Where nothing listens: a demo that got as far as its sandbox would exit 4, not 2.
NO_SERVER = "postgresql://postgres@127.0.0.1:9/postgres"
WALLET_INDEX = 'unique index "wallet_transactions_walletId_key"'


def demo_databases(srv: sandbox.Server) -> set[str]:
    with psycopg.connect(srv.admin_url) as admin:
        rows = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dcx_demo_%'")
        return {row[0] for row in rows}


@pytest.fixture
def no_node_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test` may export it; these tests decide for themselves."""
    monkeypatch.delenv("DCX_NODE_TOOLS_DIR", raising=False)


# --------------------------------------------------------------------------- wallet-fix


@pytest.mark.parametrize("how", ["unprepared", "--no-node"])
def test_wallet_fix_without_node_tools_skips_their_steps_and_shows_every_state(
    pg_server: sandbox.Server, no_node_tools: None, how: str
) -> None:
    before = demo_databases(pg_server)
    args = ["--no-node"] if how == "--no-node" else []
    result = cli("demo", *args, env={"DCX_SANDBOX_URL": pg_server.admin_url})
    assert result.returncode == 0, result.stderr[-4000:]
    out = " ".join(result.stderr.split())  # the terminal width wraps long lines
    assert f"before: {WALLET_INDEX}: present (one transaction per wallet)" in out
    assert "wallets: 1; transactions: 0" in out
    assert f"after the run: {WALLET_INDEX}: gone (many transactions per wallet)" in out
    assert f"after the rollback: {WALLET_INDEX}: present (one transaction per wallet)" in out
    assert (
        'transactions: 0; plain index on "walletId": none' in out
    )  # before, and after the rollback
    assert 'plain index on "walletId": wallet_transactions_walletId_idx' in out  # after the run
    node_steps = "prisma-generate, typescript-check, wallet-test-suites"
    assert f"skipping {node_steps} (they need node tools)" in out
    if how == "unprepared":
        assert "$DCX_NODE_TOOLS_DIR is not set" in out
        assert "make node-tools" in out and "DCX_NODE_TOOLS_DIR=" in out
    else:
        assert "(they need node tools): --no-node" in out
    assert "cleaning up the sandbox" in out
    assert demo_databases(pg_server) == before  # its scratch database is gone


def test_fleet_demo_fixes_one_of_the_plans_three_databases_and_rolls_the_fleet_back(
    pg_server: sandbox.Server, no_node_tools: None
) -> None:
    before = demo_databases(pg_server)
    result = cli("demo", "--fleet", "--no-node", env={"DCX_SANDBOX_URL": pg_server.admin_url})
    assert result.returncode == 0, result.stderr[-4000:]
    out = " ".join(result.stderr.split())
    assert f"before: datacentrix: {WALLET_INDEX}: present (one transaction per wallet)" in out
    assert f"after the run: datacentrix: {WALLET_INDEX}: gone (many transactions per wallet)" in out
    assert "aas: not_applicable: not applicable: no unique index on walletId" in out
    assert "enetworks: not_applicable: not applicable: no unique index on walletId" in out
    assert "fleet succeeded (exit 0)" in out and "fleet rolled_back (exit 0)" in out
    assert f"after the rollback: datacentrix: {WALLET_INDEX}: present" in out
    assert "after the rollback: enetworks: no wallet here" in out
    assert demo_databases(pg_server) == before  # every scratch database is gone


@pytest.mark.node
def test_wallet_fix_with_prepared_node_tools_runs_prisma_and_tsc_in_its_own_checkout(
    pg_server: sandbox.Server, node_tools: NodeTools | None
) -> None:
    if node_tools is None:
        pytest.skip("node and npm are not installed")
    prepared = node_tools.node_modules.parent
    assert (prepared / "demo-env.json").is_file(), "ensure_node_tools prepares it for the demo"
    env = {"DCX_SANDBOX_URL": pg_server.admin_url, "DCX_NODE_TOOLS_DIR": str(prepared)}
    result = cli("demo", env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "(they need node tools)" not in result.stderr  # the node steps ran
    # The plan's next steps are a person's: the demo says it leaves them out.
    assert (
        "skipping populate-wallets, enable-wallet-api, test-vm-provisioning, deploy-staging: "
        "a person's work, and a demo asks nobody" in result.stderr
    )
    assert "prisma-generate: applied and verified" in result.stderr
    assert "typescript-check: verified" in result.stderr
    assert not (node_tools.node_modules / ".prisma").exists(), "generated into the shared cache"


# --------------------------------------------------------------------------- any runbook

COUNTER = {
    "version": 1,
    "name": "counter",
    "title": "Add a column, flip a flag: a runbook that is not wallet-fix",
    "vars": {
        "database_url": {"required": True, "secret": True, "env": "DATABASE_URL"},
        "app_dir": {"required": True, "description": "The checkout."},
    },
    "target": {"url": "${database_url}"},
    "steps": [
        {
            "id": "add-colour",
            "title": "Add widgets.colour",
            "action": [{"kind": "sql", "sql": "ALTER TABLE widgets ADD COLUMN colour text"}],
            "rollback": {
                "action": [{"kind": "sql", "sql": "ALTER TABLE widgets DROP COLUMN colour"}]
            },
        },
        {
            "id": "flag",
            "title": "Turn the flag on",
            "action": [{"kind": "env_file", "path": "${app_dir}/app.env", "set": {"FLAG": "on"}}],
            "verify": [
                {"kind": "env_file", "path": "${app_dir}/app.env", "key": "FLAG", "equals": "on"}
            ],
            "rollback": {"restore_files": True},
        },
        {
            "id": "node-check",
            "title": "Needs the prepared tools",
            "verify": [
                {
                    "kind": "shell",
                    "cwd": "${app_dir}",
                    "script": 'test -f node_modules/marker && test "$DEMO_MARK" = on && demo-tool',
                }
            ],
        },
    ],
}
COUNTER_MANIFEST = {
    "load": ["schema.sql", "seed.sql"],
    "checkout": {"copy": "app", "var": "app_dir"},
    "state_query": "SELECT count(*) AS widgets, (SELECT count(*) FROM information_schema.columns"
    " WHERE table_name = 'widgets' AND column_name = 'colour') AS colour_columns FROM widgets",
    "node_steps": ["node-check"],
}


@pytest.fixture
def runbooks(tmp_path: Path) -> Path:
    """A folder of runbooks holding `counter` and its demo fixtures."""
    folder = tmp_path / "runbooks"
    fixtures = folder / "fixtures" / "counter"
    (fixtures / "app").mkdir(parents=True)
    (folder / "counter.yaml").write_text(yaml.safe_dump(COUNTER, sort_keys=False))
    (fixtures / "demo.yaml").write_text(yaml.safe_dump(COUNTER_MANIFEST, sort_keys=False))
    (fixtures / "schema.sql").write_text("CREATE TABLE widgets (id int PRIMARY KEY);\n")
    (fixtures / "seed.sql").write_text("INSERT INTO widgets VALUES (1), (2), (3);\n")
    (fixtures / "app" / "app.env").write_text("FLAG=off\n")
    return folder


def prepare_tools(where: Path) -> Path:
    """A prepared node tools folder as `make node-tools` lays one out, with stand-in tools."""
    (where / "tree" / "node_modules").mkdir(parents=True)
    (where / "tree" / "node_modules" / "marker").write_text("")
    (where / "bin").mkdir()
    tool = where / "bin" / "demo-tool"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    declaration = {"node_modules": "tree/node_modules", "path": ["bin"], "env": {"DEMO_MARK": "on"}}
    (where / "demo-env.json").write_text(json.dumps(declaration))
    return where


def test_any_runbook_with_fixtures_gets_its_own_demo(
    pg_server: sandbox.Server, runbooks: Path, tmp_path: Path, no_node_tools: None
) -> None:
    env = {"DCX_SANDBOX_URL": pg_server.admin_url}
    result = cli("demo", "counter", "--runbooks-dir", str(runbooks), env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    out = " ".join(result.stderr.split())
    assert "before: widgets: 3; colour_columns: 0" in out
    assert "after the run: widgets: 3; colour_columns: 1" in out
    assert "after the rollback: widgets: 3; colour_columns: 0" in out
    assert "skipping node-check (they need node tools)" in out
    assert (runbooks / "fixtures" / "counter" / "app" / "app.env").read_text() == "FLAG=off\n"

    env["DCX_NODE_TOOLS_DIR"] = str(prepare_tools(tmp_path / "tools"))
    result = cli("demo", "counter", "--runbooks-dir", str(runbooks), env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "skipping" not in result.stderr
    assert "node-check: verified" in result.stderr
    assert not list((runbooks / "fixtures" / "counter" / "app").glob("node_modules"))


def test_a_folder_that_declares_no_prepared_tools_skips_the_node_steps_and_says_so(
    pg_server: sandbox.Server, runbooks: Path, tmp_path: Path
) -> None:
    env = {"DCX_SANDBOX_URL": pg_server.admin_url, "DCX_NODE_TOOLS_DIR": str(tmp_path)}
    result = cli("demo", "counter", "--runbooks-dir", str(runbooks), env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    out = " ".join(result.stderr.split())
    assert f"$DCX_NODE_TOOLS_DIR ({tmp_path}) holds no demo-env.json" in out
    assert "make node-tools" in out


def test_a_bad_declaration_of_prepared_tools_is_invalid_input(
    runbooks: Path, tmp_path: Path
) -> None:
    (tmp_path / "demo-env.json").write_text('{"node_modules": 3}')
    env = {"DCX_SANDBOX_URL": NO_SERVER, "DCX_NODE_TOOLS_DIR": str(tmp_path)}
    result = cli("demo", "counter", "--runbooks-dir", str(runbooks), env=env)
    assert result.returncode == 2, result.stderr
    assert f"{tmp_path / 'demo-env.json'}: expected {{node_modules: folder" in result.stderr


def test_a_bad_manifest_is_invalid_input_with_every_problem_located(
    runbooks: Path, no_node_tools: None
) -> None:
    manifest = runbooks / "fixtures" / "counter" / "demo.yaml"
    manifest.write_text(
        "load: [schema.sql, missing.sql, ../counter.yaml]\n"
        "checkout: {copy: app, var: nope}\n"
        "node_steps: [node-check, typo]\n"
        "colour: blue\n"
    )
    result = cli(
        "demo", "counter", "--runbooks-dir", str(runbooks), env={"DCX_SANDBOX_URL": NO_SERVER}
    )
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert f"{manifest}:1:20: load[1]: no SQL file {manifest.parent / 'missing.sql'}" in err
    assert f"{manifest}:1:33: load[2]: expected a path inside {manifest.parent}" in err
    assert (
        f"{manifest}:2:28: checkout.var: expected a variable of the runbook (database_url, app_dir); found 'nope'"
        in err
    )
    assert f"{manifest}:3:26: node_steps[1]: expected a step of the runbook" in err
    assert f"{manifest}:4:9: colour: unknown key" in err
    assert "Traceback" not in err


def test_a_manifest_that_is_not_yaml_is_located(runbooks: Path) -> None:
    manifest = runbooks / "fixtures" / "counter" / "demo.yaml"
    manifest.write_text("load: [schema.sql\n")
    result = cli(
        "demo", "counter", "--runbooks-dir", str(runbooks), env={"DCX_SANDBOX_URL": NO_SERVER}
    )
    assert result.returncode == 2, result.stderr
    assert f"{manifest}:2:1: YAML syntax error" in result.stderr


def test_a_runbook_without_demo_fixtures_is_invalid_input(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).parent / "runbooks" / "leaky.yaml", tmp_path / "leaky.yaml")
    result = cli(
        "demo", "leaky", "--runbooks-dir", str(tmp_path), env={"DCX_SANDBOX_URL": NO_SERVER}
    )
    assert result.returncode == 2, result.stderr
    assert "no demo fixtures for leaky" in result.stderr
    assert str(tmp_path / "fixtures" / "leaky" / "demo.yaml") in result.stderr


def test_a_state_query_that_writes_is_refused(pg_server: sandbox.Server, runbooks: Path) -> None:
    manifest = runbooks / "fixtures" / "counter" / "demo.yaml"
    manifest.write_text(yaml.safe_dump({**COUNTER_MANIFEST, "state_query": "DELETE FROM widgets"}))
    result = cli(
        "demo",
        "counter",
        "--no-node",
        "--runbooks-dir",
        str(runbooks),
        env={"DCX_SANDBOX_URL": pg_server.admin_url},
    )
    assert result.returncode == 2, result.stderr
    assert (
        f"{manifest}: state_query fails: cannot execute DELETE in a read-only transaction"
        in result.stderr
    )


# --------------------------------------------------------------------------- interrupts


@needs_binaries
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_interrupted_while_its_sandbox_starts_stops_and_removes_it(
    sig: signal.Signals,
) -> None:
    if sandbox.docker_available():
        pytest.skip("a Docker engine answers here; the binaries come third")
    # The postgres system user must reach the sandbox's directory: a world-traversable temp dir.
    tmp = Path(tempfile.mkdtemp(prefix="dcx-test-"))
    tmp.chmod(0o755)
    try:
        env = {"TMPDIR": str(tmp), "DCX_SANDBOX_URL": "", "DOCKER_HOST": f"unix://{tmp}/none.sock"}
        proc = start("demo", "--no-node", env=env)
        wait_until(lambda: any(tmp.glob("dcx-sandbox-*")), "the sandbox to start")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert not list(tmp.glob("dcx-sandbox-*")), "the sandbox directory was left behind"
        assert not list(tmp.glob("dcx-demo-*"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_demo_interrupted_drops_its_scratch_database(
    pg_server: sandbox.Server, tmp_path: Path
) -> None:
    before = demo_databases(pg_server)  # the server is shared: count only this test's

    def scratch() -> int:
        return len(demo_databases(pg_server) - before)

    proc = start(
        "demo", "--no-node", env={"DCX_SANDBOX_URL": pg_server.admin_url, "TMPDIR": str(tmp_path)}
    )
    wait_until(lambda: scratch() > 0, "the scratch database")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert scratch() == 0
    assert not list(tmp_path.glob("dcx-demo-*"))
