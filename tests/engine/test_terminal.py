"""On a real terminal: the confirmation prompt, the live view, and an answer of no."""

from __future__ import annotations

from tests.conftest import schema_dump, snapshot
from tests.engine.conftest import MIXED, Mixed
from tests.support.terminal import converse, plain


def on_a_terminal(args: list[str], answer: bytes, env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal and answer its confirmation."""
    return converse(args, [(b"[y/n]", answer)], env)


def test_yes_at_the_prompt_runs_with_the_live_view(mixed: Mixed) -> None:
    code, out = on_a_terminal(["run", MIXED, *mixed.args()], b"y\n", {"COLUMNS": "120"})
    assert code == 0, out
    assert f"Run mixed (4 steps) against database {mixed.dbname} (oid" in out
    assert "on the server with system identifier" in out
    assert "done and verified" in out
    assert "add-column" in out


def test_no_at_the_prompt_changes_nothing(mixed: Mixed) -> None:
    before = schema_dump(mixed.url), snapshot(*mixed.files)
    code, out = on_a_terminal(["run", MIXED, *mixed.args()], b"n\n", {"COLUMNS": "120"})
    assert code == 4, out
    shown = plain(out)
    # A person said no: not "no terminal?" (issue 18), and no run id it never recorded.
    assert "not confirmed; nothing was changed" in shown
    assert "no terminal" not in shown and "run id" not in shown and "recorded as run" not in shown
    assert (schema_dump(mixed.url), snapshot(*mixed.files)) == before


def test_show_prints_markup_like_text_as_it_is(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A default such as `[/]` or a path with brackets is text, not Rich markup (it was a
    MarkupError traceback)."""
    from tests.conftest import cli

    folder = tmp_path / "[ops]"
    folder.mkdir()
    path = folder / "brackets.yaml"
    path.write_text(
        "name: brackets\ntitle: brackets [bold]\n"
        "vars:\n  pattern: {default: '[/]', description: 'closing [/] tag'}\n"
        "steps:\n  - id: s\n    title: s\n    verify: [{kind: shell, argv: ['true']}]\n"
    )
    done = cli("show", str(path))
    assert done.returncode == 0, done.stderr
    assert "pattern (default '[/]')" in done.stdout
    assert "closing [/] tag" in done.stdout and str(path) in done.stdout.replace("\n", "")
