"""wallet-fix, complete (issue 20): the plan's functional success criteria checked (the
frontend's wallet test suites, VM provisioning's read), "walletId" left indexed once its unique
index is gone (the foreign key), and the app given its own credentials in backend.env."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import cli, schema_dump, snapshot
from tests.engine.conftest import events
from tests.support.terminal import converse, plain
from tests.wallet.conftest import NODE_STEPS, Wallet

pytestmark = pytest.mark.node  # the wallet fixture runs the real Prisma CLI

SUITES = Path("src/services/wallet/__tests__")
PLAIN_INDEX = "wallet_transactions_walletId_idx"
# What `prisma migrate` creates for @@index([walletId]) on @@map("wallet_transactions"), as
# pg_get_indexdef spells it: the name Prisma gives it, a btree on "walletId" alone.
PRISMA_INDEX_DEF = (
    'CREATE INDEX "wallet_transactions_walletId_idx" ON public.wallet_transactions '
    'USING btree ("walletId")'
)
WARNING = "backend.env gets the runbook's own URL"
APP_URL = "postgresql://wallet_app:AppS3cretPw@db.internal:5432/datacentrix_cloud_local"


def state(w: Wallet) -> tuple[str, dict]:
    return schema_dump(w.url), snapshot(w.env_file, w.schema, w.client_schema)


def finished(stdout: str) -> dict[str, str]:
    return {e["step"]: e["status"] for e in events(stdout) if e["event"] == "step_finished"}


def checks_of(stdout: str, step: str) -> list[dict]:
    return [e for e in events(stdout) if e["event"] == "check" and e["step"] == step]


def needs_node(w: Wallet) -> None:
    if w.tools is None:
        pytest.skip("node is not installed: the wallet test suites are skipped")


def wallet_model(schema: str) -> str:
    match = re.search(r"^model WalletTransactions \{\n(.*?)^\}", schema, re.M | re.S)
    assert match, schema
    return match.group(1)


# --------------------------------------------------------------------------- the wallet test suites


def test_the_five_wallet_suites_run_and_pass_on_the_fixed_checkout(wallet: Wallet) -> None:
    needs_node(wallet)
    assert len(list((wallet.frontend / SUITES).glob("*.test.js"))) == 5

    result = wallet.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert finished(result.stdout)["wallet-test-suites"] == "passed"
    (suites,) = checks_of(result.stdout, "wallet-test-suites")
    assert suites["status"] == "passed" and suites["phase"] == "verify", suites


def test_a_broken_wallet_test_file_fails_the_step_and_everything_is_undone(
    wallet: Wallet,
) -> None:
    needs_node(wallet)
    broken = wallet.frontend / SUITES / "wallet-balance.test.js"
    broken.write_text(broken.read_text().replace("75.5);", "75.25);"))
    before = state(wallet)

    result = wallet.run()

    assert result.returncode == 1, result.stdout + result.stderr
    stream = events(result.stdout)
    assert next(e for e in stream if e["event"] == "unwind_started")["step"] == (
        "wallet-test-suites"
    )
    (suites,) = checks_of(result.stdout, "wallet-test-suites")
    assert suites["status"] == "failed"
    # For the right reason: the broken test is named, and it is the only one failing.
    failing = suites["message"].split("failing:")[-1]
    assert "not ok" in failing
    assert "credits add and debits take away, across several transactions" in failing
    assert failing.count("not ok") == 1
    undone = {e["step"] for e in stream if e["event"] == "step_undone"}
    assert {"index-wallet-id", "drop-wallet-unique-index", "env-database-url"} <= undone
    assert state(wallet) == before


def test_the_suites_fail_against_a_client_whose_wallet_holds_one_transaction(
    wallet: Wallet,
) -> None:
    """The frontend as it was: the database fixed, but schema.prisma and its client still
    one-to-one. Only the suite about the relation fails, on both of its tests."""
    needs_node(wallet)
    before = state(wallet)

    result = wallet.run(
        "--skip", "prisma-schema", "--skip", "prisma-generate", "--skip", "typescript-check"
    )

    assert result.returncode == 1, result.stdout + result.stderr
    (suites,) = checks_of(result.stdout, "wallet-test-suites")
    assert suites["status"] == "failed"
    failing = re.findall(
        r"^not ok \d+ - (.+?)(?: \(A wallet test suite failed.*)?$", suites["message"], re.M
    )
    assert failing == [
        "a wallet holds a list of transactions",
        "several transactions may belong to the same wallet",
    ]
    assert state(wallet) == before


def test_a_checkout_without_wallet_suites_says_so_and_never_passes_them(wallet: Wallet) -> None:
    needs_node(wallet)
    shutil.rmtree(wallet.frontend / SUITES)

    result = wallet.run()

    assert result.returncode == 0, result.stdout + result.stderr
    (suites,) = checks_of(result.stdout, "wallet-test-suites")
    assert suites["status"] == "deferred", suites  # not evaluated: neither passed nor failed
    assert "not evaluated: no wallet test suites found" in suites["message"]


def test_wallet_test_command_runs_instead_of_the_derived_one(wallet: Wallet) -> None:
    needs_node(wallet)
    only = f"node --test {SUITES / 'wallet-relation.test.js'} && exit 3"

    result = wallet.run("--var", f"wallet_test_command={only}")

    assert result.returncode == 1, result.stdout + result.stderr
    (suites,) = checks_of(result.stdout, "wallet-test-suites")
    assert "ok 1 - a wallet holds a list of transactions" in suites["message"]  # that suite only
    assert "wallet-balance" not in suites["message"]
    assert "the wallet test suites failed (exit 3)" in suites["message"]


# --------------------------------------------------------------------------- "walletId" indexed


def test_walletid_keeps_a_valid_index_that_prisma_declares_and_rollback_removes_it(
    wallet: Wallet,
) -> None:
    before = schema_dump(wallet.url)

    result = wallet.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert finished(result.stdout)["index-wallet-id"] == "applied"
    built = f"""SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                 WHERE i.indexrelid = to_regclass('"{PLAIN_INDEX}"') AND i.indisvalid"""
    assert wallet.sql(built) == PRISMA_INDEX_DEF
    assert "@@index([walletId])" in wallet_model(wallet.schema.read_text())
    # The only index left on "walletId": the unique one is gone.
    on_wallet_id = """SELECT count(*) FROM pg_index i
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                       WHERE i.indrelid = 'wallet_transactions'::regclass AND a.attname = 'walletId'"""
    assert wallet.sql(on_wallet_id) == 1

    undo = wallet.rollback()

    assert undo.returncode == 0, undo.stdout + undo.stderr
    undone = [e["step"] for e in events(undo.stdout) if e["event"] == "step_undone"]
    # The unique index is back before the plain one goes: never a moment without an index.
    assert undone.index("drop-wallet-unique-index") < undone.index("index-wallet-id")
    assert wallet.sql(f"SELECT to_regclass('\"{PLAIN_INDEX}\"')") is None
    assert schema_dump(wallet.url) == before


def test_a_plain_index_on_walletid_under_another_name_is_already_done(wallet: Wallet) -> None:
    wallet.sql('CREATE INDEX wallet_tx_by_wallet ON wallet_transactions ("walletId")')
    before = schema_dump(wallet.url)

    result = wallet.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert finished(result.stdout)["index-wallet-id"] == "already_done"
    assert wallet.sql(f"SELECT to_regclass('\"{PLAIN_INDEX}\"')") is None  # none built

    undo = wallet.rollback()

    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert wallet.sql("SELECT to_regclass('wallet_tx_by_wallet') IS NOT NULL") is True
    assert schema_dump(wallet.url) == before


@pytest.mark.parametrize(
    "there",
    [
        # Another index under the name the step builds: the rollback would drop it.
        f'CREATE INDEX "{PLAIN_INDEX}" ON wallet_transactions (amount)',
        # An INVALID one, as a failed build leaves it: neither done nor to be built over.
        f'CREATE INDEX "{PLAIN_INDEX}" ON wallet_transactions ("walletId");'
        f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '\"{PLAIN_INDEX}\"'::regclass",
    ],
    ids=["another-index", "invalid-leftover"],
)
def test_an_index_of_that_name_that_is_not_the_plain_one_is_never_built_over_nor_dropped(
    wallet: Wallet, there: str
) -> None:
    wallet.sql(there)
    before = state(wallet)

    result = wallet.run()

    assert result.returncode == 1, result.stdout + result.stderr
    stream = events(result.stdout)
    assert next(e for e in stream if e["event"] == "unwind_started")["step"] == "index-wallet-id"
    assert "DROP INDEX CONCURRENTLY" in stream[-1]["message"]  # what to do about it
    assert wallet.sql(f"SELECT to_regclass('\"{PLAIN_INDEX}\"') IS NOT NULL") is True
    assert state(wallet) == before


# --------------------------------------------------------------------------- the app's credentials


def test_backend_env_gets_the_apps_own_url_and_no_warning(wallet: Wallet, _isolate: Path) -> None:
    before = state(wallet)
    wallet.extra = ["--var", f"app_database_url={APP_URL}"]

    result = wallet.run()

    assert result.returncode == 0, result.stdout + result.stderr
    lines = wallet.env_file.read_text().splitlines()
    assert [line for line in lines if line.startswith("DATABASE_URL=")] == [
        f"DATABASE_URL={APP_URL}"
    ]
    assert WARNING not in result.stdout + result.stderr
    # Secret: shown and journaled nowhere.
    assert "AppS3cretPw" not in result.stdout + result.stderr
    for path in _isolate.rglob("*"):
        if path.is_file():
            assert b"AppS3cretPw" not in path.read_bytes(), path
    # status: the app's URL, a secret, is given again to judge backend.env (never journaled).
    status = cli("status", "--database-url", wallet.url, "--var", f"app_database_url={APP_URL}",
                 "-o", "json", env=wallet.env)  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["drift"] == []

    undo = wallet.rollback()

    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert state(wallet) == before


def test_left_at_its_default_the_apps_url_is_the_runbooks_and_status_knows_it(
    wallet: Wallet,
) -> None:
    result = wallet.run()

    assert result.returncode == 0, result.stdout + result.stderr
    warned = [e for e in events(result.stdout) if e["event"] == "log" and WARNING in e["message"]]
    assert len(warned) == 1  # said by the run too (with --yes there is no question)
    assert f"DATABASE_URL={wallet.url}" in wallet.env_file.read_text().splitlines()
    # The default (database_url's value) is journaled by name: status needs nothing more.
    status = cli("status", "--database-url", wallet.url, "-o", "json", env=wallet.env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["drift"] == []


def test_the_dry_run_warns_that_the_ddl_credentials_go_into_the_apps_env_file(
    wallet: Wallet,
) -> None:
    dry = wallet.run("--dry-run")

    assert dry.returncode == 0, dry.stdout + dry.stderr
    (warning,) = [e for e in events(dry.stdout) if e["event"] == "log" and WARNING in e["message"]]
    assert (
        "the credentials that run this fix's DDL are written into the app's env file"
        in (warning["message"])
    )
    assert "--var app_database_url=URL" in warning["message"]
    assert "Sup3rS3cretPw" not in dry.stdout + dry.stderr

    given = wallet.run("--dry-run", "--var", f"app_database_url={APP_URL}")

    assert given.returncode == 0, given.stdout + given.stderr
    assert WARNING not in given.stdout + given.stderr


@pytest.mark.slow
def test_the_confirmation_warns_too_and_a_no_changes_nothing(wallet: Wallet) -> None:
    before = state(wallet)
    skip = [a for s in (*NODE_STEPS, *wallet.manual) for a in ("--skip", s)]
    args = [
        "run", "wallet-fix", "--database-url", wallet.url, "--var", f"expected_database={wallet.dbname}",
        "--var", f"frontend_dir={wallet.frontend}", *skip,
    ]  # fmt: skip

    code, shown = converse(args, [(b"Go ahead?", b"n\r")], env={**wallet.env, "COLUMNS": "200"})

    assert code == 4, shown
    question = plain(shown[shown.index("Run wallet-fix") :])
    assert "warning: " + WARNING in question
    assert question.index(WARNING) < question.index("Go ahead?")
    assert state(wallet) == before

    code, shown = converse(
        [*args, "--var", f"app_database_url={APP_URL}"],
        [(b"Go ahead?", b"n\r")],
        env={**wallet.env, "COLUMNS": "200"},
    )

    assert code == 4, shown
    assert WARNING not in plain(shown)
