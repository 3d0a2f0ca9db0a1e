"""OpenSSH signatures (`ssh-keygen -Y`) and just enough of the SSHSIG format to name the signer.

Signing and verifying are left to the real `ssh-keygen`: it reads the operators' keys (files,
ssh-agent, security keys) and the allowed signers file exactly as OpenSSH documents them, so
nothing here re-implements cryptography. The signature's own bytes are parsed only to learn which
public key made it: that fingerprint, not anything written beside the signature, decides whose
approval it is."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from dcx_runbook.errors import InvalidInput, Refused

NAMESPACE = "dcx-runbook"

_MAGIC = b"SSHSIG"
_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_END = "-----END SSH SIGNATURE-----"
_AGENT_TIMEOUT = 10.0  # seconds: an unresponsive agent must not hang a run


class _SshSig(NamedTuple):
    """The fields of an SSHSIG blob this module needs."""

    public_key: bytes
    namespace: str


def sign(message: bytes, key: Path) -> str:
    """The armored signature of `message` by `key` (a private key file, or the `.pub` of a key
    held in ssh-agent). Not detached from the terminal: a passphrase-protected key may ask for
    its passphrase there, which is what an interactive approval wants."""
    if not key.exists():
        raise InvalidInput(f"the signing key {key} does not exist")
    done = _ssh_keygen(["-Y", "sign", "-f", str(key), "-n", NAMESPACE], message)
    if done.returncode != 0:
        raise Refused(f"ssh-keygen could not sign with {key}: {_last_line(done.stderr)}")
    return done.stdout.decode()


def key_of(signature: str) -> str:
    """The fingerprint (`SHA256:...`, as `ssh-keygen -l` prints it) of the key that made
    `signature`."""
    return _fingerprint(_parse(signature).public_key)


def namespace_of(signature: str) -> str:
    """The namespace `signature` was made for (ours is `NAMESPACE`)."""
    return _parse(signature).namespace


def fingerprint_of_public_line(line: str) -> str | None:
    """The fingerprint of an OpenSSH public key line (`ssh-ed25519 AAAA... comment`); None when
    the line is not one (a comment, `ssh-add -L` saying the agent is empty)."""
    parts = line.split()
    if len(parts) < 2:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
        key_type, _ = _string_at(blob, 0)
    except (binascii.Error, ValueError, InvalidInput):
        return None
    return _fingerprint(blob) if key_type == parts[0].encode() else None


def operator_keys(home: Path | None = None) -> set[str]:
    """Fingerprints of the keys the person running this process holds: every `~/.ssh/*.pub` and,
    with an agent, what it offers. The operator of a plan cannot also be its approver."""
    ssh_dir = (home if home is not None else Path.home()) / ".ssh"
    lines: list[str] = []
    for pub in sorted(ssh_dir.glob("*.pub")):
        try:
            lines += pub.read_text(errors="replace").splitlines()
        except OSError:
            continue  # unreadable: it proves nothing either way
    lines += _agent_lines()
    return {fp for line in lines if (fp := fingerprint_of_public_line(line)) is not None}


def principals(signature: str, allowed_signers: Path) -> list[str]:
    """The principals `allowed_signers` lists for the key that made `signature`; [] when none."""
    with _signature_file(signature) as sig_file:
        args = ["-Y", "find-principals", "-s", str(sig_file), "-f", str(allowed_signers)]
        done = _ssh_keygen(args, b"")
    if done.returncode != 0:
        return []
    return [line.strip() for line in done.stdout.decode().splitlines() if line.strip()]


def verify(message: bytes, signature: str, principal: str, allowed_signers: Path) -> bool:
    """Whether `signature` is `principal`'s, per `allowed_signers`, over exactly `message` and for
    our namespace."""
    with _signature_file(signature) as sig_file:
        args = ["-Y", "verify", "-f", str(allowed_signers), "-I", principal, "-n", NAMESPACE]
        done = _ssh_keygen([*args, "-s", str(sig_file)], message)
    return done.returncode == 0


def _ssh_keygen(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    program = shutil.which("ssh-keygen")
    if program is None:
        raise Refused(
            "ssh-keygen (OpenSSH) is not on PATH; it is needed to sign and check approvals"
        )
    return subprocess.run([program, *args], input=stdin, capture_output=True, check=False)


def _agent_lines() -> list[str]:
    """`ssh-add -L`, when an agent is there to ask; nothing when asking fails."""
    program = shutil.which("ssh-add")
    if not os.environ.get("SSH_AUTH_SOCK") or program is None:
        return []
    try:
        done = subprocess.run(
            [program, "-L"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_AGENT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.decode(errors="replace").splitlines() if done.returncode == 0 else []


@contextmanager
def _signature_file(signature: str) -> Iterator[Path]:
    """ssh-keygen reads a signature only from a file: a private one, gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="dcx-runbook-sig-") as directory:
        path = Path(directory) / "approval.sig"
        path.write_text(signature)
        yield path


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    said = [line for line in lines if line]
    return said[-1] if said else "it said nothing"


def _fingerprint(public_key_blob: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(public_key_blob).digest()).decode()
    return "SHA256:" + digest.rstrip("=")


def _parse(signature: str) -> _SshSig:
    """SSHSIG: magic, uint32 version, then the strings publickey, namespace, reserved,
    hash_algorithm, signature (each a uint32 big-endian length and its bytes)."""
    blob = _dearmor(signature)
    if not blob.startswith(_MAGIC):
        raise InvalidInput("the signature is not an SSH signature (no SSHSIG magic)")
    offset = len(_MAGIC) + 4  # the version: ssh-keygen checks it when verifying
    fields: list[bytes] = []
    for _ in range(5):
        field, offset = _string_at(blob, offset)
        fields.append(field)
    try:
        namespace = fields[1].decode()
    except UnicodeDecodeError:
        raise InvalidInput("the SSH signature's namespace is not text") from None
    return _SshSig(public_key=fields[0], namespace=namespace)


def _dearmor(signature: str) -> bytes:
    lines = [line.strip() for line in signature.strip().splitlines()]
    if len(lines) < 3 or lines[0] != _BEGIN or lines[-1] != _END:
        raise InvalidInput(f"the signature is not armored between {_BEGIN} and {_END}")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error:
        raise InvalidInput("the SSH signature's body is not valid base64") from None


def _string_at(blob: bytes, offset: int) -> tuple[bytes, int]:
    """The SSH wire-format string at `offset`, and the offset after it."""
    if offset + 4 > len(blob):
        raise InvalidInput("the SSH signature is truncated")
    (length,) = struct.unpack_from(">I", blob, offset)
    end = offset + 4 + length
    if end > len(blob):
        raise InvalidInput("the SSH signature is truncated")
    return blob[offset + 4 : end], end
