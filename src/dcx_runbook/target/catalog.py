"""What a plan file pins of a database besides its identity: the catalog rows of every relation
its runbook names, as one fingerprint each, and the head of its ledger.

A relation's fingerprint covers its kind, its columns (name, type, NOT NULL, default), its indexes
(definition, unique, valid) and its constraints: a column added, an index built or dropped, a
constraint changed behind a reviewed plan all change it. Read-only."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

# A name as SQL writes it: "Quoted" (kept as is) or bare (folded to lower case), dotted.
_PART = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME = re.compile(rf"{_PART}(?:\s*\.\s*{_PART})*")
_NOISE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\$\$.*?\$\$", re.S)

_FINGERPRINT = """
SELECT format('%%I.%%I', n.nspname, c.relname),
       md5(concat_ws(' | ', c.relkind,
         (SELECT string_agg(format('%%s %%s %%s %%s %%s', a.attnum, a.attname,
                 format_type(a.atttypid, a.atttypmod), a.attnotnull,
                 pg_get_expr(d.adbin, d.adrelid)), ', ' ORDER BY a.attnum)
            FROM pg_attribute a
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
         (SELECT string_agg(format('%%s %%s %%s', pg_get_indexdef(i.indexrelid), i.indisunique,
                 i.indisvalid), ', ' ORDER BY pg_get_indexdef(i.indexrelid))
            FROM pg_index i WHERE i.indrelid = c.oid),
         (SELECT string_agg(format('%%s %%s', o.conname, pg_get_constraintdef(o.oid)), ', '
                 ORDER BY o.conname)
            FROM pg_constraint o WHERE o.conrelid = c.oid)))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'i', 'I')
   AND ((n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
        OR (c.relname = ANY(%s) AND n.nspname = ANY(current_schemas(false))))
 ORDER BY 1
"""


def names_in(texts: Iterable[str]) -> set[tuple[str | None, str]]:
    """Every (schema, name) a relation could go by in these SQL texts: comments and string
    literals left out, bare names folded to lower case. Words that name no relation (keywords,
    columns) are harmless: the catalog is asked which of them are relations."""
    found: set[tuple[str | None, str]] = set()
    for text in texts:
        for match in _NAME.finditer(_NOISE.sub(" ", text)):
            parts = [_folded(p) for p in re.findall(_PART, match.group())]
            found.add((None, parts[-1]))
            if len(parts) >= 2:
                found.add((parts[-2], parts[-1]))
    return found


def _folded(part: str) -> str:
    return part[1:-1].replace('""', '"') if part.startswith('"') else part.lower()


def fingerprints(
    conn: psycopg.Connection[Any], names: set[tuple[str | None, str]]
) -> dict[str, str]:
    """The fingerprint of each relation among `names`, by its qualified name."""
    qualified = sorted((s, n) for s, n in names if s is not None)
    bare = sorted({n for s, n in names if s is None})
    rows = conn.execute(
        _FINGERPRINT,
        ([s for s, _ in qualified], [n for _, n in qualified], bare),
        prepare=False,
    ).fetchall()
    return {str(name): str(digest) for name, digest in rows}


def ledger_head(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any] | None:
    """The newest run in the target's ledger (id, runbook, status, when it last changed), or
    None when there is no ledger or no run in it."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.runs",)).fetchone()
    if exists is None or exists[0] is None:
        return None
    row = conn.execute(
        sql.SQL(
            "SELECT run_id, runbook, status, coalesce(finished_at, started_at)::text "
            "FROM {}.runs ORDER BY started_at DESC, run_id DESC LIMIT 1"
        ).format(sql.Identifier(schema))
    ).fetchone()
    if row is None:
        return None
    undos = conn.execute(
        sql.SQL("SELECT count(*) FROM {}.rollbacks").format(sql.Identifier(schema))
    ).fetchone()
    return {
        "run_id": row[0],
        "runbook": row[1],
        "status": row[2],
        "changed_at": row[3],
        "rollbacks": undos[0] if undos else 0,
    }
