"""Hostile values reach SQL only as parameters or quoted identifiers, processes only as argv
elements, dotenv files only quoted (or refused); a corrupt journal is reported, never skipped."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dotenv import dotenv_values

from tests.conftest import RUNBOOKS, cli, schema_dump, snapshot
from tests.faults.support import WAITS, events, start, wait_until, waits_args

pytestmark = pytest.mark.slow  # hostile values through whole runs and rollbacks


INJECT = str(RUNBOOKS / "inject.yaml")
CORPUS = [
    "'; DROP TABLE wallet_transactions; --",
    'Robert"); DROP TABLE notes; --',
    "$(touch {tmp}/pwned)",
    "`touch {tmp}/pwned`",
    "a'b\"c \\1 \\\\ %s %(x)s",
    "; rm -rf {tmp}/canary #",
]
REFUSED_BY_ENV_FILE = ["line1\nDATABASE_URL=postgresql://evil/db", "${HOME}"]


@pytest.fixture
def target(db: psycopg.Connection, tmp_path: Path) -> Path:
    db.execute("CREATE TABLE wallet_transactions (id text)")
    db.execute("CREATE TABLE notes (body text)")
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.env").write_text("# app\nMODE=prod\n")
    (work / "page.txt").write_text("title\nplaceholder\nend\n")
    (tmp_path / "canary").write_text("alive")
    return work


def run_inject(url: str, dbname: str, work: Path, value: str):  # type: ignore[no-untyped-def]
    return cli(
        "run",
        INJECT,
        "--yes",
        "--output",
        "json",
        "--database-url",
        url,
        "--var",
        f"expected_database={dbname}",
        "--var",
        f"work={work}",
        "--var",
        f"value={value}",
    )


@pytest.mark.parametrize("template", CORPUS)
def test_hostile_values_change_nothing_they_should_not(
    database_url: str,
    dbname: str,
    target: Path,
    tmp_path: Path,
    db: psycopg.Connection,
    template: str,
) -> None:
    value = template.format(tmp=tmp_path)
    before = schema_dump(database_url), snapshot(target / "app.env", target / "page.txt")

    result = run_inject(database_url, dbname, target, value)

    assert result.returncode == 0, result.stdout + result.stderr
    assert db.execute("SELECT to_regclass('wallet_transactions') IS NOT NULL").fetchone() == (True,)
    assert db.execute("SELECT body FROM notes").fetchall() == [(value,)]
    assert db.execute(
        "SELECT count(*) FROM pg_class WHERE relname = %s", (value[:63],)
    ).fetchone() == (1,)
    assert (target / "out").read_text() == value
    assert dotenv_values(target / "app.env", interpolate=False)["HOSTILE"] == value
    assert (target / "page.txt").read_text() == f"title\n{value}\nend\n"
    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / "canary").read_text() == "alive"

    undo = cli("rollback", "--yes", "--database-url", database_url)
    assert undo.returncode == 0, undo.stderr
    assert (schema_dump(database_url), snapshot(target / "app.env", target / "page.txt")) == before
    assert db.execute("SELECT count(*) FROM notes").fetchone() == (0,)


@pytest.mark.parametrize("value", REFUSED_BY_ENV_FILE)
def test_env_file_refuses_values_it_cannot_write_safely(
    database_url: str, dbname: str, target: Path, value: str
) -> None:
    before = schema_dump(database_url), snapshot(target / "app.env", target / "page.txt")
    result = run_inject(database_url, dbname, target, value)
    assert result.returncode == 1, result.stdout + result.stderr
    unwind = next(e for e in events(result.stdout) if e["event"] == "unwind_started")
    assert unwind["step"] == "env-file"
    assert "refused" in unwind["message"] or "can't be written safely" in unwind["message"]
    assert (schema_dump(database_url), snapshot(target / "app.env", target / "page.txt")) == before


# --------------------------------------------------------------------------- secrets


SECRET = "tok-Wh1sp3r-Quiet"
PASSWORD = "pa55-Hunter2-word"


def test_secrets_never_reach_output_json_journal_or_logs(
    database_url: str, dbname: str, tmp_path: Path, _isolate: Path
) -> None:
    url = database_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    work = tmp_path / "work"
    work.mkdir()
    # The secret is in the pre-image too: the journal must keep it sealed, not in clear.
    (work / "app.env").write_text(f"APP_TOKEN={SECRET}\nMODE=prod\n")
    env = {"API_TOKEN": SECRET}
    outputs: list[str] = []

    def record(result) -> None:  # type: ignore[no-untyped-def]
        outputs.extend([result.stdout, result.stderr])

    args = waits_args(url, dbname, work, "--skip", "wait-sql")
    record(cli(*[a for a in args if a != "--yes"], "--dry-run", env=env))
    human = [a if a != "json" else "human" for a in args]
    record(cli(*human, "--dry-run", env=env))
    # An interrupted run that unwinds, in JSON and in human form.
    for form in (args, human):
        proc = start(*form, env=env)
        wait_until(lambda: (work / "ready").exists(), "the shell step")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        outputs.extend([out, err])
        (work / "ready").unlink()
    (work / "go").touch()
    ok = cli(*args, env=env)
    assert ok.returncode == 0, ok.stderr
    record(ok)
    run_id = events(ok.stdout)[-1]["detail"]["run_id"]
    record(cli("rollback", "--dry-run", "--database-url", url, env=env))
    record(cli("rollback", "--yes", "--database-url", url, env=env))
    record(cli("runs"))
    for fmt in ("text", "json", "markdown", "html"):  # the incident report, from the events too
        record(cli("log", run_id, "--format", fmt))
    record(
        cli(
            "run",
            WAITS,
            "--yes",
            "--database-url",
            url.replace(dbname, "nope"),
            "--var",
            "expected_database=nope",
            "--var",
            f"work={work}",
            env=env,
        )
    )

    assert (work / "app.env").read_text() == f"APP_TOKEN={SECRET}\nMODE=prod\n"  # restored exactly
    for text in outputs:
        assert SECRET not in text and PASSWORD not in text
    assert any("***" in text for text in outputs)
    files = [p for p in _isolate.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert SECRET.encode() not in data and PASSWORD.encode() not in data, path


# --------------------------------------------------------------------------- journal


def test_corrupt_journal_is_reported_and_never_silently_skipped(
    database_url: str, dbname: str, target: Path, _isolate: Path
) -> None:
    assert run_inject(database_url, dbname, target, "plain").returncode == 0
    record = next((_isolate / "runs").glob("*.json"))
    original = record.read_bytes()
    record.write_bytes(original[: len(original) // 2])  # a truncated write

    runs = cli("runs", "--output", "json")
    assert runs.returncode == 0
    assert json.loads(runs.stdout.splitlines()[0])["status"] == "unreadable"

    undo = cli("rollback", "--yes", "--database-url", database_url)
    assert undo.returncode == 3
    assert "unreadable" in undo.stderr and str(record) in undo.stderr
    assert "Traceback" not in undo.stderr
    log = cli("log", record.stem)
    assert log.returncode == 3 and "unreadable" in log.stderr
    assert record.read_bytes() == original[: len(original) // 2]  # left as it was, for inspection


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda d: d.pop("run_id"), "run_id: Field required"),
        (lambda d: d.update(steps=5), "steps: Input should be a valid list"),
        (lambda d: d["steps"][0].pop("status"), "steps.0.status: Field required"),
        (lambda d: d["steps"][0].update(status="done-ish"), "steps.0.status: Input should be"),
        (lambda d: d.update(runbook=None), "runbook: Input should be a valid dictionary"),
        (lambda d: d.update(operator="root"), "operator: Input should be a valid dictionary"),
        (lambda d: d.update(rollbacks={"status": "x"}), "rollbacks: Input should be a valid list"),
    ],
)
def test_a_record_of_the_wrong_shape_is_damaged_not_a_traceback(
    database_url: str,
    dbname: str,
    target: Path,
    _isolate: Path,
    damage: Callable[[dict[str, Any]], object],
    said: str,
) -> None:
    """Valid JSON, wrong shape (a hand edit, another tool): `runs`, `log` and `rollback` used to
    fail with KeyError or TypeError tracebacks."""
    assert run_inject(database_url, dbname, target, "plain").returncode == 0
    record = next((_isolate / "runs").glob("*.json"))
    data = json.loads(record.read_bytes())
    damage(data)
    record.write_text(json.dumps(data))
    before = record.read_bytes()

    runs = cli("runs", "--output", "json")
    assert runs.returncode == 0, runs.stderr
    assert json.loads(runs.stdout.splitlines()[0])["status"] == "unreadable"
    for done in (
        cli("rollback", "--yes", "--database-url", database_url),
        cli("log", record.stem),
    ):
        assert done.returncode == 3, done.stderr
        assert f"damaged ({said}" in done.stderr and "Traceback" not in done.stderr
    assert record.read_bytes() == before


@pytest.mark.parametrize("run_id", ["nope", "../x", ".hidden"])
def test_a_run_id_that_names_no_run_is_invalid_input(run_id: str, database_url: str) -> None:
    for done in (
        cli("log", run_id),
        cli("rollback", run_id, "--yes", "--database-url", database_url),
    ):
        assert done.returncode == 2, done.stderr
        assert f"no run {run_id!r}" in done.stderr


def test_a_journaled_runbook_that_no_longer_reads_back_is_a_clear_error(
    database_url: str, dbname: str, target: Path, _isolate: Path
) -> None:
    assert run_inject(database_url, dbname, target, "plain").returncode == 0
    record = next((_isolate / "runs").glob("*.json"))
    data = json.loads(record.read_text())
    data["runbook"]["spec"]["steps"][0]["rolback"] = {}  # edited by hand, or a future format
    record.write_text(json.dumps(data))
    undo = cli("rollback", "--yes", "--database-url", database_url)
    assert undo.returncode == 3, undo.stderr
    assert "can't be read back" in undo.stderr and "Traceback" not in undo.stderr


def test_a_state_directory_that_cant_be_read_is_an_error_not_an_empty_history(
    tmp_path: Path, database_url: str
) -> None:
    """It was a traceback (`runs`), and a directory glob can't read looks empty: `rollback`
    would have said "nothing to roll back" with a run still to undo in it."""
    unreadable = tmp_path / ("x" * 300)  # a name too long: unreadable even for root
    env = {"DCX_RUNBOOK_STATE_DIR": str(unreadable)}
    for done in (
        cli("runs", env=env),
        cli("rollback", "--yes", "--database-url", database_url, env=env),
    ):
        assert done.returncode == 3, done.stderr
        assert "can't read the state directory" in done.stderr
        assert "Traceback" not in done.stderr
