"""Shared set-up of the pose training tests: a small embedded dataset and a tiny HRNet + PSA config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from psa_zoo.data.synthetic import make_pose_dataset
from tests.models._tiny import TINY_HRNET

REPO = Path(__file__).resolve().parents[2]


def make_data(folder: Path, num_train: int = 12, num_val: int = 4, seed: int = 3) -> Path:
    return make_pose_dataset(folder, num_train=num_train, num_val=num_val, seed=seed, image_size=(96, 80))


def tiny_config(folder: Path) -> Path:
    path = folder / "tiny.json"
    path.write_text(json.dumps({"model": "hrnet_w18_psa_p", "model_kwargs": {"spec": TINY_HRNET.to_dict()}}))
    return path


def train_args(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train-pose", "--config", str(config), "--data", str(data), "--output-dir", str(out),
            "--recipe", "embedded", "--input-size", "64", "48", "--batch-size", "4", "--num-workers", "0",
            "--seed", "5", *extra]  # fmt: skip


TORCHRUN_2 = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]


def cli_env() -> dict[str, str]:
    """One thread per process everywhere: bit-for-bit comparisons need the same summation order."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def run_cli(args: list[str], launcher: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``psa-zoo ARGS`` in a fresh process; ``launcher`` (ending in ``-m``) runs it under e.g. torchrun."""
    command = [*(launcher or [sys.executable, "-m"]), "psa_zoo.cli", *args]
    return subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=300, **kwargs)


def weights(model_dir: Path) -> dict:
    return load_file(str(Path(model_dir) / "model.safetensors"))


OWN_NAMES = ["head", "left_shoulder", "right_shoulder", "left_hip", "right_hip"]
OWN_FROM_COCO = [0, 5, 6, 11, 12]  # the COCO joints the five own keypoints are taken from
OWN_SIGMAS = [0.05, 0.08, 0.08, 0.1, 0.1]


def make_own_data(embedded: Path, folder: Path) -> Path:
    """A dataset of one's own: the embedded images with 5 keypoints of another category (id 3), and the
    keypoint_meta.json giving their OKS sigmas (flip pairs are left to be inferred from the names)."""
    import shutil

    shutil.copytree(embedded, folder)
    for split in ("train", "val"):
        path = folder / "annotations" / f"person_keypoints_{split}2017.json"
        data = json.loads(path.read_text())
        data["categories"] = [{"id": 3, "name": "figure", "supercategory": "figure", "keypoints": OWN_NAMES,
                               "skeleton": [[1, 2], [1, 3], [2, 4], [3, 5], [4, 5]]}]  # fmt: skip
        for ann in data["annotations"]:
            kpts = ann["keypoints"]
            ann["keypoints"] = [v for j in OWN_FROM_COCO for v in kpts[3 * j : 3 * j + 3]]
            ann["num_keypoints"] = sum(1 for j in range(5) if ann["keypoints"][3 * j + 2] > 0)
            ann["category_id"] = 3
        path.write_text(json.dumps(data))
    (folder / "annotations" / "keypoint_meta.json").write_text(json.dumps({"sigmas": OWN_SIGMAS}))
    return folder
