"""Node tools for the demo's steps that need them, only when prepared beforehand: the package
installs nothing. `$DCX_NODE_TOOLS_DIR` names a directory whose `demo-env.json` declares a
node_modules tree to copy into the scratch checkout, the PATH entries and the variables to run the
steps with; whatever those tools need (stubs, pins) is the prepared directory's business, not the
demo's. A source checkout prepares one with `make node-tools` (tests/support/nodetools.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcx_runbook.errors import InvalidInput

ENV_VAR = "DCX_NODE_TOOLS_DIR"
DECLARATION = "demo-env.json"
HOW = (
    "to run them, prepare node tools with `make node-tools` in a source checkout, then run "
    f"`{ENV_VAR}=$PWD/.cache/nodetools dcx-runbook demo`"
)


@dataclass(frozen=True)
class Prepared:
    node_modules: Path  # copied into the checkout, symlinks as symlinks
    path: tuple[Path, ...]  # put in front of PATH
    env: dict[str, str]


def find(environ: Mapping[str, str]) -> Prepared | str:
    """The prepared tools, or why there are none (a reason the demo shows). A declaration that is
    there but wrong is invalid input: the operator pointed at it on purpose."""
    directory = environ.get(ENV_VAR)
    if not directory:
        return f"no prepared node tools (${ENV_VAR} is not set)"
    declared = Path(directory) / DECLARATION
    if not declared.is_file():
        return f"${ENV_VAR} ({directory}) holds no {DECLARATION}: no node tools prepared there"
    return _read(declared)


def _read(declared: Path) -> Prepared:
    try:
        data: Any = json.loads(declared.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"can't read {declared}: {exc}") from None
    shape = (
        isinstance(data, dict)
        and isinstance(data.get("node_modules"), str)
        and _strings(data.get("path", []))
        and isinstance(data.get("env", {}), dict)
        and _strings(list(data.get("env", {}).values()))
    )
    if not shape:
        raise InvalidInput(
            f"{declared}: expected {{node_modules: folder, path: [folders], env: {{NAME: text}}}}; "
            "prepare the node tools again"
        )
    base = declared.parent
    node_modules = base / data["node_modules"]
    if not node_modules.is_dir():
        raise InvalidInput(f"{declared}: no folder {node_modules}; prepare the node tools again")
    return Prepared(
        node_modules, tuple(base / p for p in data.get("path", [])), data.get("env", {})
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def install(tools: Prepared, checkout: Path) -> None:
    """Give the checkout its own copy of the prepared tree (its links still point at the shared
    packages, so this is quick) and set the environment the steps' commands inherit."""
    shutil.copytree(tools.node_modules, checkout / "node_modules", symlinks=True)
    os.environ.update(tools.env)
    path = [str(p) for p in tools.path] + [os.environ.get("PATH", os.defpath)]
    os.environ["PATH"] = os.pathsep.join(path)
