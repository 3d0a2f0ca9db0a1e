"""Signed approvals of a plan, checked by `run --plan --require-approvals --allowed-signers`
with real ssh-keygen; and break-glass, which runs without them and is flagged everywhere."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.approvals.conftest import Keys, Planned, finished


def approve(planned: Planned, keys: Keys, who: str) -> None:
    done = planned.cli("approve", str(planned.plan), "--key", str(keys.private(who)))
    assert done.returncode == 0, done.stderr


def run_approved(planned: Planned, keys: Keys, needed: int = 1):  # type: ignore[no-untyped-def]
    allowed = keys.allowed("alice", "bob", "operator")
    return planned.run_plan("--require-approvals", str(needed), "--allowed-signers", str(allowed))


@pytest.fixture
def operator(planned: Planned, keys: Keys) -> Planned:
    """The person running the plan holds the key `operator` (in ~/.ssh)."""
    shutil.copy(keys.dir / "operator.pub", planned.home / ".ssh" / "id_ed25519.pub")
    return planned


def test_a_valid_signature_from_an_allowed_signer_passes(operator: Planned, keys: Keys) -> None:
    operator.make_plan()
    approve(operator, keys, "alice")
    done = run_approved(operator, keys)
    assert done.returncode == 0, done.stdout
    assert "note" in operator.columns()
    (record,) = operator.records()
    assert record["authority"]["approved_by"] == ["alice@example.com"]
    assert record["authority"]["plan"]["sha256"] == operator.plan_sha256()


def test_two_approvals_needed_and_given(operator: Planned, keys: Keys) -> None:
    operator.make_plan()
    approve(operator, keys, "alice")
    assert run_approved(operator, keys, 2).returncode == 4
    approve(operator, keys, "bob")
    done = run_approved(operator, keys, 2)
    assert done.returncode == 0, done.stdout


def test_the_operators_own_signature_does_not_count(operator: Planned, keys: Keys) -> None:
    operator.make_plan()
    approve(operator, keys, "operator")
    done = run_approved(operator, keys)
    assert done.returncode == 4
    assert "the operator's own key" in finished(done)["message"]
    assert operator.columns() == {"id", "n"}


def test_a_signature_over_another_plan_is_refused(operator: Planned, keys: Keys) -> None:
    operator.make_plan()
    approve(operator, keys, "alice")
    sig = operator.plan.with_name("plan.json.sig").read_bytes()
    operator.make_plan("--var", "col=other")  # another plan at the same path
    operator.plan.with_name("plan.json.sig").write_bytes(sig)
    done = run_approved(operator, keys)
    assert done.returncode == 4
    assert "not over this plan" in finished(done)["message"]
    assert operator.columns() == {"id", "n"}


def test_an_unknown_key_is_refused(operator: Planned, keys: Keys) -> None:
    operator.make_plan()
    approve(operator, keys, "carol")  # not in the allowed signers file
    done = run_approved(operator, keys)
    assert done.returncode == 4
    assert "unknown key" in finished(done)["message"]


def test_a_tampered_plan_file_is_refused(operator: Planned, keys: Keys) -> None:
    operator.make_plan()
    approve(operator, keys, "alice")
    plan = json.loads(operator.plan.read_text())
    plan["effects"][0]["effect"] = "SELECT 1"  # what the reviewer read is no longer there
    operator.plan.write_text(json.dumps(plan, indent=2) + "\n")
    done = run_approved(operator, keys)
    assert done.returncode == 4
    assert "not over this plan" in finished(done)["message"]
    assert operator.columns() == {"id", "n"}


def test_a_runbook_that_requires_approval_refuses_a_run_without_them(operator: Planned) -> None:
    text = operator.runbook.read_text().replace("steps:\n", "requires_approval: 1\nsteps:\n", 1)
    operator.runbook.write_text(text)
    done = operator.cli("run", str(operator.runbook), "--yes", "-o", "json")
    assert done.returncode == 4
    assert "needs 1 approval(s) here" in finished(done)["message"]
    bare = operator.cli("run", str(operator.runbook), "--yes", "--break-glass")
    assert bare.returncode == 2 and "--break-glass needs --reason" in bare.stderr
    assert operator.columns() == {"id", "n"}


def test_break_glass_runs_and_is_flagged_everywhere(operator: Planned) -> None:
    text = operator.runbook.read_text().replace("steps:\n", "requires_approval: 2\nsteps:\n", 1)
    operator.runbook.write_text(text)
    reason = "INC-1234 wallet writes failing"
    done = operator.cli("run", str(operator.runbook), "--yes", "--break-glass", "--reason", reason)
    assert done.returncode == 0, done.stderr
    assert "BREAK GLASS: running without the 2 approval(s) it needs" in done.stderr
    assert "note" in operator.columns()
    (record,) = operator.records()
    assert record["authority"] == {"break_glass": True, "reason": reason, "required": 2}
    flagged = operator.sql(
        "SELECT target -> 'authority' ->> 'break_glass', reason FROM dcx_runbook.runs"
    )
    assert flagged == ("true", reason)
    runs = operator.cli("runs")
    assert "BREAK GLASS" in " ".join(runs.stdout.split())
    status = operator.cli("status")
    assert f"BREAK GLASS ({reason})" in " ".join(status.stdout.split())
    report = operator.cli("log", record["run_id"], "--format", "markdown")
    assert f"**Authority:** BREAK GLASS ({reason})" in report.stdout
