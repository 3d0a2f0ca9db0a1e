"""The emergency plan's three databases as one fleet (docs/fleet.md): wallet-fix fixes the one
with the conflict and reports the other two "not applicable", leaving them exactly as they were
(not even a ledger is created there)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from dcx_runbook.target import sandbox
from tests.conftest import cli, schema_dump
from tests.engine.conftest import validate_events
from tests.wallet.conftest import MANUAL_STEPS, NODE_STEPS, Wallet, apply_fixture_schema

PASSWORD = "Sup3rS3cretPw"
NOT_APPLICABLE = "not applicable: no unique index on walletId; nothing was touched"


@pytest.fixture
def others(pg_server: sandbox.Server) -> Iterator[tuple[str, str]]:
    """aas_product_local: the wallet tables, without the conflict (the index is not unique);
    enetworks_product_local: no wallet at all."""
    with (
        sandbox.scratch_database(pg_server, "dcx_aas") as aas,
        sandbox.scratch_database(pg_server, "dcx_enet") as enet,
    ):
        apply_fixture_schema(aas, "broken-schema.sql", "seed.sql", "aas-no-conflict.sql")
        apply_fixture_schema(enet, "enetworks-schema.sql")
        yield aas, enet


def ledger_exists(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regnamespace('dcx_runbook') IS NOT NULL").fetchone()
    return bool(row and row[0])


def test_the_plans_three_databases_one_fixed_two_not_applicable(
    wallet: Wallet, others: tuple[str, str], tmp_path: Path, _isolate: Path
) -> None:
    aas, enet = others
    urls = {"datacentrix": wallet.url, "aas": aas, "enetworks": enet}
    targets = tmp_path / "wallet-fix.targets.yaml"
    targets.write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {
                        "name": name,
                        "url_env": f"{name.upper()}_URL",
                        "database": url.rsplit("/", 1)[1],
                        "labels": {"plan": "2025-07-05"},
                        "vars": {"frontend_dir": str(wallet.frontend)},
                    }
                    for name, url in urls.items()
                ]
            },
            sort_keys=False,
        )
    )
    env = {**wallet.env, **{f"{n.upper()}_URL": u for n, u in urls.items()}}
    skip = [] if wallet.tools else [a for s in NODE_STEPS for a in ("--skip", s)]
    skip += [a for s in MANUAL_STEPS for a in ("--skip", s)]  # the next steps: left for later
    before = {name: schema_dump(urls[name]) for name in ("aas", "enetworks")}

    def fleet_run() -> list[dict[str, object]]:
        done = cli("run", "wallet-fix", "--select", "plan=2025-07-05", "--targets", str(targets),
                   "--yes", "-o", "json", *skip, env=env)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert PASSWORD not in done.stdout + done.stderr
        stream = [json.loads(line) for line in done.stdout.splitlines()]
        validate_events(stream)  # applies_when's checks and the fleet's events included
        return stream

    events = fleet_run()
    ends = {
        e["target"]: (e["status"], e["message"]) for e in events if e["event"] == "target_finished"
    }
    assert ends["datacentrix"] == ("succeeded", "done and verified")
    assert ends["aas"] == ("not_applicable", NOT_APPLICABLE)
    assert ends["enetworks"] == ("not_applicable", NOT_APPLICABLE)
    assert wallet.sql("SELECT to_regclass('\"wallet_transactions_walletId_key\"')") is None
    # Nothing changed on the other two: their schema, and no ledger created there either.
    assert {name: schema_dump(urls[name]) for name in ("aas", "enetworks")} == before
    assert not ledger_exists(aas) and not ledger_exists(enet)
    (record,) = (_isolate / "fleets").glob("fleet-*.json")
    assert PASSWORD not in record.read_text()

    # Again: the ledger of datacentrix records the fix still in effect, so wallet-fix concerns it
    # (its steps say "already done"); the other two are still not applicable.
    again = {e["target"]: e["status"] for e in fleet_run() if e["event"] == "target_finished"}
    assert again == {
        "datacentrix": "succeeded",
        "aas": "not_applicable",
        "enetworks": "not_applicable",
    }
