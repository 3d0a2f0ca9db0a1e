"""The ledger's cost (docs/ledger.md), and `runs` over a big state directory.

- `bench_ledger`: the same runbook of N transactional SQL steps run with the ledger and with
  `--no-ledger`, interleaved in one run: the per-step time of each (the slope between two sizes)
  and their difference; and the round trips each run makes, counted by a TCP proxy between the
  tool and PostgreSQL (a round trip: the client sends after the server last spoke), per step.
- `bench_runs`: `dcx-runbook runs` (the newest 20) and `runs --all` over a state directory of
  3,000 run records.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any


class TripCounter:
    """A TCP proxy to PostgreSQL counting round trips: each time a client sends after the server
    last spoke (or first) is one."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.trips = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        last = "server"
        try:
            while True:
                ready, _, _ = select.select([client, server], [], [])
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError
                    if sock is client:
                        if last == "server":
                            with self._lock:
                                self.trips += 1
                        last = "client"
                        server.sendall(data)
                    else:
                        last = "server"
                        client.sendall(data)
        except OSError:
            pass
        for sock in (client, server):
            sock.close()

    def close(self) -> None:
        self.listener.close()


def bench_ledger(
    cli: list[str], url: str, generated: Any, sizes: list[int], repeat: int
) -> dict[str, Any]:
    """Per-step time and round trips with and without the ledger (`generated(n, tmp)` writes
    the runbook of n steps)."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "DCX_RUNBOOK_STATE_DIR": str(tmp / "state")}
        for n in sizes:
            yaml_path, _ = generated(n, tmp)
            base = [*cli, "run", str(yaml_path), "--yes", "-o", "json"]
            variants = {"ledger": [], "no_ledger": ["--no-ledger"]}
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(repeat):
                for name, extra in variants.items():  # interleaved: drift hits both
                    _reset(url)
                    times[name].append(_timed([*base, "--database-url", url, *extra], env))
            row = {f"{name}_seconds": statistics.median(ts) for name, ts in times.items()}
            for name, extra in variants.items():
                _reset(url)
                row[f"{name}_round_trips"] = _trips([*base, *extra], url, env)
            out[str(n)] = row
    a, b = sizes[0], sizes[-1]
    per = {
        name: (out[str(b)][f"{name}_seconds"] - out[str(a)][f"{name}_seconds"]) / (b - a)
        for name in ("ledger", "no_ledger")
    }
    trips = {
        name: (out[str(b)][f"{name}_round_trips"] - out[str(a)][f"{name}_round_trips"]) / (b - a)
        for name in ("ledger", "no_ledger")
    }
    out["per_step"] = {
        "ledger_seconds": per["ledger"],
        "no_ledger_seconds": per["no_ledger"],
        "ledger_cost_seconds": per["ledger"] - per["no_ledger"],
        "ledger_round_trips": trips["ledger"],
        "no_ledger_round_trips": trips["no_ledger"],
        "ledger_cost_round_trips": trips["ledger"] - trips["no_ledger"],
    }
    return out


def _reset(url: str) -> None:
    subprocess.run(
        ["psql", "-X", "-q", url, "-c", "DROP TABLE IF EXISTS bench; CREATE TABLE bench (id int)"],
        check=True,
        capture_output=True,
    )


def _timed(argv: list[str], env: dict[str, str]) -> float:
    import time

    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()[-2000:]}")
    return elapsed


def _trips(argv: list[str], url: str, env: dict[str, str]) -> int:
    """The round trips of one run, through the counting proxy (its blocker watch never connects:
    nothing waits for a lock)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    proxy = TripCounter((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    try:
        _timed([*argv, "--database-url", urlunsplit(parts._replace(netloc=netloc))], env)
        return proxy.trips
    finally:
        proxy.close()


def bench_runs(cli: list[str], count: int, repeat: int, one_record: Path) -> dict[str, Any]:
    """`runs` (the newest 20) and `runs --all` over `count` records made from one real record."""
    data = json.loads(one_record.read_text())
    with tempfile.TemporaryDirectory() as tmp_name:
        runs = Path(tmp_name) / "state" / "runs"
        runs.mkdir(parents=True)
        for i in range(count):
            run_id = f"20260101T{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}Z-{i:06x}"
            data.update(run_id=run_id, order=i + 1)
            (runs / f"{run_id}.json").write_text(json.dumps(data))
        env = {**os.environ, "DCX_RUNBOOK_STATE_DIR": str(runs.parent)}
        env.pop("DATABASE_URL", None)
        out = {"records": count}
        for name, extra in (("runs", []), ("runs_all", ["--all"])):
            out[f"{name}_seconds"] = statistics.median(
                _timed([*cli, "runs", "-o", "json", *extra], env) for _ in range(repeat)
            )
        shutil.rmtree(runs)
    return out
