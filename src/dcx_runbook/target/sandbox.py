"""A disposable PostgreSQL: an explicit server, else a Docker engine (testcontainers), else local
PostgreSQL binaries on a free port. Always cleaned up; checking for Docker never hangs.

testcontainers comes with the `sandbox` extra only (a plain `pip install dcx-runbook` has no
Docker client library): it is imported when a Docker engine is to be used, never before."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from dcx_runbook.errors import Refused

if TYPE_CHECKING:
    from testcontainers.postgres import PostgresContainer

DOCKER_PROBE_TIMEOUT = 1.0
BINARY_DIRS = "/usr/lib/postgresql/*/bin"  # Debian's layout; PATH is searched first


@dataclass(frozen=True)
class Server:
    """An admin URL where scratch databases may be created and dropped."""

    admin_url: str
    provider: str  # "url", "docker", "binaries"

    def url_for(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + database))


def docker_host() -> str:
    """Where the Docker engine would be: $DOCKER_HOST, as the Docker client reads it."""
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def docker_available() -> bool:
    """True when a Docker engine answers within a second (the client alone is not enough)."""
    host = docker_host()
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(DOCKER_PROBE_TIMEOUT)
            sock.connect(host[len("unix://") :])
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            answer = sock.recv(64)
            sock.close()
            return b"200" in answer
        if host.startswith("tcp://"):
            hostname, _, port = host[len("tcp://") :].partition(":")
            with socket.create_connection((hostname, int(port or 2375)), DOCKER_PROBE_TIMEOUT):
                return True
    except (OSError, ValueError):
        return False
    return False


def find_binaries() -> Path | None:
    """The newest PostgreSQL bin directory with initdb and pg_ctl."""
    on_path = shutil.which("pg_ctl")
    candidates = sorted(
        glob(BINARY_DIRS), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0
    )
    dirs = [Path(c) for c in reversed(candidates)]
    if on_path:
        dirs.insert(0, Path(on_path).parent)
    for d in dirs:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    return None


@contextlib.contextmanager
def server(explicit_url: str | None = None, *, major: int | None = None) -> Iterator[Server]:
    """The first provider that works, in the documented order."""
    explicit_url = explicit_url or os.environ.get("DCX_SANDBOX_URL")
    if explicit_url:
        yield Server(explicit_url, "url")
        return
    if docker_available():
        with docker_server(major) as srv:
            yield srv
        return
    bindir = find_binaries()
    if bindir is not None:
        with local_server(bindir) as srv:
            yield srv
        return
    raise Refused(
        "no PostgreSQL for a sandbox: pass --sandbox-url / set DCX_SANDBOX_URL (an admin URL), "
        "start a Docker engine, or install the PostgreSQL server binaries (initdb, pg_ctl)"
    )


def postgres_container() -> type[PostgresContainer]:
    """testcontainers' PostgresContainer, imported only now: it is the `sandbox` extra's, and a
    Docker engine that answers must not turn a plain install's `rehearse` or `demo` into a
    ModuleNotFoundError traceback. Refused (exit 4, before any change) says what to do instead."""
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError as exc:  # testcontainers, or a library it needs (docker), is not here
        raise Refused(
            "Docker sandboxes need the sandbox extra: pip install 'dcx-runbook[sandbox]' (no "
            f"module {exc.name or 'testcontainers'!r} here); or pass --sandbox-url / set "
            "DCX_SANDBOX_URL (an admin URL of a PostgreSQL server). The local PostgreSQL "
            f"binaries come after Docker, and a Docker engine answers at {docker_host()}."
        ) from None
    return PostgresContainer


@contextlib.contextmanager
def docker_server(major: int | None = None) -> Iterator[Server]:
    container = postgres_container()(f"postgres:{major or 15}-alpine", driver=None)
    container.start()
    try:
        yield Server(container.get_connection_url(), "docker")
    finally:
        container.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_server(bindir: Path) -> Iterator[Server]:
    """initdb + pg_ctl in a temporary directory; as root, as the `postgres` system user."""
    root = Path(tempfile.mkdtemp(prefix="dcx-sandbox-"))
    data = root / "data"
    as_user: list[str] = []
    try:
        as_user = _as_postgres_user(root)
        port = _free_port()
        _run(_initdb(as_user, bindir, data))
        _run(_pg_ctl_start(as_user, bindir, root, port))
        yield Server(f"postgresql://postgres@127.0.0.1:{port}/postgres", "binaries")
    finally:
        _stop(as_user, bindir, data)
        shutil.rmtree(root, ignore_errors=True)


def _as_postgres_user(root: Path) -> list[str]:
    """The prefix that runs a command as the `postgres` system user when we are root (initdb
    refuses to run as root), who is then given the directory; none otherwise."""
    if os.geteuid() != 0:
        return []
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError:
        raise Refused("running as root and there is no `postgres` user for initdb") from None
    os.chown(root, pg.pw_uid, pg.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


def _initdb(as_user: list[str], bindir: Path, data: Path) -> list[str]:
    """The command that creates the cluster: a `postgres` superuser any local connection may use
    (trust: the sandbox listens on 127.0.0.1 only), UTF8, and no fsync (it is thrown away)."""
    return [
        *as_user,
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
    ]


def _pg_ctl_start(as_user: list[str], bindir: Path, root: Path, port: int) -> list[str]:
    """The command that starts the server on `port`, on 127.0.0.1 only, with its socket and log in
    `root` and without fsync, and waits (30 s at most) until it accepts connections."""
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    return [
        *as_user,
        str(bindir / "pg_ctl"),
        "-D",
        str(root / "data"),
        "-l",
        str(root / "server.log"),
        "-o",
        options,
        "-w",
        "-t",
        "30",
        "start",
    ]


def _stop(as_user: list[str], bindir: Path, data: Path) -> None:
    """Stop the server, if it started, at once: its data is about to be removed."""
    if (data / "postmaster.pid").exists():
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            check=False,
        )


def _run(argv: list[str]) -> None:
    """Run a set-up command in its own process group: on Ctrl-C the whole group (runuser and the
    initdb under it) is stopped before the directory is removed, so nothing writes into it after."""
    from dcx_runbook.kinds.shell import stop_group

    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = proc.communicate()
    except BaseException:
        stop_group(proc)
        raise
    if proc.returncode != 0:
        program = next((Path(a).name for a in argv if a.endswith(("initdb", "pg_ctl"))), argv[0])
        raise Refused(f"{program} failed: {output.strip()[-500:]}")


@contextlib.contextmanager
def scratch_database(
    srv: Server, prefix: str = "dcx_sandbox", *, name: str | None = None
) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards (even on Ctrl-C): yields its URL.
    `name`: exactly this name instead of a random one (a test that needs a given name)."""
    import psycopg
    from psycopg import sql

    name = name or f"{prefix}_{secrets.token_hex(4)}"
    try:
        # Inside the try: an interrupt that lands after the server created the database, before
        # the answer came back, must still drop it.
        with psycopg.connect(srv.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield srv.url_for(name)
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(srv.admin_url, autocommit=True) as admin:
                    admin.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
