"""Signed approvals of a plan, with the real ssh-keygen: who counts, who does not and why, and
the .sig file refusing to lose or mix approvals."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dcx_runbook.errors import InvalidInput, Refused
from dcx_runbook.signing import approvals, ssh
from dcx_runbook.signing.approvals import approve, check, sig_path
from dcx_runbook.signing.ssh import operator_keys

pytestmark = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen"
)

ALICE, BOB = "alice@example.com", "bob@example.com"
NOT_OVER_THIS_PLAN = "signature is not over this plan (it was changed, or it signs another plan)"


@dataclass(frozen=True)
class Keys:
    """Key pairs made once for the module; `allowed` lists alice and bob, not mallory."""

    directory: Path
    allowed: Path

    def private(self, name: str) -> Path:
        return self.directory / name

    def public(self, name: str) -> Path:
        return self.directory / f"{name}.pub"

    def public_line(self, name: str) -> str:
        return self.public(name).read_text().strip()

    def fingerprint(self, name: str) -> str:
        """As `ssh-keygen -l` prints it: `256 SHA256:... comment (ED25519)`."""
        done = subprocess.run(
            ["ssh-keygen", "-lf", str(self.public(name))],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.split()[1]


def allowed_line(principal: str, public_line: str) -> str:
    return f'{principal} namespaces="dcx-runbook" {public_line}\n'


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("keys")
    for name in ("alice", "bob", "mallory", "alice2"):
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                str(directory / name),
                "-C",
                name,
            ],
            check=True,
        )
    made = Keys(directory, directory / "allowed_signers")
    made.allowed.write_text(
        allowed_line(ALICE, made.public_line("alice")) + allowed_line(BOB, made.public_line("bob"))
    )
    return made


def write_plan(path: Path, content: str = "migrate") -> Path:
    path.write_bytes(json.dumps({"runbook": content, "steps": [1, 2, 3]}).encode() + b"\n")
    return path


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    return write_plan(tmp_path / "PLAN.json")


def test_a_valid_signature_from_an_allowed_signer_counts(keys: Keys, plan: Path) -> None:
    approval = approve(plan, keys.private("alice"))

    verdict = check(plan, keys.allowed, 1, set())

    assert verdict.approvers == [ALICE]
    assert verdict.rejected == []
    assert verdict.plan_sha256 == hashlib.sha256(plan.read_bytes()).hexdigest()
    verdict.enforce()
    assert approval.key == keys.fingerprint("alice")
    document = json.loads(sig_path(plan).read_text())
    assert sig_path(plan).name == "PLAN.json.sig"
    assert document["format"] == 1
    assert document["plan_sha256"] == verdict.plan_sha256
    [entry] = document["approvals"]
    assert set(entry) == {"signature", "key", "user", "host", "at"}
    assert entry["key"] == approval.key
    assert entry["signature"].startswith("-----BEGIN SSH SIGNATURE-----")


def test_the_operators_own_signature_does_not_count(
    keys: Keys, plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(keys.public("alice"), home / ".ssh" / "id_ed25519.pub")
    operator = operator_keys(home)
    assert operator == {keys.fingerprint("alice")}
    approve(plan, keys.private("alice"))

    verdict = check(plan, keys.allowed, 1, operator)

    alice = keys.fingerprint("alice")
    assert verdict.approvers == []
    assert verdict.rejected == [(alice, f"the operator's own key {alice} does not count")]
    with pytest.raises(Refused) as refused:
        verdict.enforce()
    assert refused.value.exit_code == 4
    assert str(refused.value) == (
        f"plan {plan}: 0 of 1 required approvals (none counted); "
        f"not counted: {alice}: the operator's own key {alice} does not count"
    )


def test_a_signature_over_another_plan_does_not_count(keys: Keys, tmp_path: Path) -> None:
    plan_a = write_plan(tmp_path / "A.json", "first")
    plan_b = write_plan(tmp_path / "B.json", "second")
    approve(plan_a, keys.private("alice"))
    shutil.copy(sig_path(plan_a), sig_path(plan_b))

    verdict = check(plan_b, keys.allowed, 1, set())

    assert verdict.approvers == []
    assert verdict.rejected == [(keys.fingerprint("alice"), NOT_OVER_THIS_PLAN)]
    with pytest.raises(Refused) as refused:
        verdict.enforce()
    assert refused.value.exit_code == 4
    assert NOT_OVER_THIS_PLAN in str(refused.value)


def test_another_plans_signature_under_this_plans_hash_does_not_verify(
    keys: Keys, tmp_path: Path
) -> None:
    """The .sig file claims this plan, the signature is another's: it can't be told apart from a
    damaged signature, and the reason says so."""
    plan_a = write_plan(tmp_path / "A.json", "first")
    plan_b = write_plan(tmp_path / "B.json", "second")
    approve(plan_a, keys.private("alice"))
    document = json.loads(sig_path(plan_a).read_text())
    document["plan_sha256"] = hashlib.sha256(plan_b.read_bytes()).hexdigest()
    sig_path(plan_b).write_text(json.dumps(document))

    verdict = check(plan_b, keys.allowed, 1, set())

    assert verdict.approvers == []
    [(key, reason)] = verdict.rejected
    assert key == keys.fingerprint("alice")
    assert reason.startswith(f"signature does not verify over this plan for {ALICE} with ")


def test_an_unknown_key_does_not_count(keys: Keys, plan: Path) -> None:
    approve(plan, keys.private("mallory"))

    verdict = check(plan, keys.allowed, 1, set())

    mallory = keys.fingerprint("mallory")
    assert verdict.approvers == []
    assert verdict.rejected == [
        (mallory, f"unknown key {mallory}: no principal in {keys.allowed} has it")
    ]
    with pytest.raises(Refused) as refused:
        verdict.enforce()
    assert refused.value.exit_code == 4
    assert f"unknown key {mallory}" in str(refused.value)


def test_a_plan_changed_after_approval_is_not_approved(keys: Keys, plan: Path) -> None:
    approve(plan, keys.private("alice"))
    approved_sha256 = hashlib.sha256(plan.read_bytes()).hexdigest()
    data = bytearray(plan.read_bytes())
    data[data.index(b"1")] = ord("9")
    plan.write_bytes(bytes(data))

    verdict = check(plan, keys.allowed, 1, set())

    assert verdict.plan_sha256 != approved_sha256
    assert verdict.approvers == []
    assert verdict.rejected == [(keys.fingerprint("alice"), NOT_OVER_THIS_PLAN)]
    with pytest.raises(Refused) as refused:
        verdict.enforce()
    assert refused.value.exit_code == 4


def test_two_signers_count_and_the_same_signer_counts_once(keys: Keys, plan: Path) -> None:
    approve(plan, keys.private("alice"))
    approve(plan, keys.private("bob"))
    approve(plan, keys.private("alice"))  # again: replaces her first approval

    assert len(json.loads(sig_path(plan).read_text())["approvals"]) == 2
    verdict = check(plan, keys.allowed, 2, set())
    assert verdict.approvers == [BOB, ALICE]
    assert verdict.rejected == []
    verdict.enforce()

    with pytest.raises(Refused) as refused:
        check(plan, keys.allowed, 3, set()).enforce()
    assert refused.value.exit_code == 4
    assert str(refused.value) == (
        f"plan {plan}: 2 of 3 required approvals (approved by {BOB}, {ALICE})"
    )


def test_a_copied_approval_and_a_second_key_of_one_principal_count_once(
    keys: Keys, plan: Path, tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(keys.allowed.read_text() + allowed_line(ALICE, keys.public_line("alice2")))
    approve(plan, keys.private("alice"))
    approve(plan, keys.private("alice2"))
    document = json.loads(sig_path(plan).read_text())
    document["approvals"].append(document["approvals"][0])  # edited in by hand
    sig_path(plan).write_text(json.dumps(document))

    verdict = check(plan, allowed, 1, set())

    assert verdict.approvers == [ALICE]
    again = f"{ALICE} already counted (one approval per signer)"
    assert verdict.rejected == [
        (keys.fingerprint("alice2"), again),
        (keys.fingerprint("alice"), again),
    ]
    with pytest.raises(Refused):
        check(plan, allowed, 2, set()).enforce()


def test_approve_refuses_to_mix_approvals_of_another_plan(keys: Keys, plan: Path) -> None:
    approve(plan, keys.private("alice"))
    before = sig_path(plan).read_bytes()
    write_plan(plan, "regenerated")

    with pytest.raises(Refused) as refused:
        approve(plan, keys.private("bob"))

    assert refused.value.exit_code == 4
    assert f"{sig_path(plan)} holds approvals for another plan" in str(refused.value)
    assert f"remove {sig_path(plan)}" in str(refused.value)
    assert sig_path(plan).read_bytes() == before


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("{not json", "it is not valid JSON"),
        ("[]", "it is not a format 1 approvals file"),
        ('{"format": 1, "plan_sha256": "abc", "approvals": []}', "plan_sha256 is not"),
        ('{"format": 1, "plan_sha256": "' + "0" * 64 + '", "approvals": {}}', "approvals is not"),
        (
            '{"format": 1, "plan_sha256": "' + "0" * 64 + '", "approvals": [{"signature": "x", '
            '"key": "k", "user": "u", "host": "h", "at": "t"}]}',
            "approvals[0]: the signature is not armored",
        ),
    ],
)
def test_a_damaged_sig_file_is_invalid_input(
    keys: Keys, plan: Path, content: str, what: str
) -> None:
    sig_path(plan).write_text(content)

    for attempt in (
        lambda: approve(plan, keys.private("alice")),
        lambda: check(plan, keys.allowed, 1, set()),
    ):
        with pytest.raises(InvalidInput) as invalid:
            attempt()
        assert invalid.value.exit_code == 2
        assert str(invalid.value).startswith(f"the approvals file {sig_path(plan)} is damaged: ")
        assert what in str(invalid.value)
    assert sig_path(plan).read_text() == content


def test_the_key_of_a_signature_is_ssh_keygens_fingerprint(keys: Keys) -> None:
    signature = ssh.sign(b"anything\n", keys.private("alice"))

    assert ssh.key_of(signature) == keys.fingerprint("alice")
    assert ssh.fingerprint_of_public_line(keys.public_line("alice")) == keys.fingerprint("alice")
    assert ssh.namespace_of(signature) == "dcx-runbook"
    assert ssh.fingerprint_of_public_line("The agent has no identities.") is None
    assert ssh.fingerprint_of_public_line("ssh-rsa " + keys.public_line("alice").split()[1]) is None


def test_no_approvals_or_no_allowed_signers(keys: Keys, plan: Path, tmp_path: Path) -> None:
    with pytest.raises(Refused) as refused:
        check(plan, keys.allowed, 1, set()).enforce()
    assert str(refused.value) == (
        f"plan {plan}: 0 of 1 required approvals (no approval in {sig_path(plan)})"
    )

    missing = tmp_path / "nobody"
    with pytest.raises(InvalidInput) as invalid:
        check(plan, missing, 1, set())
    assert str(invalid.value) == f"the allowed signers file {missing} does not exist"
    check(plan, missing, 0, set()).enforce()


def test_signing_without_a_key_or_without_ssh_keygen(
    keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInput, match="the signing key .*nokey does not exist"):
        ssh.sign(b"x", tmp_path / "nokey")

    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    with pytest.raises(Refused, match=f"ssh-keygen could not sign with {garbage}: ") as refused:
        ssh.sign(b"x", garbage)
    assert refused.value.exit_code == 4

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Refused, match="ssh-keygen \\(OpenSSH\\) is not on PATH"):
        ssh.sign(b"x", keys.private("alice"))


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ssh-agent on a short socket path (sockets have a length limit)."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("needs ssh-agent and ssh-add")
    with tempfile.TemporaryDirectory(prefix="dcx-agent-") as directory:
        socket = Path(directory) / "s"
        process = subprocess.Popen(
            ["ssh-agent", "-D", "-a", str(socket)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not socket.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
            yield socket
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_a_key_held_in_ssh_agent_signs_and_is_the_operators(
    keys: Keys, plan: Path, tmp_path: Path, agent: Path
) -> None:
    subprocess.run(["ssh-add", "-q", str(keys.private("bob"))], check=True, capture_output=True)
    only_public = tmp_path / "bob.pub"
    shutil.copy(keys.public("bob"), only_public)

    approval = approve(plan, only_public)

    bob = keys.fingerprint("bob")
    assert approval.key == bob
    assert check(plan, keys.allowed, 1, set()).approvers == [BOB]
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    assert operator_keys(empty_home) == {bob}
    assert check(plan, keys.allowed, 1, operator_keys(empty_home)).rejected == [
        (bob, f"the operator's own key {bob} does not count")
    ]


def test_message_binds_the_plan_digest() -> None:
    digest = hashlib.sha256(b"plan").hexdigest()
    assert approvals.message_for(b"plan") == f"dcx-runbook plan sha256:{digest}\n".encode()
