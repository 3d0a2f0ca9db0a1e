"""wallet-fix run on machine A, rolled back from machine B: B refuses what only A can undo (its
backend.env and schema.prisma: their pre-images are in A's journal), names A and those files,
and with --skip-other-hosts undoes the index and reports the files as still applied. A then
finishes the job and everything is as it was."""

from __future__ import annotations

import pytest

from tests.conftest import schema_dump, snapshot
from tests.ledger.conftest import events, last
from tests.support.machines import Machine
from tests.wallet.conftest import Wallet

pytestmark = pytest.mark.node  # the wallet fixture runs the real Prisma CLI

INDEX = "SELECT count(*) FROM pg_indexes WHERE indexname = 'wallet_transactions_walletId_key'"


def test_b_refuses_a_files_then_skips_them_and_a_finishes(
    wallet: Wallet, machines: tuple[Machine, ...]
) -> None:
    a, b, _ = machines
    files = [wallet.env_file, wallet.schema, wallet.client_schema]
    schema_before, files_before = schema_dump(wallet.url), snapshot(*files)
    ran = a.cli("run", "wallet-fix", "--yes", "-o", "json", *wallet.args(), env=wallet.env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = last(ran)["detail"]["run_id"]
    assert wallet.sql(INDEX) == 0
    files_fixed = snapshot(*files)

    refused = b.cli("rollback", "--yes", "-o", "json", "--database-url", wallet.url)

    assert refused.returncode == 4, refused.stdout + refused.stderr
    message = last(refused)["message"]
    assert "machine-a" in message
    assert str(wallet.env_file) in message and str(wallet.schema) in message
    assert f"on machine-a run: dcx-runbook rollback {run_id}" in message
    assert "Sup3rS3cretPw" not in refused.stdout + refused.stderr
    assert wallet.sql(INDEX) == 0 and snapshot(*files) == files_fixed  # nothing changed

    partial = b.cli(
        "rollback", "--yes", "-o", "json", "--skip-other-hosts", "--database-url", wallet.url
    )

    assert partial.returncode == 0, partial.stdout + partial.stderr
    undone = {e["step"]: e["status"] for e in events(partial.stdout) if e["event"] == "step_undone"}
    assert undone["drop-wallet-unique-index"] == "rolled_back"
    assert undone["env-database-url"] == undone["prisma-schema"] == "skipped"
    assert wallet.sql(INDEX) == 1
    assert snapshot(*files) == files_fixed  # A's files: untouched from B
    end = last(partial)
    assert {"env-database-url", "prisma-schema"} <= set(end["detail"]["still_applied"])
    assert "drop-wallet-unique-index" not in end["detail"]["still_applied"]
    assert "as it was" not in end["message"]
    assert "left for the machines that ran them" in end["message"]

    finish = a.cli("rollback", "--yes", "-o", "json", "--database-url", wallet.url, env=wallet.env)

    assert finish.returncode == 0, finish.stdout + finish.stderr
    steps = [e["step"] for e in events(finish.stdout) if e["event"] == "step_undone"]
    assert "drop-wallet-unique-index" not in steps  # B undid it: A learnt so from the ledger
    assert {"env-database-url", "prisma-schema"} <= set(steps)
    assert schema_dump(wallet.url) == schema_before
    assert snapshot(*files) == files_before
    assert "still_applied" not in last(finish)["detail"]  # nothing: omitted
