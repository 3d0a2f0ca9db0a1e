"""The diff of an env_file operation names every key it adds, changes or removes but shows no value
already in the file: neighbouring keys are where the secrets live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcx_runbook.kinds import OPERATIONS
from dcx_runbook.kinds.base import Context
from dcx_runbook.kinds.env_file import EnvFileOp
from dcx_runbook.secrets import Masker
from tests.conftest import cli, write_runbook

STRIPE = "sk_live_51HxQyZ2eZvKYlo2C0FAKEFAKE"
ENV = (
    "# backend\n"
    f"STRIPE_SECRET_KEY={STRIPE}\n"
    "export SESSION_SECRET='s3ss10n-s3cr3t'\n"
    "APP_MODE=dev\n"
    'JWT_KEY="jwt-very-secret"\n'
    "OLD_TOKEN=old-token-value\n"
    "PORT=3000\n"
)
FILE_VALUES = [STRIPE, "s3ss10n-s3cr3t", "dev", "jwt-very-secret", "old-token-value", "3000"]


def describe(tmp_path: Path, before: str | None, **op: object) -> tuple[str, bytes]:
    target = tmp_path / "app.env"
    if before is not None:
        target.write_text(before)
    spec = EnvFileOp(kind="env_file", path=str(target), **op)  # type: ignore[arg-type]
    ctx = Context(values={"db_url": "postgresql://app:DbPassw0rd@db/app"}, masker=Masker())
    effect = OPERATIONS["env_file"].plan(spec, ctx)
    text = effect.describe()
    effect.execute(ctx)
    return text, target.read_bytes()


def test_diff_masks_every_value_from_the_file_and_keeps_the_keys(tmp_path: Path) -> None:
    diff, after = describe(
        tmp_path,
        ENV,
        set={"APP_MODE": "production", "NEW_FLAG": "on"},
        unset=["OLD_TOKEN"],
    )
    for value in FILE_VALUES:
        assert value not in diff
    lines = diff.splitlines()
    assert " STRIPE_SECRET_KEY=***" in lines  # context: the key, not its value
    assert " export SESSION_SECRET=***" in lines
    assert "-APP_MODE=***" in lines and "+APP_MODE=production" in lines  # changed
    assert "-OLD_TOKEN=***" in lines  # removed
    assert "+NEW_FLAG=on" in lines  # added
    assert " PORT=***" in lines
    assert (
        after.decode()
        == ENV.replace("APP_MODE=dev", "APP_MODE=production").replace(
            "OLD_TOKEN=old-token-value\n", ""
        )
        + "NEW_FLAG=on\n"
    )  # the file itself is written with its real values


def test_an_unchanged_key_that_is_set_again_is_not_shown_as_changed(tmp_path: Path) -> None:
    diff, _ = describe(tmp_path, 'A="1"\nB=secret-b\nC=secret-c\n', set={"A": "1", "C": "3"})
    assert ' A="1"' in diff.splitlines()  # what the runbook writes is no secret
    assert "-C=***" in diff.splitlines() and "+C=3" in diff.splitlines()
    assert "secret-b" not in diff and "secret-c" not in diff


def test_url_passwords_written_by_the_runbook_stay_masked(tmp_path: Path) -> None:
    diff, _ = describe(tmp_path, ENV, set={"DATABASE_URL": "${db_url}"})
    assert "+DATABASE_URL=postgresql://app:***@db/app" in diff.splitlines()
    assert "DbPassw0rd" not in diff


def test_a_created_file_and_a_no_change_plan(tmp_path: Path) -> None:
    diff, _ = describe(tmp_path, None, set={"A": "1"}, create=True)
    assert "--- /dev/null" in diff and '+A="1"' in diff
    same, _ = describe(tmp_path, None, set={"A": "1"})
    assert same.endswith(": no change\n")


def test_multiline_and_comment_values_are_masked(tmp_path: Path) -> None:
    before = 'KEY="-----BEGIN KEY-----\nMIIsecretbody\n-----END KEY-----"\nX=1 # note\nA=2\n'
    diff, _ = describe(tmp_path, before, set={"A": "3"})
    assert "MIIsecretbody" not in diff and "BEGIN KEY" not in diff
    assert " KEY=***" in diff.splitlines()


@pytest.mark.parametrize("output", ["human", "json"])
def test_dry_run_and_run_never_show_neighbouring_values(
    database_url: str, tmp_path: Path, output: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.env").write_text(ENV)
    step = {
        "id": "set-mode",
        "title": "Set APP_MODE",
        "action": [
            {"kind": "env_file", "path": str(work / "app.env"), "set": {"APP_MODE": "production"}}
        ],
        "rollback": {"restore_files": True},
    }
    runbook = write_runbook(tmp_path / "rb.yaml", "env-diff", [step])
    args = ["--database-url", database_url, "-o", output]

    dry = cli("run", str(runbook), "--dry-run", *args)
    done = cli("run", str(runbook), "--yes", *args)
    undone = cli("rollback", "--yes", *args)

    for result in (dry, done, undone):
        assert result.returncode == 0, result.stdout + result.stderr
    shown = "".join(r.stdout + r.stderr for r in (dry, done, undone))
    if output == "json":  # the messages themselves, not their JSON-escaped form
        shown += "".join(
            str(json.loads(line)["message"])
            for r in (dry, done, undone)
            for line in r.stdout.splitlines()
        )
    assert "+APP_MODE=production" in shown
    assert "STRIPE_SECRET_KEY=***" in shown
    for value in [STRIPE, "s3ss10n-s3cr3t", "jwt-very-secret", "old-token-value"]:
        assert value not in shown
    if output == "json":
        planned = [
            e
            for e in map(json.loads, dry.stdout.splitlines())
            if e["event"] == "operation" and e["status"] == "planned"
        ]
        assert len(planned) == 1 and "-APP_MODE=***" in planned[0]["message"].splitlines()
    journal = "".join(p.read_text() for p in (tmp_path / "state").rglob("*.json"))
    assert journal and STRIPE not in journal
    assert (work / "app.env").read_text() == ENV
