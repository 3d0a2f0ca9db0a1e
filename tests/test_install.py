"""The built wheel carries the runbooks: installed into a fresh venv, the command works from any
directory. Its dependencies come from the test environment, so the test needs no network, but
only those the wheel asks for (testcontainers, the sandbox extra's, is not among them): what a
plain `pip install dcx-runbook` gives."""

from __future__ import annotations

import importlib.metadata
import os
import socketserver
import subprocess
import sys
import sysconfig
import threading
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow  # builds the wheel and installs it into a fresh venv


ROOT = Path(__file__).parents[1]


def attempt(
    *argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = attempt(*argv, cwd=cwd)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """The wheel's own Requires-Dist (not the editable install's, which may be older)."""
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(zf.read(name).decode())
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def _wanted(req: Requirement, extras: frozenset[str]) -> bool:
    """Whether this environment installs `req` when its dependent is asked for `extras`."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in extras | {""})


def runtime_closure(requirements: list[Requirement]) -> list[importlib.metadata.Distribution]:
    """The installed distributions those requirements need, transitively (with the extras each
    asks for, such as psycopg[binary]; never the project's own optional extras)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(req, frozenset[str]()) for req in requirements]
    while todo:
        req, parent_extras = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if not _wanted(req, parent_extras) or key in seen:
            continue
        seen.add(key)
        dist = importlib.metadata.distribution(req.name)
        found[key[0]] = dist
        todo += [(Requirement(line), key[1]) for line in dist.requires or []]
    return list(found.values())


def link_site(dists: list[importlib.metadata.Distribution], site: Path, bin_dir: Path) -> None:
    """A site directory holding only `dists`: each top-level file or folder they install,
    linked; and the programs they install in the venv's `bin` (squawk-cli's squawk), linked
    into `bin_dir`, where pip would put them."""
    site.mkdir()
    for dist in dists:
        for f in dist.files or []:
            if f.parts[0] == ".." and f.parent.name == "bin":
                program = Path(str(dist.locate_file(f))).resolve()
                if program.exists() and not (bin_dir / f.name).exists():
                    (bin_dir / f.name).symlink_to(program)
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed and its run-time dependencies only."""
    tmp = tmp_path_factory.mktemp("install")
    wheels = tmp / "wheels"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        wheels,
        ROOT,
    )
    (wheel,) = wheels.glob("dcx_runbook-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
    purelib = run(
        venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ).stdout.strip()
    deps = tmp / "deps"
    link_site(runtime_closure(wheel_requirements(wheel)), deps, venv / "bin")
    (Path(purelib) / "runtime-deps.pth").write_text(f"{deps}\n")
    assert sysconfig.get_paths()["purelib"] != purelib
    return venv


def test_wheel_installs_into_a_fresh_venv_and_works_from_another_directory(
    venv: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exe = venv / "bin" / "dcx-runbook"
    assert "Usage: dcx-runbook" in run(exe, "--help", cwd=elsewhere).stdout
    listed = run(exe, "list", cwd=elsewhere).stdout
    assert "wallet-fix" in listed and "bundled" in listed
    assert '"$defs"' in run(exe, "schema", cwd=elsewhere).stdout
    # The lint's squawk comes with the install (squawk-cli's program, beside the interpreter).
    validated = run(exe, "validate", "--strict", "wallet-fix", cwd=elsewhere).stderr
    assert "ok (12 steps; lint: 2 waived)" in validated, validated
    where = run(
        venv / "bin" / "python",
        "-c",
        "import dcx_runbook; print(dcx_runbook.__file__)",
        cwd=elsewhere,
    ).stdout
    assert where.startswith(str(venv)), "the wheel, not the source tree, was imported"


class _Ping(socketserver.StreamRequestHandler):
    """Answers like a Docker engine's /_ping, and nothing else (no container is ever made)."""

    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")


@pytest.fixture
def docker_that_answers(tmp_path: Path) -> Iterator[str]:
    """A DOCKER_HOST where something answers the ping, as a running engine does."""
    path = tmp_path / "docker.sock"
    server = socketserver.ThreadingUnixStreamServer(str(path), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("command", [["demo", "--no-node"], ["rehearse", "wallet-fix"]])
def test_a_plain_install_where_docker_answers_says_to_install_the_sandbox_extra(
    venv: Path, tmp_path: Path, docker_that_answers: str, command: list[str]
) -> None:
    python = venv / "bin" / "python"
    missing = attempt(python, "-c", "import testcontainers")
    assert "No module named 'testcontainers'" in missing.stderr, "the venv must lack it"
    if command[0] == "rehearse":
        (tmp_path / "schema.sql").write_text("CREATE TABLE t (id int);\n")
        command = [*command, "--schema-file", str(tmp_path / "schema.sql")]
    env = {k: v for k, v in os.environ.items() if k != "DCX_SANDBOX_URL"}
    env.update(DOCKER_HOST=docker_that_answers, TMPDIR=str(tmp_path))

    done = attempt(venv / "bin" / "dcx-runbook", *command, cwd=tmp_path, env=env)

    assert done.returncode == 4, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "ModuleNotFoundError" not in done.stderr
    assert "pip install 'dcx-runbook[sandbox]'" in done.stderr
    assert "--sandbox-url" in done.stderr
    assert docker_that_answers in done.stderr
    assert not list(tmp_path.glob("dcx-*")), "its temporary directory was left behind"
