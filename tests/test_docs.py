"""Docs are tests: README follows --help, the published schema follows the model, the format
doc's example validates, and every bundled runbook loads, shows and dry-runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from dcx_runbook.cli.app import app
from dcx_runbook.format.loader import is_targets_file, parse
from dcx_runbook.format.model import json_schema
from tests.conftest import cli
from tests.support.nodetools import NodeTools, link_node_modules
from tests.wallet.conftest import apply_fixture_schema

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)  # type: ignore[union-attr]


def readme_section(command: str) -> str:
    """The README text about one command: from its heading to the next heading."""
    match = re.search(
        rf"^### .*`dcx-runbook [^`]*\b{command}\b[^\n]*\n(.*?)(?=^### |^## )", README, re.M | re.S
    )
    assert match, f"README has no section for `dcx-runbook {command}`"
    return match.group(1)


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_documents_every_command_and_option(command: str) -> None:
    help_text = cli(command, "--help", env={"COLUMNS": "200"}).stdout
    section = readme_section(command)
    options = set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help"}
    missing = sorted(
        o for o in options if o not in section and o.replace("--no-", "--") not in section
    )
    assert not missing, f"README's section on {command} lacks {missing}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    lines = [line for line in cli(command, "--help").stdout.splitlines() if line.strip()]
    assert len(lines) > 2 and not lines[1].strip().startswith("Options"), (
        f"{command} has no help text"
    )


def test_published_schema_matches_the_model() -> None:
    published = json.loads((ROOT / "docs" / "runbook.schema.json").read_text())
    assert published == json_schema(), "run: dcx-runbook schema > docs/runbook.schema.json"
    assert json.loads(cli("schema").stdout) == published


def test_format_doc_example_validates() -> None:
    doc = (ROOT / "docs" / "runbook-format.md").read_text()
    example = doc.split("## A complete example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded = parse(example.encode(), "docs/runbook-format.md")
    assert [s.id for s in loaded.runbook.steps] == ["add-column", "app-flag", "smoke"]


# Runbooks only: a targets file beside them (docs/fleet.md) is not one.
BUNDLED = sorted(p for p in (ROOT / "runbooks").glob("*.yaml") if not is_targets_file(p))


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_runbooks_load_list_and_show(path: Path) -> None:
    assert cli("validate", path.stem).returncode == 0
    assert path.stem in cli("list").stdout
    shown = cli("show", path.stem, env={"COLUMNS": "200"})
    assert shown.returncode == 0
    for step in parse(path.read_bytes(), str(path)).runbook.steps:
        assert step.id in shown.stdout


@pytest.mark.node  # preflight needs the frontend's Prisma CLI and tsc
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_runbooks_dry_run_on_their_fixture(
    path: Path, database_url: str, dbname: str, tmp_path: Path, node_tools: NodeTools | None
) -> None:
    fixtures = ROOT / "runbooks" / "fixtures" / path.stem
    assert fixtures.is_dir(), (
        f"every bundled runbook ships a fixture to dry-run against: {fixtures}"
    )
    # The database the demo loads (its other SQL files are the fleet demo's other targets).
    load = yaml.safe_load((fixtures / "demo.yaml").read_text())["load"]
    apply_fixture_schema(database_url, *load)
    frontend = tmp_path / "frontend"
    shutil.copytree(fixtures / "frontend", frontend)
    # Preflight requires the frontend's Prisma CLI and tsc for the steps that run them.
    if node_tools is not None:
        link_node_modules(frontend, node_tools)
    skip = (
        []
        if node_tools is not None
        else ["--skip", "prisma-generate", "--skip", "typescript-check"]
    )
    result = cli(
        "run",
        path.stem,
        "--dry-run",
        "--database-url",
        database_url,
        "--var",
        f"expected_database={dbname}",
        "--var",
        f"frontend_dir={frontend}",
        *skip,
    )
    assert result.returncode == 0, result.stderr
    for step in parse(path.read_bytes(), str(path)).runbook.steps:
        assert step.id in result.stderr
