#!/usr/bin/env python3
"""dcx-runbook benchmarks: startup, the engine's run and rollback against its peers (bare
psycopg, psql, Sqitch, Liquibase: benchmarks/peers.py), the lint, the ledger, `runs`, fleets,
writer stall under a blocked DDL, and the wallet fix end to end; then issue 19's goals, each with
its figure. Prints a table and writes benchmarks/results/latest.json.

    python benchmarks/run.py            # the full run (make bench, after make peers)
    python benchmarks/run.py --smoke    # every benchmark at its smallest size (CI keeps them working)
    python benchmarks/run.py --only engine --sizes 10,100 --peers none   # a quick look

Needs a PostgreSQL admin URL in $DCX_BENCH_DATABASE_URL (default: postgres@127.0.0.1:5432) and psql.
Numbers are medians of repeated runs or ratios measured in the same run, never single timings."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path
from typing import Any

import psycopg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (benchmarks/peers.py)

import fleet  # noqa: E402  (benchmarks/fleet.py)
import ledger  # noqa: E402  (benchmarks/ledger.py)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# wallet-fix's last steps are a person's (the plan's next steps): never benchmarked.
MANUAL_STEPS = ("populate-wallets", "enable-wallet-api", "test-vm-provisioning", "deploy-staging")
CLI = [PY, "-m", "dcx_runbook"]
ADMIN = os.environ.get("DCX_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def timed(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env={**os.environ, **(env or {})}, check=False)
    elapsed = time.perf_counter() - start
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()[-2000:]}")
    return elapsed


def median_of(argv: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    return statistics.median(timed(argv, env) for _ in range(repeat))


class Scratch:
    """A fresh database on the admin server, dropped afterwards."""

    def __enter__(self) -> str:
        self.name = f"dcx_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return ADMIN.rsplit("/", 1)[0] + "/" + self.name

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# ----------------------------------------------------------------------------- 1. startup


def bench_startup(repeat: int) -> dict[str, Any]:
    baseline = median_of([PY, "-c", "pass"], repeat)
    rows = {"python -c pass": baseline}
    for args in (["--version"], ["--help"], ["list"], ["validate", "wallet-fix"]):
        rows["dcx-runbook " + " ".join(args)] = median_of([*CLI, *args], repeat)
    return {"median_seconds": rows, "repeat": repeat}


# ----------------------------------------------------------------------------- 2. engine overhead


def generated(n: int, tmp: Path) -> tuple[Path, Path]:
    """The runbook of n steps (benchmarks/peers.py's statements) and psql's file of the same."""
    steps = []
    for i in range(n):
        steps.append(
            {
                "id": f"s{i}",
                "title": f"step {i}",
                "precheck": [{"kind": "sql", "query": peers.precheck(i), "expect": 1}],
                "action": [{"kind": "sql", "sql": peers.action(i)}],
                "verify": [{"kind": "sql", "query": peers.verify(i), "expect": 1}],
                "rollback": {"action": [{"kind": "sql", "sql": peers.undo(i)}]},
            }
        )
    runbook = {
        "name": f"bench-{n}",
        "title": f"{n} trivial sql steps",
        "vars": {"database_url": {"required": True, "secret": True, "env": "DATABASE_URL"}},
        "target": {"url": "${database_url}"},
        "steps": steps,
    }
    yaml_path, sql_path = tmp / f"bench-{n}.yaml", tmp / f"bench-{n}.sql"
    yaml_path.write_text(yaml.safe_dump(runbook, sort_keys=False))
    sql_path.write_text(peers.forward_sql(n))
    return yaml_path, sql_path


# Sqitch runs a psql process per script, some 90 s for 1,000 changes: measured once at that size
# (interleaved with the first repetition of the others), not seven times.
SINGLE_SAMPLE_FROM = {"sqitch": 1000}
# The tools whose failure is the benchmark's: a peer's is reported, and the run goes on.
OURS = ("dcx", "dcx_warm", "bare_psycopg", "psql")


class ToolFailed(RuntimeError):
    pass


def measure(cmd: peers.Command) -> tuple[float, int]:
    """A whole process's wall time and its peak RSS in KiB (`wait4`'s ru_maxrss: the process's
    own or its largest waited-for child's, as Liquibase's script waits on its JVM)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd.argv, stdout=out, stderr=err, env={**os.environ, **cmd.env}, cwd=cmd.cwd
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            out.seek(0)
            tail = err.read().decode(errors="replace") or out.read().decode(errors="replace")
            lines = [line for line in tail.strip().splitlines() if line.strip()][-3:]
            raise ToolFailed(
                f"{Path(cmd.argv[0]).name} exited {proc.returncode}: " + " / ".join(lines)
            )
    return elapsed, usage.ru_maxrss


def bench_engine(sizes: list[int], repeat: int, peer_keys: list[str] | None) -> dict[str, Any]:
    """Whole processes, start-up included: dcx-runbook and its peers (benchmarks/peers.py) run
    the same generated steps forward and back, interleaved so that drift hits every tool, median
    of `repeat`. The per-step cost is the slope between two sizes, the fixed cost what is left at
    N = 0. A peer not installed, or failing, is reported so, never left out."""
    tools = peers.tools(PY, CLI, generated, peer_keys)
    status: dict[str, str | None] = {t.key: t.missing for t in tools}
    out: dict[str, Any] = {
        "sizes": sizes,
        "repeat": repeat,
        "tools": {t.key: {"name": t.name, "run": t.run, "rollback": t.rollback} for t in tools},
    }
    with tempfile.TemporaryDirectory() as tmp_name, Scratch() as url:
        tmp = Path(tmp_name)
        with psycopg.connect(url, autocommit=True) as conn:

            def once(
                key: str, n: int, run: peers.Command, back: peers.Command
            ) -> tuple[float, float, int]:
                conn.execute("DROP TABLE IF EXISTS bench; CREATE TABLE bench (id int)")
                by_key[key].before_run()
                run_s, rss = measure(run)
                rows = conn.execute("SELECT count(*) FROM bench").fetchone()
                if not rows or rows[0] != n:
                    raise ToolFailed(f"its run left {rows[0] if rows else '?'} rows, not {n}")
                back_s, _ = measure(back)
                rows = conn.execute("SELECT count(*) FROM bench").fetchone()
                if not rows or rows[0] != 0:
                    raise ToolFailed(f"its rollback left {rows[0] if rows else '?'} of {n} rows")
                return run_s, back_s, rss

            def failed(key: str, n: int, exc: ToolFailed) -> None:
                if key in OURS:
                    raise RuntimeError(f"{key} at N={n}: {exc}") from exc
                status[key] = f"can't run: at N={n}: {exc}"

            by_key = {t.key: t for t in tools}
            for index, n in enumerate(sizes):
                commands = {t.key: t.commands(n, tmp, url) for t in tools if status[t.key] is None}
                # Untimed, at the first size: each tool's registry or ledger created, the files
                # read once. At every size for a tool that measures a re-run (its cache warm).
                for key, (run, back) in commands.items():
                    if index == 0 or by_key[key].warm_up_every_size:
                        try:
                            once(key, n, run, back)
                        except ToolFailed as exc:
                            failed(key, n, exc)
                samples: dict[str, dict[str, list[float]]] = {
                    key: {"run": [], "rollback": [], "rss": []} for key in commands
                }
                for rep in range(repeat):
                    for key, (run, back) in commands.items():  # interleaved
                        if status[key] is not None:
                            continue
                        if rep > 0 and n >= SINGLE_SAMPLE_FROM.get(key, n + 1):
                            continue
                        try:
                            run_s, back_s, rss = once(key, n, run, back)
                        except ToolFailed as exc:
                            failed(key, n, exc)
                            continue
                        samples[key]["run"].append(run_s)
                        samples[key]["rollback"].append(back_s)
                        samples[key]["rss"].append(rss)
                row: dict[str, Any] = {}
                for t in tools:
                    got = samples.get(t.key)
                    if status[t.key] is not None or not got or not got["run"]:
                        row[t.key] = status[t.key] or "not run"
                        continue
                    row[t.key] = {
                        "run_seconds": statistics.median(got["run"]),
                        "rollback_seconds": statistics.median(got["rollback"]),
                        "samples": len(got["run"]),
                        "peak_rss_kib": max(got["rss"]),
                    }
                dcx = row["dcx"]
                for t in tools[1:]:
                    if isinstance(row[t.key], dict):
                        row[t.key]["run_over_dcx"] = row[t.key]["run_seconds"] / dcx["run_seconds"]
                        row[t.key]["rollback_over_dcx"] = (
                            row[t.key]["rollback_seconds"] / dcx["rollback_seconds"]
                        )
                yaml_path, _ = generated(n, tmp)
                row["validate_seconds"] = median_of([*CLI, "validate", str(yaml_path)], repeat)
                out[str(n)] = row
    out["status"] = {key: state or "measured" for key, state in status.items()}
    for a, b in itertools.pairwise(sizes):
        span: dict[str, Any] = {}
        for t in tools:
            ra, rb = out[str(a)][t.key], out[str(b)][t.key]
            if not (isinstance(ra, dict) and isinstance(rb, dict)):
                span[t.key] = ra if isinstance(ra, str) else rb
                continue
            span[t.key] = {}
            for what in ("run", "rollback"):
                slope = (rb[f"{what}_seconds"] - ra[f"{what}_seconds"]) / (b - a)
                span[t.key][f"{what}_seconds"] = slope
                span[t.key][f"{what}_fixed_seconds"] = ra[f"{what}_seconds"] - a * slope
        dcx, bare = span["dcx"], span["bare_psycopg"]
        span["engine_over_bare_psycopg"] = dcx["run_seconds"] / bare["run_seconds"]
        span["rollback_over_bare_psycopg"] = dcx["rollback_seconds"] / bare["rollback_seconds"]
        out[f"per_step_{a}_to_{b}"] = span
    if "100" in out and "1000" in out:
        out["growth_1000_over_100"] = (
            out["1000"]["dcx"]["run_seconds"] / out["100"]["dcx"]["run_seconds"]
        )
    return out


# ----------------------------------------------------------------------------- 3. lock stall


def bench_lock_stall(block_for: float, writers: int = 4) -> dict[str, Any]:
    runbook = ROOT / "tests" / "runbooks" / "ddl.yaml"
    lock_timeout = 1.0
    with Scratch() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE busy (id bigserial, at timestamptz DEFAULT now())")
            conn.execute("CREATE UNIQUE INDEX busy_id_key ON busy (id)")
        latencies: list[tuple[float, float]] = []
        last_start: dict[int, float] = {}
        stop = threading.Event()

        def write() -> None:
            with psycopg.connect(url, autocommit=True) as c:
                while not stop.is_set():
                    t0 = time.monotonic()
                    c.execute("INSERT INTO busy DEFAULT VALUES")
                    latencies.append((t0, time.monotonic() - t0))
                    last_start[threading.get_ident()] = t0
                    time.sleep(0.02)

        def window(ddl: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
            started = threading.Event()

            def blocker() -> None:
                with psycopg.connect(url) as c:
                    c.execute("SELECT count(*) FROM busy")
                    started.set()
                    time.sleep(block_for)
                    c.rollback()

            b = threading.Thread(target=blocker)
            b.start()
            started.wait()
            t0 = time.monotonic()
            subprocess.run(ddl, capture_output=True, env={**os.environ, **(env or {})}, check=False)
            b.join()
            t1 = time.monotonic()
            # Every writer must finish an insert started after t1, so inserts still queued behind
            # the lock are counted rather than missed.
            while len(last_start) < writers or min(last_start.values()) < t1:
                time.sleep(0.02)
            window_lat = sorted(lat for start, lat in latencies if t0 <= start <= t1)
            return {
                "p50": statistics.median(window_lat),
                "p99": window_lat[int(len(window_lat) * 0.99) - 1] if window_lat else 0.0,
                "max": max(window_lat),
                "samples": len(window_lat),
            }

        threads = [threading.Thread(target=write, daemon=True) for _ in range(writers)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as state:
            tool = window(
                [
                    *CLI,
                    "run",
                    str(runbook),
                    "--yes",
                    "--database-url",
                    url,
                    "--var",
                    f"expected_database={url.rsplit('/', 1)[1]}",
                ],
                {"DCX_RUNBOOK_STATE_DIR": state},
            )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS busy_id_key ON busy (id)")
        naive = window(["psql", "-X", "-q", url, "-c", "DROP INDEX busy_id_key"])
        stop.set()
        for t in threads:
            t.join()
    return {
        "blocker_seconds": block_for,
        "lock_timeout_seconds": lock_timeout,
        "writers": writers,
        "dcx_runbook": tool,
        "plain_psql": naive,
    }


# ----------------------------------------------------------------------------- 4. wallet fix


def node_steps_of_wallet_fix() -> list[str]:
    """The steps of wallet-fix that need the frontend's Node packages, those the runbook has."""
    runbook = yaml.safe_load((ROOT / "runbooks" / "wallet-fix.yaml").read_text())
    ids = {step["id"] for step in runbook["steps"]}
    return [s for s in ("prisma-generate", "typescript-check", "wallet-test-suites") if s in ids]


def bench_wallet(repeat: int, with_node: bool = True) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.support.nodetools import ensure_node_tools, link_node_modules

    fixtures = ROOT / "runbooks" / "fixtures" / "wallet-fix"
    cache = Path(os.environ.get("DCX_TEST_NODE_CACHE", ROOT / ".cache" / "nodetools"))
    tools = ensure_node_tools(cache) if with_node and shutil.which("npm") else None
    out: dict[str, Any] = {}
    variants = [("without node steps", False)] + ([("with prisma and tsc", True)] if tools else [])
    for label, node_steps in variants:
        runs, rollbacks = [], []
        for _ in range(repeat):
            with Scratch() as url, tempfile.TemporaryDirectory() as tmp_name:
                with psycopg.connect(url, autocommit=True) as conn:
                    for f in ("broken-schema.sql", "seed.sql"):
                        conn.execute((fixtures / f).read_text().encode())
                frontend = Path(tmp_name) / "frontend"
                shutil.copytree(fixtures / "frontend", frontend)
                env = {  # a cache of its own: the run is the runbook's first, its rollback next
                    "DCX_RUNBOOK_STATE_DIR": str(Path(tmp_name) / "state"),
                    "DCX_RUNBOOK_CACHE_DIR": str(Path(tmp_name) / "cache"),
                }
                skip: list[str] = []
                if node_steps and tools:
                    link_node_modules(frontend, tools)
                    env = {**tools.env, **env}
                else:
                    skip = [a for s in node_steps_of_wallet_fix() for a in ("--skip", s)]
                skip += [a for s in MANUAL_STEPS for a in ("--skip", s)]  # a person's work
                args = ["--yes", "--database-url", url]
                runs.append(
                    timed(
                        [
                            *CLI,
                            "run",
                            "wallet-fix",
                            *args,
                            "--var",
                            f"expected_database={url.rsplit('/', 1)[1]}",
                            "--var",
                            f"frontend_dir={frontend}",
                            *skip,
                        ],
                        env,
                    )
                )
                rollbacks.append(timed([*CLI, "rollback", *args], env))
        out[label] = {
            "run_seconds": statistics.median(runs),
            "rollback_seconds": statistics.median(rollbacks),
        }
    out["plan_estimate_by_hand_seconds"] = 8 * 60
    return out


# ----------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    with psycopg.connect(ADMIN) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    mem = (
        Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
        if Path("/proc/meminfo").exists()
        else "?"
    )
    # A fixed pure-Python workload: today's figures beside another day's (or machine's) are
    # only comparable once scaled by this.
    cpu = statistics.median(timeit.repeat("sum(range(10**6))", number=10, repeat=7))
    return {
        "cpu_reference_seconds": cpu,
        "cpu_reference": "sum(range(10**6)) ten times, median of 7",
        "cores": os.cpu_count(),
        "memory_kib": mem,
        "python": platform.python_version(),
        "postgresql": version[0] if version else "?",
        "platform": platform.platform(),
    }


SECTIONS = ("startup", "engine", "lint", "ledger", "runs", "fleet", "lock_stall", "wallet_fix")


def compile_bytecode() -> str:
    """What an installed package has: its modules compiled to bytecode. An editable install run
    with PYTHONDONTWRITEBYTECODE (as on this machine) would otherwise compile dcx-runbook's source
    in every process it starts, and count that as start-up."""
    import dcx_runbook

    package = Path(dcx_runbook.__file__).parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [PY, "-m", "compileall", "-q", str(package)], capture_output=True, env=env, check=False
    )
    return f"compiled ({package})" if done.returncode == 0 else f"as found ({package})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes, one repetition")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})",
    )
    parser.add_argument(
        "--peers",
        default=",".join(peers.PEER_KEYS),
        help="the engine section's peers (bare_psycopg and psql always run; 'none' for no other)",
    )
    parser.add_argument(
        "--sizes", help="the engine section's step counts, comma-separated (default 10,100,1000)"
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json"
    )
    args = parser.parse_args()
    chosen = [p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"]
    if set(chosen) - set(peers.PEER_KEYS):
        parser.error(f"unknown peer(s) in --peers; expected {', '.join(peers.PEER_KEYS)}")
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else None
    if sizes is not None and (len(sizes) < 2 or sizes != sorted(set(sizes)) or sizes[0] < 1):
        parser.error("--sizes: at least two increasing step counts")
    smoke = args.smoke
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; expected {', '.join(SECTIONS)}")
    # dcx-runbook's cache of what a command proved about a runbook's bytes would make every
    # repetition after the first measure a re-run: off, but where a section says otherwise (the
    # engine's cold and warm runs, the wallet fix's run then rollback).
    os.environ["DCX_RUNBOOK_CACHE_DIR"] = "off"
    results: dict[str, Any] = {"machine": machine(), "smoke": smoke}
    # The smoke test must not write outside its temporary directory: it measures nothing anyway.
    results["machine"]["bytecode"] = "as found" if smoke else compile_bytecode()
    if "startup" in only:
        results["startup"] = bench_startup(1 if smoke else 15)
    if "engine" in only:
        default_sizes = [2, 10] if smoke else [10, 100, 1000]
        results["engine"] = bench_engine(sizes or default_sizes, 1 if smoke else 7, chosen)
    if "lint" in only:
        results["lint"] = bench_lint(100 if smoke else 1000, 1 if smoke else 7)
    if "ledger" in only:
        with Scratch() as url:
            results["ledger"] = ledger.bench_ledger(
                CLI, url, generated, [2, 10] if smoke else [10, 500], 1 if smoke else 9
            )
    if "runs" in only:
        results["runs"] = bench_runs(30 if smoke else 3000, 1 if smoke else 5)
    if "fleet" in only:
        results["fleet"] = fleet.bench_fleet(PY, ADMIN, 3 if smoke else 50, 1 if smoke else 3)
    if "lock_stall" in only:
        results["lock_stall"] = bench_lock_stall(2.0 if smoke else 10.0)
    if "wallet_fix" in only:
        results["wallet_fix"] = bench_wallet(1 if smoke else 3, with_node=not smoke)
    results["goals"] = goals(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


_LINT_TIMING = """
import json, statistics, sys, time
from dcx_runbook import api
parse, lint = [], []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); (loaded,) = api.validate([sys.argv[1]]); parse.append(time.perf_counter() - t)
    t = time.perf_counter(); linted = api.lint(loaded); lint.append(time.perf_counter() - t)
print(json.dumps({"validate": statistics.median(parse), "lint": statistics.median(lint),
                  "findings": len(linted.findings), "squawk_missing": linted.squawk_missing}))
"""


def bench_lint(n: int, repeat: int) -> dict[str, Any]:
    """The lint of an N-step runbook (squawk over every statement in one call, and the
    runbook's rules), beside `validate` alone (parsing and validating it), in one process, the
    two interleaved; and `validate` as a whole process (both)."""
    with tempfile.TemporaryDirectory() as tmp_name:
        yaml_path, _ = generated(n, Path(tmp_name))
        done = subprocess.run(
            [PY, "-c", _LINT_TIMING, str(yaml_path), str(repeat)],
            capture_output=True,
            text=True,
            check=True,
        )
        timing = json.loads(done.stdout)
        whole = median_of([*CLI, "validate", str(yaml_path)], repeat)
    if timing["squawk_missing"]:
        raise RuntimeError(timing["squawk_missing"])
    return {
        "steps": n,
        "validate_seconds": timing["validate"],
        "lint_seconds": timing["lint"],
        "findings": timing["findings"],
        "validate_command_seconds": whole,
    }


def bench_runs(count: int, repeat: int) -> dict[str, Any]:
    """`runs` over `count` records, copies of one real run's record."""
    with tempfile.TemporaryDirectory() as tmp_name, Scratch() as url:
        tmp = Path(tmp_name)
        yaml_path, _ = generated(10, tmp)
        subprocess.run(
            ["psql", "-X", "-q", url, "-c", "CREATE TABLE bench (id int)"],
            check=True,
            capture_output=True,
        )
        env = {"DCX_RUNBOOK_STATE_DIR": str(tmp / "state")}
        timed([*CLI, "run", str(yaml_path), "--yes", "--database-url", url], env)
        (record,) = (tmp / "state" / "runs").glob("*.json")
        return ledger.bench_runs(CLI, count, repeat, record)


def table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"cpu reference ({m['cpu_reference']}): {m['cpu_reference_seconds'] * 1000:.0f} ms"]
    lines.append(f"bytecode: {m.get('bytecode', 'as found')}")
    for section, render in (
        ("startup", _startup_lines),
        ("engine", _engine_lines),
        ("lint", _lint_lines),
        ("ledger", _ledger_lines),
        ("runs", _runs_lines),
        ("fleet", fleet.fleet_lines),
        ("lock_stall", _lock_stall_lines),
        ("wallet_fix", _wallet_lines),
    ):
        if section in r:
            lines += render(r[section])
    if "goals" in r and ("engine" in r or "startup" in r):  # every goal comes from those two
        lines += _goals_lines(r["goals"], r.get("smoke", False))
    return "\n".join(lines)


def _startup_lines(startup: dict[str, Any]) -> list[str]:
    lines = ["startup (median)"]
    for name, seconds in startup["median_seconds"].items():
        lines.append(f"  {name:<34} {seconds * 1000:8.1f} ms")
    return lines


def _engine_lines(engine: dict[str, Any]) -> list[str]:
    tools = engine["tools"]
    peer_keys = [k for k in tools if k != "dcx"]
    sizes = [str(n) for n in engine["sizes"]]
    lines = [
        f"engine: run / rollback of N generated steps (whole processes, median of "
        f"{engine['repeat']}, interleaved; dcx-runbook's journal and ledger on); a peer's "
        "figure is its time over dcx-runbook's (> 1: slower)"
    ]
    head = ["N", "dcx-runbook run / rollback"]
    head += [f"{tools[k]['name']} {tools[k]['run']} / {tools[k]['rollback']}" for k in peer_keys]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sizes:
        row = engine[n]
        cells = [n, _pair(row["dcx"], "{:.2f}", "seconds", " s")]
        for key in peer_keys:
            cell = row[key]
            if isinstance(cell, str):
                cells.append(cell)
                continue
            ratio = _pair(cell, "{:.2f}", "over_dcx", "×", suffix_first=False)
            times = _pair(cell, "{:.2f}", "seconds", " s")
            once = ", 1 run" if cell["samples"] == 1 and engine["repeat"] > 1 else ""
            cells.append(f"{ratio} ({times}{once})")
        lines.append("| " + " | ".join(cells) + " |")
    spans = [k for k in engine if k.startswith("per_step_")]
    head = ["tool"]
    for key in spans:
        span = key.removeprefix("per_step_").replace("_to_", "→")
        head += [f"per step N={span} run / rollback", "fixed cost run / rollback"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in ["dcx", *peer_keys]:
        cells = [tools[key]["name"]]
        for span in spans:
            cell = engine[span][key]
            if isinstance(cell, str):
                cells += [cell, ""]
                continue
            cells.append(
                f"{cell['run_seconds'] * 1000:.2f} / {cell['rollback_seconds'] * 1000:.2f} ms"
            )
            cells.append(
                f"{cell['run_fixed_seconds']:.3f} / {cell['rollback_fixed_seconds']:.3f} s"
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for n in sizes:
        dcx = engine[n]["dcx"]
        lines.append(
            f"  N={n:<5} dcx-runbook run peak RSS {dcx['peak_rss_kib'] / 1024:.1f} MiB  "
            f"validate {engine[n]['validate_seconds']:.3f}s"
        )
    for span in spans:
        s = engine[span]
        lines.append(
            f"  {span.removeprefix('per_step_').replace('_to_', '→')}: dcx-runbook over bare "
            f"psycopg per step: run {s['engine_over_bare_psycopg']:.2f}×, rollback "
            f"{s['rollback_over_bare_psycopg']:.2f}×"
        )
    if "growth_1000_over_100" in engine:
        lines.append(f"  dcx-runbook run N=1000 / N=100: {engine['growth_1000_over_100']:.2f}×")
    for key, state in engine["status"].items():
        if state != "measured":
            lines.append(f"  {tools[key]['name']}: {state}")
    return lines


def _pair(cell: dict[str, Any], fmt: str, what: str, unit: str, suffix_first: bool = True) -> str:
    """'0.43 / 0.50 s' from a cell's run_<what> and rollback_<what>."""
    a, b = (fmt.format(cell[f"{side}_{what}"]) for side in ("run", "rollback"))
    return f"{a} / {b}{unit}" if suffix_first else f"{a}{unit} / {b}{unit}"


# ----------------------------------------------------------------------------- goals (issue 19)


def goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of issue 19's goals with its figure from this run: met true/false, or None with the
    reason it was not measured (a section not run, a size not in this run, a peer missing)."""
    out: list[dict[str, Any]] = []

    def goal(text: str, met: bool | None, figure: str) -> None:
        if met is None and not figure.startswith("not measured"):  # a slope of 0 or below
            figure = f"not judged: a per-step slope ≤ 0, noise larger than the cost: {figure}"
        out.append({"goal": text, "met": met, "figure": figure})

    engine = r.get("engine")
    spans = [k for k in engine if k.startswith("per_step_")] if engine else []
    # Per step: the slope over the largest two sizes (the most steps, the least noise in it).
    # Fixed cost: the line through the smallest two (the least extrapolated to N = 0).
    last = engine[spans[-1]] if spans else None
    first = engine[spans[0]] if spans else None
    at_last = spans[-1].removeprefix("per_step_").replace("_to_", "→") if spans else ""
    at_first = spans[0].removeprefix("per_step_").replace("_to_", "→") if spans else ""
    no_engine = "not measured: the engine section did not run"
    if last is None or first is None:
        for text in (
            "per acting step ≤ 1.5× bare psycopg",
            "fixed cost ≤ bare psycopg's + 0.10 s",
            "rollback per step ≤ run per step",
            "rollback fixed cost ≤ run fixed cost",
        ):
            goal(text, None, no_engine)
    else:
        dcx, bare = last["dcx"], last["bare_psycopg"]
        ratio = dcx["run_seconds"] / bare["run_seconds"]
        noisy = min(dcx["run_seconds"], bare["run_seconds"], dcx["rollback_seconds"]) <= 0
        goal(
            "per acting step ≤ 1.5× bare psycopg",
            None if noisy else ratio <= 1.5,
            f"{ratio:.2f}× (dcx-runbook {dcx['run_seconds'] * 1000:.2f} ms, bare psycopg "
            f"{bare['run_seconds'] * 1000:.2f} ms a step, N={at_last})",
        )
        fixed, bare_fixed = first["dcx"], first["bare_psycopg"]
        extra = fixed["run_fixed_seconds"] - bare_fixed["run_fixed_seconds"]
        goal(
            "fixed cost ≤ bare psycopg's + 0.10 s",
            extra <= 0.10,
            f"{extra:+.3f} s (dcx-runbook {fixed['run_fixed_seconds']:.3f} s, bare psycopg "
            f"{bare_fixed['run_fixed_seconds']:.3f} s, N={at_first})",
        )
        goal(
            "rollback per step ≤ run per step",
            None if noisy else dcx["rollback_seconds"] <= dcx["run_seconds"],
            f"rollback {dcx['rollback_seconds'] * 1000:.2f} ms, run "
            f"{dcx['run_seconds'] * 1000:.2f} ms a step (N={at_last})",
        )
        goal(
            "rollback fixed cost ≤ run fixed cost",
            fixed["rollback_fixed_seconds"] <= fixed["run_fixed_seconds"],
            f"rollback {fixed['rollback_fixed_seconds']:.3f} s, run "
            f"{fixed['run_fixed_seconds']:.3f} s (N={at_first})",
        )
    for n, peer, times in (("1000", "liquibase", 2.5), ("100", "sqitch", 10.0)):
        for side in ("run", "rollback"):
            name = "Liquibase" if peer == "liquibase" else "Sqitch"
            text = f"N={n}: {side} ≥ {times:g}× faster than {name}"
            if engine is None:
                goal(text, None, no_engine)
            elif n not in engine:
                goal(text, None, f"not measured: N={n} is not among this run's sizes")
            elif isinstance(engine[n].get(peer), str):
                goal(text, None, f"not measured: {name} {engine[n][peer]}")
            else:
                cell = engine[n][peer]
                goal(
                    text,
                    cell[f"{side}_over_dcx"] >= times,
                    f"{cell[f'{side}_over_dcx']:.2f}× ({name} {cell[f'{side}_seconds']:.2f} s, "
                    f"dcx-runbook {engine[n]['dcx'][f'{side}_seconds']:.2f} s)",
                )
    startup = r.get("startup", {}).get("median_seconds")
    for args in ("--help", "--version"):
        text = f"`{args}` ≤ 5× `python -c pass`"
        if not startup:
            goal(text, None, "not measured: the startup section did not run")
            continue
        base, took = startup["python -c pass"], startup[f"dcx-runbook {args}"]
        goal(
            text,
            took <= 5 * base,
            f"{took / base:.2f}× ({took * 1000:.1f} ms against {base * 1000:.1f} ms)",
        )
    text = "`validate` of 1,000 steps ≤ 0.3 s"
    if engine is None or "1000" not in engine:
        goal(text, None, "not measured: N=1000 is not among this run's sizes")
    else:
        took = engine["1000"]["validate_seconds"]
        alone = r.get("lint", {}).get("validate_seconds")
        inside = f"; in one process, without the lint: {alone:.3f} s" if alone else ""
        goal(
            text, took <= 0.3, f"{took:.3f} s (the whole `validate` command, lint included{inside})"
        )
    text = "peak RSS of a 1,000-step run ≤ 80 MB"
    if engine is None or "1000" not in engine:
        goal(text, None, "not measured: N=1000 is not among this run's sizes")
    else:
        kib = engine["1000"]["dcx"]["peak_rss_kib"]
        goal(text, kib * 1024 <= 80e6, f"{kib * 1024 / 1e6:.1f} MB ({kib / 1024:.1f} MiB)")
    return out


def _goals_lines(goals_: list[dict[str, Any]], smoke: bool = False) -> list[str]:
    lines = ["goals (issue 19)" + (": --smoke, too small and too few to judge" if smoke else "")]
    for g in goals_:
        mark = {True: "met", False: "MISSED", None: "n/a"}[g["met"]]
        lines.append(f"  [{mark:<6}] {g['goal']}: {g['figure']}")
    return lines


def _lint_lines(lint: dict[str, Any]) -> list[str]:
    return [
        f"lint of {lint['steps']} steps (median, in one process): validate alone "
        f"{lint['validate_seconds']:.3f}s, the lint {lint['lint_seconds']:.3f}s "
        f"({lint['findings']} findings); `validate` as a command (both) "
        f"{lint['validate_command_seconds']:.3f}s"
    ]


def _ledger_lines(led: dict[str, Any]) -> list[str]:
    per = led["per_step"]
    lines = ["the ledger (median; whole processes; same runbook with and without, interleaved)"]
    for n, row in led.items():
        if n.isdigit():
            lines.append(
                f"  N={n:<5} ledger {row['ledger_seconds']:.3f}s ({row['ledger_round_trips']} "
                f"round trips)  --no-ledger {row['no_ledger_seconds']:.3f}s "
                f"({row['no_ledger_round_trips']} round trips)"
            )
    lines.append(
        f"  per step: ledger {per['ledger_seconds'] * 1000:.2f} ms, --no-ledger "
        f"{per['no_ledger_seconds'] * 1000:.2f} ms: the ledger costs "
        f"{per['ledger_cost_seconds'] * 1000:.2f} ms and "
        f"{per['ledger_cost_round_trips']:.2f} round trips a step"
    )
    return lines


def _runs_lines(runs: dict[str, Any]) -> list[str]:
    return [
        f"runs over {runs['records']} records (median): `runs` "
        f"{runs['runs_seconds'] * 1000:.0f} ms, `runs --all` {runs['runs_all_seconds'] * 1000:.0f} ms"
    ]


def _lock_stall_lines(ls: dict[str, Any]) -> list[str]:
    lines = [
        f"lock stall ({ls['writers']} writers, blocker {ls['blocker_seconds']:g}s, "
        f"lock_timeout {ls['lock_timeout_seconds']:g}s)"
    ]
    for who in ("dcx_runbook", "plain_psql"):
        w = ls[who]
        lines.append(
            f"  {who:<12} p50 {w['p50'] * 1000:7.1f} ms  p99 {w['p99'] * 1000:7.1f} ms  "
            f"max {w['max']:.2f} s"
        )
    return lines


def _wallet_lines(wallet: dict[str, Any]) -> list[str]:
    lines = ["wallet fix end to end (median)"]
    for label, row in wallet.items():
        if isinstance(row, dict):
            lines.append(
                f"  {label:<22} run {row['run_seconds']:.2f}s  "
                f"rollback {row['rollback_seconds']:.2f}s"
            )
    hand = wallet["plan_estimate_by_hand_seconds"] / 60
    lines.append(f"  the plan's estimate by hand: {hand:.0f} min")
    return lines


if __name__ == "__main__":
    sys.exit(main())
