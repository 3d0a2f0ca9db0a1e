"""The journal's records, typed: what a run record, a step entry, a file pre-image and a rollback
entry hold (docs/journal-format.md), the one place that builds them, and the one check of their
shape on read. Records stay plain JSON-ready dicts (they are appended to the log as they change);
these types are what mypy and the reader hold them to."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, NotRequired

# typing_extensions' TypedDict: pydantic validates typing's only from Python 3.12 on.
from typing_extensions import TypedDict

from dcx_runbook.clock import now
from dcx_runbook.statuses import RunStatus, StepStatus

if TYPE_CHECKING:
    from pydantic import TypeAdapter

FORMAT = 2  # docs/journal-format.md: what a reader of each version must accept


class Operator(TypedDict):
    user: str
    host: str


class FileEntry(TypedDict):
    """A file a step wrote: its pre-image (sealed) and every content the step meant to leave."""

    existed: bool
    mode: int | None
    sha256: str | None
    sealed: str | None
    planned: list[str]  # the sha256 of each content about to be written


class StepEntry(TypedDict):
    id: str
    status: StepStatus
    title: NotRequired[str]
    started_at: NotRequired[str]
    finished_at: NotRequired[str]
    captured: NotRequired[dict[str, Any]]
    files: NotRequired[dict[str, FileEntry]]
    error: NotRequired[str]
    effects_started: NotRequired[bool]  # something no transaction takes back has started
    commit_in_doubt: NotRequired[str | None]  # the xid whose COMMIT got no answer
    processes: NotRequired[list[dict[str, Any]]]  # {pgid, host} of each process group started
    host: NotRequired[str | None]  # adopted from the ledger: the machine that acted
    elsewhere: NotRequired[list[str]]  # adopted: files it touched there (pre-images not here)
    # A person's answers (a manual step, --step): phase, answer, via, user, host, at (format 2)
    answers: NotRequired[list[dict[str, Any]]]


class RollbackEntry(TypedDict):
    started_at: str
    operator: Operator
    pid: int
    status: RunStatus
    finished_at: NotRequired[str]
    exit_code: NotRequired[int]
    message: NotRequired[str]
    reason: NotRequired[str | None]
    skipped_steps: NotRequired[list[str]]  # left for their own machine (--skip-other-hosts)


class RunbookRef(TypedDict):
    name: str
    title: NotRequired[str]
    path: NotRequired[str]
    sha256: NotRequired[str]
    spec: NotRequired[dict[str, Any]]  # the runbook as run: rollback needs nothing else


class RunData(TypedDict):
    format: int
    run_id: str
    runbook: RunbookRef
    steps: list[StepEntry]
    order: NotRequired[int]  # the state directory's sequence (absent before it existed)
    mode: NotRequired[str]
    status: NotRequired[RunStatus]
    dry_run: NotRequired[bool]
    vars: NotRequired[dict[str, Any]]
    captured: NotRequired[dict[str, Any]]
    secret_vars: NotRequired[list[str]]
    target: NotRequired[dict[str, Any] | None]  # masked URL, host, identity (see target/)
    operator: NotRequired[Operator | None]
    pid: NotRequired[int]
    started_at: NotRequired[str]
    finished_at: NotRequired[str | None]
    exit_code: NotRequired[int | None]
    message: NotRequired[str]
    skipped: NotRequired[list[str]]
    rollbacks: NotRequired[list[RollbackEntry]]
    # The target's ledger this run writes to ({"schema": None, "off": why} when none).
    ledger: NotRequired[dict[str, Any] | None]
    reason: NotRequired[str | None]  # --reason
    # The plan it ran, its approvers, or break-glass and why (docs/approvals.md; format 2)
    authority: NotRequired[dict[str, Any] | None]
    confirmed: NotRequired[dict[str, Any]]  # via (--yes or prompt), user, host
    lint: NotRequired[list[dict[str, Any]]]  # the lint's findings, waived ones with their reasons
    # A run this state directory learnt of from the target's ledger: run elsewhere.
    adopted: NotRequired[dict[str, Any] | None]
    seq: NotRequired[int]
    updated_at: NotRequired[str]


# ------------------------------------------------------------------------------ building


def operator() -> Operator:
    """Who runs this process, as the OS says: user and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname()}


def new_run(
    run_id: str,
    runbook: RunbookRef,
    steps: Iterable[tuple[str, str]],
    *,
    public_vars: dict[str, Any],
    secret_vars: list[str],
    captured: dict[str, Any],
    target: dict[str, Any],
    skipped: list[str],
    ledger: dict[str, Any] | None = None,
    reason: str | None = None,
) -> RunData:
    """A run's record as it starts: every step pending, the run running, by this process. Given
    values are journaled as they are: the caller masks them."""
    return {
        "format": FORMAT,
        "run_id": run_id,
        "runbook": runbook,
        "mode": "run",
        "status": RunStatus.RUNNING,
        "dry_run": False,
        "operator": operator(),
        "pid": os.getpid(),
        "started_at": now(),
        "finished_at": None,
        "exit_code": None,
        "vars": public_vars,
        "captured": captured,
        "secret_vars": secret_vars,
        "target": target,
        "skipped": skipped,
        "ledger": ledger,
        "reason": reason,
        "steps": [
            {"id": step_id, "title": title, "status": StepStatus.PENDING}
            for step_id, title in steps
        ],
    }


def new_rollback(reason: str | None = None, skipped: list[str] | None = None) -> RollbackEntry:
    """A rollback's entry under the run's `rollbacks`, as it starts."""
    entry: RollbackEntry = {
        "started_at": now(),
        "operator": operator(),
        "pid": os.getpid(),
        "status": RunStatus.RUNNING,
    }
    if reason:
        entry["reason"] = reason
    if skipped:
        entry["skipped_steps"] = skipped
    return entry


def new_file(existed: bool, mode: int | None, sha256: str | None, sealed: str | None) -> FileEntry:
    return {"existed": existed, "mode": mode, "sha256": sha256, "sealed": sealed, "planned": []}


# ------------------------------------------------------------------------------ reading


@cache
def _adapter() -> TypeAdapter[RunData]:
    from pydantic import TypeAdapter

    return TypeAdapter(RunData)


def shape_problem(data: Mapping[str, Any]) -> str | None:
    """What of a record's shape `runs`, `log` and `rollback` rely on is wrong, if anything: its
    first problem, located (`steps.2.status: Input should be ...`)."""
    from pydantic import ValidationError

    try:
        _adapter().validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return None


def gone(entry: Mapping[str, Any]) -> bool:
    """Whether the process that wrote `entry` (a run record, or one of its rollbacks) is known to
    have ended: same host, and no process with its pid. A process still there, or on another
    machine, is not called gone (a reused pid errs on the side of "still running")."""
    pid, host = entry.get("pid"), (entry.get("operator") or {}).get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: it exists
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has ended but not been waited for yet (its parent died too, and whoever
    inherits it has not reaped it): gone, for all it can still do."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"
