"""`--output json`: one JSON object per line on stdout, nothing else there."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from dcx_runbook.reporters.base import Event


class JsonReporter:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def emit(self, event: Event) -> None:
        self.stream.write(json.dumps(event.to_json(), default=str) + "\n")
        self.stream.flush()

    def confirm(self, question: str) -> bool:
        return False  # machine output never prompts: use --yes

    def close(self) -> None:
        self.stream.flush()
