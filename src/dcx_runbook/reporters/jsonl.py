"""`--output json`: one JSON object per line on stdout, nothing else there."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from dcx_runbook.reporters.base import Event

# One encoder for the run: json.dumps with any option builds a new one per call.
_ENCODER = json.JSONEncoder(default=str)


class JsonReporter:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def emit(self, event: Event) -> None:
        self.stream.write(_ENCODER.encode(event.to_json()) + "\n")
        self.stream.flush()

    def confirm(self, question: str) -> bool:
        return False  # machine output never prompts: use --yes

    def close(self) -> None:
        self.stream.flush()
