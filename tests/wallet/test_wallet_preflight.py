"""wallet-fix refuses a frontend checkout that lacks a file the run will read, edit or type-check
before it changes anything: finding out at the type-check (step 5) means four changes made and
unwound on a production database for nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from dcx_runbook.state.journal import Journal
from dcx_runbook.statuses import STILL_APPLIED as UNDO_STATUSES
from tests.conftest import schema_dump
from tests.engine.conftest import events
from tests.wallet.conftest import NODE_STEPS, Wallet

pytestmark = pytest.mark.node  # the wallet fixture runs the real Prisma CLI


# Each file the run edits, reads, runs or type-checks, and whether only the node steps need it.
# package.json is not among them: npx, prisma and tsc are given everything on the command line.
# node_modules/.bin/prisma is: without it `npx prisma` still finds the package, but the
# prisma-schema rollback can't regenerate the client, which prisma-generate's irreversible
# declaration relies on.
NEEDED = {
    "backend.env": False,
    "src/prisma/schema.prisma": False,
    "node_modules/.bin/prisma": True,
    "node_modules/@prisma/client": True,
    "node_modules/.bin/tsc": True,
    "src/utils/prisma.ts": True,
}


def tree(root: Path) -> dict[str, tuple[str, int] | str]:
    """Every file under `root`, symbolic links as their targets (never followed: node_modules
    links into the shared tool cache): bytes (hashed) and mode."""
    found: dict[str, tuple[str, int] | str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "-> " + os.readlink(path)
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[key] = (digest, path.stat().st_mode & 0o7777)
    return found


def remove(path: Path) -> None:
    """A file, a symbolic link, or a package folder (its links into the tool cache are removed,
    never followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def claimed_changes(state: Path) -> list[str]:
    """Steps that any journal record says changed something (what a rollback would undo)."""
    claimed = []
    for path, data in Journal(state).records():
        assert isinstance(data, dict), f"{path}: {data}"
        claimed += [s["id"] for s in data["steps"] if s["status"] in UNDO_STATUSES]
    return claimed


def assert_refused_unchanged(wallet: Wallet, state: Path, missing: str, *more: str) -> None:
    """The run ends refused (exit 4) naming `missing`, and nothing anywhere has changed."""
    before = schema_dump(wallet.url), tree(wallet.frontend)

    result = wallet.run(*more)

    assert result.returncode == 4, result.stdout + result.stderr
    end = events(result.stdout)[-1]
    assert (end["event"], end["status"]) == ("run_finished", "refused")
    assert missing in end["message"], end["message"]
    assert "preflight failed" in end["message"]
    started = [e for e in events(result.stdout) if e["event"] == "step_started"]
    assert started == []
    assert (schema_dump(wallet.url), tree(wallet.frontend)) == before
    assert claimed_changes(state) == []


@pytest.mark.parametrize("missing", list(NEEDED))
def test_a_file_the_run_needs_is_missing_refused_before_any_change(
    wallet: Wallet, _isolate: Path, missing: str
) -> None:
    if wallet.tools is None and NEEDED[missing]:
        pytest.skip("node is not installed: the steps that need this file are skipped")
    remove(wallet.frontend / missing)

    assert_refused_unchanged(wallet, _isolate, missing)


def test_no_wallet_service_to_type_check_is_refused_before_any_change(
    wallet: Wallet, _isolate: Path
) -> None:
    """`tsc src/services/wallet/*.ts` with no match would fail on the pattern itself at step 5."""
    if wallet.tools is None:
        pytest.skip("node is not installed: typescript-check is skipped")
    for service in (wallet.frontend / "src" / "services" / "wallet").glob("*.ts"):
        service.unlink()

    assert_refused_unchanged(wallet, _isolate, "src/services/wallet/*.ts")


def test_a_skipped_step_needs_none_of_its_files(wallet: Wallet, _isolate: Path) -> None:
    """With the node steps skipped, a checkout without node_modules or the TypeScript files is
    fine: the run gets past preflight (a dry run, to see it without changing anything)."""
    for path, node_only in NEEDED.items():
        if node_only and (wallet.frontend / path).exists():
            remove(wallet.frontend / path)
    skip = [a for s in NODE_STEPS for a in ("--skip", s)]
    wallet.extra = [] if wallet.tools is None else skip

    result = wallet.run("--dry-run")

    assert result.returncode == 0, result.stdout + result.stderr
    preflight = [e for e in events(result.stdout) if e["event"] == "check" and not e["step"]]
    assert preflight and all(e["status"] == "passed" for e in preflight)
    assert not any("prisma.ts" in e["detail"]["name"] for e in preflight)
    assert not any("node_modules" in e["detail"]["name"] for e in preflight)
