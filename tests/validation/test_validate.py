"""`dcx-runbook validate`: every problem with file, line, column and path, all of them at once.

The corpus holds one broken runbook per kind of mistake. Each file says what it expects in its
leading comments:

    # expect: <a substring of one `error:` line of stderr>   (one or more)
    # at: LINE:COL                                           (optional; one per located problem)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dcx_runbook.errors import ExitCode, ValidationFailed
from dcx_runbook.format.loader import is_targets_file, parse

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
ROOT = HERE.parents[1]
CASES = sorted(CORPUS.glob("*.yaml"))
BUNDLED = sorted(
    path
    for path in [*(ROOT / "runbooks").glob("*.yaml"), *(ROOT / "tests" / "runbooks").glob("*.yaml")]
    if not is_targets_file(path)  # a fleet's targets (docs/fleet.md), not a runbook
)

# error: FILE:LINE:COL: PATH: message   (PATH is absent for problems about the whole file)
ERROR_LINE = re.compile(r"^error: (?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<rest>\S.*)$")

# The list of mistakes `validate` must catch, and the corpus file that shows each.
REQUIRED = {
    "YAML syntax error": "yaml-syntax.yaml",
    "empty file": "empty.yaml",
    "top level not a mapping": "top-level-list.yaml",
    "unknown key (typo)": "unknown-key.yaml",
    "missing required key": "missing-keys.yaml",
    "wrong type": "wrong-types.yaml",
    "duplicate step id": "duplicate-step-id.yaml",
    "unknown kind": "unknown-kind.yaml",
    "undeclared variable": "undeclared-variable.yaml",
    "no rollback, not irreversible": "no-rollback.yaml",
    "bad regex in a file edit": "bad-regex.yaml",
    "${x} in a shell script": "script-reference.yaml",
    "step id not kebab-case": "kebab-case.yaml",
    "cycle in var defaults": "var-cycle.yaml",
    "needed_by names an unknown step": "needed-by-unknown.yaml",
    "sql op without a target": "sql-without-target.yaml",
    "duplicate YAML keys": "duplicate-yaml-key.yaml",
    "several errors at once": "many-errors.yaml",
}


def validate(*targets: str | Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a real process."""
    return subprocess.run(
        [sys.executable, "-m", "dcx_runbook", "validate", *map(str, targets)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def expectations(path: Path) -> tuple[list[str], list[str]]:
    expects, ats = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(r"#\s*expect:\s*(.+?)\s*", line):
            expects.append(m.group(1))
        elif m := re.fullmatch(r"#\s*at:\s*(\d+:\d+)\s*", line):
            ats.append(m.group(1))
    return expects, ats


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_located(stderr: str, file: str | Path) -> list[re.Match[str]]:
    """Every line is a located error about `file`; no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert lines, "no error printed"
    matches = []
    for line in lines:
        m = ERROR_LINE.match(line)
        assert m, f"not `error: FILE:LINE:COL: ...`: {line!r}"
        assert m.group("file") == str(file), line
        assert int(m.group("line")) >= 1 and int(m.group("col")) >= 1, line
        matches.append(m)
    return matches


# ------------------------------------------------------------------------------------- corpus


def test_corpus_covers_every_required_mistake() -> None:
    names = {p.name for p in CASES}
    missing = {what: name for what, name in REQUIRED.items() if name not in names}
    assert not missing, f"corpus files missing: {missing}"


@pytest.mark.slow  # a process per case; test_corpus_library checks each in-process
@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_corpus_cli(case: Path) -> None:
    expects, ats = expectations(case)
    assert expects, f"{case.name} has no `# expect:` line"
    done = validate(case)
    assert done.returncode == ExitCode.INVALID == 2, done.stderr
    assert done.stdout == ""
    assert_located(done.stderr, case)
    for expected in expects:
        assert expected in done.stderr, f"{expected!r} not in:\n{done.stderr}"
    for at in ats:
        assert f"{case}:{at}: " in done.stderr, f"nothing reported at {at}:\n{done.stderr}"


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_corpus_library(case: Path) -> None:
    """The same through the library: every problem has a file, a line and a column."""
    with pytest.raises(ValidationFailed) as caught:
        parse(case.read_bytes(), case.name)
    problems = caught.value.problems
    assert problems
    assert caught.value.exit_code == ExitCode.INVALID
    for problem in problems:
        assert problem.file == case.name
        assert problem.line is not None and problem.line >= 1, problem
        assert problem.column is not None and problem.column >= 1, problem
        assert problem.message and "\n" not in str(problem), problem
    # Reported in file order, each once.
    positions = [(p.line, p.column) for p in problems]
    assert positions == sorted(positions)
    assert len(set(problems)) == len(problems)


def test_many_errors_are_all_reported_at_once() -> None:
    case = CORPUS / "many-errors.yaml"
    with pytest.raises(ValidationFailed) as caught:
        parse(case.read_bytes(), case.name)
    problems = caught.value.problems
    assert len(set(problems)) >= 15, "\n".join(map(str, problems))
    assert len({p.path for p in problems}) >= 14
    # Schema errors, semantic errors and YAML-level errors side by side.
    messages = " | ".join(p.message for p in problems)
    for fragment in (
        "unknown key",
        "required key",
        "expected an integer",
        "unknown kind",
        "undeclared variable",
        "duplicate step id",
        "duplicate key",
        "depends on itself",
        "no rollback",
        "invalid regular expression",
        "malformed reference",
        "no step with id",
        "kebab-case",
    ):
        assert fragment in messages, f"{fragment!r} not reported"

    done = validate(case)
    assert done.returncode == 2
    assert len(assert_located(done.stderr, case)) == len(problems)


# ------------------------------------------------------------------------- CLI, other inputs


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\ntitle: t\n")
    done = validate(path)
    assert done.returncode == 2
    (m,) = assert_located(done.stderr, path)
    assert (m.group("line"), m.group("col")) == ("2", "10")
    assert "not UTF-8" in m.group("rest") and "0xe9" in m.group("rest")


def test_control_character(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes("version: 1\nname: é\x00x\n".encode())
    done = validate(path)
    assert done.returncode == 2
    (m,) = assert_located(done.stderr, path)
    assert (m.group("line"), m.group("col")) == ("2", "8")


def test_typo_in_the_bundled_runbook_is_located(tmp_path: Path) -> None:
    """A one-letter typo in a real runbook: the exact line and column, and the path."""
    text = (ROOT / "runbooks" / "wallet-fix.yaml").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.strip() == "rollback:")
    lines[index] = lines[index].replace("rollback:", "rolback:")
    path = tmp_path / "wallet-typo.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    done = validate(path)
    assert done.returncode == 2
    column = len(lines[index]) - len(lines[index].lstrip()) + 1
    assert f"{path}:{index + 1}:{column}: steps[0].rolback: unknown key 'rolback'" in done.stderr
    assert "(did you mean 'rollback'?)" in done.stderr
    # The step now has no rollback: reported too, in the same run.
    assert "steps[0]: step changes something but has no rollback" in done.stderr
    assert_located(done.stderr, path)


def test_several_files_report_every_problem_of_each(tmp_path: Path) -> None:
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("version: 1\nname: first\n", encoding="utf-8")
    second.write_text("- not a mapping\n", encoding="utf-8")
    done = validate(first, ROOT / "tests" / "runbooks" / "mixed.yaml", second)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = error_lines(done.stderr)
    assert f"error: {first}:1:1: title: required key 'title' is missing" in errors
    assert f"error: {first}:1:1: steps: required key 'steps' is missing" in errors
    assert any(line.startswith(f"error: {second}:1:1: ") for line in errors)
    assert not any("mixed.yaml" in line for line in errors)


def test_bad_runbook_found_by_name(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    (books / "broken.yaml").write_bytes((CORPUS / "duplicate-step-id.yaml").read_bytes())
    done = validate("broken", "--runbooks-dir", books)
    assert done.returncode == 2
    assert_located(done.stderr, books / "broken.yaml")
    assert "duplicate step id 'check-disk'" in done.stderr


@pytest.mark.parametrize("command", [["validate", "wallet-fix"], ["list"], ["show", "wallet-fix"]])
def test_a_search_folder_that_cant_be_read_is_an_error_not_skipped(
    tmp_path: Path, command: list[str]
) -> None:
    """A folder of the search path that can't be read (here: a name too long for the file
    system; for an operator, usually permissions) was a traceback. Skipping it instead could
    pick a runbook of the same name from a later folder: it is one clear error, exit 2."""
    unreadable = tmp_path / ("x" * 300)
    done = subprocess.run(
        [sys.executable, "-m", "dcx_runbook", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "DCX_RUNBOOK_PATH": str(unreadable)},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"can't read {unreadable}" in done.stderr and "(from DCX_RUNBOOK_PATH)" in done.stderr


def test_a_file_far_too_large_for_a_runbook_is_refused_unread(tmp_path: Path) -> None:
    """A dump or a log passed by mistake used to be parsed whole: seconds and gigabytes."""
    big = tmp_path / "dump.yaml"
    with big.open("wb") as fh:
        fh.write(b"name: x\ntitle: x\nsteps: []\n")
        fh.truncate(10 * 1024 * 1024 + 1)  # sparse: no 10 MB written to the disk
    done = validate(big)
    assert done.returncode == 2
    assert "larger than 10 MB: not a runbook" in done.stderr and str(big) in done.stderr


# ---------------------------------------------------------------------- the bundled runbooks


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_bundled_runbooks_are_valid(path: Path) -> None:
    loaded = parse(path.read_bytes(), str(path))
    assert loaded.runbook.steps


def test_bundled_runbooks_validate_cleanly_through_the_cli() -> None:
    assert BUNDLED, "no bundled runbooks found"
    done = validate(*BUNDLED)
    assert done.returncode == ExitCode.OK, done.stderr
    assert "error" not in done.stderr
    for path in BUNDLED:
        assert f"{path}: ok" in done.stderr


def test_bundled_runbook_by_name() -> None:
    done = validate("wallet-fix")
    assert done.returncode == 0, done.stderr
    assert "wallet-fix.yaml: ok (12 steps; lint: 2 waived)" in done.stderr


MERGED = """\
version: 1
name: merged
title: Checks sharing a base through a merge key
steps:
  - id: first
    title: First
    verify: [&disk {kind: command, command: df, name: disk space}]
  - id: second
    title: Second
    verify:
      - <<: *disk
        name: disk space again
"""


def test_a_key_that_overrides_a_merged_one_is_not_a_duplicate() -> None:
    loaded = parse(MERGED.encode(), "merged.yaml")
    assert loaded.runbook.steps[1].verify[0].name == "disk space again"


def test_a_duplicate_beside_a_merge_key_is_still_found() -> None:
    text = MERGED + "        name: and a third name\n"
    with pytest.raises(ValidationFailed) as caught:
        parse(text.encode(), "merged.yaml")
    (problem,) = caught.value.problems
    assert "duplicate key 'name' (first at line 12)" in problem.message
    assert (problem.line, problem.column) == (13, 9)
