"""The held deletions a one-shot command keeps under DATA_DIR: a file that is not what it wrote is one clear error
naming it and what to do, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragsync.errors import SetupError
from ragsync.runstate.deletions import HeldFile


def test_no_file_holds_no_runs(tmp_path: Path) -> None:
    assert HeldFile(tmp_path / "held.json").runs() == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "JSONDecodeError"),
        ('{"run_id": "r"}', "TypeError"),  # an object, not the list written
        ('[{"run_id": "r"}]', "KeyError: 'tenant_id'"),
        (
            '[{"run_id": "r", "tenant_id": "t", "service": "s", "full": true, "before": "soon", "held": {}, '
            '"finished_at": "x"}]',
            "ValueError",
        ),
    ],
)
def test_a_file_it_did_not_write_is_one_error_naming_it_and_what_to_do(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "held.json"
    path.write_text(text)
    with pytest.raises(SetupError) as raised:
        HeldFile(path).runs()
    message = str(raised.value)
    assert str(path) in message and reason in message and "move it aside and sync the services again" in message
