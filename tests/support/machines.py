"""Machines of an on-call team for tests: each one its own state directory and its own host name
(a real UTS namespace, `unshare -u`), running the real CLI in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Machine:
    """A laptop of the on-call team: its host name and its state directory."""

    host: str
    state: Path

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env={**os.environ, "DCX_RUNBOOK_STATE_DIR": str(self.state), **(env or {})},
            timeout=timeout,
            check=False,
        )

    def argv(self, *args: str) -> list[str]:
        # A UTS namespace of its own: socket.gethostname() in the tool says this host.
        script = 'hostname "$0" && exec "$@"'
        command = [sys.executable, "-m", "dcx_runbook", *args]
        return ["unshare", "--uts", "sh", "-c", script, self.host, *command]
