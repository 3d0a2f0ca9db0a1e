"""Crash recovery: `kill -9` at any moment of any phase of any step kind, then `dcx-runbook
rollback` restores the database and the files exactly, including the step that was in flight.

Each case generates a three-step runbook: `prior` (creates a table AND edits a file), then the
step under test (of one kind, with a wait point the test controls in one phase), then `later`
(which must never start). The test starts the real CLI in a real process, waits until the run
sits at the wait point, SIGKILLs it, releases the wait point, and runs `dcx-runbook rollback`.

Wait points: a shell check or operation that writes a "ready" file and polls for a "go" file; or
a sql check or operation that waits for an advisory lock the test holds (the test sees the run's
backend waiting in pg_locks). One more family of cases kills a *rollback* in the middle of an
undo, and a second `rollback` finishes the job.
"""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from dcx_runbook.state.journal import Journal
from tests.conftest import cli, schema_dump

pytestmark = pytest.mark.slow  # kill -9 in every phase of every kind: a real process per case


LOCK_KEY = 4242
WAIT_TIMEOUT = 30.0
WAIT_SCRIPT = 'touch "$1"; while [ ! -e "$2" ]; do sleep 0.05; done'
UNDO_STATUSES = ("applied", "action_started", "rollback_failed", "rollback_started")

# The files the runbooks touch, as they are before every run (bytes and mode; None: absent).
INITIAL: dict[str, tuple[bytes, int] | None] = {
    "prior.ini": (b"[main]\nfeature = off\n", 0o644),
    "app.env": (b"# app settings\nAPP_MODE=dev\nOLD_FLAG=1\n\nOTHER='keep me'\n", 0o640),
    "config.ini": (b"[feature]\nenabled = false\n# trailing comment, no newline", 0o600),
    "new.env": None,
    "marker": None,
}

# ------------------------------------------------------------------------------- wait points

SHELL_WAIT: dict[str, Any] = {
    "kind": "shell",
    "name": "wait for the test (shell)",
    "argv": ["sh", "-c", WAIT_SCRIPT, "sh", "${ready}", "${go}"],
}
SQL_WAIT_CHECK: dict[str, Any] = {
    "kind": "sql",
    "name": "wait for the test (advisory lock)",
    "query": f"SELECT count(*) FROM (SELECT pg_advisory_xact_lock({LOCK_KEY})) AS w",
    "expect": 1,
}
SQL_WAIT_OP: dict[str, Any] = {
    "kind": "sql",
    "name": "wait for the test (advisory lock)",
    "sql": f"SELECT pg_advisory_xact_lock({LOCK_KEY})",
}
NOOP: dict[str, Any] = {"kind": "shell", "name": "the wait op changed nothing", "argv": ["true"]}

# ------------------------------------------------------------------------------- runbook parts


def table_exists(name: str) -> dict[str, Any]:
    return {
        "kind": "sql",
        "name": f"{name} exists",
        "query": f"SELECT to_regclass('{name}') IS NOT NULL",
        "expect": True,
    }


def table_absent(name: str) -> dict[str, Any]:
    return {
        "kind": "sql",
        "name": f"{name} is gone",
        "query": f"SELECT to_regclass('{name}') IS NULL",
        "expect": True,
    }


PRIOR: dict[str, Any] = {
    "id": "prior",
    "title": "Create table widgets and switch the feature on in prior.ini",
    "done_when": [
        table_exists("widgets"),
        {"kind": "file", "path": "${workdir}/prior.ini", "contains": "feature = on"},
    ],
    "action": [
        {"kind": "sql", "sql": "CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL)"},
        {
            "kind": "file",
            "path": "${workdir}/prior.ini",
            "edits": [{"replace": "^feature = off$", "with": "feature = on"}],
        },
    ],
    "verify": [
        table_exists("widgets"),
        {"kind": "file", "path": "${workdir}/prior.ini", "contains": "feature = on"},
    ],
    "rollback": {
        "restore_files": True,
        "action": [{"kind": "sql", "sql": "DROP TABLE widgets"}],
        "verify": [table_absent("widgets")],
    },
}

LATER: dict[str, Any] = {
    "id": "later",
    "title": "A step the crashed run never reaches",
    "done_when": [table_exists("later_t")],
    "action": [{"kind": "sql", "sql": "CREATE TABLE later_t (id int)"}],
    "verify": [table_exists("later_t")],
    "rollback": {"action": [{"kind": "sql", "sql": "DROP TABLE later_t"}]},
}


def sql_step(transaction: bool) -> dict[str, Any]:
    # gadgets references widgets: `prior` can only be undone once the in-flight step is.
    return {
        "id": "under-test",
        "title": "Create table gadgets",
        "transaction": transaction,
        "lock_timeout": "60s",  # the advisory-lock wait must not time out and retry
        "done_when": [table_exists("gadgets")],
        "precheck": [table_exists("widgets")],
        "action": [
            {
                "kind": "sql",
                "sql": "CREATE TABLE gadgets (id int PRIMARY KEY, widget int REFERENCES widgets)",
            }
        ],
        "verify": [table_exists("gadgets")],
        "rollback": {
            "action": [{"kind": "sql", "sql": "DROP TABLE gadgets"}],
            "verify": [table_absent("gadgets")],
        },
    }


def marker_exists(exists: bool = True) -> dict[str, Any]:
    argv = (
        ["test", "-e", "${workdir}/marker"] if exists else ["test", "!", "-e", "${workdir}/marker"]
    )
    return {"kind": "shell", "name": f"marker {'exists' if exists else 'is gone'}", "argv": argv}


SHELL_STEP: dict[str, Any] = {
    "id": "under-test",
    "title": "Leave a marker file",
    "done_when": [marker_exists()],
    "precheck": [{"kind": "shell", "name": "workdir exists", "argv": ["test", "-d", "${workdir}"]}],
    "action": [
        {
            "kind": "shell",
            "name": "leave the marker",
            "argv": ["sh", "-c", 'echo run > "$1"', "sh", "${workdir}/marker"],
        }
    ],
    "verify": [marker_exists()],
    "rollback": {
        "action": [
            {
                "kind": "shell",
                "name": "remove the marker",
                "argv": ["rm", "-f", "${workdir}/marker"],
            }
        ],
        "verify": [marker_exists(False)],
    },
}

ENV_CHECKS: list[dict[str, Any]] = [
    {
        "kind": "env_file",
        "path": "${workdir}/app.env",
        "key": "APP_MODE",
        "equals": "production",
        "count": 1,
    },
    {"kind": "env_file", "path": "${workdir}/app.env", "key": "OLD_FLAG", "present": False},
    {"kind": "env_file", "path": "${workdir}/new.env", "key": "TOKEN", "equals": "t0ken"},
]

ENV_FILE_STEP: dict[str, Any] = {
    "id": "under-test",
    "title": "Set APP_MODE, drop OLD_FLAG, create new.env",
    "done_when": ENV_CHECKS,
    "precheck": [
        {"kind": "env_file", "path": "${workdir}/app.env", "key": "APP_MODE", "present": True}
    ],
    "action": [
        {
            "kind": "env_file",
            "path": "${workdir}/app.env",
            "set": {"APP_MODE": "production"},
            "unset": ["OLD_FLAG"],
        },
        {
            "kind": "env_file",
            "path": "${workdir}/new.env",
            "set": {"TOKEN": "t0ken"},
            "create": True,
        },
    ],
    "verify": ENV_CHECKS,
    "rollback": {"restore_files": True},
}

FILE_CHECKS: list[dict[str, Any]] = [
    {"kind": "file", "path": "${workdir}/config.ini", "contains": "enabled = true"},
    {"kind": "file", "path": "${workdir}/config.ini", "matches": "^level = 3$"},
]

FILE_STEP: dict[str, Any] = {
    "id": "under-test",
    "title": "Enable the feature in config.ini",
    "done_when": FILE_CHECKS,
    "precheck": [{"kind": "file", "path": "${workdir}/config.ini", "contains": "enabled = false"}],
    "action": [
        {
            "kind": "file",
            "path": "${workdir}/config.ini",
            "edits": [
                {"replace": "^enabled = false$", "with": "enabled = true"},
                {"ensure_line": "level = 3", "after": "^\\[feature\\]"},
            ],
        }
    ],
    "verify": FILE_CHECKS,
    "rollback": {"restore_files": True},
}

KIND_STEPS: dict[str, dict[str, Any]] = {
    "sql": sql_step(transaction=True),
    "sql-no-transaction": sql_step(transaction=False),
    "shell": SHELL_STEP,
    "env_file": ENV_FILE_STEP,
    "file": FILE_STEP,
}

PHASES = ("done_when", "precheck", "action-before-effect", "action-after-effect", "verify")


def runbook(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "title": "Crash recovery test runbook",
        "vars": {
            "database_url": {"required": True, "secret": True, "env": "DATABASE_URL"},
            "workdir": {"required": True},
            "ready": {"required": True},
            "go": {"required": True},
        },
        "target": {"url": "${database_url}"},
        "steps": steps,
    }


def step_under_test(kind: str, phase: str) -> tuple[dict[str, Any], str]:
    """The kind's step with a wait point in `phase`; and how to wait ("sql" or "shell")."""
    step = copy.deepcopy(KIND_STEPS[kind])
    how = "sql" if kind.startswith("sql") else "shell"
    check_wait = SQL_WAIT_CHECK if how == "sql" else SHELL_WAIT
    op_wait = SQL_WAIT_OP if how == "sql" else SHELL_WAIT
    if phase in ("done_when", "precheck", "verify"):
        step[phase] = [*step.get(phase, []), check_wait]
    elif phase == "action-before-effect":
        step["action"] = [op_wait, *step["action"]]
    elif phase == "action-after-effect":
        step["action"] = [*step["action"], op_wait]
    else:  # pragma: no cover
        raise AssertionError(phase)
    if phase.startswith("action") and kind in ("env_file", "file"):
        # The runbook rules want a rollback action for the shell wait op; it changed nothing.
        step["rollback"]["action"] = [NOOP]
    return step, how


def cases() -> Iterator[Any]:
    for kind in KIND_STEPS:
        for phase in PHASES:
            if kind == "sql-no-transaction" and phase in ("done_when", "precheck"):
                continue  # `transaction` only matters once the action runs: same as "sql"
            yield pytest.param(kind, phase, id=f"{kind}-{phase}")


# ------------------------------------------------------------------------------- harness


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root: exact bytes and mode (leftover temp files show up too)."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o7777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@dataclass
class Crash:
    url: str
    conn: psycopg.Connection  # the test's own connection: holds the advisory lock
    tmp: Path
    work: Path
    ctl: Path
    state: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def ready(self) -> Path:
        return self.ctl / "ready"

    @property
    def go(self) -> Path:
        return self.ctl / "go"

    def write(self, spec: dict[str, Any]) -> Path:
        path = self.tmp / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    def run_args(self, path: Path) -> list[str]:
        return [
            "run",
            str(path),
            "--yes",
            "--output",
            "json",
            "--database-url",
            self.url,
            "--var",
            f"workdir={self.work}",
            "--var",
            f"ready={self.ready}",
            "--var",
            f"go={self.go}",
        ]

    def rollback_args(self) -> list[str]:
        return ["rollback", "--yes", "--output", "json", "--database-url", self.url]

    def start(self, args: list[str], label: str) -> subprocess.Popen[bytes]:
        """The real CLI in a real process (output to files: a full pipe must not block it)."""
        out = (self.ctl / f"{label}.out").open("wb")
        err = (self.ctl / f"{label}.err").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dcx_runbook", *args], stdout=out, stderr=err
        )
        out.close()
        err.close()
        self.procs.append(proc)
        return proc

    def output(self, label: str) -> str:
        out = (self.ctl / f"{label}.out").read_text(errors="replace")
        err = (self.ctl / f"{label}.err").read_text(errors="replace")
        return f"--- stdout\n{out}\n--- stderr\n{err}"

    def hold_lock(self) -> None:
        self.conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))

    def release(self) -> None:
        """Let every wait point go: the go file, and the test's advisory lock."""
        self.go.touch()
        self.conn.execute("SELECT pg_advisory_unlock_all()")

    def backend_waiting(self) -> bool:
        row = self.conn.execute(
            """
            SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND NOT l.granted
               AND l.classid = 0 AND l.objid = %s AND l.objsubid = 1
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND a.application_name LIKE 'dcx-runbook/%%'
            """,
            (LOCK_KEY,),
        ).fetchone()
        return bool(row and row[0])

    def wait_at(self, proc: subprocess.Popen[bytes], how: str, label: str) -> None:
        """Until the process sits at the wait point (fails if it ends first)."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"{label} ended (exit {proc.returncode}) before reaching the wait point\n"
                    + self.output(label)
                )
            if self.ready.exists() if how == "shell" else self.backend_waiting():
                return
            if time.monotonic() > deadline:
                pytest.fail(f"{label} never reached the wait point\n" + self.output(label))
            time.sleep(0.02)

    def kill9(self, proc: subprocess.Popen[bytes], label: str) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=WAIT_TIMEOUT)
        assert proc.returncode == -signal.SIGKILL, self.output(label)
        self.release()  # right after the kill; orphaned shell waits exit too

    def record(self) -> dict[str, Any]:
        """The run's journal record, read as `rollback` reads it (whatever its storage format)."""
        ((_, data),) = list(Journal(self.state).records())
        assert isinstance(data, dict), data
        return data

    def statuses(self) -> dict[str, str]:
        return {s["id"]: s["status"] for s in self.record()["steps"]}

    def ledger(self) -> dict[str, str]:
        """The run's steps as the target's ledger has them (docs/ledger.md)."""
        rows = self.conn.execute(
            "SELECT step_id, status FROM dcx_runbook.steps WHERE run_id = %s",
            (self.record()["run_id"],),
        ).fetchall()
        return dict(rows)

    def table_exists(self, name: str) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def crash(
    database_url: str, db: psycopg.Connection, tmp_path: Path, _isolate: Path
) -> Iterator[Crash]:
    work, ctl = tmp_path / "work", tmp_path / "ctl"
    work.mkdir()
    ctl.mkdir()
    for name, content in INITIAL.items():
        if content is not None:
            (work / name).write_bytes(content[0])
            (work / name).chmod(content[1])
    harness = Crash(database_url, db, tmp_path, work, ctl, _isolate)
    try:
        yield harness
    finally:
        harness.go.touch()  # no orphaned wait survives a failed test
        for proc in harness.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def assert_restored(crash: Crash, schema_before: str, files_before: dict[str, Any]) -> None:
    assert schema_dump(crash.url) == schema_before
    assert tree(crash.work) == files_before
    left = {k: v for k, v in crash.statuses().items() if v in UNDO_STATUSES}
    assert not left, f"the journal still says these steps are applied: {left}"
    assert crash.ledger() == crash.statuses(), "the ledger and the journal disagree"


# ------------------------------------------------------------------------------- the matrix


def run_status() -> str:
    """The latest run's status as `dcx-runbook runs` shows it: piped, the status field."""
    listed = cli("runs")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.splitlines()[0].split("\t")[3]


@pytest.mark.parametrize(("kind", "phase"), list(cases()))
def test_kill_9_in_any_phase_of_any_kind_then_rollback_restores_everything(
    crash: Crash, kind: str, phase: str
) -> None:
    step, how = step_under_test(kind, phase)
    path = crash.write(runbook("crash", [copy.deepcopy(PRIOR), step, copy.deepcopy(LATER)]))
    schema_before, files_before = schema_dump(crash.url), tree(crash.work)
    assert set(files_before) == {k for k, v in INITIAL.items() if v is not None}

    if how == "sql":
        crash.hold_lock()
    proc = crash.start(crash.run_args(path), "run")
    crash.wait_at(proc, how, "run")
    assert run_status() == "running"  # its process holds the run's lock
    crash.kill9(proc, "run")
    assert run_status() == "running (its process is gone: rollback to finish)"
    row = json.loads(cli("runs", "-o", "json").stdout.splitlines()[0])
    assert (row["status"], row["process_gone"]) == ("running", True)  # typed, for machines
    # The ledger never says applied for a change that rolled back, nor lacks one that committed:
    # a step all in one transaction has its row written with its COMMIT (pending until then);
    # any other, its intent before its first effect, and its result with the next ledger write
    # (`prior`, in a transaction with its SQL, wrote `applied` with its COMMIT).
    only_sql = kind == "sql"
    intent = in_flight_phase(phase) and not only_sql
    assert crash.ledger() == {
        "prior": "applied",
        "under-test": "action_started" if intent else "pending",
        "later": "pending",
    }

    # The kill landed where this case says, and left changes behind to undo.
    in_flight = phase not in ("done_when", "precheck")
    assert crash.statuses() == {
        "prior": "applied",
        "under-test": "action_started" if in_flight else "pending",
        "later": "pending",
    }, crash.output("run")
    last = events((crash.ctl / "run.out").read_text())[-1]  # the wait's own event never came
    assert (last["step"], last["phase"]) == ("under-test", phase.split("-")[0]), last
    assert crash.table_exists("widgets")
    assert (crash.work / "prior.ini").read_bytes() != INITIAL["prior.ini"][0]  # type: ignore[index]
    effect_left = phase in ("action-after-effect", "verify") and kind != "sql"
    if effect_left:
        changed = {
            "sql-no-transaction": lambda: crash.table_exists("gadgets"),
            "shell": lambda: (crash.work / "marker").exists(),
            "env_file": lambda: (crash.work / "new.env").exists(),
            "file": lambda: b"level = 3" in (crash.work / "config.ini").read_bytes(),
        }[kind]
        assert changed(), f"the {kind} effect should exist when the process dies in {phase}"

    undo = cli(*crash.rollback_args(), timeout=120)

    assert undo.returncode == 0, undo.stdout + undo.stderr
    stream = events(undo.stdout)
    assert stream[-1]["status"] == "rolled_back", undo.stdout
    undone = [e["step"] for e in stream if e["event"] == "step_undone"]
    # A transaction the ledger shows never committed has nothing to undo (and is said so).
    assert undone == (["under-test", "prior"] if in_flight and not only_sql else ["prior"])
    if in_flight and only_sql:
        said = [e["message"] for e in stream if e["event"] == "log"]
        assert any("never committed" in m and "under-test" in m for m in said), said
    assert_restored(crash, schema_before, files_before)


def in_flight_phase(phase: str) -> bool:
    return phase not in ("done_when", "precheck")


# ------------------------------------------------------------------------------- kill a rollback

UNDO_VARIANTS = ("shell-wait-before-undo-op", "shell-wait-after-undo-op", "sql-wait-in-undo-tx")


def undo_runbook(variant: str) -> tuple[dict[str, Any], str, str]:
    """prior, gadgets (sql), marker (shell), env (env_file); one undo waits. Returns the runbook,
    how it waits, and the step whose undo is killed."""
    gadgets = sql_step(transaction=True)
    gadgets["id"] = "gadgets"
    marker = copy.deepcopy(SHELL_STEP)
    marker["id"] = "marker"
    env = copy.deepcopy(ENV_FILE_STEP)
    env["id"] = "env"
    if variant == "shell-wait-before-undo-op":
        marker["rollback"]["action"] = [SHELL_WAIT, *marker["rollback"]["action"]]
        how, killed = "shell", "marker"
    elif variant == "shell-wait-after-undo-op":
        marker["rollback"]["action"] = [*marker["rollback"]["action"], SHELL_WAIT]
        how, killed = "shell", "marker"
    else:  # the DROP runs in the undo's transaction, which the server rolls back at the kill
        gadgets["rollback"]["action"] = [*gadgets["rollback"]["action"], SQL_WAIT_OP]
        how, killed = "sql", "gadgets"
    steps = [copy.deepcopy(PRIOR), gadgets, marker, env]
    return runbook("crash-undo", steps), how, killed


@pytest.mark.parametrize("variant", UNDO_VARIANTS)
def test_kill_9_during_rollback_then_a_second_rollback_finishes(crash: Crash, variant: str) -> None:
    spec, how, killed = undo_runbook(variant)
    path = crash.write(spec)
    schema_before, files_before = schema_dump(crash.url), tree(crash.work)

    done = cli(*crash.run_args(path), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert crash.table_exists("gadgets") and (crash.work / "marker").exists()

    if how == "sql":
        crash.hold_lock()
    proc = crash.start(crash.rollback_args(), "rollback")
    crash.wait_at(proc, how, "rollback")
    crash.kill9(proc, "rollback")

    statuses = crash.statuses()
    assert statuses["env"] == "rolled_back", crash.output("rollback")
    assert statuses[killed] == "rollback_started", crash.output("rollback")
    assert statuses["prior"] == "applied"
    assert schema_dump(crash.url) != schema_before  # widgets at least is still there

    again = cli(*crash.rollback_args(), timeout=120)

    assert again.returncode == 0, again.stdout + again.stderr
    assert events(again.stdout)[-1]["status"] == "rolled_back", again.stdout
    assert_restored(crash, schema_before, files_before)


# ------------------------------------------------------------------------------- mixed steps


def mixed_step(variant: str) -> tuple[dict[str, Any], str]:
    """A step whose action has two effects of different kinds with the wait between them; and
    the path of the first effect's evidence ("" for a table)."""
    if variant == "sql-no-transaction-then-file":
        step = sql_step(transaction=False)
        step["done_when"] = [table_exists("gadgets"), *FILE_CHECKS]
        step["action"] = [*step["action"], SHELL_WAIT, *copy.deepcopy(FILE_STEP["action"])]
        step["verify"] = step["done_when"]
        step["rollback"]["restore_files"] = True
        return step, ""
    step = copy.deepcopy(SHELL_STEP)  # "shell-then-env_file"
    step["done_when"] = [marker_exists(), *ENV_CHECKS]
    step["action"] = [*step["action"], SHELL_WAIT, *copy.deepcopy(ENV_FILE_STEP["action"])]
    step["verify"] = step["done_when"]
    step["rollback"]["restore_files"] = True
    return step, "marker"


@pytest.mark.parametrize("variant", ["sql-no-transaction-then-file", "shell-then-env_file"])
def test_kill_9_between_two_effects_of_a_mixed_step_then_rollback_restores_everything(
    crash: Crash, variant: str
) -> None:
    """Only part of the step's goal exists when the process dies: its done_when checks (all of
    them) don't hold, yet the first effect is there and must be undone."""
    step, evidence = mixed_step(variant)
    path = crash.write(runbook("crash", [copy.deepcopy(PRIOR), step, copy.deepcopy(LATER)]))
    schema_before, files_before = schema_dump(crash.url), tree(crash.work)

    proc = crash.start(crash.run_args(path), "run")
    crash.wait_at(proc, "shell", "run")
    crash.kill9(proc, "run")

    assert crash.statuses()["under-test"] == "action_started", crash.output("run")
    first_effect = (crash.work / evidence).exists() if evidence else crash.table_exists("gadgets")
    assert first_effect

    undo = cli(*crash.rollback_args(), timeout=120)

    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert events(undo.stdout)[-1]["status"] == "rolled_back", undo.stdout
    assert_restored(crash, schema_before, files_before)


def test_kill_9_during_the_undo_of_a_mixed_step_after_its_files_were_restored(
    crash: Crash,
) -> None:
    """`prior` creates a table AND edits a file. Its undo restores the file first, then runs its
    rollback action; the rollback is killed in between. The second rollback must still drop the
    table, though `prior`'s done_when (table exists AND file edited) no longer holds."""
    spec, _, _ = undo_runbook("shell-wait-after-undo-op")
    prior = spec["steps"][0]
    marker = spec["steps"][2]
    marker["rollback"]["action"] = [a for a in marker["rollback"]["action"] if a != SHELL_WAIT]
    prior["rollback"]["action"] = [SHELL_WAIT, *prior["rollback"]["action"]]
    path = crash.write(spec)
    schema_before, files_before = schema_dump(crash.url), tree(crash.work)
    done = cli(*crash.run_args(path), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    proc = crash.start(crash.rollback_args(), "rollback")
    crash.wait_at(proc, "shell", "rollback")
    crash.kill9(proc, "rollback")

    assert crash.statuses() == {
        "prior": "rollback_started",
        "gadgets": "rolled_back",
        "marker": "rolled_back",
        "env": "rolled_back",
    }, crash.output("rollback")
    assert tree(crash.work) == files_before  # prior.ini is already restored...
    assert crash.table_exists("widgets")  # ...but widgets is still there

    again = cli(*crash.rollback_args(), timeout=120)

    assert again.returncode == 0, again.stdout + again.stderr
    assert events(again.stdout)[-1]["status"] == "rolled_back", again.stdout
    assert_restored(crash, schema_before, files_before)


# ------------------------------------------------------------------------------- the run lock

LONG_NAME = "emergency-fix-for-the-wallet-ledger-db"  # 38 characters: a valid runbook name


@pytest.mark.parametrize("name", ["crash", LONG_NAME], ids=["short-name", "long-name"])
def test_rollback_right_after_the_kill_waits_for_the_dead_runs_lock(
    crash: Crash, name: str
) -> None:
    """Until the server notices the dead client, its backend still holds the run lock; the
    rollback of that very run waits for it (whatever the runbook's name) instead of refusing."""
    step, how = step_under_test("sql", "precheck")
    path = crash.write(runbook(name, [copy.deepcopy(PRIOR), step, copy.deepcopy(LATER)]))
    schema_before, files_before = schema_dump(crash.url), tree(crash.work)
    crash.hold_lock()
    proc = crash.start(crash.run_args(path), "run")
    crash.wait_at(proc, how, "run")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=WAIT_TIMEOUT)

    # The test still holds the advisory lock: the dead run's backend stays blocked (and keeps
    # the run lock) until the server notices its client is gone.
    undo = cli(*crash.rollback_args(), timeout=120)
    crash.release()

    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert_restored(crash, schema_before, files_before)
