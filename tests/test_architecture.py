"""The shape the architecture issue asked for, kept: small modules and functions, no kind's name
outside kinds/, and the import layers (`lint-imports`, run here too so a plain `pytest` sees a
broken layer)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from dcx_runbook.kinds import CHECKS, OPERATIONS

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src" / "dcx_runbook"
MODULES = sorted(SRC.rglob("*.py"))
MAX_MODULE, MAX_FUNCTION = 400, 50


def test_no_module_over_400_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > MAX_MODULE
    }
    assert not long, f"modules over {MAX_MODULE} lines (split them by responsibility): {long}"


def _body_start(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Where a function's code starts: after its signature (a command's options are declarations,
    one per line) and its docstring."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return body[0].lineno


def test_no_function_over_50_lines() -> None:
    long = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - _body_start(node) + 1
                if size > MAX_FUNCTION:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({size} lines)")
    assert not long, f"functions over {MAX_FUNCTION} lines:\n" + "\n".join(long)


def test_no_kind_is_named_outside_kinds() -> None:
    """The engine, validation and rehearsal ask the registry and the kinds' traits."""
    names = set(CHECKS) | set(OPERATIONS)
    found = []
    for path in MODULES:
        if path.parent.name == "kinds":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for word in re.findall(r'"([a-z_]+)"', line):
                if word in names:
                    found.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not found, "kind names outside kinds/:\n" + "\n".join(found)


def test_the_import_layers_hold() -> None:
    """import-linter is in the test extra: the venv running the tests has it."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout
