"""`status --targets`: every target's truth at once, read from its ledger and this machine's
journal (engine/status.py for each, in threads: the work is waiting on the servers). Read-only;
a target that can't be reached is a row saying why, never a reason to stop."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from dcx_runbook.engine.resolving import resolver
from dcx_runbook.engine.status import status
from dcx_runbook.errors import RunbookError
from dcx_runbook.fleet.plan import Planned
from dcx_runbook.secrets import Masker
from dcx_runbook.state.journal import Journal

MAX_THREADS = 16


def targets_status(
    planned: Sequence[Planned],
    schema: str | None,
    journal: Journal,
    var: Sequence[str] = (),
    env_file: Path | None = None,
) -> list[dict[str, Any]]:
    """One row per target, in the file's order."""

    def one(target: Planned) -> dict[str, Any]:
        row: dict[str, Any] = {"target": target.name, "expected_database": target.spec.database}
        try:
            found = status(target.url, schema, journal, resolver(var, env_file, target.url))
        except (psycopg.Error, RunbookError) as exc:
            said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return {**row, "error": Masker([target.url])(said)}
        row.update({k: v for k, v in found.as_dict().items() if k != "target"})
        row["server"] = found.target  # the database and server, in words
        database = found.identity.get("database")
        if database != target.spec.database:
            row["notes"] = [
                *row.get("notes", []),
                f"connected to database {database}, but the targets file says "
                f"{target.spec.database}",
            ]
        return row

    if not planned:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(planned))) as pool:
        return list(pool.map(one, planned))
