"""What a run proved about a runbook's bytes is kept for the next run (caching.py): read back
only for the very same bytes, only from this user's own files, never written by a dry run; and
anything wrong with an entry is a miss, never an error nor another runbook run instead."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest

from dcx_runbook import caching
from dcx_runbook.errors import ExitCode
from tests.conftest import write_runbook
from tests.support.inprocess import Done, rollback, run


def step(table: str) -> dict[str, object]:
    return {
        "id": f"create-{table}",
        "title": f"create {table}",
        "done_when": [
            {"kind": "sql", "query": f"SELECT to_regclass('{table}') IS NOT NULL", "expect": True}
        ],
        "action": [{"kind": "sql", "sql": f"CREATE TABLE {table} (id int)"}],
        "verify": [
            {"kind": "sql", "query": f"SELECT to_regclass('{table}') IS NOT NULL", "expect": True}
        ],
        "rollback": {"action": [{"kind": "sql", "sql": f"DROP TABLE {table}"}]},
    }


def entries(state: Path, kind: str) -> list[Path]:
    return sorted((state / "cache" / kind).glob("*.pickle"))


def tables(db: psycopg.Connection) -> set[str]:
    rows = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_a_run_keeps_its_runbook_and_lint_and_the_next_run_reads_them(
    db: psycopg.Connection, database_url: str, tmp_path: Path, _isolate: Path
) -> None:
    path = write_runbook(tmp_path / "cached.yaml", "cached", [step("alpha")])

    first = run(path, yes=True, database_url=database_url)
    assert first.exit_code == ExitCode.OK, first.said()
    kept = [*entries(_isolate, "runbook"), *entries(_isolate, "lint")]
    assert len(kept) == 2
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in kept)
    assert rollback(yes=True, database_url=database_url).exit_code == ExitCode.OK
    assert len(entries(_isolate, "journaled")) == 1  # the rollback read the journal's copy once
    written = {p: p.stat().st_mtime_ns for p in _isolate.glob("cache/*/*.pickle")}

    again = run(path, yes=True, database_url=database_url)

    assert again.exit_code == ExitCode.OK, again.said()
    assert tables(db) == {"alpha"}
    # Read back, not written again: every entry as the first run and rollback left it.
    assert {p: p.stat().st_mtime_ns for p in _isolate.glob("cache/*/*.pickle")} == written

    def findings(done: Done) -> list[tuple[str, dict[str, object]]]:
        return [(e["message"], e["detail"]) for e in done.events if e["event"] == "finding"]

    assert findings(again) == findings(first) != []


def test_changed_bytes_are_validated_again(
    database_url: str, tmp_path: Path, _isolate: Path
) -> None:
    path = write_runbook(tmp_path / "cached.yaml", "cached", [step("alpha")])
    assert run(path, yes=True, database_url=database_url).exit_code == ExitCode.OK
    path.write_text(path.read_text().replace("steps:", "stepz:"))

    broken = run(path, yes=True, database_url=database_url)

    assert broken.exit_code == ExitCode.INVALID
    assert "stepz" in broken.said()


def test_a_dry_run_reads_but_writes_no_entry(
    database_url: str, tmp_path: Path, _isolate: Path
) -> None:
    path = write_runbook(tmp_path / "cached.yaml", "cached", [step("alpha")])

    preview = run(path, dry_run=True, database_url=database_url)

    assert preview.exit_code == ExitCode.OK, preview.said()
    assert not (_isolate / "cache").exists()


def swap_entries(state: Path, tmp_path: Path, database_url: str) -> tuple[Path, Path]:
    """Runbook `beta`'s cache entry made to hold runbook `alpha`'s validated model: what a
    stranger who could write there would plant."""
    alpha = write_runbook(tmp_path / "alpha.yaml", "alpha", [step("alpha")])
    assert run(alpha, yes=True, database_url=database_url).exit_code == ExitCode.OK
    (alpha_entry,) = entries(state, "runbook")
    shutil.move(alpha_entry, tmp_path / "alpha.pickle")
    beta = write_runbook(tmp_path / "beta.yaml", "beta", [step("beta")])
    assert run(beta, yes=True, database_url=database_url).exit_code == ExitCode.OK
    (beta_entry,) = entries(state, "runbook")
    shutil.copyfile(tmp_path / "alpha.pickle", beta_entry)
    return beta, beta_entry


def test_an_entry_that_others_could_write_is_never_read(
    db: psycopg.Connection, database_url: str, tmp_path: Path, _isolate: Path
) -> None:
    beta, planted = swap_entries(_isolate, tmp_path, database_url)
    assert rollback(yes=True, database_url=database_url).exit_code == ExitCode.OK
    assert tables(db) == {"alpha"}
    os.chmod(planted, 0o666)

    again = run(beta, yes=True, database_url=database_url)

    assert again.exit_code == ExitCode.OK, again.said()
    assert tables(db) == {"alpha", "beta"}  # beta's own steps, from its file
    assert again.events[0]["detail"]["runbook"] == "beta"


def test_this_users_own_entry_is_trusted_which_is_why_the_check_above_matters(
    db: psycopg.Connection, database_url: str, tmp_path: Path, _isolate: Path
) -> None:
    beta, _ = swap_entries(_isolate, tmp_path, database_url)
    assert rollback(yes=True, database_url=database_url).exit_code == ExitCode.OK

    planted = run(beta, yes=True, database_url=database_url)

    assert planted.events[0]["detail"]["runbook"] == "alpha"


@pytest.mark.parametrize("damage", [b"", b"\x80\x04not a pickle", b"garbage"])
def test_a_damaged_entry_is_a_miss_and_is_replaced(
    database_url: str, tmp_path: Path, _isolate: Path, damage: bytes
) -> None:
    path = write_runbook(tmp_path / "cached.yaml", "cached", [step("alpha")])
    assert run(path, yes=True, database_url=database_url).exit_code == ExitCode.OK
    assert rollback(yes=True, database_url=database_url).exit_code == ExitCode.OK
    (entry,) = entries(_isolate, "runbook")
    entry.write_bytes(damage)

    again = run(path, yes=True, database_url=database_url)

    assert again.exit_code == ExitCode.OK, again.said()
    assert entry.read_bytes() != damage  # validated again, and kept anew


def test_the_cache_can_be_turned_off(
    database_url: str, tmp_path: Path, _isolate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCX_RUNBOOK_CACHE_DIR", "off")
    path = write_runbook(tmp_path / "cached.yaml", "cached", [step("alpha")])

    assert run(path, yes=True, database_url=database_url).exit_code == ExitCode.OK

    assert caching.cache_dir() is None
    assert not (_isolate / "cache").exists()
