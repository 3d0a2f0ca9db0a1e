"""Which database a run changed, as its journal recorded it, and whether a connection reaches
that same one. Staging and production often share a database name: the name alone can't tell
them apart, the server's system identifier and the database's oid can."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe(target: Mapping[str, Any]) -> str:
    """`database d (oid 16384) on the server with system identifier 7714… at 10.0.0.5:5432`."""
    parts = [f"database {target.get('database')!s}"]
    if target.get("database_oid") is not None:
        parts[0] += f" (oid {target['database_oid']})"
    system = target.get("system_identifier")
    parts.append(f"on the server with system identifier {system}" if system else "on a server")
    address = target.get("server_address")
    if address:
        parts.append(f"at {address}")
    return " ".join(parts)


def mismatch(recorded: Mapping[str, Any], connected: Mapping[str, Any]) -> str | None:
    """Why `connected` is not the database a run recorded as `recorded`; None when it is, as far
    as the record can tell (a record written before identities were journaled has the name
    only)."""
    if recorded.get("database") != connected.get("database"):
        return "another database"
    system = recorded.get("system_identifier"), connected.get("system_identifier")
    if all(system) and system[0] != system[1]:
        return "another server"
    # The address as the server sees it: a copy of the server (a physical backup restored as
    # staging, a volume snapshot) has the same system identifier and oids, but not the address.
    address = recorded.get("server_address"), connected.get("server_address")
    if all(address) and address[0] != address[1]:
        return (
            f"another server at {address[1]}, or the same one reached through another address "
            f"(the run reached it at {address[0]}: roll back through that address)"
        )
    oid = recorded.get("database_oid"), connected.get("database_oid")
    if oid[0] is not None and oid[1] is not None and oid[0] != oid[1]:
        if all(system):
            return "a database of the same name created again since the run"
        return "another server, or a database of the same name created again since the run"
    return None
