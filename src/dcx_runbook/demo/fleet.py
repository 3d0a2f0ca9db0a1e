"""`dcx-runbook demo --fleet`: the runbook over its targets example (`NAME.targets.example.yaml`
next to it), each target a scratch database of the sandbox loaded with the manifest's `fleet`
fixtures; run as one fleet, then rolled back as one, each database's state shown before, after
the run and after the rollback (docs/fleet.md)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml

from dcx_runbook import api
from dcx_runbook.demo.fixtures import database_state, load_fixtures
from dcx_runbook.demo.manifest import Manifest
from dcx_runbook.engine.options import Options
from dcx_runbook.errors import ExitCode, InvalidInput
from dcx_runbook.format.loader import Loaded
from dcx_runbook.format.targets import Targets, load_targets
from dcx_runbook.reporters.base import Event, Reporter
from dcx_runbook.target import sandbox

SUFFIX = ".targets.example.yaml"


def fleet_plan(loaded: Loaded, manifest: Manifest) -> Targets:
    """The targets example and the fixtures of each of its targets, checked before any sandbox
    starts."""
    example = loaded.path.with_name(loaded.path.name.rsplit(".", 1)[0] + SUFFIX)
    if not example.is_file():
        raise InvalidInput(f"--fleet: no targets example for {loaded.runbook.name} ({example})")
    targets = load_targets(example)
    fixtures = manifest.fleet or {}
    missing = [name for name in targets.names if name not in fixtures]
    if missing:
        raise InvalidInput(
            f"--fleet: {manifest.path} has no `fleet:` fixtures for {', '.join(missing)} "
            f"(the targets of {example.name})"
        )
    return targets


def demo_fleet(
    reporter: Reporter,
    loaded: Loaded,
    manifest: Manifest,
    targets: Targets,
    srv: sandbox.Server,
    root: Path,
    run_with: tuple[list[str], tuple[str, ...]],
) -> ExitCode:
    variables, skip = run_with
    fixtures = manifest.fleet or {}
    with ExitStack() as stack, _state_dir(root / "state"):
        urls = {
            name: stack.enter_context(sandbox.scratch_database(srv, "dcx_demo"))
            for name in targets.names
        }
        for name, url in urls.items():
            load_fixtures(url, fixtures[name])
            reporter.emit(Event("log", message=f"{name}: scratch database {url.rsplit('/', 1)[1]}"))
        path = _scratch_targets(targets, urls, root)
        show = _shower(manifest, urls, reporter)
        show("before")
        fleet = api.fleet_options(canary=1, concurrency=len(urls))
        options = Options(yes=True, skip=skip)
        done = api.run_fleet(
            str(loaded.path), reporter=reporter, targets_file=path, var=variables,
            options=options, fleet=fleet,
        )  # fmt: skip
        show("after the run")
        if done.exit_code != ExitCode.OK or done.run_id is None:
            return done.exit_code
        undone = api.fleet_again("rollback", done.run_id, reporter=reporter, options=options)
        show("after the rollback")
        return undone.exit_code


def _scratch_targets(targets: Targets, urls: dict[str, str], root: Path) -> Path:
    """The example with each target's URL and database replaced by its scratch database."""
    entries = []
    for spec in targets.file.targets:
        entry = spec.model_dump(exclude_none=True, exclude={"url_env"})
        entry.update(url=urls[spec.name], database=urls[spec.name].rsplit("/", 1)[1])
        entries.append(entry)
    path = root / "targets.yaml"
    path.write_text(yaml.safe_dump({"targets": entries}, sort_keys=False))
    return path


def _shower(manifest: Manifest, urls: dict[str, str], reporter: Reporter) -> Callable[[str], None]:
    def show(when: str) -> None:
        if manifest.state_query is None:
            return
        for name, url in urls.items():
            try:
                said = database_state(url, manifest)
            except InvalidInput:
                said = "no wallet here (the state query does not apply)"
            reporter.emit(Event("log", message=f"{when}: {name}: {said}"))

    return show


@contextmanager
def _state_dir(path: Path) -> Iterator[None]:
    """The demo's own state directory, for the fleet's child runs too (they read it from the
    environment)."""
    before = os.environ.get("DCX_RUNBOOK_STATE_DIR")
    os.environ["DCX_RUNBOOK_STATE_DIR"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DCX_RUNBOOK_STATE_DIR", None)
        else:
            os.environ["DCX_RUNBOOK_STATE_DIR"] = before
