"""Shell completion through Typer's own machinery (the environment a completion script sets):
run ids, step ids, runbook names; and -h as --help."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import cli

STEPS = [
    {"id": "prepare", "title": "prepare", "verify": [{"kind": "command", "command": "sh"}]},
    {"id": "promote", "title": "promote", "verify": [{"kind": "command", "command": "sh"}]},
    {"id": "cleanup", "title": "cleanup", "verify": [{"kind": "command", "command": "sh"}]},
]


def complete(words: str, env: dict[str, str] | None = None, shell: str = "bash") -> list[str]:
    """What the shell would offer for the last word of `words` (bash: COMP_WORDS/COMP_CWORD;
    zsh: _TYPER_COMPLETE_ARGS), as `dcx-runbook` answers its completion script."""
    split = words.split(" ")
    if shell == "bash":
        given = {"COMP_WORDS": words, "COMP_CWORD": str(len(split) - 1)}
    else:
        given = {"_TYPER_COMPLETE_ARGS": words}
    done = cli(env={"_DCX_RUNBOOK_COMPLETE": f"complete_{shell}", **given, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def local_runbook(tmp_path: Path) -> Path:
    """Three verify-only steps on this machine: no database."""
    path = tmp_path / "steps.yaml"
    path.write_text(yaml.safe_dump({"name": "steps", "title": "three steps", "steps": STEPS}))
    return path


def test_run_ids_complete_newest_first(tmp_path: Path, _isolate: Path) -> None:
    runbook = local_runbook(tmp_path)
    ids = []
    for _ in range(2):
        done = cli("run", str(runbook), "--yes", "-o", "json")
        assert done.returncode == 0, done.stderr
        end = json.loads(done.stdout.splitlines()[-1])
        ids.append(end["detail"]["run_id"])
    assert complete("dcx-runbook rollback ") == sorted(ids, reverse=True)
    assert complete(f"dcx-runbook log {ids[1][:-2]}") == [ids[1]]
    assert complete("dcx-runbook rollback nothing-like-it") == []


def test_step_ids_complete_for_skip_and_confirm(tmp_path: Path) -> None:
    runbook = str(local_runbook(tmp_path))
    assert complete(f"dcx-runbook run {runbook} --skip pr") == ["prepare", "promote"]
    assert complete(f"dcx-runbook run --var x=1 {runbook} --skip c") == ["cleanup"]
    assert complete(f"dcx-runbook run {runbook} --dry-run --confirm ") == [
        "prepare",
        "promote",
        "cleanup",
    ]
    zsh = complete(f"dcx-runbook run {runbook} --skip pro", shell="zsh")
    assert any("promote" in word for word in zsh) and not any("prepare" in w for w in zsh)


def test_runbook_names_complete_from_the_search_path(tmp_path: Path) -> None:
    local_runbook(tmp_path)
    env = {"DCX_RUNBOOK_PATH": str(tmp_path)}
    assert complete("dcx-runbook run ste", env) == ["steps"]
    assert "wallet-fix" in complete("dcx-runbook show wal", env)


def test_dash_h_is_help() -> None:
    for args in (["-h"], ["run", "-h"], ["rollback", "-h"]):
        done = cli(*args)
        assert done.returncode == 0 and "Usage: " in done.stdout
    assert "--install-completion" in cli("--help").stdout
