"""`--output json`: one JSON object per line on stdout, nothing else there."""

from __future__ import annotations

import sys
from typing import TextIO

from dcx_runbook.reporters.base import Choices, Event, silence


class JsonReporter:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.lost = False  # the reader went away: nothing more is written

    def emit(self, event: Event) -> None:
        if self.lost:
            return
        try:
            self.stream.write(event.line + "\n")
            self.stream.flush()
        except OSError:  # a closed pipe must not stop a run half way: it goes on, journaled
            self.lost = True
            silence(self.stream)

    def confirm(self, question: str) -> bool:
        return False  # machine output never prompts: use --yes

    def can_ask(self) -> bool:
        return False  # nor asks: a manual step is confirmed with --confirm

    def choose(self, question: str, choices: Choices, body: str) -> str | None:
        return None

    def close(self) -> None:
        if not self.lost:
            try:
                self.stream.flush()
            except OSError:
                self.lost = True
                silence(self.stream)
