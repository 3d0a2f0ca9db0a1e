"""A targets file is validated like a runbook: every problem at once, located; choosing among its
targets; and any bad input is exit 2 with nothing touched anywhere (docs/fleet.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcx_runbook.errors import InvalidInput, ValidationFailed
from dcx_runbook.format.targets import load_targets, select, url_of
from tests.conftest import cli
from tests.fleet.conftest import fleet_runbook

BAD = """\
targets:
  - name: one
    url: postgresql://u@h/one
    database: one
    colour: blue
  - name: two
    database: two
  - name: one
    url_env: ONE_URL
    url: postgresql://u@h/one
    database: one
  - name: "bad name!"
    url_env: X
"""


def test_every_problem_is_located(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(BAD)
    with pytest.raises(ValidationFailed) as caught:
        load_targets(path)
    said = [str(p).replace(str(path), "F") for p in caught.value.problems]
    assert said == [
        "F:5:5: targets[0].colour: unknown key 'colour'",
        "F:6:5: targets[1]: expected exactly one of url and url_env",
        "F:8:5: targets[2]: expected exactly one of url and url_env",
        "F:8:11: targets[2].name: duplicate target name 'one'",
        "F:12:5: targets[3].database: missing key 'database'",
        "F:12:11: targets[3].name: expected a name of letters, digits, '_', '.' and '-' (at most "
        "63), such as db-01",
    ]


GOOD = """\
targets:
  - name: a
    url: postgresql://u@h/a
    database: a
    labels: {env: prod, tier: 1}
  - name: b
    url_env: B_URL
    database: b
    labels: {env: staging}
  - name: c
    url: postgresql://u@h/c
    database: c
    labels: {env: prod, tier: 2}
"""


def test_choosing_targets(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(GOOD)
    targets = load_targets(path)
    assert [t.name for t in select(targets, [], [])] == ["a", "b", "c"]
    assert [t.name for t in select(targets, [], ["env=prod"])] == ["a", "c"]
    assert [t.name for t in select(targets, [], ["env=prod", "tier=2"])] == ["c"]
    assert [t.name for t in select(targets, ["c", "a"], [])] == ["a", "c"]  # the file's order
    with pytest.raises(InvalidInput, match="no such target"):
        select(targets, ["z"], [])
    with pytest.raises(InvalidInput, match="expected label=value"):
        select(targets, [], ["env"])
    with pytest.raises(InvalidInput, match="no target of"):
        select(targets, [], ["env=dev"])
    with pytest.raises(InvalidInput, match=r"\$B_URL is not set"):
        url_of(targets.file.targets[1], {})
    assert url_of(targets.file.targets[1], {"B_URL": "postgresql://x/b"}) == "postgresql://x/b"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--targets", "missing.yaml"], "can't read"),
        (["--targets", "bad.yaml"], "unknown key 'colour'"),
        (["--targets", "good.yaml", "--target", "z"], "no such target"),
        (["--targets", "good.yaml", "--select", "env"], "expected label=value"),
        (["--targets", "good.yaml"], "$B_URL is not set"),
        (["--targets", "good.yaml", "--var", "nope=1"], "nope"),
        (["--targets", "good.yaml", "--database-url", "postgresql://u@h/x"], "--database-url"),
        (["--canary", "2"], "--canary: only for a fleet run"),
        (["--unwind-all-on-failure"], "--unwind-all-on-failure: only for a fleet run"),
        (["--targets", "good.yaml", "--skip", "nope"], "--skip nope: no such step"),
        (["--targets", "good.yaml", "--concurrency", "0"], "--concurrency"),
    ],
)
def test_bad_input_is_one_error_exit_2_and_nothing_is_written(
    tmp_path: Path, _isolate: Path, args: list[str], said: str
) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    (tmp_path / "good.yaml").write_text(GOOD)
    runbook = fleet_runbook(tmp_path / "fleet-fix.yaml")
    done = cli("run", str(runbook), "--yes", *args, env={"DATABASE_URL": "postgresql://u@h/x"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr
    assert not _isolate.exists()  # no state directory, no fleet record


def test_a_secret_in_a_targets_url_never_shows(tmp_path: Path, _isolate: Path) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "targets:\n  - name: a\n    url: postgresql://u:Pa55w0rdX@127.0.0.1:1/a\n    database: a\n"
    )
    runbook = fleet_runbook(tmp_path / "fleet-fix.yaml")
    done = cli("run", str(runbook), "--targets", str(targets), "--yes", "-o", "json")
    assert done.returncode == 4, done.stdout + done.stderr  # refused: it can't connect
    assert "Pa55w0rdX" not in done.stdout + done.stderr
    for path in _isolate.rglob("*"):
        if path.is_file():
            assert b"Pa55w0rdX" not in path.read_bytes(), path


def test_no_terminal_and_no_yes_is_no(tmp_path: Path, _isolate: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD.replace("url_env: B_URL", "url: postgresql://u@h/b"))
    runbook = fleet_runbook(tmp_path / "fleet-fix.yaml")
    done = cli("run", str(runbook), "--targets", str(tmp_path / "good.yaml"), input="")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "not confirmed" in done.stderr
    assert not (_isolate / "fleets").exists()
