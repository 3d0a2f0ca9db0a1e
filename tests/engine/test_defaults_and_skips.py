"""Two small parts of the format issue 20 needed, on their own: a variable's `default_from` (kept in
the journal, unlike a secret's `default`) and `default_warning`; and a shell check's `skip_exit`
(nothing to check: said, never passed). No database: a runbook of shell checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcx_runbook.format.model import Runbook
from dcx_runbook.format.variables import default_warnings, resolve
from tests.support.inprocess import run

RUNBOOK = {
    "version": 1,
    "name": "defaults",
    "title": "A secret that defaults to another, with a warning",
    "vars": {
        "admin_url": {"secret": True, "env": "ADMIN_URL"},
        "app_url": {
            "secret": True,
            "default_from": "admin_url",
            "default_warning": "app_url is admin_url: the app gets the admin's credentials",
        },
    },
    "steps": [
        {
            "id": "nothing-to-check",
            "title": "A check that finds nothing to check",
            "verify": [
                {
                    "kind": "shell",
                    "name": "suites",
                    "script": 'echo "no suites here"; exit 77',
                    "skip_exit": 77,
                    "pure": True,
                }
            ],
        }
    ],
}


def test_default_from_takes_the_other_value_and_warns_while_it_does() -> None:
    rb = Runbook.model_validate(RUNBOOK)

    left = resolve(rb, {}, {"ADMIN_URL": "postgresql://admin:pw@h/db"})
    given = resolve(rb, {"app_url": "postgresql://app:pw@h/db"}, {"ADMIN_URL": "x"})
    same = resolve(rb, {"app_url": "x"}, {"ADMIN_URL": "x"})
    rollback = resolve(rb, {}, {"ADMIN_URL": "x"}, recorded={})

    assert left.values["app_url"] == "postgresql://admin:pw@h/db"
    assert left.sources["app_url"] == "default"
    warning = "warning: app_url is admin_url: the app gets the admin's credentials"
    assert warning in left.notes
    assert given.values["app_url"] == "postgresql://app:pw@h/db" and not given.notes
    assert warning in same.notes  # given, but the same: still the admin's credentials
    assert not rollback.notes  # a rollback writes nothing new with them
    assert default_warnings(rb, given.values) == []


def test_a_secrets_default_from_is_journaled_as_a_name(tmp_path: Path) -> None:
    """A secret's `default` is dropped from the journaled runbook; `default_from` is a name."""
    from dcx_runbook.engine.run import _journal_spec

    rb = Runbook.model_validate(RUNBOOK)
    spec = _journal_spec(rb)
    assert spec["vars"]["app_url"]["default_from"] == "admin_url"
    again = Runbook.model_validate(spec)
    assert resolve(again, {}, {"ADMIN_URL": "u"}, recorded={}).values["app_url"] == "u"


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_skip_exit_is_said_not_passed(tmp_path: Path, dry_run: bool) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump(RUNBOOK, sort_keys=False))

    done = run(path, yes=True, dry_run=dry_run, state=tmp_path / "state", var=["admin_url=x"])

    assert done.exit_code == 0, done.said()
    (check,) = [e for e in done.events if e["event"] == "check" and e["step"]]
    assert check["status"] == "deferred"
    assert check["message"] == "suites: not evaluated: no suites here"


def test_skip_exit_must_differ_from_success() -> None:
    step = RUNBOOK["steps"][0]
    bad = {**step, "verify": [{**step["verify"][0], "skip_exit": 0}]}  # type: ignore[index, dict-item]
    with pytest.raises(ValueError, match="skip_exit must differ from expect_exit"):
        Runbook.model_validate({**RUNBOOK, "steps": [bad]})
