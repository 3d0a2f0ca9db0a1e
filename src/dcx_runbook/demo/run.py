"""`dcx-runbook demo [RUNBOOK]`: a runbook from start to finish on a machine with nothing set up.

What the runbook needs comes from its demo manifest (demo_manifest): a sandbox PostgreSQL gets its
SQL fixtures, a scratch copy of its checkout goes into its variable, the runbook runs with its full
live output, the state query shows the database before, after the run and after the rollback, and
the sandbox is removed. The command knows no runbook: anything runbook-specific lives with the
fixtures, and node tools only come prepared (demo_tools)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcx_runbook import api
from dcx_runbook.demo import manifest as demo_manifest
from dcx_runbook.demo import tools as demo_tools
from dcx_runbook.demo.fixtures import database_state, load_fixtures
from dcx_runbook.demo.fleet import demo_fleet, fleet_plan
from dcx_runbook.demo.manifest import Manifest
from dcx_runbook.engine.person import manual_steps
from dcx_runbook.engine.run import Options, Outcome
from dcx_runbook.errors import ExitCode
from dcx_runbook.format.loader import Loaded
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.state.journal import Journal
from dcx_runbook.target import sandbox

Say = Callable[[str], None]


def demo(
    reporter: Reporter,
    *,
    runbook: str,
    runbooks_dirs: Sequence[Path] = (),
    sandbox_url: str | None = None,
    node: bool = True,
    fleet: bool = False,
) -> ExitCode:
    """Everything that can be wrong with the input (runbook, manifest, prepared tools) is found
    before the sandbox starts; the sandbox and the scratch files go whatever happens."""

    def say(message: str) -> None:
        reporter.emit(Event("log", message=message))

    (loaded,) = api.validate([runbook], runbooks_dirs)
    manifest = demo_manifest.read(loaded)
    targets = fleet_plan(loaded, manifest) if fleet else None
    tools, reason = _node_tools(manifest, node)
    with (
        tempfile.TemporaryDirectory(prefix="dcx-demo-") as tmp,
        sandbox.server(sandbox_url) as srv,
        ExitStack() as stack,
    ):
        root = Path(tmp)
        say(f"demo of {loaded.runbook.name} with the fixtures in {manifest.path.parent}")
        # A fleet's databases are the fleet demo's own: one per target.
        url = None if targets else stack.enter_context(sandbox.scratch_database(srv, "dcx_demo"))
        where = (
            f"scratch database {url.rsplit('/', 1)[1]}" if url else "a scratch database per target"
        )
        say(f"sandbox PostgreSQL ({srv.provider}); {where}")
        variables = _set_up(manifest, url, root, tools)
        if reason:
            say(f"skipping {', '.join(manifest.node_steps)} (they need node tools): {reason}")
        skip = manifest.node_steps if tools is None else ()
        if by_hand := [s.id for s in manual_steps(loaded.runbook)]:
            say(f"skipping {', '.join(by_hand)}: a person's work, and a demo asks nobody")
            skip = (*skip, *by_hand)
        if url is None:
            assert targets is not None
            return demo_fleet(reporter, loaded, manifest, targets, srv, root, (variables, skip))
        scene = _Scene(loaded, manifest, url, root, reporter, say)
        return _round_trip(scene, variables, skip)


def _node_tools(manifest: Manifest, wanted: bool) -> tuple[demo_tools.Prepared | None, str]:
    """The prepared tools for the manifest's node steps, or why they are skipped."""
    if not manifest.node_steps:
        return None, ""
    if not wanted:
        return None, "--no-node"
    found = demo_tools.find(os.environ)
    if isinstance(found, str):
        return None, f"{found}; {demo_tools.HOW}"
    return found, ""


def _set_up(
    manifest: Manifest, url: str | None, root: Path, tools: demo_tools.Prepared | None
) -> list[str]:
    """Load the SQL fixtures (into `url`: a fleet's are loaded per target) and copy the
    checkout; return the --var assignments for the run."""
    if url is not None:
        load_fixtures(url, manifest.sql)
    if manifest.checkout is None:
        return []
    copy = root / "checkout" / manifest.checkout.source.name
    shutil.copytree(manifest.checkout.source, copy)
    if tools is not None:
        demo_tools.install(tools, copy)
    return [f"{manifest.checkout.var}={copy}"]


@dataclass(frozen=True)
class _Scene:
    loaded: Loaded
    manifest: Manifest
    url: str
    root: Path
    reporter: Reporter
    say: Say


def _round_trip(scene: _Scene, variables: list[str], skip: tuple[str, ...]) -> ExitCode:
    """Run, then roll back what the run did; the state after each. The exit code is the run's
    when it failed (it has undone itself), else the rollback's."""
    show = _shower(scene.manifest, scene.url, scene.say)
    show("before")
    common: dict[str, Any] = {
        "reporter": scene.reporter,
        "database_url": scene.url,
        "journal": Journal(scene.root / "state"),
    }
    dbname = scene.url.rsplit("/", 1)[1]
    done: Outcome = api.run(
        str(scene.loaded.path),
        var=variables,
        options=Options(yes=True, skip=skip, expect_database=dbname),
        **common,
    )
    show("after the run")
    if done.exit_code != ExitCode.OK or done.run_id is None:
        return done.exit_code
    undone = api.rollback(done.run_id, options=Options(yes=True), **common)
    show("after the rollback")
    scene.say("cleaning up the sandbox")
    return undone.exit_code


def _shower(manifest: Manifest, url: str, say: Say) -> Say:
    def show(when: str) -> None:
        if manifest.state_query is not None:
            say(f"{when}: {database_state(url, manifest)}")

    return show
