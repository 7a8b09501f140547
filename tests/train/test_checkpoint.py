"""Which checkpoint folders count: complete ones only, newest by step; a resume from an older one drops
the newer ones."""

from __future__ import annotations

import pytest

from psa_zoo.train.checkpoint import (
    STATE_FILE,
    CheckpointError,
    drop_checkpoints_after,
    find_checkpoint,
    list_checkpoints,
)


def _checkpoint(root, name, complete=True):
    folder = root / "checkpoints" / name
    folder.mkdir(parents=True)
    if complete:
        (folder / STATE_FILE).write_text("{}")
    return folder


def test_latest_is_the_complete_folder_with_the_largest_step(tmp_path):
    _checkpoint(tmp_path, "step_10")
    _checkpoint(tmp_path, "step_9")
    _checkpoint(tmp_path, "step_99.partial")  # a kill during a save
    _checkpoint(tmp_path, "step_98", complete=False)  # no train_state.json: not ours, or not finished
    _checkpoint(tmp_path, "step_12.old")  # the aside copy of a re-saved step
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_9", "step_10"]  # numeric, not text order
    assert find_checkpoint(tmp_path, "latest").name == "step_10"


def test_no_checkpoint_and_a_wrong_folder_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        find_checkpoint(tmp_path, "latest")
    with pytest.raises(CheckpointError, match="not a complete psa_zoo checkpoint"):
        find_checkpoint(tmp_path, str(_checkpoint(tmp_path, "step_3", complete=False)))


def test_resuming_from_an_older_checkpoint_drops_the_newer_ones(tmp_path):
    for step in (3, 6, 9):
        _checkpoint(tmp_path, f"step_{step}")
    dropped = drop_checkpoints_after(tmp_path, 3)
    assert sorted(p.name for p in dropped) == ["step_6", "step_9"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_3"]
