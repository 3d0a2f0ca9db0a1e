"""The real Prisma CLI and TypeScript, offline, for the wallet-fix tests, benchmarks and demo; and
the wallet-fix frontend checkout the tests run against.

The package installs nothing from npm: this module is the one place that does, for the tests
(the ``node_tools`` fixture), ``make node-tools`` and ``make bench``. It also prepares the cache
directory for ``dcx-runbook demo``: ``DCX_NODE_TOOLS_DIR=<cache> dcx-runbook demo`` reads
:data:`DEMO_ENV` there (see :func:`_declare_for_demo`), so the demo itself knows nothing of
Prisma or TypeScript.

The real ``prisma`` CLI and ``tsc`` come from the npm registry (the only
network this project's machines have).  Prisma's Rust engines are downloaded
by Prisma from its own host, which is unreachable, so every Prisma command
would stop at start-up with ``getaddrinfo ENOTFOUND binaries.prisma.sh``.
We point both engine variables at a stub instead:

* ``prisma validate``, ``prisma format`` and ``prisma generate`` do all their
  work in WebAssembly bundled with the CLI; they never run the stub, they only
  need the engine *paths* to resolve.  ``generate`` copies the file named by
  PRISMA_QUERY_ENGINE_LIBRARY into ``node_modules/.prisma/client``.
* Anything that really needs an engine (``db push``, ``migrate``,
  ``db pull``, ``prisma version``, running queries through the generated
  client) fails loudly instead of passing silently.

Each frontend copy given to :func:`link_node_modules` gets its own
``node_modules`` directory: every package is a symlink into the shared cache
except ``@prisma/client`` (a real directory whose small top-level files are
copied and whose ``runtime/`` etc. are symlinks) and ``.prisma`` (absent
until ``prisma generate`` writes it).  ``prisma generate`` locates
``@prisma/client`` by its real path and writes the client next to it, so the
generated client lands in ``dest/node_modules/.prisma/client`` and never in
the shared cache.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES_DIR = REPO_ROOT / "runbooks" / "fixtures" / "wallet-fix"
FRONTEND_TEMPLATE = FIXTURES_DIR / "frontend"
SCHEMA_RELPATH = Path("src") / "prisma" / "schema.prisma"
EXPECTED_FIXED_SCHEMA = REPO_ROOT / "tests" / "wallet" / "expected-fixed-schema.prisma"
GIT_DATE = "2025-07-05T19:00:00+00:00"
# Appended (uncommitted) to the schema of every frontend copy: the runbook's
# edits and its rollback must keep it.  After the fix the schema must read
# EXPECTED_FIXED_SCHEMA's bytes followed by this line.
LOCAL_EDIT_LINE = "// local edit: not yet committed\n"

PRISMA_VERSION = "6.19.3"
TYPESCRIPT_VERSION = "5.9.3"


INSTALL_TIMEOUT_S = 900

_PACKAGES = (
    f"prisma@{PRISMA_VERSION}",
    f"@prisma/client@{PRISMA_VERSION}",
    f"typescript@{TYPESCRIPT_VERSION}",
)
_EXPECTED_VERSIONS = {
    "prisma": PRISMA_VERSION,
    "@prisma/client": PRISMA_VERSION,
    "typescript": TYPESCRIPT_VERSION,
}
_MARKER = ".nodetools-installed.json"
# Read by `dcx-runbook demo` from $DCX_NODE_TOOLS_DIR: see _declare_for_demo.
DEMO_ENV = "demo-env.json"
_DEMO_TREE = "demo"
_LOCK = ".nodetools.lock"
_STUB_NAME = "prisma-engine-stub"

# Valid as a POSIX shell script AND as a CommonJS module, so the same file
# fails clearly whether Prisma executes it (schema engine) or require()s it
# (query engine library).  Node strips the shebang; in sh, "//bin/true" is a
# path to /bin/true and the rest of the line runs.
_STUB_SOURCE = """\
#!/bin/sh
//bin/true; echo "prisma-engine-stub: the Prisma engines are not available offline (args: $*)" >&2; exit 1
throw new Error("prisma-engine-stub: the Prisma query engine library is not available offline");
"""

# Inherited variables that would change what Prisma does in a test.
_DROP_FROM_ENV = ("DATABASE_URL", "NODE_OPTIONS")


@dataclass(frozen=True)
class NodeTools:
    """Where the cached tools live, and the full environment to run them with."""

    node_modules: Path
    bin_dir: Path
    env: dict[str, str]

    def with_env(self, **extra: str) -> dict[str, str]:
        """A copy of ``env`` plus ``extra`` (e.g. ``DATABASE_URL=...``)."""
        merged = dict(self.env)
        merged.update(extra)
        return merged


def ensure_node_tools(cache_dir: Path) -> NodeTools | None:
    """Install (once) and return the pinned Prisma CLI/client and TypeScript.

    Returns None when ``node``, ``npm`` or ``npx`` is not on PATH.  Safe to
    call from several processes at once: the install is guarded by a file lock
    and reused when the installed versions already match.
    """
    if not all(shutil.which(tool) for tool in ("node", "npm", "npx")):
        return None
    cache_dir = cache_dir.resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    node_modules = cache_dir / "node_modules"
    bin_dir = node_modules / ".bin"
    with _file_lock(cache_dir / _LOCK):
        fresh = not _install_is_current(cache_dir)
        if fresh:
            _install(cache_dir)
        stub = _write_stub(cache_dir / "engines")
        additions = _tool_vars(stub, cache_dir / "xdg-cache")
        tools = NodeTools(
            node_modules=node_modules, bin_dir=bin_dir, env=_tool_env(bin_dir, additions)
        )
        _declare_for_demo(cache_dir, tools, additions, rebuild=fresh)
    return tools


def link_node_modules(project: Path, tools: NodeTools) -> Path:
    """Give ``project`` its own node_modules backed by the shared cache."""
    src = tools.node_modules
    nm = project / "node_modules"
    nm.mkdir()
    for entry in sorted(src.iterdir()):
        name = entry.name
        if name in (".prisma", ".package-lock.json", ".cache"):
            continue
        if name == ".bin":
            _relink_bin(entry, nm / ".bin")
        elif name == "@prisma":
            _scope_with_private_client(entry, nm / "@prisma")
        else:
            (nm / name).symlink_to(entry, target_is_directory=entry.is_dir())
    return nm


def run_npx(
    project: Path,
    tools: NodeTools,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = False,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``npx <args>`` in ``project`` with the tools' environment."""
    run_env = tools.with_env(**env) if env else dict(tools.env)
    proc = subprocess.run(
        ["npx", *args],
        cwd=project,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"npx {' '.join(args)} failed ({proc.returncode}) in {project}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


# --------------------------------------------------------------------------- install


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _installed_version(node_modules: Path, package: str) -> str | None:
    try:
        data = json.loads((node_modules / package / "package.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _install_is_current(cache_dir: Path) -> bool:
    node_modules = cache_dir / "node_modules"
    try:
        marker = json.loads((cache_dir / _MARKER).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    if marker != _EXPECTED_VERSIONS:
        return False
    if not all((node_modules / ".bin" / b).exists() for b in ("prisma", "tsc")):
        return False
    return all(_installed_version(node_modules, p) == v for p, v in _EXPECTED_VERSIONS.items())


def _install(cache_dir: Path) -> None:
    (cache_dir / _MARKER).unlink(missing_ok=True)
    (cache_dir / DEMO_ENV).unlink(missing_ok=True)  # a failed install prepares nothing
    shutil.rmtree(cache_dir / "node_modules", ignore_errors=True)
    (cache_dir / "package-lock.json").unlink(missing_ok=True)
    (cache_dir / "package.json").write_text(
        json.dumps({"name": "dcx-runbook-nodetools-cache", "private": True}, indent=2) + "\n",
        encoding="utf-8",
    )
    env = _clean_env()
    env["npm_config_update_notifier"] = "false"
    # --ignore-scripts: @prisma/engines' postinstall would try to download the
    # engines (creating ~/.cache/prisma on the way) and @prisma/client's would
    # write a placeholder client into the shared node_modules/.prisma.
    cmd = [
        "npm",
        "install",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        "--save-exact",
        "--prefer-offline",
        *_PACKAGES,
    ]
    proc = subprocess.run(
        cmd,
        cwd=cache_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}) in {cache_dir}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    node_modules = cache_dir / "node_modules"
    wrong = {
        p: _installed_version(node_modules, p)
        for p, v in _EXPECTED_VERSIONS.items()
        if _installed_version(node_modules, p) != v
    }
    if wrong:
        raise RuntimeError(f"npm installed unexpected versions: {wrong}")
    (cache_dir / _MARKER).write_text(json.dumps(_EXPECTED_VERSIONS), encoding="utf-8")


def _write_stub(engines_dir: Path) -> Path:
    engines_dir.mkdir(parents=True, exist_ok=True)
    stub = engines_dir / _STUB_NAME
    if not stub.exists() or stub.read_text("utf-8") != _STUB_SOURCE:
        tmp = stub.with_name(stub.name + ".tmp")
        tmp.write_text(_STUB_SOURCE, encoding="utf-8")
        tmp.chmod(0o755)
        tmp.replace(stub)
    return stub


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in _DROP_FROM_ENV and not k.startswith("PRISMA_")
    }


def _tool_vars(stub: Path, xdg_cache: Path) -> dict[str, str]:
    """What the tools need set on top of the caller's environment (PATH aside)."""
    return {
        # Engines: required by every prisma command at start-up (both of
        # them, even for `validate`); otherwise it tries to download them.
        "PRISMA_SCHEMA_ENGINE_BINARY": str(stub),
        "PRISMA_QUERY_ENGINE_LIBRARY": str(stub),
        # Belt and braces should a Prisma path still look for a download.
        "PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING": "1",
        # No telemetry / update checks (network) and no update banner.
        "CHECKPOINT_DISABLE": "1",
        "PRISMA_HIDE_UPDATE_MESSAGE": "1",
        # `prisma generate` would otherwise `npm install @prisma/client`
        # into the project if it cannot resolve it.
        "PRISMA_GENERATE_SKIP_AUTOINSTALL": "1",
        # Prisma creates its engine cache dir under $XDG_CACHE_HOME/prisma
        # (default ~/.cache/prisma) when a download is attempted.
        "XDG_CACHE_HOME": str(xdg_cache),
        # npx must never fetch a missing package (`npx tsc` without
        # typescript would install the unrelated "tsc" package).
        "npm_config_yes": "false",
        "npm_config_update_notifier": "false",
        "NO_COLOR": "1",
    }


def _tool_env(bin_dir: Path, additions: Mapping[str, str]) -> dict[str, str]:
    env = _clean_env()
    env.update(additions)
    env["PATH"] = str(bin_dir) + os.pathsep + os.environ.get("PATH", os.defpath)
    return env


# --------------------------------------------------------------------------- demo


def _declare_for_demo(
    cache_dir: Path, tools: NodeTools, additions: Mapping[str, str], *, rebuild: bool
) -> None:
    """Prepare ``cache_dir`` for ``DCX_NODE_TOOLS_DIR=<cache_dir> dcx-runbook demo``.

    The demo is generic and the package installs nothing, so what the wallet
    steps need is declared here, in DEMO_ENV: a node_modules tree laid out by
    :func:`link_node_modules` (the demo copies it into its scratch checkout,
    symlinks as symlinks, so ``prisma generate`` writes into the checkout and
    never into the cache), the PATH entries, and the variables (the engine
    stub).  Only the additions: never the whole environment of whoever
    prepared the cache, which may hold secrets.
    """
    declared = cache_dir / DEMO_ENV
    text = (
        json.dumps(
            {
                "node_modules": f"{_DEMO_TREE}/node_modules",
                "path": [str(tools.bin_dir.relative_to(cache_dir))],
                "env": dict(additions),
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    tree = cache_dir / _DEMO_TREE
    if not rebuild and (tree / "node_modules").is_dir() and _text_or_none(declared) == text:
        return
    declared.unlink(missing_ok=True)
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    link_node_modules(tree, tools)
    tmp = declared.with_name(declared.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(declared)


def _text_or_none(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------- layout


def _relink_bin(src_bin: Path, dest_bin: Path) -> None:
    dest_bin.mkdir()
    for entry in sorted(src_bin.iterdir()):
        if entry.is_symlink():
            target = os.readlink(entry)
            if not os.path.isabs(target):
                # npm's links are relative ("../prisma/build/index.js"): the
                # same text resolves through this project's own node_modules.
                (dest_bin / entry.name).symlink_to(target)
                continue
        (dest_bin / entry.name).symlink_to(entry.resolve())


def _scope_with_private_client(src_scope: Path, dest_scope: Path) -> None:
    dest_scope.mkdir()
    for entry in sorted(src_scope.iterdir()):
        if entry.name != "client":
            (dest_scope / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
            continue
        client = dest_scope / "client"
        client.mkdir()
        for item in sorted(entry.iterdir()):
            if item.is_dir():
                # runtime/ (73 MB), generator-build/, scripts/: shared.
                (client / item.name).symlink_to(item, target_is_directory=True)
            else:
                # index.js, default.d.ts, package.json, ...: these
                # require('.prisma/client/...'), which must resolve from here.
                shutil.copy2(item, client / item.name)


# --------------------------------------------------------------------------- frontend


def make_frontend(dest: Path, tools: NodeTools | None, *, generate_client: bool = False) -> Path:
    """Lay out a frontend checkout at ``dest`` (a git repo with one commit).

    The schema then gets an uncommitted edit (LOCAL_EDIT_LINE appended).  With
    ``tools``, ``dest/node_modules`` is a private tree backed by the cache (see
    the module docstring); ``generate_client=True`` also runs ``prisma
    generate`` on the committed (broken) schema, like a developer's checkout.
    """
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")
    shutil.copytree(
        FRONTEND_TEMPLATE,
        dest,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("node_modules", ".git"),
    )
    if tools is not None:
        link_node_modules(dest, tools)
    _git_commit_all(dest)
    with (dest / SCHEMA_RELPATH).open("a", encoding="utf-8") as fh:
        fh.write(LOCAL_EDIT_LINE)
    if generate_client:
        if tools is None:
            raise ValueError("generate_client=True needs tools")
        run_npx(dest, tools, ["prisma", "generate", "--schema", str(SCHEMA_RELPATH)], check=True)
    return dest


# --------------------------------------------------------------------------- git


def git_env() -> dict[str, str]:
    """Environment for git in a test repo: ignores ~/.gitconfig, writes nothing to ~."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_DATE": GIT_DATE,
            "GIT_COMMITTER_DATE": GIT_DATE,
            "GIT_TERMINAL_PROMPT": "0",
        }
    )
    return env


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run git in ``repo`` with the test identity; raise on failure."""
    cmd = [
        "git",
        "-c",
        "user.name=dcx-runbook tests",
        "-c",
        "user.email=tests@dcx-runbook.invalid",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "init.defaultBranch=main",
        "-c",
        "core.autocrlf=false",
        *args,
    ]
    proc = subprocess.run(
        cmd,
        cwd=repo,
        env=git_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {repo}: {proc.stderr.strip()}")
    return proc


def _git_commit_all(repo: Path) -> None:
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "dcx-cloud-frontend before the wallet fix")
