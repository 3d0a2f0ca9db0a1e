"""URL and conninfo passwords are masked however they are spelled, and a bad --var argument is
reported without echoing what may be a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcx_runbook.errors import InvalidInput
from dcx_runbook.format.loader import load
from dcx_runbook.format.variables import parse_assignments, resolve
from dcx_runbook.secrets import Masker, mask_url
from tests.conftest import cli, write_runbook

URLS = [
    ("postgresql://postgres:Abcd/Efgh@127.0.0.1/db", "postgresql://postgres:***@127.0.0.1/db"),
    (
        "postgresql://postgres:Ab@TopSecret99@127.0.0.1:5432/db",
        "postgresql://postgres:***@127.0.0.1:5432/db",
    ),
    ("postgresql://u:a/b@c?d@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
    ("postgresql://u@h/db?password=hunter2xyz", "postgresql://u@h/db?password=***"),
    (
        "postgresql://u@h/db?sslmode=require&password=hunter2xyz&connect_timeout=5",
        "postgresql://u@h/db?sslmode=require&password=***&connect_timeout=5",
    ),
    ("host=h dbname=d password=hunter3xyz", "host=h dbname=d password=***"),
    ("host=h password = 'hunter 3xyz' dbname=d", "host=h password = *** dbname=d"),
    ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
    ("postgresql://h:5432/db", "postgresql://h:5432/db"),
]


@pytest.mark.parametrize(("url", "masked"), URLS)
def test_mask_url_hides_every_password_and_keeps_user_host_and_database(
    url: str, masked: str
) -> None:
    assert mask_url(url) == masked


def test_an_at_sign_in_the_query_masks_too_much_rather_than_too_little() -> None:
    # "u:pw@h/db?application_name=a@b" can't be told apart from a password "pw@h/db?...=a".
    assert mask_url("postgresql://u:pw@h/db?application_name=a@b") == "postgresql://u:***@b"


@pytest.mark.parametrize(("url", "masked"), URLS)
def test_masker_hides_urls_inside_text(url: str, masked: str) -> None:
    assert Masker()(f"connect to {url} refused") == f"connect to {masked} refused"


@pytest.mark.parametrize(
    ("url", "password_parts"),
    [
        ("postgresql://postgres:Ab@TopSecret99@127.0.0.1/db", ["Ab@TopSecret99", "TopSecret99"]),
        ("postgresql://postgres:Abcd/Efgh@127.0.0.1/db", ["Abcd/Efgh", "Abcd", "Efgh"]),
        ("postgresql://u@h/db?password=hunter2xyz", ["hunter2xyz"]),
    ],
)
def test_a_secret_url_masks_its_password_wherever_it_appears(
    url: str, password_parts: list[str]
) -> None:
    # libpq may split such a password and quote its pieces back as a host name or database.
    mask = Masker([url])
    for part in password_parts:
        assert (
            mask(f"failed to resolve host '{part}@127.0.0.1'")
            == "failed to resolve host '***@127.0.0.1'"
        )
    assert mask(url) == mask_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:Abcd/Efgh@127.0.0.1:1/db",
        "postgresql://postgres:Ab@TopSecret99@127.0.0.1:1/db",
        "postgresql://postgres@127.0.0.1:1/db?password=hunter2xyz",
    ],
)
@pytest.mark.parametrize("output", ["human", "json"])
def test_cli_connect_error_never_shows_the_password(tmp_path: Path, url: str, output: str) -> None:
    runbook = write_runbook(tmp_path / "rb.yaml", "masking", [_noop_step()])
    result = cli("run", str(runbook), "--yes", "-o", output, "--database-url", url)
    assert result.returncode == 4, result.stdout + result.stderr
    everything = result.stdout + result.stderr + _state_files(tmp_path)
    assert "can't connect to postgresql://postgres" in everything
    for secret in ("Abcd", "Efgh", "TopSecret99", "hunter2xyz"):
        assert secret not in everything


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("notaurl", 'missing "…" after "…" in connection info string'),
        ("host=h password=Sec Ret99", "connection info string"),
        ("postgresql://u:Sec9Ret@h/db?foo=1", 'invalid URI query parameter: "…"'),
        # A password with a space, or a stray '%': printed in clear before (issue 12, item 5).
        ("postgresql://u:Sec Ret99@h/db", 'unexpected spaces found in "…"'),
        ("postgresql://u:Sec%zzRet99@h/db", 'invalid percent-encoded token: "…"'),
    ],
)
@pytest.mark.slow  # 10 processes; test_cli_connect_error_never_shows_the_password stays fast
@pytest.mark.parametrize("output", ["human", "json"])
def test_a_url_libpq_cant_parse_is_invalid_input_and_not_echoed(
    tmp_path: Path, url: str, reason: str, output: str
) -> None:
    """It was "can't connect" (exit 4, as if the server had refused), quoting libpq's message,
    which quotes the text, an unquoted password's second word included; then the URL itself,
    masked by a pattern that a space or a '%' in the password defeats."""
    runbook = write_runbook(tmp_path / "rb.yaml", "masking", [_noop_step()])
    result = cli("run", str(runbook), "--yes", "-o", output, "--database-url", url)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "invalid database URL (not shown: it may hold a password)" in result.stderr
    assert reason in result.stderr
    for secret in ("Sec", "Ret99", "Sec9Ret", "zzRet"):
        assert secret not in result.stdout + result.stderr
    assert not (tmp_path / "state" / "runs").exists()


@pytest.mark.slow  # 6 processes
@pytest.mark.parametrize("password", ['Qu"ot3Sec', "Ap'os9Sec", "Pc%25t9Sec"])
def test_a_password_with_quotes_or_percent_is_masked_when_the_connection_fails(
    tmp_path: Path, password: str
) -> None:
    runbook = write_runbook(tmp_path / "rb.yaml", "masking", [_noop_step()])
    url = f"postgresql://u:{password}@127.0.0.1:1/db"
    for output in ("human", "json"):
        result = cli("run", str(runbook), "--yes", "-o", output, "--database-url", url)
        assert result.returncode == 4, result.stdout + result.stderr
        assert "can't connect to postgresql://u:***@127.0.0.1:1/db" in result.stdout + result.stderr
        assert "Sec" not in result.stdout + result.stderr


BAD_VARS = [
    "postgresql://billing:Hunter2Secret@db.internal/prod",
    "postgresql://billing:Hunter2Secret@db.internal/prod?sslmode=require",
    "Hunter2Secret",
    "Hunter2 Secret=1",
]


@pytest.mark.parametrize("item", BAD_VARS)
def test_a_bad_var_argument_is_refused_without_echoing_it(item: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_assignments(["mode=dev", item])
    assert "Hunter2" not in str(raised.value)
    assert "--var" in str(raised.value) and "2nd" in str(raised.value)


def test_a_well_formed_unknown_var_is_named(tmp_path: Path) -> None:
    runbook = load(str(write_runbook(tmp_path / "rb.yaml", "masking", [_noop_step()]))).runbook
    with pytest.raises(
        InvalidInput, match=r"unknown variable\(s\) nope \(declared: database_url\)"
    ):
        resolve(runbook, parse_assignments(["nope=Hunter2Secret"]), {})
    with pytest.raises(InvalidInput) as raised:
        resolve(runbook, {"postgresql://u:Hunter2Secret@h/db?x": "1", "nope": "1"}, {})
    assert "Hunter2" not in str(raised.value)
    assert "nope" in str(raised.value)


@pytest.mark.slow  # a process each; test_a_bad_var_argument_is_refused_without_echoing_it is in-process
@pytest.mark.parametrize("item", BAD_VARS)
def test_cli_bad_var_is_exit_2_without_the_secret(tmp_path: Path, item: str) -> None:
    runbook = write_runbook(tmp_path / "rb.yaml", "masking", [_noop_step()])
    result = cli("run", str(runbook), "--dry-run", "--var", item)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--var expects KEY=VALUE" in result.stderr
    assert "Hunter2" not in result.stdout + result.stderr


def _noop_step() -> dict[str, object]:
    return {
        "id": "noop",
        "title": "Nothing",
        "action": [{"kind": "sql", "sql": "SELECT 1"}],
        "rollback": {"action": [{"kind": "sql", "sql": "SELECT 1"}]},
    }


def _state_files(tmp_path: Path) -> str:
    return "".join(
        p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file()
    )
