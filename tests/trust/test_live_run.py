"""A rollback while a run is still at work is refused at once (exit 4), naming the run, its
operator, host and pid, as a second run is; the run goes on undisturbed (issue 12, item 2)."""

from __future__ import annotations

import getpass
import signal
import socket
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import cli, write_runbook
from tests.faults.support import start, wait_until, waiting_on_advisory_lock, waits_args
from tests.trust.conftest import events

pytestmark = pytest.mark.slow  # a live run held at a wait point while rollbacks are tried


GATE = 7707  # an advisory lock the test holds: the run's first check waits for it


def refused_at_once(*args: str) -> dict:  # type: ignore[type-arg]
    """The rollback's last event; a wait for the run's lock (10 s, once) would time out here."""
    done = cli("rollback", "--yes", "-o", "json", *args, timeout=8)
    assert done.returncode == 4, done.stderr + done.stdout
    return events(done.stdout)[-1]


@pytest.mark.parametrize("named", [False, True], ids=["bare", "by-id"])
def test_rollback_during_a_step_is_refused_and_the_run_succeeds(
    tmp_path: Path, database_url: str, dbname: str, db: psycopg.Connection, named: bool
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.env").write_text("MODE=prod\n")
    run = start(*waits_args(database_url, dbname, work))
    wait_until(lambda: (work / "ready").exists(), "the run to reach wait-shell")
    [record] = (tmp_path / "state" / "runs").glob("*.json")
    run_id = record.stem

    end = refused_at_once("--database-url", database_url, *([run_id] if named else []))

    assert end["status"] == "refused"
    message = end["message"]
    assert f"run {run_id} of waits is still running" in message
    assert f"{getpass.getuser()}@{socket.gethostname()}" in message
    assert f"pid {run.pid}" in message
    assert run.poll() is None  # still at work, nothing undone under it
    (work / "go").touch()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert events(out)[-1]["status"] == "succeeded"
    assert db.execute("SELECT to_regclass('t1') IS NOT NULL").fetchone() == (True,)
    assert (work / "marker").exists()


def test_rollback_before_the_first_change_is_refused_not_nothing_to_do(
    tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    """Early in a run nothing is applied yet: today's main said "nothing to roll back", exit 0,
    while the run went on to change the database."""
    waiting = {
        "id": "create-t",
        "title": "create t once the gate opens",
        "precheck": [
            {
                "kind": "sql",
                "name": "gate",
                "query": f"SELECT count(*) FROM (SELECT pg_advisory_lock_shared({GATE})) s",
                "expect": 1,
            }
        ],
        "action": [{"kind": "sql", "sql": "CREATE TABLE t (x int)"}],
        "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE t"}]},
    }
    path = write_runbook(tmp_path / "gated.yaml", "gated", [waiting])
    with psycopg.connect(database_url, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        run = start("run", str(path), "--yes", "-o", "json", "--database-url", database_url)
        wait_until(lambda: waiting_on_advisory_lock(database_url, GATE), "the run's precheck")

        end = refused_at_once("--database-url", database_url)

        assert "of gated is still running" in end["message"], end
        assert f"pid {run.pid}" in end["message"]
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert db.execute("SELECT to_regclass('t') IS NOT NULL").fetchone() == (True,)


def files_only(tmp_path: Path, work: Path) -> Path:
    """A runbook with no database: its action and its undo wait for files the test controls."""
    wait = 'touch "$1/$2-ready"; while [ ! -e "$1/$2-go" ]; do sleep 0.05; done'
    step = {
        "id": "mark",
        "title": "leave a marker",
        "done_when": [{"kind": "file", "path": str(work / "marker"), "exists": True}],
        "action": [
            {
                "kind": "shell",
                "argv": ["sh", "-c", f'{wait}; touch "$1/marker"', "sh", str(work), "run"],
            }
        ],
        "rollback": {
            "action": [
                {
                    "kind": "shell",
                    "argv": ["sh", "-c", f'{wait}; rm -f "$1/marker"', "sh", str(work), "undo"],
                }
            ]
        },
    }
    path = tmp_path / "files-only.yaml"
    path.write_text(yaml.safe_dump({"name": "files-only", "title": "files only", "steps": [step]}))
    return path


def test_a_files_only_runbook_is_held_on_this_machine(tmp_path: Path) -> None:
    """No server lock keeps a second run, or a run during a rollback, out: a lock in the state
    directory does. Both used to go ahead, and the rollback undid the new run's change."""
    work = tmp_path / "work"
    work.mkdir()
    path = files_only(tmp_path, work)
    first = start("run", str(path), "--yes", "-o", "json")
    wait_until(lambda: (work / "run-ready").exists(), "the first run to act")
    second = cli("run", str(path), "--yes", "-o", "json", timeout=8)
    assert second.returncode == 4, second.stderr + second.stdout
    assert (
        "is running or rolling back files-only on this machine"
        in events(second.stdout)[-1]["message"]
    )
    (work / "run-go").touch()
    assert first.wait(timeout=60) == 0

    undo = start("rollback", "--yes", "-o", "json")
    wait_until(lambda: (work / "undo-ready").exists(), "the rollback to undo")
    during = cli("run", str(path), "--yes", "-o", "json", timeout=8)
    assert during.returncode == 4, during.stderr + during.stdout
    (work / "undo-go").touch()
    assert undo.wait(timeout=60) == 0
    assert not (work / "marker").exists()


def test_a_hangup_does_not_stop_the_run(tmp_path: Path, database_url: str, dbname: str) -> None:
    """A closed terminal (SIGHUP) used to kill the run between two steps: no unwind, the journal
    saying "running", a change applied. The run goes on to its end, its output dropped."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.env").write_text("MODE=prod\n")
    run = start(*waits_args(database_url, dbname, work))
    wait_until(lambda: (work / "ready").exists(), "the run to reach wait-shell")
    run.send_signal(signal.SIGHUP)
    (work / "go").touch()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert events(out)[-1]["status"] == "succeeded"


def test_rollback_refuses_while_a_killed_run_s_process_is_still_at_work(
    tmp_path: Path, database_url: str, dbname: str, db: psycopg.Connection
) -> None:
    """kill -9 leaves the step's process (its own process group) running: a rollback used to
    undo under it, and the process then redid its change after the rollback said it was gone."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.env").write_text("MODE=prod\n")
    run = start(*waits_args(database_url, dbname, work))
    wait_until(lambda: (work / "ready").exists(), "the run to reach wait-shell")
    run.kill()
    run.wait(timeout=30)

    end = refused_at_once("--database-url", database_url)
    assert "which is still running on this host" in end["message"], end
    assert (work / "marker").exists()  # nothing was undone

    (work / "go").touch()  # the orphan finishes
    wait_until(lambda: not any(orphans(work)), "the orphaned process to end")
    done = cli("rollback", "--yes", "-o", "json", "--database-url", database_url)
    assert done.returncode == 0, done.stderr + done.stdout
    assert not (work / "marker").exists()
    assert db.execute("SELECT to_regclass('t1')").fetchone() == (None,)


def orphans(work: Path) -> list[int]:
    """Processes still running the wait-shell loop of this test (by their command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(work).encode() in cmdline and b"while" in cmdline:
            found.append(int(proc.name))
    return found
