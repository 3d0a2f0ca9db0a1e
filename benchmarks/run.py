#!/usr/bin/env python3
"""dcx-runbook benchmarks: startup, engine overhead against psql, writer stall under a blocked DDL,
the wallet fix end to end, and fleets. Prints a table and writes benchmarks/results/latest.json.

    python benchmarks/run.py            # the full run (make bench)
    python benchmarks/run.py --smoke    # every benchmark at its smallest size (CI keeps them working)

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
    steps, sql = [], []
    for i in range(n):
        steps.append(
            {
                "id": f"s{i}",
                "title": f"step {i}",
                "precheck": [{"kind": "sql", "query": "SELECT 1", "expect": 1}],
                "action": [{"kind": "sql", "sql": f"INSERT INTO bench VALUES ({i})"}],
                "verify": [
                    {
                        "kind": "sql",
                        "query": f"SELECT count(*) FROM bench WHERE id = {i}",
                        "expect": 1,
                    }
                ],
                "rollback": {
                    "action": [{"kind": "sql", "sql": f"DELETE FROM bench WHERE id = {i}"}]
                },
            }
        )
        sql.append(
            f"SELECT 1;\nBEGIN;\nINSERT INTO bench VALUES ({i});\n"
            f"SELECT count(*) FROM bench WHERE id = {i};\nCOMMIT;\n"
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
    sql_path.write_text("".join(sql))
    return yaml_path, sql_path


BARE = [PY, str(ROOT / "benchmarks" / "bare_psycopg.py")]


def bench_engine(sizes: list[int], repeat: int) -> dict[str, Any]:
    """Whole processes, start-up included, of three tools running the same statements: psql,
    bare psycopg (the floor of any Python tool) and dcx-runbook with its journal on. The per-step
    cost is the slope between two sizes, the fixed cost what is left at N = 0."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name, Scratch() as url:
        tmp = Path(tmp_name)
        env = {"DCX_RUNBOOK_STATE_DIR": str(tmp / "state")}  # the journal is on
        reset = [
            "psql",
            "-X",
            "-q",
            url,
            "-c",
            "DROP TABLE IF EXISTS bench; CREATE TABLE bench (id int)",
        ]
        for n in sizes:
            yaml_path, sql_path = generated(n, tmp)
            commands = {
                "psql": (
                    ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", str(sql_path)],
                    None,
                ),
                "bare_psycopg": ([*BARE, url, str(sql_path)], None),
                "dcx": (
                    [
                        *CLI,
                        "run",
                        str(yaml_path),
                        "--yes",
                        "--output",
                        "json",
                        "--database-url",
                        url,
                    ],
                    env,
                ),
            }
            times: dict[str, list[float]] = {tool: [] for tool in commands}
            for _ in range(repeat):
                for tool, (argv, tool_env) in commands.items():  # interleaved: drift hits all three
                    subprocess.run(reset, check=True, capture_output=True)
                    times[tool].append(timed(argv, tool_env))
            row = {f"{tool}_seconds": statistics.median(ts) for tool, ts in times.items()}
            row["ratio"] = row["dcx_seconds"] / row["psql_seconds"]
            row["bare_psycopg_ratio"] = row["bare_psycopg_seconds"] / row["psql_seconds"]
            row["validate_seconds"] = median_of([*CLI, "validate", str(yaml_path)], repeat)
            out[str(n)] = row
    for a, b in itertools.pairwise(sizes):
        slope = {
            tool: (out[str(b)][f"{tool}_seconds"] - out[str(a)][f"{tool}_seconds"]) / (b - a)
            for tool in ("psql", "bare_psycopg", "dcx")
        }
        out[f"per_step_{a}_to_{b}"] = {
            **{f"{tool}_seconds": s for tool, s in slope.items()},
            **{
                f"{tool}_fixed_seconds": out[str(a)][f"{tool}_seconds"] - a * s
                for tool, s in slope.items()
            },
            "ratio": slope["dcx"] / slope["psql"],
            "bare_psycopg_ratio": slope["bare_psycopg"] / slope["psql"],
            "engine_over_bare_psycopg": slope["dcx"] / slope["bare_psycopg"],
        }
    if "100" in out and "1000" in out:
        out["growth_1000_over_100"] = out["1000"]["dcx_seconds"] / out["100"]["dcx_seconds"]
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
                env = {"DCX_RUNBOOK_STATE_DIR": str(Path(tmp_name) / "state")}
                skip: list[str] = []
                if node_steps and tools:
                    link_node_modules(frontend, tools)
                    env = {**tools.env, **env}
                else:
                    skip = ["--skip", "prisma-generate", "--skip", "typescript-check"]
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
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json"
    )
    args = parser.parse_args()
    smoke = args.smoke
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; expected {', '.join(SECTIONS)}")
    results: dict[str, Any] = {"machine": machine()}
    # The smoke test must not write outside its temporary directory: it measures nothing anyway.
    results["machine"]["bytecode"] = "as found" if smoke else compile_bytecode()
    if "startup" in only:
        results["startup"] = bench_startup(1 if smoke else 15)
    if "engine" in only:
        results["engine"] = bench_engine([2, 10] if smoke else [10, 100, 1000], 1 if smoke else 7)
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
    return "\n".join(lines)


def _startup_lines(startup: dict[str, Any]) -> list[str]:
    lines = ["startup (median)"]
    for name, seconds in startup["median_seconds"].items():
        lines.append(f"  {name:<34} {seconds * 1000:8.1f} ms")
    return lines


def _engine_lines(engine: dict[str, Any]) -> list[str]:
    lines = ["engine overhead (median; whole processes; dcx-runbook's journal on)"]
    for n, row in engine.items():
        if n.isdigit():
            lines.append(
                f"  N={n:<5} psql {row['psql_seconds']:.3f}s  "
                f"bare psycopg {row['bare_psycopg_seconds']:.3f}s  "
                f"dcx-runbook {row['dcx_seconds']:.3f}s  ratio {row['ratio']:.2f}x  "
                f"validate {row['validate_seconds']:.3f}s"
            )
    for key, row in engine.items():
        if key.startswith("per_step_"):
            span = key.removeprefix("per_step_").replace("_to_", "->")
            lines.append(
                f"  per step N={span:<9} psql {row['psql_seconds'] * 1000:.2f} ms  "
                f"bare psycopg {row['bare_psycopg_seconds'] * 1000:.2f} ms  "
                f"dcx-runbook {row['dcx_seconds'] * 1000:.2f} ms  ratio {row['ratio']:.2f}x "
                f"(bare psycopg {row['bare_psycopg_ratio']:.2f}x)"
            )
            lines.append(
                f"  fixed cost             psql {row['psql_fixed_seconds']:.3f}s  "
                f"bare psycopg {row['bare_psycopg_fixed_seconds']:.3f}s  "
                f"dcx-runbook {row['dcx_fixed_seconds']:.3f}s"
            )
    if "growth_1000_over_100" in engine:
        lines.append(f"  N=1000 / N=100: {engine['growth_1000_over_100']:.2f}x")
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
