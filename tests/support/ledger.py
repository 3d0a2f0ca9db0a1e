"""A one-row wallet (balance 100) and a step that credits it by 10: a change whose undo is easy to
see, and whose double undo or missing undo shows as a wrong balance."""

from __future__ import annotations

from typing import Any

import psycopg

CREDIT: dict[str, Any] = {
    "id": "credit",
    "title": "credit 10",
    "action": [{"kind": "sql", "sql": "UPDATE wallet SET balance = balance + 10"}],
    "verify": [{"kind": "sql", "query": "SELECT balance FROM wallet", "expect": 110}],
    "rollback": {"action": [{"kind": "sql", "sql": "UPDATE wallet SET balance = balance - 10"}]},
}


def wallet(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE wallet (balance int)")
    db.execute("INSERT INTO wallet VALUES (100)")


def balance(db: psycopg.Connection) -> int:
    row = db.execute("SELECT balance FROM wallet").fetchone()
    assert row is not None
    return int(row[0])
