"""Training checkpoints: accelerate's ``save_state`` written so that a kill at any moment leaves a state
to resume from.

Layout under ``OUTPUT_DIR/checkpoints/``: ``step_<N>/`` folders, each complete (accelerate's files —
model, optimiser, scaler, schedule, per-rank RNG states — plus ``train_state.json``, written last).
A checkpoint is written to ``step_<N>.partial/`` and renamed into place only when every process has
finished writing, so a folder named ``step_<N>`` is always whole; a leftover ``.partial`` folder (a kill
during the save) is ignored and removed by the next save. ``latest`` is the complete folder with the
largest step. accelerate does not store the step or the epoch (pipelines_anchors §4): :class:`TrainState`
does, registered with ``register_for_checkpointing``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import fsync_dir, write_json_atomic

__all__ = [
    "CHECKPOINTS_DIR",
    "STATE_FILE",
    "CheckpointError",
    "TrainState",
    "drop_checkpoints_after",
    "find_checkpoint",
    "list_checkpoints",
    "save_checkpoint",
]

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "train_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (missing, incomplete, or from another run's setup)."""


@dataclass
class TrainState:
    """What accelerate does not keep: where the run stands, and the setup it must be resumed with."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # epoch the next step belongs to
    step_in_epoch: int = 0  # optimiser steps of that epoch already done
    setup: dict[str, Any] = field(default_factory=dict)  # values a resumed run must share (batch, data size)
    metrics: dict[str, float] = field(default_factory=dict)  # last evaluation

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def find_checkpoint(output_dir: str | Path, which: str) -> Path:
    """``which`` = ``"latest"`` (the newest complete checkpoint of ``output_dir``) or a checkpoint folder."""
    if which == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise CheckpointError(
                f"--resume-from-checkpoint latest: no complete checkpoint under "
                f"{Path(output_dir) / CHECKPOINTS_DIR}; start without it, or give a checkpoint folder"
            )
        return found[-1]
    path = Path(which)
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(
            f"--resume-from-checkpoint {which}: not a complete psa_zoo checkpoint (no {STATE_FILE}); give a "
            f"step_<N> folder under OUTPUT_DIR/{CHECKPOINTS_DIR}, or 'latest'"
        )
    return path


def read_train_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text())


def save_checkpoint(accelerator, output_dir: str | Path, state: TrainState, keep: int | None = None) -> Path:
    """Write ``step_<state.step>`` atomically (call on every process); keep the newest ``keep`` ones."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    final = root / f"step_{state.step}"
    partial = root / f"step_{state.step}.partial"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(partial / STATE_FILE, state.state_dict())
        _put_in_place(partial, final)
        fsync_dir(root)
        if keep is not None:
            for old in [p for p in list_checkpoints(output_dir) if p != final][: -keep + 1 or None]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _put_in_place(partial: Path, final: Path) -> None:
    """``partial`` becomes ``final``; an older ``final`` (the same step saved before) is moved aside first
    and deleted after, so at every moment a complete folder of that step exists (``final`` or the aside
    one, which :func:`list_checkpoints` does not count but a person can still use)."""
    if not final.exists():
        os.replace(partial, final)
        return
    aside = final.with_name(final.name + ".old")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(final, aside)
    os.replace(partial, final)
    shutil.rmtree(aside, ignore_errors=True)


def drop_checkpoints_after(output_dir: str | Path, step: int) -> list[Path]:
    """Delete the checkpoints newer than ``step`` (a run resumed from an older checkpoint: its newer ones
    belong to the abandoned continuation, and ``latest`` must not pick them after a crash)."""
    dropped = []
    for path in list_checkpoints(output_dir):
        if int(path.name.split("_")[1]) > step:
            shutil.rmtree(path)
            dropped.append(path)
    return dropped
