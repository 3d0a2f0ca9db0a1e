"""`shell`: a process, argv by default; a shell only when the runbook asks for one with `script`."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from dcx_runbook.kinds.base import (
    DATABASE,
    FILES,
    CheckResult,
    CheckSpec,
    Context,
    Deferred,
    OpSpec,
    Shown,
    Spec,
    Traits,
)
from dcx_runbook.template import refs, render

TAIL_LINES = 20


class ProcessFields(Spec):
    argv: list[str] | None = Field(
        default=None, min_length=1, description="Program and arguments; ${x} stays one argument."
    )
    script: str | None = Field(
        default=None,
        description="Run by /bin/sh, only when asked. Variables reach it through `env`, never "
        "spliced into the script text.",
    )
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment entries.")
    timeout: float = Field(default=600, gt=0, description="Seconds before the process is stopped.")
    expect_exit: int = 0

    @model_validator(mode="after")
    def _argv_or_script(self) -> ProcessFields:
        if (self.argv is None) == (self.script is None):
            raise ValueError("give exactly one of argv or script")
        if self.script is not None and refs(self.script):
            raise ValueError(
                'a script can\'t contain ${...}: pass values through `env` and use "$NAME"'
            )
        return self


class ShellCheck(ProcessFields, CheckSpec):
    kind: Literal["shell"]
    stdout_contains: str | None = None
    stdout_matches: str | None = None
    pure: bool = Field(
        default=False, description="Free of side effects, so a dry run may execute it."
    )
    skip_exit: int | None = Field(
        default=None,
        description="The exit code by which the process says there is nothing here to check "
        "(77, as automake's tests): the check is not evaluated, said with the output's last "
        "line, and counted neither passed nor failed.",
    )

    @model_validator(mode="after")
    def _skip_is_not_success(self) -> ShellCheck:
        if self.skip_exit is not None and self.skip_exit == self.expect_exit:
            raise ValueError("skip_exit must differ from expect_exit")
        return self


class ShellOp(ProcessFields, OpSpec):
    kind: Literal["shell"]


@dataclass(frozen=True)
class ProcessEffect:
    argv: tuple[str, ...]
    cwd: str | None
    env: tuple[tuple[str, str], ...]
    timeout: float
    expect_exit: int
    display: str

    def describe(self) -> str:
        return self.display

    def paths(self) -> list[Path]:
        return []

    def execute(self, ctx: Context) -> str:
        code, output = run_process(self, ctx)
        if code != self.expect_exit:
            raise ProcessFailed(code, self.expect_exit, ctx.masker(tail(output)))
        return ctx.masker(tail(output, 5))


class ProcessFailed(Exception):
    def __init__(self, code: int | None, expected: int, output: str):
        self.code, self.expected, self.output = code, expected, output
        what = "timed out" if code is None else f"exited {code} (expected {expected})"
        super().__init__(what + (f"\n{output}" if output else ""))


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def plan_process(spec: ProcessFields, ctx: Context) -> ProcessEffect:
    env = tuple((k, render(v, ctx.values)) for k, v in spec.env.items())
    if spec.argv is not None:
        argv = tuple(render(a, ctx.values) for a in spec.argv)
        shown = shlex.join(argv)
    else:
        argv = ("/bin/sh", "-c", spec.script or "")
        shown = f"/bin/sh -c {shlex.quote(spec.script or '')}"
    cwd = render(spec.cwd, ctx.values) if spec.cwd else None
    extra = " ".join(f"{k}={shlex.quote(v)}" for k, v in env)
    display = (
        (f"(cd {shlex.quote(cwd)} && " if cwd else "") + (f"{extra} " if extra else "") + shown
    )
    display += ")" if cwd else ""
    return ProcessEffect(argv, cwd, env, spec.timeout, spec.expect_exit, ctx.masker(display))


def run_process(effect: ProcessEffect, ctx: Context) -> tuple[int | None, str]:
    """Run in its own process group so an interrupt or timeout stops its children too."""
    env = {**os.environ, **dict(effect.env)}
    proc = subprocess.Popen(
        effect.argv,
        cwd=effect.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ctx.started_process(proc.pid)  # its own session: the group's id is the child's pid
        out, _ = proc.communicate(timeout=effect.timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        out, _ = proc.communicate()
        return None, out.decode(errors="replace")
    except BaseException:  # Ctrl-C, SIGTERM: the whole process group goes, not just the child
        stop_group(proc)
        raise
    return proc.returncode, out.decode(errors="replace")


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class ShellKind(Shown):
    name = "shell"
    # A process may read and write anything, the database included, and no transaction holds it.
    traits = Traits(
        outlives_rollback=True,
        reads=frozenset({DATABASE, FILES}),
        writes=frozenset({DATABASE, FILES}),
    )
    check_model = ShellCheck
    op_model = ShellOp

    def plan(self, spec: ShellOp, ctx: Context) -> ProcessEffect:
        return plan_process(spec, ctx)

    def check(self, spec: ShellCheck, ctx: Context) -> CheckResult:
        if ctx.dry_run and not spec.pure:
            raise Deferred("not marked pure: a dry run doesn't execute it")
        effect = plan_process(spec, ctx)
        try:
            code, output = run_process(effect, ctx)
        except OSError as exc:
            return CheckResult(False, ctx.masker(f"{effect.display}: {exc.strerror}"))
        if code is not None and code == spec.skip_exit:
            last = tail(output, 1).strip() or f"exit {code}"
            raise Deferred(ctx.masker(f"not evaluated: {last}"))
        problems = []
        if code != spec.expect_exit:
            problems.append(
                "timed out" if code is None else f"exit {code}, expected {spec.expect_exit}"
            )
        if spec.stdout_contains is not None:
            needle = render(spec.stdout_contains, ctx.values)
            if needle not in output:
                problems.append(f"output lacks {needle!r}")
        if spec.stdout_matches is not None and not re.search(spec.stdout_matches, output, re.M):
            problems.append(f"output doesn't match {spec.stdout_matches!r}")
        detail = "; ".join(problems) or f"exit {code}"
        if problems and output.strip():
            detail += "\n" + tail(output)
        return CheckResult(not problems, ctx.masker(detail), code)


KIND = ShellKind()
