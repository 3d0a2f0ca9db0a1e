"""What the shell completes (`dcx-runbook --install-completion`): runbook names, a runbook's step
ids and run ids. Fast and quiet: the search path and the state directory are read, nothing is
validated (no pydantic, no database), and a problem completes nothing rather than failing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def runbook_names(incomplete: str, dirs: Sequence[Path] = ()) -> list[str]:
    from dcx_runbook.format.loader import discover

    try:
        return sorted(f.name for f in discover(dirs) if f.name.startswith(incomplete))
    except Exception:  # noqa: BLE001 - a completion never fails the shell
        return []


def step_ids(runbook: str | None, incomplete: str, dirs: Sequence[Path] = ()) -> list[str]:
    """The step ids of the runbook named on the command line so far, as its YAML lists them."""
    import yaml

    from dcx_runbook.format.loader import locate, read_runbook

    if not runbook:
        return []
    try:
        document = yaml.safe_load(read_runbook(locate(runbook, dirs)))
        steps = document.get("steps") or []
        ids = [s["id"] for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)]
    except Exception:  # noqa: BLE001 - a runbook that can't be read completes nothing
        return []
    return [i for i in ids if i.startswith(incomplete)]


def run_ids(incomplete: str) -> list[str]:
    """This machine's run ids and fleet run ids, newest first (their names sort by time)."""
    from dcx_runbook.state.journal import state_dir

    root = state_dir()
    found = [p.stem for d in ("runs", "fleets") for p in (root / d).glob("*.json")]
    return sorted((r for r in found if r.startswith(incomplete)), reverse=True)
