"""A demo's databases: its SQL fixtures loaded, and its state query's row read (read-only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dcx_runbook.demo.manifest import Manifest
from dcx_runbook.engine.rehearse import load_sql
from dcx_runbook.errors import InvalidInput


def load_fixtures(url: str, files: Sequence[Path]) -> None:
    for sql in files:
        try:
            load_sql(url, sql.read_text())
        except (InvalidInput, OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{sql}: {exc}") from None


def database_state(url: str, manifest: Manifest) -> str:
    """The state query's row as `column: value; ...`, read in a read-only transaction: showing
    the state must not change it."""
    import psycopg

    assert manifest.state_query is not None
    try:
        with psycopg.connect(url) as conn:
            conn.read_only = True
            cur = conn.execute(manifest.state_query.encode())
            row = cur.fetchone() if cur.description else None
            names = [column.name for column in cur.description or []]
            conn.rollback()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"{manifest.path}: state_query fails: {first}") from None
    if row is None:
        return "(no row)"
    return "; ".join(f"{name}: {value}" for name, value in zip(names, row, strict=True))
