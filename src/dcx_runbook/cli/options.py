"""The options the commands share, as Typer annotations, and how output is chosen."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer


class Output(StrEnum):
    human = "human"
    json = "json"


class TableOutput(StrEnum):
    human = "human"  # a table on a terminal; piped, tsv
    json = "json"
    tsv = "tsv"


class LogFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"
    html = "html"


RunbooksDir = Annotated[
    list[Path] | None,
    typer.Option(
        "--runbooks-dir", help="Extra folder of runbooks (repeatable); also $DCX_RUNBOOK_PATH."
    ),
]
Var = Annotated[list[str] | None, typer.Option("--var", help="KEY=VALUE (repeatable).")]
EnvFile = Annotated[
    Path | None,
    typer.Option("--env-file", help="dotenv file supplying variables such as DATABASE_URL."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="Target URL (else $DATABASE_URL or the env file)."),
]


def complete_runbook(ctx: typer.Context, incomplete: str) -> list[str]:
    """Runbook names in the search path (--runbooks-dir given so far included)."""
    from dcx_runbook.api import completion

    return completion.runbook_names(incomplete, ctx.params.get("runbooks_dir") or [])


def complete_step(ctx: typer.Context, incomplete: str) -> list[str]:
    """The step ids of the runbook given so far (for --skip, --confirm)."""
    from dcx_runbook.api import completion

    dirs = ctx.params.get("runbooks_dir") or []
    runbook = ctx.params.get("runbook") or _runbook_in(ctx, _typed_words())
    return completion.step_ids(runbook, incomplete, dirs)


def _typed_words() -> list[str]:
    """The command line being completed, as the shell hands it to Typer's completion (click
    has not assigned an argument yet while an option's value is being completed)."""
    import os
    import shlex

    raw = os.environ.get("_TYPER_COMPLETE_ARGS") or os.environ.get("COMP_WORDS") or ""
    try:
        return shlex.split(raw)
    except ValueError:  # an open quote: the words as typed
        return raw.split()


def _runbook_in(ctx: typer.Context, args: list[str]) -> str | None:
    """The command's first argument among the words typed: the first word after the command's
    name that is neither an option nor an option's value."""
    valued = {  # options that take a value (Typer's own click: told by duck type)
        name
        for p in ctx.command.params
        if p.param_type_name == "option" and not getattr(p, "is_flag", False)
        for name in p.opts
    }
    words = args[args.index(ctx.info_name) + 1 :] if ctx.info_name in args else list(args)
    value_next = False
    for word in words:
        if value_next:
            value_next = False
        elif word.startswith("-"):
            value_next = word in valued
        else:
            return word
    return None


def complete_run(incomplete: str) -> list[str]:
    """This machine's run ids, newest first."""
    from dcx_runbook.api import completion

    return completion.run_ids(incomplete)


RunbookArg = Annotated[
    str,
    typer.Argument(help="Runbook name or path to a .yaml file.", autocompletion=complete_runbook),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Don't ask for confirmation.")]
Skip = Annotated[
    list[str] | None,
    typer.Option(
        "--skip", help="Step id to skip (repeatable; recorded).", autocompletion=complete_step
    ),
]
Confirm = Annotated[
    list[str] | None,
    typer.Option(
        "--confirm",
        autocompletion=complete_step,
        help="A manual step a person has done (of a rollback: undone), by id (repeatable): how "
        "it is confirmed without a terminal. --yes never confirms one.",
    ),
]
StepByStep = Annotated[
    bool,
    typer.Option(
        "--step",
        help="Before each step, show what it will do and ask: run, skip, undo everything and "
        "stop, or stop here.",
    ),
]
PlanOut = Annotated[
    Path | None,
    typer.Option(
        "--plan-out",
        help="With --dry-run: write what it found (runbook, values, target, catalog, checks, "
        "effects) to this plan file, for review and approval.",
    ),
]
PlanFile = Annotated[
    Path | None,
    typer.Option(
        "--plan",
        help="Run this reviewed plan: refused (exit 4), naming what changed, unless the "
        "runbook, values, target and catalog are as planned.",
    ),
]
RequireApprovals = Annotated[
    int,
    typer.Option(
        "--require-approvals",
        min=0,
        help="Signed approvals of the plan needed (the runbook or target may ask more).",
    ),
]
AllowedSigners = Annotated[
    Path | None,
    typer.Option(
        "--allowed-signers",
        envvar="DCX_ALLOWED_SIGNERS",
        help="ssh-keygen allowed signers file: whose approvals count.",
    ),
]
BreakGlass = Annotated[
    bool,
    typer.Option(
        "--break-glass",
        help="Run without the approvals it needs (--reason required): flagged in the output, "
        "the journal, the ledger, runs and status.",
    ),
]
SandboxUrl = Annotated[
    str | None,
    typer.Option(
        "--sandbox-url",
        envvar="DCX_SANDBOX_URL",
        help="Admin URL of a server for scratch databases.",
    ),
]
Reason = Annotated[
    str | None,
    typer.Option("--reason", help="Why (an incident, a ticket): in the journal and the ledger."),
]
NoLedger = Annotated[
    bool,
    typer.Option(
        "--no-ledger",
        help="Record in this machine's journal only, not in the target's ledger (said so).",
    ),
]
LedgerSchema = Annotated[
    str | None,
    typer.Option(
        "--ledger-schema", help="The ledger's schema in the target (default: dcx_runbook)."
    ),
]
Force = Annotated[
    bool, typer.Option("--force", help="Restore files even if they changed since the run.")
]
SkipOtherHosts = Annotated[
    bool,
    typer.Option(
        "--skip-other-hosts",
        help="Leave the steps that touched another machine's files or processes (said, "
        "recorded as skipped, still applied) instead of refusing.",
    ),
]
OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="human (stderr) or json (JSON Lines on stdout).")
]


def reporter(output: Output, *, fleet: bool = False) -> Any:
    from dcx_runbook.reporters import make_reporter

    return make_reporter(output.value, fleet=fleet)


# ---------------------------------------------------------------------------- fleets (docs/fleet.md)
TargetsFile = Annotated[
    Path | None,
    typer.Option(
        "--targets",
        help="Targets file (default: NAME.targets.yaml or targets.yaml next to the runbook, with "
        "--target or --select): run on each of its targets.",
    ),
]
FleetTargetsFile = Annotated[
    Path | None,
    typer.Option(
        "--targets",
        help="The fleet's targets file, for its targets' URLs (default: the one its run used).",
    ),
]
TargetName = Annotated[
    list[str] | None,
    typer.Option("--target", help="Only this target of the targets file (repeatable)."),
]
Select = Annotated[
    list[str] | None,
    typer.Option("--select", help="Only the targets with this label=value (repeatable: all)."),
]
Canary = Annotated[
    int,
    typer.Option(
        "--canary", min=0, help="Targets that must succeed first, one at a time, before the rest."
    ),
]
Concurrency = Annotated[
    int, typer.Option("--concurrency", min=1, help="Targets at work at once after the canary.")
]
MaxFailures = Annotated[
    int,
    typer.Option(
        "--max-failures", min=0, help="Failed targets tolerated; one more and no new target starts."
    ),
]
UnwindAll = Annotated[
    bool,
    typer.Option(
        "--unwind-all-on-failure",
        help="When any target fails, also undo the targets that succeeded.",
    ),
]
PerServer = Annotated[
    int | None,
    typer.Option("--per-server", min=1, help="At most N targets at work at once on one server."),
]


class FleetOrder(StrEnum):
    listed = "listed"
    name = "name"


OrderOpt = Annotated[
    FleetOrder,
    typer.Option("--order", help="The targets' order: as the targets file lists them, or by name."),
]
