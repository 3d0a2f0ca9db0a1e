"""A fleet's targets made ready to run, before anything starts: each one's URL, the server it
lives on (for --per-server) and the runbook's variables for it. Any problem with any target is
an error here (exit 2), so a fleet never stops half way on a typo."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from dcx_runbook.errors import InvalidInput
from dcx_runbook.format.model import Runbook
from dcx_runbook.format.targets import TargetSpec, url_of
from dcx_runbook.format.variables import Resolved, parse_assignments, read_env_file, resolve
from dcx_runbook.secrets import mask_url


class Order(StrEnum):
    listed = "listed"  # as the targets file lists them
    name = "name"  # by name


@dataclass(frozen=True)
class Planned:
    spec: TargetSpec
    url: str
    server: str  # host:port, or the system identifier the file pins
    resolved: Resolved | None  # None for an undo: a run's values are in its record

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> dict[str, str | None]:
        """What the fleet's record keeps of it: never a password."""
        return {
            "name": self.name,
            "database": self.spec.database,
            "server": self.server,
            "url": mask_url(self.url),
        }


def server_of(url: str, system_identifier: str | None = None, name: str = "?") -> str:
    """The server a URL connects to, for --per-server: the pinned system identifier, else host
    and port as libpq reads them (two spellings of one host count as two servers)."""
    if system_identifier:
        return f"system {system_identifier}"
    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - psycopg raises ProgrammingError; said, never shown
        raise InvalidInput(
            f"target {name}: its URL can't be read as a PostgreSQL URL or conninfo "
            f"({type(exc).__name__}; not shown, in case it holds a password)"
        ) from None
    host = str(params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    return f"{host or 'local socket'}:{port}"


def plan(
    runbook: Runbook,
    chosen: Sequence[TargetSpec],
    var: Sequence[str],
    env_file: Path | None,
    order: Order = Order.listed,
) -> list[Planned]:
    """Every chosen target with its URL and variables (the target's `vars`, then --var)."""
    file_values = read_env_file(env_file) if env_file else None
    environ: Mapping[str, str] = {
        **os.environ,
        **{k: v for k, v in (file_values or {}).items() if v is not None},
    }
    given = parse_assignments(var)
    planned = []
    for spec in chosen:
        unknown = sorted(set(spec.vars) - set(runbook.vars))
        if unknown:
            raise InvalidInput(
                f"target {spec.name}: vars {', '.join(unknown)}: {runbook.name} declares no "
                f"such variable (it has: {', '.join(runbook.vars) or 'none'})"
            )
        url = url_of(spec, environ)
        server = server_of(url, spec.system_identifier, spec.name)
        values = {k: v for k, v in spec.vars.items() if v is not None} | given
        try:
            resolved = resolve(runbook, values, os.environ, file_values, url)
        except InvalidInput as exc:
            raise InvalidInput(f"target {spec.name}: {exc}") from None
        planned.append(Planned(spec, url, server, resolved))
    if order == Order.name:
        planned.sort(key=lambda p: p.name)
    return planned
