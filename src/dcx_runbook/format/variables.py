"""Resolve a runbook's variables. What the operator typed on this command line wins over the
environment: --var, then --database-url, then (for a rollback) the value the run journaled, then
--env-file, then the environment, then defaults. Where two sources disagree, `Resolved.notes`
says which one was taken and why (names only: a value may be a secret); for a run, they also hold
the `default_warning` of each variable left at its default."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dcx_runbook.errors import InvalidInput
from dcx_runbook.format.model import IDENT, Runbook
from dcx_runbook.secrets import Masker
from dcx_runbook.template import TemplateError, refs, render


@dataclass(frozen=True)
class Resolved:
    values: dict[str, str | None]
    secret: frozenset[str]
    sources: dict[str, str]  # name -> "--var", "environment DATABASE_URL", "default", ...
    # Where sources disagreed: which one was taken, and why; for a run (not a rollback), the
    # warnings of variables left at their default (`default_warnings`).
    notes: tuple[str, ...] = ()

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
    recorded: Mapping[str, str] | None = None,
    last_resort: Mapping[str, str] | None = None,
) -> Resolved:
    """`recorded`: for a rollback, the public values the run journaled (what it really used);
    `last_resort`: values used only when nothing else gives one (for a rollback, the URL the run
    journaled, when it held no password)."""
    _refuse_unknown(runbook, cli_vars)
    given: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    for name in runbook.vars:
        offered = _offered(runbook, name, cli_vars, database_url, recorded, env_file, environ)
        if last_resort is not None and last_resort.get(name) is not None:
            offered.append(("the URL the run journaled", last_resort[name]))
        if offered:
            sources[name], given[name] = offered[0]
            notes += _note(name, offered)
    values = _with_defaults(runbook, given, sources)
    _refuse_missing(runbook, values)
    secret = frozenset(n for n, v in runbook.vars.items() if v.secret)
    if recorded is None:  # a run's values, not a rollback's: it writes nothing new with them
        notes += default_warnings(runbook, values)
    return Resolved(values, secret, sources, tuple(notes))


def default_warnings(runbook: Runbook, values: Mapping[str, str | None]) -> list[str]:
    """The `default_warning` of each variable that holds its default (none was given, or the one
    given is the same), rendered: said before a run changes anything, and in its confirmation."""
    said = []
    for name, var in runbook.vars.items():
        fallback = var.fallback
        if var.default_warning is None or fallback is None:
            continue
        try:
            if values.get(name) == render(fallback, values):
                said.append(f"warning: {' '.join(render(var.default_warning, values).split())}")
        except TemplateError:
            continue
    return said


def _refuse_unknown(runbook: Runbook, cli_vars: Mapping[str, str]) -> None:
    """A --var the runbook does not declare is a typo, or a value given without its name."""
    unknown = sorted(set(cli_vars) - set(runbook.vars))
    if unknown:
        declared = ", ".join(sorted(runbook.vars)) or "none"
        # Only names are echoed: anything else may be a value given without its name.
        shown = [k for k in unknown if re.match(IDENT, k)]
        hidden = len(unknown) - len(shown)
        if hidden:
            shown.append(f"{hidden} more that {'is' if hidden == 1 else 'are'} no variable name")
        raise InvalidInput(f"unknown variable(s) {', '.join(shown)} (declared: {declared})")


def _note(name: str, offered: list[tuple[str, str]]) -> list[str]:
    """Where the value taken (the first offered) is not what every source said: which one was
    taken and why, by source names only."""
    (source, value), others = offered[0], offered[1:]
    differing = [other for other, v in others if v != value]
    if source == "the URL the run journaled":
        return [f"{name}: none given; took the URL the run journaled"]
    if differing:
        return [
            f"{name}: took the value of {source}, not the different one of "
            f"{' nor of '.join(differing)} ({_why(source)})"
        ]
    return []


def _with_defaults(
    runbook: Runbook, given: dict[str, str | None], sources: dict[str, str]
) -> dict[str, str | None]:
    """The given values, and the defaults of the others. Defaults may refer to other variables:
    resolved in dependency order (cycles are a load error). `sources` learns each default."""
    values = dict(given)
    pending = [n for n in runbook.vars if n not in values]
    while pending:
        progressed = False
        for name in list(pending):
            default = runbook.vars[name].fallback
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
    return values


def _refuse_missing(runbook: Runbook, values: Mapping[str, str | None]) -> None:
    """A required variable with no value (or an empty one) stops everything before it starts,
    saying every way to give it."""
    missing = [n for n, v in runbook.vars.items() if v.required and not values.get(n)]
    if missing:
        raise InvalidInput(
            "missing required variable(s): " + ", ".join(_how(runbook, n) for n in missing)
        )


def _offered(
    runbook: Runbook,
    name: str,
    cli_vars: Mapping[str, str],
    database_url: str | None,
    recorded: Mapping[str, str] | None,
    env_file: Mapping[str, str | None] | None,
    environ: Mapping[str, str],
) -> list[tuple[str, str]]:
    """Every value given for `name`, first the one that wins."""
    var = runbook.vars[name]
    out: list[tuple[str, str]] = []
    if name in cli_vars:
        out.append(("--var", cli_vars[name]))
    if name == runbook.url_var and database_url is not None:
        out.append(("--database-url", database_url))
    if recorded is not None and recorded.get(name) is not None:
        out.append(("the run's journal", recorded[name]))
    if var.env and env_file is not None and env_file.get(var.env) is not None:
        out.append((f"--env-file {var.env}", str(env_file[var.env])))
    if var.env and var.env in environ:
        out.append((f"environment {var.env}", environ[var.env]))
    return out


def _why(source: str) -> str:
    if source == "the run's journal":
        return "a rollback uses what the run used, unless --var says otherwise"
    if source == "the URL the run journaled":
        return "no URL was given"
    if source.startswith("environment"):
        return "nothing on the command line gave it"
    return "what is typed on the command line wins over the environment"


def _how(runbook: Runbook, name: str) -> str:
    var = runbook.vars[name]
    ways = [f"--var {name}=..."]
    if name == runbook.url_var:
        ways.append("--database-url")
    if var.env:
        ways.append(f"${var.env}")
    return f"{name} ({' or '.join(ways)})"
