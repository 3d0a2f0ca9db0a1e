"""Messages say each thing once and exactly (issue 12, item 11): "step X (phase): step X
(phase): ..." was doubled, "still applied: X" appeared twice in one panel, "it.. Still"."""

from __future__ import annotations

import re

import pytest

from tests.engine.conftest import Mixed
from tests.trust.conftest import events

pytestmark = pytest.mark.slow


def test_a_failed_undo_names_its_step_once_and_what_is_left_once(mixed: Mixed) -> None:
    human = mixed.run("--var", "step3_verify=no", "--var", "undo_exit=1", output="human")
    assert human.returncode == 3, human.stderr
    assert "step edit-config (rollback.action): step edit-config" not in human.stderr
    assert "edit-config: rollback.action: exited 1 (expected 0)" in human.stderr
    assert len(re.findall("still applied", human.stderr, re.IGNORECASE)) == 1, human.stderr
    assert ".." not in human.stderr

    again = mixed.rollback("--var", "undo_exit=1")
    stream = events(again.stdout)
    [failed] = [e for e in stream if e["event"] == "step_undone"]
    assert failed["message"] == "rollback.action: exited 1 (expected 0)"
    assert stream[-1]["message"].count("edit-config") == 2  # the failed undo, what is left


def test_a_refused_file_restore_ends_its_sentence_once(mixed: Mixed) -> None:
    assert mixed.run().returncode == 0
    (mixed.work / "config.ini").write_text("[feature]\nenabled = maybe\n")  # edited since
    refused = mixed.rollback()
    assert refused.returncode == 3, refused.stderr
    message = events(refused.stdout)[-1]["message"]
    assert "--force to overwrite it. Still applied on" in message
    assert ".." not in message
