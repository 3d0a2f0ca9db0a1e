"""The real CLI on a pseudo-terminal, in a conversation: wait for each prompt, answer it."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Sequence


def converse(
    args: Sequence[str], script: Sequence[tuple[bytes, bytes]], env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run `dcx-runbook ARGS` with stdin, stdout and stderr on a pty. `script`: (what to wait
    for, what to type), in turn; each waited-for text must appear after the previous answer.
    Returns the exit code and everything the terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcx_runbook", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        close_fds=True,
    )
    os.close(slave)
    output, seen, turn, deadline = b"", 0, 0, time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if turn < len(script) and script[turn][0] in output[seen:]:
                seen = output.index(script[turn][0], seen) + len(script[turn][0])
                os.write(master, script[turn][1])
                turn += 1
        elif proc.poll() is not None:
            break
    if proc.poll() is None:  # stuck at a prompt nobody in the script answers
        proc.kill()
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, output.decode(errors="replace")


_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def plain(shown: str) -> str:
    """What a person reads on the terminal: control sequences out, lines joined by one space."""
    return " ".join(_CONTROL.sub("", shown).split())


def screen_lines(shown: str) -> list[str]:
    """The terminal's non-blank lines as a person sees them (control sequences out)."""
    lines = _CONTROL.sub("", shown).split("\n")
    return [line.rstrip() for line in lines if line.strip()]
