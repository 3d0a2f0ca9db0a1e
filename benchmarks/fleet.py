"""Fleets (docs/fleet.md): one 3-step runbook across N scratch databases of the bench server, by
`dcx-runbook run --targets`, at `--concurrency 1` and at `--concurrency 8` (canary 1 both).

Every measured run starts from databases just created (a target's first run creates its ledger
schema: runs on used databases would be cheaper), and its own state directory; the two
concurrencies are interleaved, so drift hits both. The driver runs in a small Python process of
its own that calls the CLI's `main()` and then reads its `getrusage`: RUSAGE_SELF is the driver
alone (peak RSS, CPU), RUSAGE_CHILDREN the targets' forked processes and what they started
(squawk). The events (`-o json`) split a target's time into its parts."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml

CONCURRENCIES = (1, 8)

STEPS = [  # (id, action, verify query, expected, rollback): realistic DDL, one transaction each
    (
        "create-accounts",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL)",
        "SELECT to_regclass('accounts') IS NOT NULL",
        True,
        "DROP TABLE accounts",
    ),
    (
        "add-balance",
        "ALTER TABLE accounts ADD COLUMN balance numeric(12,2) NOT NULL DEFAULT 0",
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'accounts' AND column_name = 'balance'",
        1,
        "ALTER TABLE accounts DROP COLUMN balance",
    ),
    (
        "index-owner",
        "CREATE INDEX accounts_owner_idx ON accounts (owner)",
        "SELECT to_regclass('accounts_owner_idx') IS NOT NULL",
        True,
        "DROP INDEX accounts_owner_idx",
    ),
]

# The driver, in-process: main() always ends in SystemExit. A forked target child never gets
# here (it leaves by os._exit), and the pid check keeps it so.
DRIVER = """
import json, os, resource, sys
from dcx_runbook.cli.app import main
usage_file, driver = sys.argv[1], os.getpid()
sys.argv = ["dcx-runbook", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
if os.getpid() == driver:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(usage_file, "w") as f:
        json.dump({"maxrss_kib": me.ru_maxrss, "cpu_seconds": me.ru_utime + me.ru_stime,
                   "children_maxrss_kib": kids.ru_maxrss,
                   "children_cpu_seconds": kids.ru_utime + kids.ru_stime}, f)
sys.exit(code)
"""


def write_runbook(path: Path) -> Path:
    steps = [
        {
            "id": step_id,
            "title": step_id.replace("-", " "),
            "action": [{"kind": "sql", "sql": action}],
            "verify": [{"kind": "sql", "query": query, "expect": expect}],
            "rollback": {"action": [{"kind": "sql", "sql": rollback}]},
        }
        for step_id, action, query, expect, rollback in STEPS
    ]
    runbook = {
        "name": "bench-fleet",
        "title": "bench fleet: accounts table, balance column, owner index",
        "vars": {"database_url": {"required": True, "secret": True, "env": "DATABASE_URL"}},
        "target": {"url": "${database_url}"},
        "steps": steps,
    }
    path.write_text(yaml.safe_dump(runbook, sort_keys=False))
    return path


class Databases:
    """`count` scratch databases on the admin server, made anew by `fresh()`, dropped on exit
    (whatever happened)."""

    def __init__(self, admin: str, count: int):
        self.admin = admin
        token = secrets.token_hex(3)  # two benchmarks at once never share a database
        self.names = [f"dcx_bench_fleet_{token}_{i:02d}" for i in range(1, count + 1)]

    def url(self, name: str) -> str:
        return self.admin.rsplit("/", 1)[0] + "/" + name

    def fresh(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')

    def write_targets(self, path: Path) -> Path:
        targets = [
            {"name": f"db{i:02d}", "url": self.url(name), "database": name}
            for i, name in enumerate(self.names, 1)
        ]
        path.write_text(yaml.safe_dump({"targets": targets}, sort_keys=False))
        return path

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cpu_busy() -> float | None:
    """Seconds of CPU busy on the whole machine so far (every process, the server's too)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def one_run(py: str, runbook: Path, targets: Path, concurrency: int, tmp: Path) -> dict[str, Any]:
    """One fleet run, timed, on databases just made; fails loudly unless every target
    succeeded."""
    state, usage = tempfile.mkdtemp(dir=tmp), tmp / f"usage-{concurrency}.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DCX_RUNBOOK_STATE_DIR"] = state
    argv = [py, "-c", DRIVER, str(usage), "run", str(runbook), "--targets", str(targets)]
    argv += ["--yes", "-o", "json", "--canary", "1", "--concurrency", str(concurrency)]
    busy, launched = _cpu_busy(), time.time()
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    busy_after = _cpu_busy()
    if done.returncode != 0:
        raise RuntimeError(
            f"fleet run at --concurrency {concurrency} exited {done.returncode}: "
            f"{done.stderr[-2000:]}{done.stdout[-2000:]}"
        )
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    ended = [e for e in events if e["event"] == "target_finished"]
    count = len(yaml.safe_load(targets.read_text())["targets"])
    if len(ended) != count or any(e["status"] != "succeeded" for e in ended):
        raise RuntimeError(f"fleet run at --concurrency {concurrency}: {done.stdout[-3000:]}")
    out = {"wall_seconds": wall, **json.loads(usage.read_text())}
    if busy is not None and busy_after is not None:
        out["machine_cpu_busy_seconds"] = busy_after - busy
    return {**out, **_phases(events, launched)}


def _at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


def _phases(events: list[dict[str, Any]], launched: float) -> dict[str, float]:
    """From the events: the driver's start-up (launch to fleet_started), and a target's median
    set-up (run_started to its first step: connection, checks, lint, ledger), steps (to
    run_finished) and exit (to target_finished: the child's end, reaped and recorded)."""
    by_target: dict[str, dict[str, float]] = {}
    fleet: dict[str, float] = {}
    for e in events:
        if "target" not in e or e.get("target") is None:
            fleet.setdefault(e["event"], _at(e))
        else:
            by_target.setdefault(e["target"], {}).setdefault(e["event"], _at(e))
    rows = by_target.values()
    return {
        "startup_seconds": fleet["fleet_started"] - launched,
        "fleet_seconds": fleet["fleet_finished"] - fleet["fleet_started"],
        "target_setup_seconds": statistics.median(
            t["step_started"] - t["run_started"] for t in rows
        ),
        "target_steps_seconds": statistics.median(
            t["run_finished"] - t["step_started"] for t in rows
        ),
        "target_exit_seconds": statistics.median(
            t["target_finished"] - t["run_finished"] for t in rows
        ),
    }


def bench_fleet(py: str, admin: str, count: int, repeat: int) -> dict[str, Any]:
    """`count` databases; each concurrency run `repeat` times, interleaved, each on fresh
    databases: medians of every figure, the ratio of the medians of wall time."""
    runs: dict[int, list[dict[str, Any]]] = {c: [] for c in CONCURRENCIES}
    setup = []
    with tempfile.TemporaryDirectory() as tmp_name, Databases(admin, count) as dbs:
        tmp = Path(tmp_name)
        runbook = write_runbook(tmp / "bench-fleet.yaml")
        targets = dbs.write_targets(tmp / "targets.yaml")
        for _ in range(repeat):
            for concurrency in CONCURRENCIES:
                t0 = time.perf_counter()
                dbs.fresh()
                setup.append(time.perf_counter() - t0)
                runs[concurrency].append(one_run(py, runbook, targets, concurrency, tmp))
    out: dict[str, Any] = {"targets": count, "steps": len(STEPS), "repeat": repeat}
    for concurrency, measured in runs.items():
        row = {key: statistics.median(r[key] for r in measured) for key in measured[0]}
        row["per_target_seconds"] = row["wall_seconds"] / count
        out[f"concurrency_{concurrency}"] = row
    low, high = (out[f"concurrency_{c}"]["wall_seconds"] for c in CONCURRENCIES)
    out["ratio"] = low / high
    out["fresh_databases_seconds"] = statistics.median(setup)  # not measured: for the record
    return out


def fleet_lines(fl: dict[str, Any]) -> list[str]:
    lines = [
        f"fleet: {fl['targets']} databases, {fl['steps']}-step runbook, canary 1 "
        f"(median of {fl['repeat']}; whole driver process; fresh databases each run)"
    ]
    for c in CONCURRENCIES:
        row = fl[f"concurrency_{c}"]
        busy = row.get("machine_cpu_busy_seconds")
        lines.append(
            f"  --concurrency {c:<2} wall {row['wall_seconds']:6.2f}s  "
            f"per target {row['per_target_seconds'] * 1000:6.1f} ms  "
            f"peak RSS driver {row['maxrss_kib'] / 1024:.1f} MiB, "
            f"largest child {row['children_maxrss_kib'] / 1024:.1f} MiB  "
            f"CPU driver {row['cpu_seconds']:.2f}s children {row['children_cpu_seconds']:.2f}s"
            + (f" machine {busy:.2f}s" if busy is not None else "")
        )
        lines.append(
            f"  {'':<16} start-up {row['startup_seconds']:.2f}s  a target: set-up "
            f"{row['target_setup_seconds'] * 1000:.0f} ms, steps "
            f"{row['target_steps_seconds'] * 1000:.0f} ms, exit "
            f"{row['target_exit_seconds'] * 1000:.0f} ms"
        )
    lines.append(f"  --concurrency 8 is {fl['ratio']:.2f}x faster than --concurrency 1")
    return lines
