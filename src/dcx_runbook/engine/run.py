"""Run a runbook: guard, lock, preflight, confirm, then precheck → action → verify per step, and
on any failure stop and unwind everything already done."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from dcx_runbook.clock import now
from dcx_runbook.engine import person, plan_check
from dcx_runbook.engine.acting import act
from dcx_runbook.engine.applicable import not_applicable
from dcx_runbook.engine.authority import authority
from dcx_runbook.engine.authority import said as said_authority
from dcx_runbook.engine.checks import run_checks
from dcx_runbook.engine.ledger import transaction_only
from dcx_runbook.engine.linting import findings_for, journaled
from dcx_runbook.engine.phases import walk
from dcx_runbook.engine.plans import Planning
from dcx_runbook.engine.plans import write as write_plan
from dcx_runbook.engine.runtime import Runtime
from dcx_runbook.engine.session import (
    Options,
    Outcome,
    confirmed,
    finish,
    ledger_schema,
    needed,
    not_confirmed,
    open_mirror,
    open_target,
    runtime_for,
    target_view,
)
from dcx_runbook.engine.summary import question
from dcx_runbook.engine.unwind import unwind
from dcx_runbook.errors import ExitCode, JournalError, Refused, RunbookError, StepFailed, Stopped
from dcx_runbook.format.loader import Loaded
from dcx_runbook.format.model import Runbook, Step
from dcx_runbook.format.variables import Resolved
from dcx_runbook.lint.check import Linted
from dcx_runbook.lint.findings import summary
from dcx_runbook.reporters.base import Reporter
from dcx_runbook.state.entries import RunbookRef, new_run
from dcx_runbook.state.journal import Journal, RunRecord, new_run_id
from dcx_runbook.statuses import Answer, RunStatus, StepOutcome, StepStatus
from dcx_runbook.target import identity

__all__ = ["Options", "Outcome", "run"]


def run(
    loaded: Loaded, resolved: Resolved, options: Options, reporter: Reporter, journal: Journal
) -> Outcome:
    runbook = loaded.runbook
    unknown = [s for s in options.skip if s not in {st.id for st in runbook.steps}]
    if unknown:
        raise RunbookError(
            f"--skip {', '.join(unknown)}: no such step (steps: "
            + ", ".join(s.id for s in runbook.steps)
            + ")"
        )
    person.check_options(runbook, options)
    planning = plan_check.planning_for(loaded, resolved, options, journal.root, reporter)
    if planning is not None and planning.kept is not None:
        reporter = planning.kept  # the dry run's events, kept for the plan
    # The loaded runbook, its models and the imported modules live for the whole run: moving them
    # out of the collector's reach keeps its passes short however many steps there are.
    gc.freeze()
    run_id = options.run_id or new_run_id()
    rt = runtime_for(
        runbook,
        resolved,
        reporter,
        run_id,
        dry_run=options.dry_run,
        expected_database=options.expect_database,
        expected_system=options.expect_system,
    )
    if options.fleet is not None:  # the targets file names the database a target must be
        rt.guard_hint = f"change the `database` of target {options.fleet[1]} in the targets file"
    held = None
    try:
        if planning is not None:  # --plan: refused where the runbook or a value changed
            plan_check.check_before(planning, options.skip)
        rt.authority = authority(runbook, options, planning)
        if runbook.target is None and not options.dry_run:  # no server lock to keep others out
            held = journal.hold_runbook(runbook.name, run_id)
        return _run(rt, (loaded, planning), resolved, options, journal, run_id)
    except Refused as exc:
        return finish(rt, Outcome(ExitCode.REFUSED, RunStatus.REFUSED, None, str(exc)))
    finally:
        if held is not None:
            held.release()
        rt.close()


def _run(
    rt: Runtime,
    what: tuple[Loaded, Planning | None],
    resolved: Resolved,
    options: Options,
    journal: Journal,
    run_id: str,
) -> Outcome:
    runbook, (loaded, planning) = rt.runbook, what
    try:
        info = open_target(rt, runbook.name, journal) if runbook.target is not None else None
    except Refused as exc:
        # Wrong database, run lock held, can't connect: said as an event too, so a JSON reader
        # sees every run end with run_finished.
        return finish(rt, Outcome(ExitCode.REFUSED, RunStatus.REFUSED, None, str(exc)))
    target = target_view(rt, info)
    if options.fleet is not None and target:  # a fleet's child run: which target, which fleet
        target = {**target, "name": options.fleet[1], "fleet_run": options.fleet[0]}
    _started(rt, options, run_id, target, resolved.notes)
    if (why := not_applicable(rt, options)) is not None:  # read-only, before the ledger
        return finish(rt, Outcome(ExitCode.OK, RunStatus.NOT_APPLICABLE, None, why))
    schema = ledger_schema(rt, options)  # a role that can't keep the ledger: refused here
    if planning is not None:  # --plan: refused (exit 4) where the target is not as planned
        plan_check.recheck(rt, planning, target, schema)
    linted = findings_for(rt, loaded)
    if options.dry_run:
        from dcx_runbook.engine.dryrun import dry_run

        return dry_run(rt, options, _plan_out(rt, planning, target, schema, options))
    with rt.interruptible():
        try:
            run_checks(rt, None, "preflight", needed(runbook.preflight, options))
            person.preflight(rt, options)
        except (StepFailed, psycopg.Error) as exc:
            return finish(
                rt, Outcome(ExitCode.REFUSED, RunStatus.REFUSED, None, f"preflight failed: {exc}")
            )
    if not confirmed(rt, options, _question(rt, target, linted, options)):
        return finish(rt, not_confirmed(rt))
    try:
        rt.record = _create_record(
            rt, loaded, resolved, options, journal, run_id, target, (schema, linted)
        )
    except JournalError as exc:  # nothing has changed yet: a refusal, not an incomplete undo
        return finish(
            rt, Outcome(ExitCode.REFUSED, RunStatus.REFUSED, None, f"{exc}: nothing was changed")
        )
    rt.emit("log", message=f"recorded as run {run_id} (dcx-runbook log {run_id})")
    try:  # the record is locked from its creation: a rollback can tell the run is at work
        try:
            open_mirror(rt, schema)
        except Refused as exc:
            return finish(rt, Outcome(ExitCode.REFUSED, RunStatus.REFUSED, run_id, str(exc)))
        return _execute(rt, options)
    finally:
        rt.record.unlock()


def _question(rt: Runtime, target: dict[str, Any], linted: Linted, options: Options) -> str:
    where = f"{identity.describe(target)} ({target['url']})" if target else "this machine"
    return question(rt, where, summary(linted.findings), options.skip)


def _plan_out(
    rt: Runtime,
    planning: Planning | None,
    target: dict[str, Any],
    schema: str | None,
    options: Options,
) -> Callable[[], str] | None:
    """--plan-out: what writes the plan once the dry run passed."""
    if planning is None or planning.out is None:
        return None
    out = planning
    return lambda: write_plan(rt, out, target, schema, options.skip)


def _started(
    rt: Runtime,
    options: Options,
    run_id: str,
    target: dict[str, Any],
    notes: Sequence[str],
) -> None:
    runbook = rt.runbook
    rt.emit(
        "run_started",
        message=f"{runbook.name}: {runbook.title}",
        detail={
            "run_id": None if options.dry_run else run_id,
            "mode": "run",
            "runbook": runbook.name,
            "dry_run": options.dry_run,
            "target": target,
            "steps": [s.id for s in runbook.steps],
            "skip": list(options.skip),
        },
    )
    for note in notes:  # which of two disagreeing sources was taken, and why
        rt.emit("log", message=note)
    if (line := said_authority(rt.authority)) is not None:
        rt.emit("log", message=line, detail={"authority": rt.authority})


def _create_record(
    rt: Runtime,
    loaded: Loaded,
    resolved: Resolved,
    options: Options,
    journal: Journal,
    run_id: str,
    target: dict[str, Any],
    ledger_and_lint: tuple[str | None, Linted],
) -> RunRecord:
    runbook = rt.runbook
    schema, linted = ledger_and_lint
    ref: RunbookRef = {
        "name": runbook.name,
        "title": runbook.title,
        "path": str(loaded.path),
        "sha256": loaded.sha256,
        "spec": _journal_spec(runbook),
    }
    data = new_run(
        run_id,
        ref,
        [(s.id, s.title) for s in runbook.steps],
        public_vars=dict(rt.masker.deep(resolved.public())),  # type: ignore[call-overload]
        secret_vars=sorted(resolved.secret),
        captured=rt.captured,
        # Only the URL can hold a secret; the rest is the server's identity, which a
        # rollback compares: masked where it happens to equal a secret, it would never match.
        target={**target, "url": rt.masker(target["url"])} if target else {},
        skipped=list(options.skip),
        ledger={"schema": schema, "off": None if schema else _LEDGER_OFF[options.ledger]},
        reason=rt.masker(options.reason) if options.reason else None,
    )
    data["lint"] = rt.masker.deep(journaled(linted))  # type: ignore[typeddict-item]
    # Who said go, and how: at the prompt, or beforehand with --yes (the incident report says).
    via = "fleet" if options.fleet else "--yes" if options.yes else "prompt"
    data["confirmed"] = {"via": via, **(data["operator"] or {})}
    if rt.authority:  # the plan it ran, who approved it, or break-glass and why
        data["authority"] = rt.masker.deep(rt.authority)  # type: ignore[typeddict-item]
    return journal.create(data)


_LEDGER_OFF = {True: "no database target", False: "--no-ledger"}  # by options.ledger


def _journal_spec(runbook: Runbook) -> dict[str, Any]:
    """The runbook as journaled: everything rollback needs, minus secret defaults.

    What the author wrote, not what differs from the defaults: `expect: null` equals expect's
    default but means "the value is NULL" (a check without it captures only); dropped, the
    runbook no longer read back, or read back as another check."""
    spec = runbook.model_dump(mode="json", by_alias=True, exclude_unset=True)
    for name, var in runbook.vars.items():
        if var.secret and var.default is not None:
            spec["vars"][name].pop("default", None)
    return spec


def _execute(rt: Runtime, options: Options) -> Outcome:
    assert rt.record is not None
    applied: list[Step] = []
    current: Step | None = None
    live = Live(rt, options.step_by_step)
    rt.person = person.Person(rt, actions=options.confirm)
    with rt.interruptible():
        try:
            for step in rt.runbook.steps:
                current = step
                if walk(rt, step, live, options.skip):
                    applied.append(step)
                current = None
        except Stopped as exc:
            return _stopped(rt, applied, exc)
        except (StepFailed, psycopg.Error, RunbookError) as exc:
            return unwind(rt, applied, current, f"{exc}", ExitCode.UNDONE)
        except KeyboardInterrupt:
            return unwind(
                rt, applied, current, "stopped by Ctrl-C or SIGTERM", ExitCode.INTERRUPTED
            )
        except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen error: undo all the same
            reason = f"unexpected error {type(exc).__name__}: {str(exc).strip() or '-'}"
            return unwind(rt, applied, current, reason.splitlines()[0], ExitCode.UNDONE)
    return finish(
        rt, Outcome(ExitCode.OK, RunStatus.SUCCEEDED, rt.record.run_id, "done and verified")
    )


def _stopped(rt: Runtime, applied: list[Step], exc: Stopped) -> Outcome:
    """The operator chose "stop here": the step asked about is not done (engine/person.py left
    it pending), those before it stay applied, and the outcome says how to undo them."""
    assert rt.record is not None
    run_id = rt.record.run_id
    left = [s.id for s in applied]
    if left:
        said = (
            f"{exc.message}: {', '.join(left)} stay{'s' if len(left) == 1 else ''} applied; "
            f"undo with: dcx-runbook rollback {run_id}"
        )
    else:
        said = f"{exc.message}: no step was applied, nothing to undo"
    undo = {"undo_command": f"dcx-runbook rollback {run_id}"} if left else {}
    return finish(rt, Outcome(ExitCode.STOPPED, RunStatus.STOPPED, run_id, said, left), undo)


class Live:
    """The phases of a step, for real: each state journaled, the action written ahead."""

    def __init__(self, rt: Runtime, step_by_step: bool = False):
        assert rt.record is not None
        self.rt, self.record, self.step_by_step = rt, rt.record, step_by_step

    def _end(self, step: Step, status: StepStatus, outcome: StepOutcome, said: str) -> None:
        entry = self.record.step(step.id)
        entry["status"] = status
        self.rt.save(entry, durable=False)
        self.rt.emit("step_finished", step.id, status=outcome, message=said)

    def skipped(self, step: Step) -> None:
        said = "skipped by the operator (--skip)"
        self._end(step, StepStatus.SKIPPED, StepOutcome.SKIPPED, said)

    def already_done(self, step: Step) -> bool:
        if not run_checks(self.rt, step.id, "done_when", step.done_when, fail_fast=False):
            return False
        said = "already done: nothing to change"
        self._end(step, StepStatus.ALREADY_DONE, StepOutcome.ALREADY_DONE, said)
        return True

    def precheck(self, step: Step) -> None:
        run_checks(self.rt, step.id, "precheck", step.precheck)

    def proceed(self, step: Step) -> bool:
        if not self.step_by_step:
            return True
        answer = person.ask_step(self.rt, step, self.record.step(step.id))
        if answer == Answer.SKIP:
            said = "skipped by the operator at the --step prompt"
            self._end(step, StepStatus.SKIPPED, StepOutcome.SKIPPED, said)
            return False
        person.act_on(answer, step.id, "action")
        return True

    def verify_only(self, step: Step) -> None:
        run_checks(self.rt, step.id, "verify", step.verify)
        self._end(step, StepStatus.PASSED, StepOutcome.PASSED, "verified")

    def act(self, step: Step) -> None:
        entry = self.record.step(step.id)
        entry["status"] = StepStatus.ACTION_STARTED
        entry["started_at"] = now()
        # Write-ahead: durable before anything of the action takes effect. A transactional action
        # takes effect at COMMIT, so the flush overlaps its statements and verify.
        durable = self.rt.save_ahead(entry)
        # The ledger's intent too (with the files it is about to write), unless its row goes
        # with the step's own COMMIT. Its result goes with the next ledger write.
        if not transaction_only(step):
            self.rt.ledger_intent(step)
        act(
            self.rt,
            step,
            "action",
            step.action,
            step.verify,
            entry,
            before_effect=durable,
            commit_status=StepStatus.APPLIED,
        )
        entry["finished_at"] = now()
        # Not fsynced: should this line be lost, "action started" and the step's already-done
        # checks still tell a later rollback what to undo.
        self._end(step, StepStatus.APPLIED, StepOutcome.APPLIED, "applied and verified")
