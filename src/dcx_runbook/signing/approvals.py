"""Signed approvals of a plan file, kept beside it in `PLAN.json.sig`, and whether enough count.

An approver signs a one-line message naming the plan's SHA-256, so a signature holds for those
exact bytes only: a plan changed after approval, or a signature copied from another plan, fails.
Several approvals collect in one file that travels with the plan. Checking trusts only what the
signatures prove: whose key made each one (read from the signature itself), whom the allowed
signers file names for that key, and that it signs this plan. The `key`, `user`, `host` and `at`
written beside each signature are for people reading the file, never for the verdict."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from dcx_runbook import clock
from dcx_runbook.errors import InvalidInput, Refused
from dcx_runbook.filesystem import write_atomic
from dcx_runbook.signing import ssh

FORMAT = 1

_FIELDS = ("signature", "key", "user", "host", "at")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_NEW_FILE_MODE = 0o644  # signatures are public: whoever runs the plan must read them


@dataclass(frozen=True)
class Approval:
    """One approval as recorded: the signing key's fingerprint, the OS user and host it was made
    as and on, and when."""

    key: str
    user: str
    host: str
    at: str


@dataclass(frozen=True)
class Verdict:
    """What the approvals of a plan amount to: the principals counted, each signature not counted
    with its key and why, and how many were required."""

    plan: Path
    approvers: list[str]
    rejected: list[tuple[str, str]]
    required: int
    plan_sha256: str

    def enforce(self) -> None:
        """Refuse the plan unless enough approvals counted."""
        if len(self.approvers) < self.required:
            raise Refused(self._shortfall())

    def _shortfall(self) -> str:
        if self.approvers:
            counted = "approved by " + ", ".join(self.approvers)
        elif self.rejected:
            counted = "none counted"
        else:
            counted = f"no approval in {sig_path(self.plan)}"
        count = f"{len(self.approvers)} of {self.required} required approvals"
        text = f"plan {self.plan}: {count} ({counted})"
        if self.rejected:
            text += "; not counted: " + "; ".join(f"{key}: {why}" for key, why in self.rejected)
        return text


@dataclass(frozen=True)
class _Record:
    """One entry of the .sig file: the signature, and what was noted beside it."""

    signature: str
    approval: Approval


@dataclass(frozen=True)
class _SigFile:
    plan_sha256: str
    records: list[_Record]


@dataclass(frozen=True)
class _Checking:
    """What every signature of one check is judged against."""

    message: bytes  # the plan as it is now
    claimed: bytes | None  # the plan the .sig file says it approves: tells "changed" apart
    allowed_signers: Path
    operator: set[str]


def signers_on_file(plan: Path) -> list[str]:
    """What the plan's .sig file says of each approval (key, user@host, when), unchecked: for a
    reviewer's view. Only `check` says which count."""
    found = _load(sig_path(plan))
    if found is None:
        return []
    return [
        f"{r.approval.key} ({r.approval.user}@{r.approval.host}, {r.approval.at})"
        for r in found.records
    ]


def message_for(plan_bytes: bytes) -> bytes:
    """What an approver signs: the plan's digest, so the signature binds exactly these bytes."""
    return _message_for_digest(_sha256(plan_bytes))


def sig_path(plan: Path) -> Path:
    """`PLAN.json` -> `PLAN.json.sig`, beside it."""
    return plan.with_name(plan.name + ".sig")


def approve(plan: Path, key: Path) -> Approval:
    """Sign `plan` with `key` and add the approval to its .sig file, replacing an earlier one by
    the same key. Approvals of another version of the plan are never dropped silently."""
    plan_bytes = _read_plan(plan)
    digest = _sha256(plan_bytes)
    path = sig_path(plan)
    existing = _load(path)
    if existing is not None and existing.plan_sha256 != digest:
        raise Refused(
            f"{path} holds approvals for another plan (sha256 {existing.plan_sha256[:12]}), "
            f"not for {plan} as it is now (sha256 {digest[:12]}); remove {path} to collect "
            "approvals for this plan"
        )
    signature = ssh.sign(message_for(plan_bytes), key)
    approval = Approval(
        key=ssh.key_of(signature), user=_os_user(), host=socket.gethostname(), at=clock.now()
    )
    records = existing.records if existing is not None else []
    kept = [r for r in records if ssh.key_of(r.signature) != approval.key]
    _save(path, _SigFile(digest, [*kept, _Record(signature, approval)]))
    return approval


def check(
    plan: Path,
    allowed_signers: Path,
    required: int,
    operator: set[str],
    plan_bytes: bytes | None = None,
) -> Verdict:
    """Judge every approval of `plan`: counted once per principal, when a key the allowed signers
    file knows signed this very plan and that key is not the operator's own. `plan_bytes`: the
    plan as the caller already read it (and will run it), so what is judged is what runs."""
    if required < 0:
        raise InvalidInput(f"the number of required approvals must be 0 or more, not {required}")
    plan_bytes = _read_plan(plan) if plan_bytes is None else plan_bytes
    digest = _sha256(plan_bytes)
    sig_file = _load(sig_path(plan))
    if required == 0 and not allowed_signers.exists():
        return Verdict(plan, [], [], required, digest)
    _require_readable(allowed_signers)
    checking = _Checking(
        message=message_for(plan_bytes),
        claimed=_message_for_digest(sig_file.plan_sha256) if sig_file is not None else None,
        allowed_signers=allowed_signers,
        operator=operator,
    )
    approvers: list[str] = []
    rejected: list[tuple[str, str]] = []
    counted: dict[str, str] = {}  # key fingerprint -> the principal it counted for
    for record in sig_file.records if sig_file is not None else []:
        key = ssh.key_of(record.signature)
        verified, reason = _judge(record.signature, key, checking)
        again = counted.get(key) or next((p for p in verified if p in approvers), None)
        if reason is None and again is not None:
            reason = f"{again} already counted (one approval per signer)"
        if reason is not None:
            rejected.append((key, reason))
            continue
        approvers.append(verified[0])
        counted[key] = verified[0]
    return Verdict(plan, approvers, rejected, required, digest)


def _judge(signature: str, key: str, checking: _Checking) -> tuple[list[str], str | None]:
    """The principals this signature verifies for, or why it cannot count."""
    allowed = checking.allowed_signers
    known = ssh.principals(signature, allowed)
    if not known:
        return [], f"unknown key {key}: no principal in {allowed} has it"
    verified = [p for p in known if ssh.verify(checking.message, signature, p, allowed)]
    if not verified:
        return [], _why_not_verified(signature, known, checking)
    if key in checking.operator:
        return [], f"the operator's own key {key} does not count"
    return verified, None


def _why_not_verified(signature: str, known: list[str], checking: _Checking) -> str:
    """Say which failure it is when that can be told: the namespace, or a signature that does hold
    for the plan the .sig file names but not for the plan as it is now."""
    allowed = checking.allowed_signers
    namespace = ssh.namespace_of(signature)
    if namespace != ssh.NAMESPACE:
        return f"signature is for namespace {namespace!r}, not {ssh.NAMESPACE!r}"
    claimed = checking.claimed
    if claimed not in (None, checking.message) and any(
        ssh.verify(claimed, signature, p, allowed) for p in known
    ):
        return "signature is not over this plan (it was changed, or it signs another plan)"
    return (
        f"signature does not verify over this plan for {', '.join(known)} with {allowed} "
        f"(it signs other bytes, is damaged, or {allowed} does not allow this key for "
        f"namespace {ssh.NAMESPACE!r} now)"
    )


def _message_for_digest(digest: str) -> bytes:
    return b"dcx-runbook plan sha256:" + digest.encode() + b"\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_plan(plan: Path) -> bytes:
    try:
        return plan.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"the plan file {plan} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read the plan file {plan}: {exc.strerror}") from None


def _require_readable(allowed_signers: Path) -> None:
    """A missing or unreadable allowed signers file would otherwise look like unknown keys."""
    try:
        with allowed_signers.open("rb"):
            pass
    except FileNotFoundError:
        raise InvalidInput(f"the allowed signers file {allowed_signers} does not exist") from None
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the allowed signers file {allowed_signers}: {exc.strerror}"
        ) from None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"uid {os.getuid()}"


def _load(path: Path) -> _SigFile | None:
    """The .sig file, or None when there is none yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInput(f"cannot read the approvals file {path}: {exc.strerror}") from None
    try:
        document = json.loads(data)
    except ValueError:
        raise _damaged(path, "it is not valid JSON") from None
    return _parse_document(path, document)


def _parse_document(path: Path, document: object) -> _SigFile:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _damaged(path, f"it is not a format {FORMAT} approvals file")
    digest, approvals = document.get("plan_sha256"), document.get("approvals")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise _damaged(path, "plan_sha256 is not a SHA-256 hex digest")
    if not isinstance(approvals, list):
        raise _damaged(path, "approvals is not a list")
    return _SigFile(digest, [_parse_record(path, i, item) for i, item in enumerate(approvals)])


def _parse_record(path: Path, index: int, item: object) -> _Record:
    if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in _FIELDS):
        raise _damaged(path, f"approvals[{index}] is not an object of strings {', '.join(_FIELDS)}")
    try:
        ssh.key_of(item["signature"])
    except InvalidInput as exc:
        raise _damaged(path, f"approvals[{index}]: {exc.message}") from None
    approval = Approval(key=item["key"], user=item["user"], host=item["host"], at=item["at"])
    return _Record(signature=item["signature"], approval=approval)


def _damaged(path: Path, what: str) -> InvalidInput:
    return InvalidInput(f"the approvals file {path} is damaged: {what}")


def _save(path: Path, sig_file: _SigFile) -> None:
    document = {
        "format": FORMAT,
        "plan_sha256": sig_file.plan_sha256,
        "approvals": [
            {
                "signature": record.signature,
                "key": record.approval.key,
                "user": record.approval.user,
                "host": record.approval.host,
                "at": record.approval.at,
            }
            for record in sig_file.records
        ],
    }
    data = (json.dumps(document, indent=2) + "\n").encode()
    write_atomic(path, data, _mode_for(path))


def _mode_for(path: Path) -> int:
    """An existing file keeps its mode; a new one is readable by all (not the temporary file's
    0600)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return _NEW_FILE_MODE
