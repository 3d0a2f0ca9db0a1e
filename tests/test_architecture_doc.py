"""ARCHITECTURE.md can't go stale in either direction: every module (and test file) it names exists,
every module of the package is in its module map, every folder of tests/ is in its map of the
tests, and its layer diagram is the import-linter `layers` contract of pyproject.toml."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOC = ROOT / "ARCHITECTURE.md"
PACKAGE = ROOT / "src" / "dcx_runbook"
TESTS = ROOT / "tests"

# A backticked path of a Python file: `engine/run.py`, `errors.py`, `tests/kinds/test_cases.py`.
PY_SPAN = re.compile(r"`([A-Za-z0-9_][A-Za-z0-9_./-]*\.py)`")
# A dotted name in the package: dcx_runbook.engine, dcx_runbook.engine.run.Live.act.
DOTTED = re.compile(r"(?<![\w.])dcx_runbook(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
# A backticked folder of the tests: `tests/faults/`.
TESTS_DIR_SPAN = re.compile(r"`(tests/[A-Za-z0-9_./-]+)/`")
FENCE = re.compile(r"^\s*(```|~~~)")


def doc_lines() -> list[str]:
    assert DOC.is_file(), f"{DOC.relative_to(ROOT)} is missing"
    return DOC.read_text(encoding="utf-8").splitlines()


def section(title: str) -> list[tuple[int, str]]:
    """The (line number, line) pairs of the `## <title>` section, up to the next `## ` heading."""
    lines = doc_lines()
    heading = re.compile(rf"^##\s+{re.escape(title)}\s*$", re.IGNORECASE)
    starts = [i for i, line in enumerate(lines) if heading.match(line)]
    assert len(starts) == 1, (
        f"ARCHITECTURE.md needs exactly one `## {title}` heading (found {len(starts)}): "
        "this test reads that section"
    )
    out = []
    for number, line in enumerate(lines[starts[0] + 1 :], starts[0] + 2):
        if line.startswith("## "):
            break
        out.append((number, line))
    return out


def package_modules() -> set[str]:
    """Every module of the package, as a path relative to src/dcx_runbook: `engine/run.py`."""
    return {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts
    }


def resolve_py(span: str) -> Path:
    """A `.py` path as the document means it: under a folder of the repository root (`tests/`,
    `benchmarks/`, `src/`) relative to the root, else relative to src/dcx_runbook."""
    first = span.split("/", 1)[0]
    if "/" in span and (ROOT / first).is_dir() and not (PACKAGE / first).exists():
        return ROOT / span
    return PACKAGE / span


def _defines(body: list[ast.stmt], name: str) -> ast.stmt | None:
    """The statement of `body` that binds `name` at that level (def, class, assignment, import)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name) and leaf.id == name:
                        return node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name.split(".")[0]) == name:
                    return node
        elif isinstance(node, ast.If | ast.Try):  # `if TYPE_CHECKING:`, `try: import ...`
            found = _defines(node.body, name) or _defines(getattr(node, "orelse", []), name)
            if found is not None:
                return found
    return None


def missing_part(dotted: str) -> str | None:
    """Why `dcx_runbook.a.b.C.d` names nothing (None when it does): the package path is followed
    as far as it goes, then each remaining part must be defined inside the previous one."""
    parts = dotted.split(".")[1:]
    path = PACKAGE
    for i, part in enumerate(parts):
        if (path / part / "__init__.py").is_file():
            path = path / part
            continue
        module = (path / f"{part}.py").is_file()
        source = path / f"{part}.py" if module else path / "__init__.py"
        rest = parts[i + 1 :] if module else parts[i:]
        body: list[ast.stmt] = ast.parse(source.read_text(encoding="utf-8")).body
        where = source.relative_to(ROOT).as_posix()
        for name in rest:
            node = _defines(body, name)
            if node is None and not module and name == part:
                package = path.relative_to(ROOT).as_posix()
                return f"no module or package {package}/{part}, and {where} defines no {part!r}"
            if node is None:
                return f"{where} defines no {name!r}"
            body = node.body if isinstance(node, ast.ClassDef) else []
        return None
    return None


def test_every_module_the_document_names_exists() -> None:
    stale = []
    for number, line in enumerate(doc_lines(), 1):
        for span in PY_SPAN.findall(line):
            if any(c in span for c in "*?[") or resolve_py(span).is_file():
                continue
            stale.append(f"  line {number}: `{span}` (no {resolve_py(span).relative_to(ROOT)})")
        for dotted in DOTTED.findall(line):
            why = missing_part(dotted)
            if why is not None:
                stale.append(f"  line {number}: {dotted} ({why})")
    assert not stale, (
        "ARCHITECTURE.md names modules, test files or names that no longer exist; point each at "
        "where the code is now, or remove it:\n" + "\n".join(stale)
    )


def test_the_module_map_names_every_module_of_the_package() -> None:
    named = {span for _, line in section("Module map") for span in PY_SPAN.findall(line)}
    missing = sorted(package_modules() - named)
    assert not missing, (
        "ARCHITECTURE.md's `## Module map` does not name these modules of src/dcx_runbook; add "
        "a line for each (its path relative to src/dcx_runbook, in backticks, and what it is "
        "responsible for):\n" + "\n".join(f"  `{m}`" for m in missing)
    )


def test_the_map_of_the_tests_names_every_folder_of_the_tests() -> None:
    named = {span for _, line in section("Tests") for span in TESTS_DIR_SPAN.findall(line)}
    folders = {
        p.relative_to(ROOT).as_posix()
        for p in TESTS.rglob("*")
        if p.is_dir() and "__pycache__" not in p.parts and not p.name.startswith(".")
    }
    # A folder whose parent is named (tests/fixtures/journal-v1/state/runs) is covered by it.
    missing = sorted(
        f for f in folders if f not in named and not any(f.startswith(n + "/") for n in named)
    )
    gone = sorted(n for n in named if not (ROOT / n).is_dir())
    assert not missing and not gone, (
        "ARCHITECTURE.md's `## Tests` is out of date with the folders under tests/:\n"
        + "".join(f"  add `{f}/` and what its tests prove\n" for f in missing)
        + "".join(f"  `{n}/` no longer exists: remove or rename it\n" for n in gone)
    )


# ---------------------------------------------------------------------------------- layers


def normalise(layer: str) -> str:
    """`a|b` and `a  |  b` are the same layer; `|` (independent) and `:` (not) stay apart."""
    return re.sub(r"\s*([|:])\s*", r" \1 ", " ".join(layer.split()))


def contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config.get("tool", {}).get("importlinter", {}).get("contracts", [])
    layered = [c for c in contracts if c.get("type") == "layers"]
    assert len(layered) == 1, (
        f"pyproject.toml has {len(layered)} import-linter contracts of type `layers`; this test "
        "(and ARCHITECTURE.md's diagram) expect exactly one"
    )
    return [normalise(layer) for layer in layered[0]["layers"]]


def documented_layers() -> list[str]:
    """The lines of the first fenced block of `## Layers`: one layer a line, highest first. A
    line without a module (an arrow, a rule) is drawing; `# ...` after a layer is a comment."""
    block: list[str] | None = None
    for _, line in section("Layers"):
        if FENCE.match(line):
            if block is not None:
                break
            block = []
        elif block is not None:
            block.append(line)
    assert block, "ARCHITECTURE.md's `## Layers` needs a fenced block drawing the layers"
    layers = [re.sub(r"\s+#.*$", "", line) for line in block]
    return [normalise(layer) for layer in layers if "dcx_runbook" in layer]


def test_the_layer_diagram_is_the_import_linter_contract() -> None:
    expected, drawn = contract_layers(), documented_layers()
    assert drawn == expected, (
        "ARCHITECTURE.md's layer diagram (the fenced block under `## Layers`) is not the `layers` "
        "contract of [tool.importlinter] in pyproject.toml. Make the block read, highest first:\n"
        + "\n".join(f"  {layer}" for layer in expected)
        + "\n(it reads:\n"
        + "\n".join(f"  {layer}" for layer in drawn)
        + "\n) and say what any new layer is for."
    )
