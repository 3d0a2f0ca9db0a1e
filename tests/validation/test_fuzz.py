"""No bad input of any shape produces a traceback: only a valid runbook, or located problems.

Valid runbooks are mutated (keys deleted or misspelled, values of the wrong type, random scalars,
duplicated items, truncated or spliced text, random bytes) and fed to the loader directly; any
exception other than ValidationFailed is a failure.
"""

from __future__ import annotations

import copy
import re
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from dcx_runbook.errors import ExitCode, ValidationFailed
from dcx_runbook.format.loader import parse

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [ROOT / "runbooks" / "wallet-fix.yaml", ROOT / "tests" / "runbooks" / "mixed.yaml"]
SEED_BYTES = [p.read_bytes() for p in SEEDS]
SEED_DATA = [yaml.safe_load(raw) for raw in SEED_BYTES]

# Hypothesis keeps caches (.hypothesis/) in the directory pytest starts in, and fills them while
# collecting; keep them out of the checkout, in a directory removed when the process exits.
_HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="dcx-runbook-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME.name)

YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
FUZZ = settings(
    deadline=None,
    database=None,  # nothing written outside tmp_path
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", "${", "${x}", "${database_url}", "sql", "shell", "[", "(", "yes", "a-b"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
# Characters that matter to YAML, to reach the parser's error paths more often than plain text.
yaml_noise = st.text(
    alphabet=":-[]{}&*!|>'\"#%@`, ?\t\n\r\\$~0123456789abcxyz\x00\x85\ufeff", max_size=20
)


def check(raw: bytes) -> None:
    """A valid runbook (exit 0) or ValidationFailed (exit 2) with located problems; nothing else."""
    try:
        parse(raw, "x.yaml")
    except ValidationFailed as exc:
        assert exc.exit_code == ExitCode.INVALID
        assert exc.problems, "ValidationFailed without a problem"
        # Lines as YAML counts them (a lone \r or U+2028 ends a line too), or as bytes when the
        # input is not UTF-8.
        lines = max(raw.count(b"\n"), len(YAML_BREAK.findall(raw.decode(errors="replace")))) + 1
        for problem in exc.problems:
            assert problem.file == "x.yaml"
            assert problem.line is not None and 1 <= problem.line <= lines, problem
            assert problem.column is not None and problem.column >= 1, problem
            assert problem.message.strip(), problem
            assert "\n" not in str(problem), f"a problem must be one line: {problem!r}"
    except Exception:
        pytest.fail(f"parse raised instead of reporting problems:\n{traceback.format_exc()}")


# ------------------------------------------------------------------------- structural mutations


def paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a parsed runbook."""
    out = [here] if here else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*here, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths(item, (*here, i))
    return out


def wrong_type(value: Any) -> st.SearchStrategy[Any]:
    """A value of some other type than `value`'s."""
    choices: list[st.SearchStrategy[Any]] = [
        st.none(),
        st.booleans(),
        st.integers(-5, 5),
        st.text(max_size=8),
        st.lists(st.text(max_size=5), max_size=2),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    ]
    types = (type(None), bool, int, str, list, dict)
    return st.one_of(c for c, t in zip(choices, types, strict=True) if not isinstance(value, t))


@st.composite
def mutated_runbooks(draw: st.DrawFn) -> bytes:
    data = copy.deepcopy(draw(st.sampled_from(SEED_DATA)))
    for _ in range(draw(st.integers(1, 4))):
        locations = paths(data)
        if not locations:
            break
        loc = draw(st.sampled_from(locations))
        parent: Any = data
        for part in loc[:-1]:
            parent = parent[part]
        last = loc[-1]
        op = draw(st.sampled_from(["delete", "wrong-type", "random", "rename", "duplicate"]))
        if op == "delete":
            del parent[last]
        elif op == "wrong-type":
            parent[last] = draw(wrong_type(parent[last]))
        elif op == "random":
            parent[last] = draw(values)
        elif op == "rename" and isinstance(parent, dict):
            key = str(last)
            cut = draw(st.integers(0, len(key)))
            new = key[:cut] + draw(st.text(max_size=2)) + key[cut + 1 :]
            parent[new] = parent.pop(last)
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(draw(st.integers(0, len(parent))), copy.deepcopy(parent[last]))
    flow = draw(st.booleans())
    return yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, default_flow_style=flow
    ).encode()


@pytest.mark.slow  # hypothesis, 150 examples; test_random_bytes and test_nasty_inputs stay fast
@settings(FUZZ, max_examples=150)
@given(mutated_runbooks())
def test_mutated_runbooks(raw: bytes) -> None:
    check(raw)


# ------------------------------------------------------------------------------- text mutations


@st.composite
def mutated_text(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from(SEED_BYTES))
    text = raw.decode()
    op = draw(st.sampled_from(["truncate", "splice", "delete", "replace-line", "indent"]))
    at = draw(st.integers(0, len(text)))
    if op == "truncate":
        text = text[:at]
    elif op == "splice":
        text = text[:at] + draw(yaml_noise | st.text(max_size=10)) + text[at:]
    elif op == "delete":
        text = text[:at] + text[at + draw(st.integers(1, 200)) :]
    else:
        lines = text.split("\n")
        i = draw(st.integers(0, len(lines) - 1))
        if op == "replace-line":
            lines[i] = draw(yaml_noise)
        else:
            lines[i] = draw(st.sampled_from([" ", "  ", "\t", "- "])) + lines[i]
        text = "\n".join(lines)
    return text.encode("utf-8", errors="surrogatepass")


@pytest.mark.slow  # hypothesis, 100 examples
@settings(FUZZ, max_examples=100)
@given(mutated_text())
def test_mutated_text(raw: bytes) -> None:
    check(raw)


# ---------------------------------------------------------------------------------- raw bytes


@st.composite
def random_bytes(draw: st.DrawFn) -> bytes:
    noise = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        return noise
    raw = draw(st.sampled_from(SEED_BYTES))
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + noise + raw[at:]


@settings(FUZZ, max_examples=50)
@given(random_bytes())
@example(b"")
@example(b"\xff\xfe\x00\x00")
@example(b"name: \xe9t\xe9\n")
def test_random_bytes(raw: bytes) -> None:
    check(raw)


# ------------------------------------------------------------------ inputs that once crashed

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]\n"
    for prev, name in zip("abcdefg", "bcdefgh", strict=True)
)
NASTY = {
    "recursive alias": b"a: &a [*a]\n",
    "recursive alias in steps": b"name: x\ntitle: t\nsteps: &s [{id: a, title: b, verify: *s}]\n",
    "billion laughs": BILLION_LAUGHS.encode(),
    "integer too long": b"name: x\ntitle: t\nsteps: []\nvars: {a: {default: "
    + b"9" * 5000
    + b"}}\n",
    "impossible date": b"name: x\ntitle: 2025-13-45\n",
    "regex overflow": b"name: x\ntitle: t\nsteps: [{id: a, title: b, action: [{kind: file, path: p, edits: [{replace: 'a{99999999999}', with: b}]}], rollback: {restore_files: true}}]\n",
    "regex too deep": b"name: x\ntitle: t\nsteps: [{id: a, title: b, verify: [{kind: file, path: p, matches: '"
    + b"(" * 1200
    + b")" * 1200
    + b"'}]}]\n",
    "list as step id": b"name: x\ntitle: t\nsteps: [{id: [a], title: b}]\n",
    "list in needed_by": b"name: x\ntitle: t\npreflight: [{kind: command, command: x, needed_by: [[a], {b: 1}]}]\nsteps: [{id: a, title: b}]\n",
    "null key": b"~: 1\nname: x\ntitle: t\nsteps: [{id: a, title: b}]\n",
    "integer keys": b"name: x\ntitle: t\nvars: {1: {}}\nsteps: [{id: a, title: b, 2: c}]\n",
    "boolean key": b"name: x\ntitle: t\nsteps: [{id: a, title: b, verify: [{kind: shell, argv: [x], env: {true: 1}}]}]\n",
    "deep nesting": b"name: x\ntitle: t\nsteps: " + b"[" * 990 + b"]" * 990 + b"\n",
    "deep block nesting": b"name: x\ntitle: t\nsteps:\n"
    + b"".join(b"  " * (i + 1) + b"-\n" for i in range(900)),
    "set": b"name: x\ntitle: t\nsteps: !!set {a, b}\n",
    "binary": b"name: !!binary aGVsbG8=\ntitle: t\nsteps: [{id: a, title: b}]\n",
    "merge key": b"base: &b {id: a, title: b}\nname: x\ntitle: t\nsteps: [{<<: *b, verify: [{kind: command, command: x}]}]\n",
    "python tag": b"name: !!python/object/apply:os.system [echo hi]\n",
    "two documents": b"name: x\n---\nname: y\n",
    "byte order mark only": b"\xef\xbb\xbf",
    "kind of every type": b"name: x\ntitle: t\nsteps: [{id: a, title: b, verify: [{kind: 1}, {kind: ~}, {kind: [sql]}, {kind: {a: 1}}]}]\n",
    "vars of every type": b"name: x\ntitle: t\nvars: {a: 1, b: ~, c: [1], d: {default: {x: 1}}}\nsteps: [{id: a, title: b}]\n",
}


@pytest.mark.parametrize("raw", NASTY.values(), ids=NASTY.keys())
def test_nasty_inputs(raw: bytes) -> None:
    with pytest.raises(ValidationFailed):
        parse(raw, "x.yaml")
    check(raw)
