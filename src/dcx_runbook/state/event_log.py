"""A run's events, kept beside its record (`runs/<id>.events.jsonl`): what the incident report
draws and tells (`log RUN --format markdown|html`): the SQL and argv run, each check and its
value, lock waits and their blockers, every phase's time. Masked like the output, since it is
the output. A view, not the record: written as it goes, never fsynced, and a failure to write
it stops nothing (the journal is the record)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

SUFFIX = ".events.jsonl"


def path_of(record_path: Path) -> Path:
    return record_path.with_name(record_path.stem + SUFFIX)


class EventLog:
    """Appends events, one JSON object per line; quietly gives up once a write fails."""

    def __init__(self, path: Path):
        self.path = path
        self._file: IO[str] | None = None
        self.broken = False

    def append(self, line: str) -> None:
        """One event's JSON line (reporters.base.Event.line)."""
        if self.broken:
            return
        try:
            if self._file is None:  # 0600, as the journal: its values are the operator's
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._file = os.fdopen(fd, "a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()
        except OSError:
            self.broken = True  # the report will say its events are incomplete; the run goes on

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                self.broken = True


def read(record_path: Path) -> list[dict[str, Any]]:
    """A run's events, oldest first; a line cut short by a crash is left out."""
    try:
        text = path_of(record_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and "event" in found:
            events.append(found)
    return events
