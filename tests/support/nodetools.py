"""Wallet-fix test fixtures: a frontend checkout (a git repository with an uncommitted edit) backed
by the offline Prisma CLI and TypeScript from :mod:`dcx_runbook.nodetools`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dcx_runbook.nodetools import (  # noqa: F401 - re-exported for the tests
    PRISMA_VERSION,
    TYPESCRIPT_VERSION,
    NodeTools,
    ensure_node_tools,
    link_node_modules,
    run_npx,
)

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
