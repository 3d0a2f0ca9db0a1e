"""The lint in a run and its dry run (docs/lint.md): every finding said as a `finding` event
(before the confirmation in a run; at its step in a dry run, the runbook's own after
`run_started`), summarised in the confirmation, kept in the journal, waived ones with their
reasons; in a dry run, what the live target says about the
tables each finding's statements lock (size, rows, who holds or waits on a lock there, the
oldest open transaction), read-only under a short statement timeout. A tiny table that nobody
holds turns a warning into a note."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg

from dcx_runbook import caching
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.format.loader import Loaded
from dcx_runbook.format.problems import format_path
from dcx_runbook.kinds.sql import statements
from dcx_runbook.lint import squawk
from dcx_runbook.lint.check import Linted, lint
from dcx_runbook.lint.findings import Finding, LintLevel
from dcx_runbook.lint.sites import sites

TINY_ROWS = 10_000  # a table this small is built or scanned in moments
TINY_BYTES = 8 * 1024 * 1024


def findings_for(rt: Runtime, loaded: Loaded) -> Linted:
    """The runbook's findings, for the server it runs against (its version for squawk), with
    the live context of each in a dry run."""
    version = None
    if rt.conn is not None:
        version = str(rt.conn.info.server_version // 10000)
    linted = _lint(loaded, version)
    if linted.squawk_missing:
        rt.emit("log", message=f"lint: {linted.squawk_missing}")
    if rt.dry_run and rt.conn is not None:
        by_path = {format_path(site.loc): site.text for site in sites(loaded.runbook)}
        linted.findings = [_in_context(rt.conn, f, by_path.get(f.path)) for f in linted.findings]
    if not rt.dry_run:  # all of them before the confirmation, waivers and their reasons too
        for finding in linted.findings:
            say(rt, finding)
        return linted
    rt.findings = {}  # the dry run says each at its step
    for finding in linted.findings:
        rt.findings.setdefault(finding.step or "", []).append(finding)
    for finding in rt.findings.get("", []):
        say(rt, finding)
    return linted


def _lint(loaded: Loaded, version: str | None) -> Linted:
    """The lint of these bytes for this server's version, by this squawk: once (caching.py)."""
    key = "\0".join((loaded.sha256, str(loaded.path), version or "", squawk.identity()))
    linted = caching.load("lint", key.encode())
    if isinstance(linted, Linted):
        return linted
    linted = lint(loaded, version)
    if not linted.squawk_missing:  # installed later: linted again then
        caching.store("lint", key.encode(), linted)
    return linted


def say(rt: Runtime, finding: Finding) -> None:
    message = f"{finding.rule}: {finding.message}"
    if finding.waived:
        message += f" [waived: {finding.waived}]"
    for line in finding.context:
        message += f"\n{line}"
    rt.emit(
        "finding", finding.step, status=finding.level, message=message, detail=finding.as_dict()
    )


def journaled(linted: Linted) -> list[dict[str, Any]]:
    return [f.as_dict() for f in linted.findings]


# ------------------------------------------------------------------------------ live context


def _in_context(conn: psycopg.Connection[Any], finding: Finding, text: str | None) -> Finding:
    if text is None:
        return finding
    notes: list[str] = []
    tiny, held = True, False
    for table in dict.fromkeys(_tables(conn, text)):
        try:
            with conn.transaction():  # a savepoint in the dry run's read-only transaction
                row = conn.execute(
                    "SELECT current_setting('statement_timeout'), "
                    "set_config('statement_timeout', '2s', true)"
                ).fetchone()
                facts = _facts(conn, table)
                # A released savepoint keeps its SET LOCAL: the dry run's own timeout again.
                before = row[0] if row is not None else "0"
                conn.execute("SELECT set_config('statement_timeout', %s, true)", (before,))
        except psycopg.Error:
            continue
        if facts is None:
            continue
        line, small, holders = facts
        notes.append(line)
        notes += holders
        tiny, held = tiny and small, held or bool(holders)
    if not notes:
        return finding
    level = finding.level
    if tiny and not held and level == LintLevel.WARNING:
        level = LintLevel.NOTE
        notes.append("  a table this small is done in moments: a note, not a warning")
    return replace(finding, level=level, context=notes)


def _facts(conn: psycopg.Connection[Any], table: str) -> tuple[str, bool, list[str]] | None:
    row = conn.execute(
        "SELECT c.oid::int8, c.relname, pg_total_relation_size(c.oid), c.reltuples::int8 "
        "FROM pg_class c WHERE c.oid = to_regclass(%s)",
        (table,),
    ).fetchone()
    if row is None:
        return None
    oid, name, size, rows = row
    rows = max(int(rows), 0)
    line = f"  live: {name}: {_size(int(size))}, ~{rows:,} rows"
    holders = [
        f"  live: pid {pid} ({app or 'no application name'}, {state}, in transaction for "
        f"{_age(age)}) {'holds' if granted else 'waits for'} {mode} on {name}: this step will "
        "wait for it"
        for pid, app, state, age, mode, granted in conn.execute(
            "SELECT a.pid, a.application_name, a.state, "
            "extract(epoch FROM now() - a.xact_start)::float8, l.mode, l.granted "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.relation = %s::oid AND a.pid <> pg_backend_pid() ORDER BY a.xact_start",
            (oid,),
        ).fetchall()
    ]
    oldest = conn.execute(
        "SELECT pid, application_name, extract(epoch FROM now() - xact_start)::float8 "
        "FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() "
        "AND datname = current_database() ORDER BY xact_start LIMIT 1"
    ).fetchone()
    if holders and oldest is not None:
        holders.append(
            f"  live: the oldest open transaction here: pid {oldest[0]} "
            f"({oldest[1] or 'no application name'}), {_age(oldest[2])}"
        )
    small = rows < TINY_ROWS and int(size) < TINY_BYTES
    return line, small, holders


def _tables(conn: psycopg.Connection[Any], text: str) -> Iterator[str]:
    """The tables the statements of `text` lock, as names to_regclass takes."""
    for tokens in statements(text):
        name = _named(tokens)
        if name is None:
            continue
        kind, target = name
        if kind == "index":
            row = conn.execute(
                "SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass(%s)",
                (target,),
            ).fetchone()
            if row is not None:
                yield str(row[0])
        else:
            yield target


def _named(tokens: list[str]) -> tuple[str, str] | None:
    words = [t for t in tokens if t not in ("CONCURRENTLY", "ONLY", "IF", "NOT", "EXISTS")]
    head = words[:2]
    if head == ["ALTER", "TABLE"] or head == ["TRUNCATE", "TABLE"]:
        return "table", _name(words[2:])
    if words[:1] in (["UPDATE"], ["TRUNCATE"], ["CLUSTER"]):
        return "table", _name(words[1:])
    if head == ["DELETE", "FROM"] or head == ["INSERT", "INTO"]:
        return "table", _name(words[2:])
    if head == ["DROP", "INDEX"] or head == ["REINDEX", "INDEX"]:
        return "index", _name(words[2:])
    if words[:1] == ["CREATE"] and "INDEX" in words[:3] and "ON" in words:
        return "table", _name(words[words.index("ON") + 1 :])
    return None


def _name(tokens: list[str]) -> str:
    """A possibly qualified name from its tokens (`public . "T"`), as SQL writes it."""
    parts, expect_dot = [], False
    for token in tokens:
        if expect_dot:
            if token != ".":
                break
            expect_dot = False
            continue
        parts.append(token if token.startswith('"') else token.lower())
        expect_dot = True
    return ".".join(parts)


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
