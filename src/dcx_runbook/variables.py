"""Resolve a runbook's variables: --var, then the environment, then --env-file, then defaults."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dcx_runbook.errors import InvalidInput
from dcx_runbook.model import IDENT, Runbook
from dcx_runbook.secrets import Masker
from dcx_runbook.template import TemplateError, refs, render


@dataclass(frozen=True)
class Resolved:
    values: dict[str, str | None]
    secret: frozenset[str]
    sources: dict[str, str]  # name -> "--var", "env DATABASE_URL", "env file KEY", "default"

    def public(self) -> dict[str, str | None]:
        """What may be journaled and shown: every non-secret value."""
        return {k: v for k, v in self.values.items() if k not in self.secret}

    def masker(self) -> Masker:
        return Masker(self.values[name] for name in self.secret)


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, item in enumerate(items, 1):
        key, sep, value = item.partition("=")
        if not sep or not re.match(IDENT, key.strip()):
            # The argument may well be a secret (a URL passed without its name): never echo it.
            problem = "has no '='" if not sep else "does not start with a variable name"
            raise InvalidInput(
                f"--var expects KEY=VALUE; the {_ordinal(n)} --var {problem} "
                "(not shown, in case it holds a secret)"
            )
        out[key.strip()] = value
    return out


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def read_env_file(path: Path) -> dict[str, str | None]:
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    if not path.is_file():
        raise InvalidInput(f"--env-file {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--env-file {path}: can't read ({exc})") from None
    # python-dotenv skips a line it can't parse with a warning; that line could be the very
    # DATABASE_URL the operator meant. Its content is not shown: it may hold a secret.
    bad = [b.original.line for b in parse_stream(io.StringIO(text)) if b.error]
    if bad:
        lines = ", ".join(str(n) for n in bad)
        raise InvalidInput(
            f"--env-file {path}: line(s) {lines} can't be read as KEY=VALUE "
            "(an unclosed quote?); nothing was run"
        )
    return dict(dotenv_values(stream=io.StringIO(text), interpolate=False))


def resolve(
    runbook: Runbook,
    cli_vars: Mapping[str, str],
    environ: Mapping[str, str],
    env_file: Mapping[str, str | None] | None = None,
    database_url: str | None = None,
) -> Resolved:
    unknown = sorted(set(cli_vars) - set(runbook.vars))
    if unknown:
        declared = ", ".join(sorted(runbook.vars)) or "none"
        # Only names are echoed: anything else may be a value given without its name.
        shown = [k for k in unknown if re.match(IDENT, k)]
        hidden = len(unknown) - len(shown)
        if hidden:
            shown.append(f"{hidden} more that {'is' if hidden == 1 else 'are'} no variable name")
        raise InvalidInput(f"unknown variable(s) {', '.join(shown)} (declared: {declared})")
    given: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    url_var = runbook.url_var
    for name, var in runbook.vars.items():
        if name in cli_vars:
            given[name], sources[name] = cli_vars[name], "--var"
        elif name == url_var and database_url is not None:
            given[name], sources[name] = database_url, "--database-url"
        elif var.env and var.env in environ:
            given[name], sources[name] = environ[var.env], f"environment {var.env}"
        elif var.env and env_file and env_file.get(var.env) is not None:
            given[name], sources[name] = env_file[var.env], f"env file {var.env}"
    values = dict(given)
    pending = [n for n in runbook.vars if n not in values]
    # Defaults may refer to other variables; resolve in dependency order (cycles are a load error).
    while pending:
        progressed = False
        for name in list(pending):
            default = runbook.vars[name].default
            if default is not None and any(r in pending for r in refs(default)):
                continue
            try:
                values[name] = render(default, values) if default is not None else None
            except TemplateError as exc:
                raise InvalidInput(f"variable {name}: {exc}") from None
            if default is not None:
                sources[name] = "default"
            pending.remove(name)
            progressed = True
        if not progressed:
            raise InvalidInput(f"variables {', '.join(pending)} depend on each other")
    missing = [n for n, v in runbook.vars.items() if v.required and not values.get(n)]
    if missing:
        raise InvalidInput(
            "missing required variable(s): " + ", ".join(_how(runbook, n) for n in missing)
        )
    secret = frozenset(n for n, v in runbook.vars.items() if v.secret)
    return Resolved(values, secret, sources)


def _how(runbook: Runbook, name: str) -> str:
    var = runbook.vars[name]
    ways = [f"--var {name}=..."]
    if name == runbook.url_var:
        ways.append("--database-url")
    if var.env:
        ways.append(f"${var.env}")
    return f"{name} ({' or '.join(ways)})"
