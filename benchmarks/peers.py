#!/usr/bin/env python3
"""The engine benchmark's tools: dcx-runbook and its peers on the same generated statements.

Each step of the generated workload is a precheck `SELECT 1`, an action `INSERT INTO bench
VALUES (i)` in a transaction, a verify `SELECT count(*) FROM bench WHERE id = i`, and a rollback
`DELETE FROM bench WHERE id = i` in a transaction. Every tool runs it forward (its "run") and
backward (its "rollback"), as a whole process:

- dcx-runbook: `run FILE --yes -o json` / `rollback --yes -o json`, journal and ledger on;
- bare psycopg (`benchmarks/bare_psycopg.py`): the statements one by one over one connection;
- psql -f: a forward file and a rollback file;
- Sqitch: `deploy --verify` / `revert -y` of a project of N changes (deploy, verify and revert
  scripts; the verify fails on a missing row, `SELECT 1/count(*)`); Debian's `sqitch` and
  `libdbd-pg-perl`;
- Liquibase: `update` / `rollback-count N` of a formatted-SQL changelog of N changesets, each
  with a `sqlCheck` precondition (`SELECT 1`, expectedResult 1), the INSERT and its rollback
  DELETE (Liquibase has no verify); the npm registry's `liquibase` package, which carries the
  whole distribution and the PostgreSQL JDBC driver, run on the installed JDK.

    python benchmarks/peers.py install   # what `make peers` does: installs Sqitch and Liquibase

A peer that can't be installed or can't run is reported as such ("not installed: <reason>",
"can't run: <reason>"), never dropped. This module imports only the standard library: `install`
runs before anything else is known to work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(os.environ.get("DCX_BENCH_PEERS_DIR") or ROOT / ".cache" / "peers")
# The npm package's version (it carries Liquibase 4.28.0); the Makefile passes nothing else.
LIQUIBASE_NPM_VERSION = "4.28.1"
LIQUIBASE_HOME = PEERS_DIR / "node_modules" / "liquibase" / "dist" / "liquibase"
SQITCH_PACKAGES = ("sqitch", "libdbd-pg-perl")
INSTALL_STATUS = PEERS_DIR / "install.json"


# ----------------------------------------------------------------------------- the statements


def precheck(i: int) -> str:
    return "SELECT 1"


def action(i: int) -> str:
    return f"INSERT INTO bench VALUES ({i})"


def verify(i: int) -> str:
    return f"SELECT count(*) FROM bench WHERE id = {i}"


def undo(i: int) -> str:
    return f"DELETE FROM bench WHERE id = {i}"


def forward_sql(n: int) -> str:
    """psql's and bare psycopg's run: each step's action and verify in a transaction."""
    return "".join(
        f"{precheck(i)};\nBEGIN;\n{action(i)};\n{verify(i)};\nCOMMIT;\n" for i in range(n)
    )


def rollback_sql(n: int) -> str:
    """psql's and bare psycopg's rollback: each step's DELETE in a transaction, last step first."""
    return "".join(f"BEGIN;\n{undo(i)};\nCOMMIT;\n" for i in reversed(range(n)))


def sqitch_project(n: int, directory: Path) -> Path:
    """A Sqitch project of n changes: its deploy script holds the precheck and the action, its
    verify script fails when the row is missing, its revert script deletes it."""
    for sub in ("deploy", "verify", "revert"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    (directory / "sqitch.conf").write_text(
        "[core]\n\tengine = pg\n\tplan_file = sqitch.plan\n\ttop_dir = .\n"
    )
    plan = ["%syntax-version=1.0.0", "%project=bench", ""]
    for i in range(n):
        plan.append(f"s{i} 2026-01-01T00:00:00Z bench <bench@localhost> # step {i}")
        (directory / "deploy" / f"s{i}.sql").write_text(
            f"{precheck(i)};\nBEGIN;\n{action(i)};\nCOMMIT;\n"
        )
        (directory / "verify" / f"s{i}.sql").write_text(
            f"SELECT 1/count(*) FROM bench WHERE id = {i};\n"
        )
        (directory / "revert" / f"s{i}.sql").write_text(f"BEGIN;\n{undo(i)};\nCOMMIT;\n")
    (directory / "sqitch.plan").write_text("\n".join(plan) + "\n")
    return directory


def liquibase_changelog(n: int, directory: Path) -> Path:
    """A formatted-SQL changelog of n changesets: the precondition, the INSERT, its DELETE."""
    directory.mkdir(parents=True, exist_ok=True)
    parts = ["--liquibase formatted sql\n"]
    for i in range(n):
        parts.append(
            f"\n--changeset bench:s{i}\n"
            "--preconditions onFail:HALT onError:HALT\n"
            f"--precondition-sql-check expectedResult:1 {precheck(i)}\n"
            f"{action(i)};\n"
            f"--rollback {undo(i)};\n"
        )
    path = directory / "changelog.sql"
    path.write_text("".join(parts))
    return path


# ----------------------------------------------------------------------------- the tools


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass
class Tool:
    key: str
    name: str  # as the table names it
    run: str  # what its run is
    rollback: str  # what its rollback is
    missing: str | None = None  # "not installed: ..." when it is
    warm_up_every_size: bool = False  # an untimed run and rollback before each size's

    def commands(self, n: int, tmp: Path, url: str) -> tuple[Command, Command]:
        raise NotImplementedError

    def before_run(self) -> None:
        """Called before each run (its rollback follows it)."""


def _install_reason(peer: str) -> str:
    """Why `make peers` could not install a peer, when it said so."""
    try:
        why = str(json.loads(INSTALL_STATUS.read_text()).get(peer, ""))
    except (OSError, ValueError):
        return ""
    return "" if why == "installed" else why


class Psql(Tool):
    def __init__(self) -> None:
        super().__init__("psql", "psql", "-f run.sql", "-f rollback.sql")
        if not shutil.which("psql"):
            self.missing = "not installed: no psql on PATH"

    def commands(self, n: int, tmp: Path, url: str) -> tuple[Command, Command]:
        fwd, back = _sql_files(n, tmp)
        base = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f"]
        return Command([*base, str(fwd)]), Command([*base, str(back)])


class BarePsycopg(Tool):
    def __init__(self, python: str) -> None:
        super().__init__("bare_psycopg", "bare psycopg", "run.sql", "rollback.sql")
        self.argv = [python, str(ROOT / "benchmarks" / "bare_psycopg.py")]

    def commands(self, n: int, tmp: Path, url: str) -> tuple[Command, Command]:
        fwd, back = _sql_files(n, tmp)
        return Command([*self.argv, url, str(fwd)]), Command([*self.argv, url, str(back)])


class Dcx(Tool):
    """dcx-runbook, its journal and ledger on. Its cache of what a run proved about a runbook's
    bytes (src/dcx_runbook/caching.py) is emptied before each run when `warm` is false: each run
    is the runbook's first, as in an emergency, and its rollback reads what that run kept, as a
    rollback after it would. With `warm`, the cache is kept across runs: the same runbook re-run."""

    def __init__(self, cli: list[str], runbook: object, warm: bool = False) -> None:
        if warm:
            super().__init__("dcx_warm", "dcx-runbook again", "run (cache warm)", "rollback")
        else:
            super().__init__("dcx", "dcx-runbook", "run", "rollback")
        self.cli = cli
        self.runbook = runbook  # run.generated(n, tmp) -> (yaml, sql)
        self.warm = self.warm_up_every_size = warm
        self.cache: Path | None = None

    def commands(self, n: int, tmp: Path, url: str) -> tuple[Command, Command]:
        yaml_path, _ = self.runbook(n, tmp)  # type: ignore[operator]
        self.cache = tmp / f"{self.key}-cache"
        env = {  # the journal is on, the ledger too
            "DCX_RUNBOOK_STATE_DIR": str(tmp / f"{self.key}-state"),
            "DCX_RUNBOOK_CACHE_DIR": str(self.cache),
        }
        out = ["--yes", "--output", "json", "--database-url", url]
        return (
            Command([*self.cli, "run", str(yaml_path), *out], env),
            Command([*self.cli, "rollback", *out], env),
        )

    def before_run(self) -> None:
        if not self.warm and self.cache is not None:
            shutil.rmtree(self.cache, ignore_errors=True)


class Sqitch(Tool):
    ENV = {  # no configuration from this machine's user or system files
        "SQITCH_USER_NAME": "bench",
        "SQITCH_USER_EMAIL": "bench@localhost",
        "SQITCH_USER_CONFIG": os.devnull,
        "SQITCH_SYSTEM_CONFIG": os.devnull,
    }

    def __init__(self) -> None:
        super().__init__("sqitch", "Sqitch", "deploy --verify", "revert -y")
        self.missing = sqitch_missing()

    def commands(self, n: int, tmp: Path, url: str) -> tuple[Command, Command]:
        project = sqitch_project(n, tmp / f"sqitch-{n}")
        target = "db:" + url.replace("postgresql://", "pg://", 1)
        return (
            Command(["sqitch", "-C", str(project), "deploy", "--verify", target], self.ENV),
            Command(["sqitch", "-C", str(project), "revert", "-y", target], self.ENV),
        )


class Liquibase(Tool):
    ENV = {"LIQUIBASE_SHOW_BANNER": "false"}

    def __init__(self) -> None:
        super().__init__("liquibase", "Liquibase", "update", "rollback-count N")
        self.missing = liquibase_missing()

    def commands(self, n: int, tmp: Path, url: str) -> tuple[Command, Command]:
        changelog = liquibase_changelog(n, tmp / f"liquibase-{n}")
        parts = urlsplit(url)
        base = [
            str(LIQUIBASE_HOME / "liquibase"),
            f"--url=jdbc:postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}",
            f"--username={parts.username or 'postgres'}",
            *([f"--password={parts.password}"] if parts.password else []),
            f"--search-path={changelog.parent}",
            f"--changelog-file={changelog.name}",
        ]
        return (
            Command([*base, "update"], self.ENV),
            Command([*base, "rollback-count", f"--count={n}"], self.ENV),
        )


def _sql_files(n: int, tmp: Path) -> tuple[Path, Path]:
    fwd, back = tmp / f"run-{n}.sql", tmp / f"rollback-{n}.sql"
    fwd.write_text(forward_sql(n))
    back.write_text(rollback_sql(n))
    return fwd, back


def tools(python: str, cli: list[str], runbook: object, only: list[str] | None) -> list[Tool]:
    """dcx-runbook first, then every peer; those not in `only` (None: all) are reported as left
    out. bare psycopg and psql always run: the goals and the ratios need them."""
    peers: list[Tool] = [BarePsycopg(python), Psql(), Sqitch(), Liquibase()]
    for p in peers:
        if only is not None and p.key not in only and p.key not in ("bare_psycopg", "psql"):
            p.missing = "not run: left out by --peers"
    return [Dcx(cli, runbook), Dcx(cli, runbook, warm=True), *peers]


PEER_KEYS = ("bare_psycopg", "psql", "sqitch", "liquibase")


# ----------------------------------------------------------------------------- installed?


def sqitch_missing() -> str | None:
    if not shutil.which("sqitch"):
        why = _install_reason("sqitch") or "no sqitch on PATH (make peers installs it)"
        return f"not installed: {why}"
    if not shutil.which("psql"):
        return "not installed: Sqitch runs its scripts with psql, and there is none on PATH"
    check = subprocess.run(
        ["perl", "-MDBD::Pg", "-e", "1"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        why = _install_reason("sqitch") or "Perl's DBD::Pg is missing (libdbd-pg-perl)"
        return f"not installed: {why}"
    return None


def liquibase_missing() -> str | None:
    script = LIQUIBASE_HOME / "liquibase"
    if not script.exists():
        why = _install_reason("liquibase") or f"no {script} (make peers installs it)"
        return f"not installed: {why}"
    if not list((LIQUIBASE_HOME / "internal" / "lib").glob("postgresql*.jar")):
        return f"not installed: no PostgreSQL JDBC driver under {LIQUIBASE_HOME / 'internal/lib'}"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "not installed: no Java runtime (java on PATH or $JAVA_HOME) to run Liquibase"
    return None


def _run(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return done.returncode == 0, " / ".join(tail)


def install() -> dict[str, str]:
    """Install the peers that are missing: Sqitch and its PostgreSQL driver from Debian's
    packages, Liquibase from the npm registry into PEERS_DIR. Records why one could not be
    installed in PEERS_DIR/install.json, where the benchmark reads it."""
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    if sqitch_missing() is None:
        status["sqitch"] = "installed"
    elif not shutil.which("apt-get"):
        status["sqitch"] = "no apt-get here to install Debian's sqitch and libdbd-pg-perl"
    else:
        argv = ["apt-get", "install", "-y", "-q", *SQITCH_PACKAGES]
        ok, tail = _run(argv)
        if not ok:  # a stale or empty package list: refresh it once
            _run(["apt-get", "update", "-q"])
            ok, tail = _run(argv)
        status["sqitch"] = "installed" if ok else f"`{' '.join(argv)}` failed: {tail}"
    if liquibase_missing() is None and _liquibase_version() == LIQUIBASE_NPM_VERSION:
        status["liquibase"] = "installed"
    elif not shutil.which("npm"):
        status["liquibase"] = "no npm here to install the liquibase package"
    else:
        argv = [
            "npm",
            "install",
            "--prefix",
            str(PEERS_DIR),
            "--no-save",
            "--no-package-lock",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"liquibase@{LIQUIBASE_NPM_VERSION}",
        ]
        ok, tail = _run(argv)
        status["liquibase"] = "installed" if ok else f"`{' '.join(argv[:2])} ...` failed: {tail}"
    for peer, missing in (("sqitch", sqitch_missing()), ("liquibase", liquibase_missing())):
        if status[peer] == "installed" and missing:  # installed, yet still not usable
            status[peer] = missing.removeprefix("not installed: ")
    INSTALL_STATUS.write_text(json.dumps(status, indent=2))
    return status


def _liquibase_version() -> str | None:
    try:
        package = json.loads(
            (PEERS_DIR / "node_modules" / "liquibase" / "package.json").read_text()
        )
    except (OSError, ValueError):
        return None
    return str(package.get("version"))


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print(__doc__, file=sys.stderr)
        return 2
    for peer, state in install().items():
        print(f"{peer}: {state}" if state == "installed" else f"{peer}: not installed: {state}")
    return 0  # never fails `make`: the benchmark reports a missing peer as such


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
