"""A same-named database on another server is not the one a run changed (issue 12, item 4).
Staging and production often share a database name: rollback compared names only and ran its
DROP on the wrong server. A second PostgreSQL is started here from the local binaries."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dcx_runbook.target import sandbox
from tests.conftest import cli, write_runbook
from tests.trust.conftest import CREATE_T, events, exists, rollback, run

pytestmark = pytest.mark.slow  # a second server (initdb) for two of them


@pytest.fixture(scope="module")
def other_server() -> Iterator[sandbox.Server]:
    binaries = sandbox.find_binaries()
    if binaries is None:
        pytest.fail("the PostgreSQL binaries (initdb, pg_ctl) are needed for a second server")
    with sandbox.local_server(binaries) as srv:
        yield srv


@pytest.fixture
def twin(other_server: sandbox.Server, database_url: str, dbname: str) -> Iterator[str]:
    """A database of the same name on the other server, with a table t of its own."""
    with sandbox.scratch_database(other_server, name=dbname) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (42)")
        yield url


def system_identifier(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert row is not None
    return str(row[0])


def twin_rows(url: str) -> list[tuple[int]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT x FROM t").fetchall()


def test_rollback_refuses_a_same_named_database_on_another_server(
    tmp_path: Path, database_url: str, db: psycopg.Connection, twin: str
) -> None:
    path = str(write_runbook(tmp_path / "rb.yaml", "twins", [CREATE_T]))
    run_id = run(path, database_url)["detail"]["run_id"]
    here, there = system_identifier(database_url), system_identifier(twin)
    assert here != there

    for by_id in ([], [run_id]):
        code, stream, stderr = rollback(twin, *by_id)
        assert code == 4, stderr
        end = stream[-1]
        assert end["status"] == "refused"
        assert here in end["message"] and there in end["message"], end["message"]
        assert twin_rows(twin) == [(42,)]  # its own t: not dropped
        assert exists(db, "t")  # the run's change: still applied where it was made

    code, stream, stderr = rollback(database_url)
    assert code == 0, stderr
    assert not exists(db, "t")
    assert twin_rows(twin) == [(42,)]


def test_the_journal_records_the_server_identity(
    tmp_path: Path, database_url: str, dbname: str
) -> None:
    path = str(write_runbook(tmp_path / "rb.yaml", "identity", [CREATE_T]))
    end = run(path, database_url)
    shown = cli("log", end["detail"]["run_id"], "-f", "json")
    target = json.loads(shown.stdout)["target"]
    assert target["system_identifier"] == system_identifier(database_url)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None and target["database_oid"] == row[0]
    assert target["server_address"].endswith(":5432")


def test_a_runbook_pinned_to_one_cluster_refuses_any_other(
    tmp_path: Path, database_url: str, db: psycopg.Connection, twin: str
) -> None:
    path = write_runbook(tmp_path / "rb.yaml", "pinned", [CREATE_T])
    text = path.read_text().replace(
        "target:\n", f"target:\n  system_identifier: '{system_identifier(database_url)}'\n"
    )
    path.write_text(text)

    refused = cli("run", str(path), "--yes", "-o", "json", "--database-url", twin)
    assert refused.returncode == 4, refused.stderr + refused.stdout
    message = events(refused.stdout)[-1]["message"]
    assert "target.system_identifier" in message and system_identifier(twin) in message
    assert twin_rows(twin) == [(42,)]

    run(str(path), database_url)
    assert exists(db, "t")


@pytest.fixture(scope="module")
def cloned() -> Iterator[tuple[str, str]]:
    """Two servers from one data directory (a physical copy, as staging is often made from
    production): the same system identifier and database oids, another address."""
    binaries = sandbox.find_binaries()
    assert binaries is not None, "the PostgreSQL binaries are needed for cloned servers"
    roots = [Path(tempfile.mkdtemp(prefix="dcx-clone-")) for _ in range(2)]
    as_user = [sandbox._as_postgres_user(root) for root in roots][0]
    ports = [sandbox._free_port(), sandbox._free_port()]
    try:
        sandbox._run(sandbox._initdb(as_user, binaries, roots[0] / "data"))
        sandbox._run(sandbox._pg_ctl_start(as_user, binaries, roots[0], ports[0]))
        first = f"postgresql://postgres@127.0.0.1:{ports[0]}/postgres"
        with psycopg.connect(first, autocommit=True) as admin:
            admin.execute("CREATE DATABASE twin")
        stop = [str(binaries / "pg_ctl"), "-D", str(roots[0] / "data"), "-m", "fast", "-w", "stop"]
        sandbox._run([*as_user, *stop])
        sandbox._run([*as_user, "cp", "-a", str(roots[0] / "data"), str(roots[1] / "data")])
        for root, port in zip(roots, ports, strict=True):
            sandbox._run(sandbox._pg_ctl_start(as_user, binaries, root, port))
        yield (f"postgresql://postgres@127.0.0.1:{ports[0]}/twin",
               f"postgresql://postgres@127.0.0.1:{ports[1]}/twin")  # fmt: skip
    finally:
        for root in roots:
            sandbox._stop(as_user, binaries, root / "data")
            shutil.rmtree(root, ignore_errors=True)


def test_rollback_refuses_a_copy_of_the_server(tmp_path: Path, cloned: tuple[str, str]) -> None:
    """A copy has the same system identifier and oids: its address, as the server sees it, is
    what tells it apart. The rollback's DROP used to run on the copy."""
    production, staging = cloned
    assert system_identifier(production) == system_identifier(staging)
    with psycopg.connect(staging, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (7)")
    path = str(write_runbook(tmp_path / "rb.yaml", "clones", [CREATE_T]))
    run_id = run(path, production)["detail"]["run_id"]

    for by_id in ([], [run_id]):
        code, stream, stderr = rollback(staging, *by_id)
        assert code == 4, stderr
        assert "roll back through that address" in stream[-1]["message"] or (
            "no run recorded" in stream[-1]["message"]
        ), stream[-1]["message"]
        assert twin_rows(staging) == [(7,)]

    code, _, stderr = rollback(production)
    assert code == 0, stderr
    with psycopg.connect(production) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
