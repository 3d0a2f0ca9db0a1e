"""Plan files: what a dry run found, checked again by `run --plan` before the first change; a
plan the target, the catalog, a variable or the runbook no longer matches is refused (exit 4),
naming what changed, with nothing changed."""

from __future__ import annotations

import json

from tests.approvals.conftest import Planned, finished


def test_an_unchanged_plan_runs_and_its_journal_records_the_plans_hash(planned: Planned) -> None:
    planned.make_plan()
    plan = json.loads(planned.plan.read_text())
    assert plan["runbook"]["name"] == "addcol"
    assert plan["vars"]["col"] == "note"
    assert plan["vars"]["database_url"].startswith("hmac-sha256:")  # never the value
    assert "Sup3rS3cret" not in planned.plan.read_text()  # nor the URL's password
    assert plan["secret_vars"] == ["database_url"]
    assert "public.accounts" in plan["catalog"]
    assert any('ADD COLUMN "note"' in e["effect"] for e in plan["effects"])
    assert any(c["phase"] == "precheck" and c["status"] == "passed" for c in plan["checks"])
    assert plan["target"]["database_oid"] and plan["target"]["system_identifier"]
    done = planned.run_plan()
    assert done.returncode == 0, done.stderr
    assert "note" in planned.columns()
    (record,) = planned.records()
    assert record["authority"]["plan"]["sha256"] == planned.plan_sha256()
    row = planned.sql("SELECT target -> 'authority' -> 'plan' ->> 'sha256' FROM dcx_runbook.runs")
    assert row == (planned.plan_sha256(),)


def test_a_column_added_behind_the_plan_refuses_it_naming_the_relation(planned: Planned) -> None:
    planned.make_plan()
    planned.sql("ALTER TABLE accounts ADD COLUMN extra int")
    done = planned.run_plan()
    assert done.returncode == 4, done.stdout
    said = finished(done)["message"]
    assert "relation public.accounts: its columns, indexes or constraints changed" in said
    assert planned.columns() == {"id", "n", "extra"}
    assert planned.records() == []


def test_a_changed_variable_refuses_the_plan(planned: Planned) -> None:
    planned.make_plan()
    done = planned.run_plan("--var", "col=other")
    assert done.returncode == 4
    assert "variable col: 'note' in the plan, 'other' now" in finished(done)["message"]
    assert planned.columns() == {"id", "n"}


def test_a_changed_secret_refuses_the_plan_without_showing_it(planned: Planned) -> None:
    planned.make_plan()
    other = planned.url.replace("Sup3rS3cret", "Oth3rPw", 1)  # trust auth ignores it
    done = planned.run_plan(DATABASE_URL=other)
    assert done.returncode == 4
    said = finished(done)["message"]
    assert "variable database_url: a secret, not the value planned" in said
    assert "Oth3rPw" not in done.stdout + done.stderr
    assert planned.columns() == {"id", "n"}


def test_an_edited_runbook_refuses_the_plan(planned: Planned) -> None:
    planned.make_plan()
    planned.runbook.write_text(planned.runbook.read_text().replace("add the column", "add it"))
    done = planned.run_plan()
    assert done.returncode == 4
    assert "is not the file reviewed" in finished(done)["message"]


def test_another_run_since_the_plan_refuses_it(planned: Planned) -> None:
    """The ledger's head moved: what was reviewed did not see that run."""
    planned.make_plan()
    assert planned.run_plan().returncode == 0
    assert planned.cli("rollback", "--yes").returncode == 0
    done = planned.run_plan()
    assert done.returncode == 4
    assert "the ledger's newest run" in finished(done)["message"]


def test_no_plan_is_written_for_a_dry_run_that_did_not_pass(planned: Planned) -> None:
    planned.sql("ALTER TABLE accounts ADD COLUMN note text")  # the precheck fails
    done = planned.cli("run", str(planned.runbook), "--dry-run", "--plan-out", str(planned.plan))
    assert done.returncode == 1
    assert "no plan written" in done.stderr
    assert not planned.plan.exists()


def test_plan_options_are_checked(planned: Planned) -> None:
    done = planned.cli("run", str(planned.runbook), "--plan-out", str(planned.plan), "--yes")
    assert done.returncode == 2 and "--plan-out: only with --dry-run" in done.stderr
    planned.plan.write_text("{not json")
    done = planned.run_plan()
    assert done.returncode == 2 and "not JSON" in done.stderr
    assert planned.columns() == {"id", "n"}


def test_show_plan_renders_it_for_review(planned: Planned) -> None:
    planned.make_plan()
    done = planned.cli("show-plan", str(planned.plan), "--format", "markdown")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("# Plan: addcol")
    assert planned.plan_sha256() in text
    assert 'ALTER TABLE accounts ADD COLUMN "note" text' in text
    assert "| public.accounts |" in text
    human = planned.cli("show-plan", str(planned.plan))
    assert human.returncode == 0 and "Plan: addcol" in human.stdout
