"""wallet-fix end to end: a real PostgreSQL with the broken schema as Prisma made it, a real
frontend checkout (git, an uncommitted edit), the real Prisma CLI and TypeScript."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import cli, schema_dump, snapshot
from tests.engine.conftest import events
from tests.support.nodetools import EXPECTED_FIXED_SCHEMA, LOCAL_EDIT_LINE, git
from tests.wallet.conftest import MANUAL_STEPS, NODE_STEPS, Wallet

pytestmark = pytest.mark.node  # the wallet fixture runs the real Prisma CLI; the runs run tsc


STEPS = [
    "env-database-url",
    "index-wallet-id",
    "drop-wallet-unique-index",
    "prisma-schema",
    "prisma-generate",
    "typescript-check",
    "wallet-smoke-test",
    "wallet-test-suites",
]
INDEX = "SELECT count(*) FROM pg_indexes WHERE indexname = 'wallet_transactions_walletId_key'"
PLAIN_INDEX = "SELECT count(*) FROM pg_indexes WHERE indexname = 'wallet_transactions_walletId_idx'"


def state(w: Wallet) -> tuple[str, dict]:
    files = [w.env_file, w.schema, w.client_schema]
    return schema_dump(w.url), snapshot(*files)


def client_matches(w: Wallet) -> bool:
    """The generated client was made from the current schema (Prisma adds blank lines when it
    copies the schema into the client)."""

    def lines(p: Path) -> list[str]:
        return [line for line in p.read_text().splitlines() if line.strip()]

    return lines(w.client_schema) == lines(w.schema)


def statuses(stdout: str) -> dict[str, str]:
    return {e["step"]: e["status"] for e in events(stdout) if e["event"] == "step_finished"}


def test_run_meets_every_success_criterion_and_rollback_restores_everything(wallet: Wallet) -> None:
    """The whole plan: its automated steps, then its next steps, each confirmed done by the
    person who did it (--confirm, no terminal here); rollback asks the same for their undo."""
    before = state(wallet)
    schema_before = wallet.schema.read_bytes()
    wallet.manual = ()  # not skipped: confirmed

    result = wallet.run(*[a for s in MANUAL_STEPS for a in ("--confirm", s)])

    assert result.returncode == 0, result.stdout + result.stderr
    expected = dict.fromkeys([*STEPS, *MANUAL_STEPS], "applied")
    verified = ("typescript-check", "wallet-smoke-test", "wallet-test-suites")
    expected.update(dict.fromkeys(verified, "passed"))
    if wallet.tools is None:
        expected.update(dict.fromkeys(NODE_STEPS, "skipped"))
    assert statuses(result.stdout) == expected
    # DATABASE_URL added: exactly one line, the target URL, everything else untouched.
    env_lines = wallet.env_file.read_text().splitlines()
    assert [line for line in env_lines if line.startswith("DATABASE_URL=")] == [
        f"DATABASE_URL={wallet.url}"  # backend.env's values are bare: so is this one
    ]
    assert wallet.env_file.read_text().startswith(
        (
            Path(__file__).parents[2] / "runbooks/fixtures/wallet-fix/frontend/backend.env"
        ).read_text()
    )
    # The unique index is gone, the foreign key indexed plainly, no rows lost, nothing left
    # behind by the smoke test and the provisioning read.
    assert wallet.sql(INDEX) == 0
    assert wallet.sql(PLAIN_INDEX) == 1
    assert wallet.sql('SELECT count(*) FROM "OrganisationWallet"') == 1
    assert wallet.sql("SELECT count(*) FROM wallet_transactions") == 0
    # The schema file matches the database; the operator's uncommitted edit survived.
    assert wallet.schema.read_text() == EXPECTED_FIXED_SCHEMA.read_text() + LOCAL_EDIT_LINE
    if wallet.tools is not None:
        # The client generated from it, and the wallet services compiled against it.
        assert client_matches(wallet)
        assert (
            "WalletTransactionsPayload<ExtArgs>[]"
            in (wallet.client_schema.parent / "index.d.ts").read_text()
        )
        checks = [
            e for e in events(result.stdout) if e["event"] == "check" and e["status"] == "passed"
        ]
        validated = [e for e in checks if "prisma validate" in e["detail"]["name"]]
        assert [e["step"] for e in validated] == ["prisma-generate"]
        typechecked = [e["detail"]["name"] for e in checks if e["step"] == "typescript-check"]
        assert any("src/services/wallet/*.ts" in name for name in typechecked)
        assert any("src/utils/prisma.ts" in name for name in typechecked)
    else:
        # Without node the operator skips prisma-generate, and prisma validate with it: no
        # check that cannot fail stands in for it.
        assert not any(
            "prisma validate" in e["detail"].get("name", "")
            for e in events(result.stdout)
            if e["event"] == "check"
        )
    smoke = [
        e["detail"]["name"]
        for e in events(result.stdout)
        if e["event"] == "check" and e["step"] == "wallet-smoke-test" and e["status"] == "passed"
    ]
    assert len(smoke) == 2 and any("VM provisioning" in name for name in smoke)
    if wallet.tools is not None:  # every wallet test suite of the checkout ran, and passed
        (suites,) = [
            e
            for e in events(result.stdout)
            if e["event"] == "check" and e["step"] == "wallet-test-suites"
        ]
        assert suites["status"] == "passed", suites

    # Undoing the next steps is a person's work too: refused without their word, nothing undone.
    refused = wallet.rollback()
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "the undo of deploy-staging, enable-wallet-api is a person's" in refused.stdout
    assert wallet.sql(INDEX) == 0

    undo = wallet.rollback("--confirm", "deploy-staging", "--confirm", "enable-wallet-api")

    assert undo.returncode == 0, undo.stdout + undo.stderr
    undone = {e["step"]: e["status"] for e in events(undo.stdout) if e["event"] == "step_undone"}
    assert undone["deploy-staging"] == undone["enable-wallet-api"] == "rolled_back"
    assert undone["populate-wallets"] == undone["test-vm-provisioning"] == "irreversible"
    assert state(wallet) == before
    assert wallet.schema.read_bytes() == schema_before
    assert LOCAL_EDIT_LINE.strip() in git(wallet.frontend, "diff").stdout  # still uncommitted work
    if wallet.tools is not None:
        assert client_matches(wallet)  # the client matches the restored schema again


def test_second_run_reports_every_step_already_done(wallet: Wallet) -> None:
    assert wallet.run().returncode == 0
    after = state(wallet)

    again = wallet.run()

    assert again.returncode == 0, again.stderr
    done = statuses(again.stdout)
    assert done["env-database-url"] == done["drop-wallet-unique-index"] == "already_done"
    assert done["index-wallet-id"] == "already_done"
    assert done["prisma-schema"] == "already_done"
    assert state(wallet) == after


def _inject_failure(tmp_path: Path, step_id: str) -> str:
    """A copy of wallet-fix whose step `step_id` gains a verify check that fails."""
    source = Path(__file__).parents[2] / "runbooks" / "wallet-fix.yaml"
    data = yaml.safe_load(source.read_text())
    for step in data["steps"]:
        if step["id"] == step_id:
            step.setdefault("verify", []).append(
                {"kind": "shell", "name": "injected failure", "argv": ["false"]}
            )
    path = tmp_path / "wallet-fix-broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("step_id", STEPS)
def test_a_failure_at_any_step_leaves_everything_as_it_was(
    wallet: Wallet, tmp_path: Path, step_id: str
) -> None:
    if wallet.tools is None and step_id in NODE_STEPS:
        pytest.skip("node is not installed: this step is skipped")
    before = state(wallet)

    result = wallet.run(runbook=_inject_failure(tmp_path, step_id))

    assert result.returncode == 1, result.stdout + result.stderr
    stream = events(result.stdout)
    assert next(e for e in stream if e["event"] == "unwind_started")["step"] == step_id
    # prisma-generate is declared irreversible (the prisma-schema rollback regenerates the
    # client): once it ran, the message names it instead of claiming "as it was" on its own.
    after_generate = STEPS.index(step_id) >= STEPS.index("prisma-generate")
    said = "declared irreversible (prisma-generate: The generated client is derived"
    assert (said if after_generate else "the system is as it was") in stream[-1]["message"]
    assert state(wallet) == before  # and it is as it was


def test_a_renamed_unique_index_is_not_taken_for_done(wallet: Wallet) -> None:
    """ "Done" means no unique index on "walletId" alone, whatever its name: a renamed one keeps
    walletId unique, and DROP INDEX of the expected name then fails and the run unwinds."""
    wallet.sql('ALTER INDEX "wallet_transactions_walletId_key" RENAME TO wallet_tx_wallet_uq')
    before = state(wallet)

    result = wallet.run()

    assert result.returncode == 1, result.stdout + result.stderr
    assert statuses(result.stdout).get("drop-wallet-unique-index") != "already_done"
    stream = events(result.stdout)
    assert next(e for e in stream if e["event"] == "unwind_started")["step"] == (
        "drop-wallet-unique-index"
    )
    assert "the system is as it was" in stream[-1]["message"]
    assert wallet.sql("SELECT to_regclass('wallet_tx_wallet_uq') IS NOT NULL") is True
    assert state(wallet) == before


def test_an_index_of_the_same_name_in_another_schema_is_left_alone(wallet: Wallet) -> None:
    wallet.sql("""CREATE SCHEMA archive;
                  CREATE TABLE archive.wallet_transactions ("walletId" text);
                  CREATE UNIQUE INDEX "wallet_transactions_walletId_key"
                      ON archive.wallet_transactions ("walletId")""")

    result = wallet.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(result.stdout)["drop-wallet-unique-index"] == "applied"
    assert wallet.sql(INDEX) == 1  # the archive's index, untouched
    assert wallet.sql("SELECT to_regclass('public.\"wallet_transactions_walletId_key\"')") is None
    again = wallet.run()
    assert again.returncode == 0, again.stdout + again.stderr
    assert statuses(again.stdout)["drop-wallet-unique-index"] == "already_done"


def test_a_wallet_created_meanwhile_does_not_fail_the_index_drop(
    wallet: Wallet, tmp_path: Path
) -> None:
    """Production writes go on: a wallet committed by another connection after the prechecks
    and before DROP INDEX must not fail the step (its verify looks at the catalog only)."""
    source = Path(__file__).parents[2] / "runbooks" / "wallet-fix.yaml"
    data = yaml.safe_load(source.read_text())
    step = next(s for s in data["steps"] if s["id"] == "drop-wallet-unique-index")
    insert = (
        "import os, psycopg\n"
        "with psycopg.connect(os.environ['DATABASE_URL'], autocommit=True) as c:\n"
        '    c.execute(\'INSERT INTO "OrganisationWallet" (id, "organisationId", "updatedAt")\'\n'
        "              \" VALUES ('wallet-created-meanwhile', 'org-created-meanwhile', now())\")\n"
    )
    step.setdefault("precheck", []).append(
        {
            "kind": "shell",
            "name": "another connection creates a wallet",
            "argv": [sys.executable, "-c", insert],
            "env": {"DATABASE_URL": "${database_url}"},
        }
    )
    path = tmp_path / "wallet-fix-race.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    result = wallet.run(runbook=str(path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(result.stdout)["drop-wallet-unique-index"] == "applied"
    assert wallet.sql('SELECT count(*) FROM "OrganisationWallet"') == 2
    assert wallet.sql(INDEX) == 0


def test_rollback_refuses_after_wallets_gained_several_transactions(wallet: Wallet) -> None:
    assert wallet.run().returncode == 0
    wallet.sql("""INSERT INTO wallet_transactions (id, "walletId", amount, type)
                  SELECT 'real-' || n, id, 10 * n, 'credit' FROM "OrganisationWallet", generate_series(1, 3) n
                  RETURNING 1""")

    undo = wallet.rollback()

    assert undo.returncode == 3, undo.stdout + undo.stderr
    end = events(undo.stdout)[-1]
    assert "1 wallet(s) now hold several transactions" in end["message"]
    assert "nothing was deleted" in end["message"]
    assert "drop-wallet-unique-index" in end["detail"]["still_applied"]
    assert wallet.sql("SELECT count(*) FROM wallet_transactions") == 3
    assert wallet.sql(INDEX) == 0


def test_wrong_database_is_refused_and_nothing_changes(wallet: Wallet) -> None:
    before = state(wallet)
    result = cli(
        "run",
        "wallet-fix",
        "--yes",
        "--database-url",
        wallet.url,
        "--var",
        f"frontend_dir={wallet.frontend}",
        env=wallet.env,
    )
    assert result.returncode == 4
    assert "expects 'datacentrix_cloud_local'" in result.stderr
    assert "Sup3rS3cretPw" not in result.stderr + result.stdout
    assert state(wallet) == before


def test_database_with_organisation_wallets_table_is_refused(
    database_url: str, dbname: str, tmp_path: Path, node_tools
) -> None:  # type: ignore[no-untyped-def]
    from tests.support.nodetools import make_frontend
    from tests.wallet.conftest import apply_fixture_schema

    apply_fixture_schema(database_url, "broken-schema.sql")
    Wallet(database_url, dbname, tmp_path, None).sql(
        'ALTER TABLE "OrganisationWallet" RENAME TO organisation_wallets'
    )
    w = Wallet(database_url, dbname, make_frontend(tmp_path / "fe", None), None)
    before = state(w)
    result = w.run()
    assert result.returncode == 4, result.stdout + result.stderr
    assert "organisation_wallets" in events(result.stdout)[-1]["message"]
    assert state(w) == before


def test_dry_run_changes_nothing_and_shows_both_diffs(wallet: Wallet, _isolate: Path) -> None:
    before = state(wallet)
    result = cli(
        "run", "wallet-fix", "--dry-run", *wallet.args(), env={**wallet.env, "COLUMNS": "200"}
    )
    assert result.returncode == 0, result.stderr
    out = result.stderr
    assert "+DATABASE_URL=postgresql://postgres:***@" in out
    assert "Sup3rS3cretPw" not in out + result.stdout
    assert "-  walletId    String          @unique" in out
    assert "+  walletId    String" in out
    assert "-  wallet_transactions WalletTransactions?" in out
    assert "+  wallet_transactions WalletTransactions[]" in out
    assert '-  @@map("organisation_wallets")' in out
    assert 'DROP INDEX "wallet_transactions_walletId_key"' in out
    for step in STEPS:
        assert step in out
    assert state(wallet) == before
    assert not list(_isolate.glob("runs/*.json"))


def test_the_journal_never_holds_the_password(wallet: Wallet, _isolate: Path) -> None:
    wallet.run()
    wallet.rollback()
    for path in _isolate.rglob("*"):
        if path.is_file():
            assert b"Sup3rS3cretPw" not in path.read_bytes(), path
    log = cli("log", json.loads(wallet.run().stdout.splitlines()[-1])["detail"]["run_id"])
    assert "Sup3rS3cretPw" not in log.stdout
