"""Pose training through the real engine: exact resume after SIGKILL, two processes, own keypoints,
the run-folder rules."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

import psa_zoo
from tests.train._pose_run import TORCHRUN_2, cli_env, make_data, run_cli, tiny_config, train_args, weights


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose_train")
    return make_data(root / "data"), tiny_config(root), root


def test_kill_mid_epoch_and_resume_gives_the_uninterrupted_weights_bit_for_bit(setup):
    data, config, root = setup
    steps = ["--max-train-steps", "40", "--checkpointing-steps", "3"]
    straight = run_cli(train_args(config, data, root / "straight", *steps))
    assert straight.returncode == 0, straight.stderr[-2000:]

    # the killed run uses a data-loader worker: augmentations are seeded per sample, not per worker
    out = root / "killed"
    args = [sys.executable, "-m", "psa_zoo.cli", *train_args(config, data, out, *steps)]
    args[args.index("--num-workers") + 1] = "1"
    process = subprocess.Popen(args, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "step_9").is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "model").exists()
    # 12 images → fewer than 40 steps' worth per epoch: step 9 is mid-epoch, and later epochs follow
    resumed = run_cli(train_args(config, data, out, *steps, "--resume-from-checkpoint", "latest"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout + resumed.stderr

    a, b = weights(root / "straight" / "model"), weights(out / "model")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_two_processes_train_the_same_steps_as_one(setup):
    data, config, root = setup
    steps = ["--max-train-steps", "6"]
    one = run_cli(train_args(config, data, root / "one", *steps))  # batch 4 on one process
    two_args = train_args(config, data, root / "two", *steps)
    two_args[two_args.index("--batch-size") + 1] = "2"  # 2 per process × 2 processes
    two = run_cli(two_args, launcher=TORCHRUN_2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert json.loads((root / "two" / "train_config.json").read_text())["num_processes"] == 2
    a, b = weights(root / "one" / "model"), weights(root / "two" / "model")
    # the same samples per step and the loss of the whole step: equal up to the summation order
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst < 1e-5, worst
    moved = max((a[k].double() - weights_init(root)[k].double()).abs().max().item()
                for k in a if a[k].is_floating_point())  # fmt: skip
    assert moved > 1e-3  # training did change the weights: the equality above is not trivial


def weights_init(root):
    """The tiny model's initial weights (the runs seed 5 before building it)."""
    from accelerate.utils import set_seed

    from tests.models._tiny import TINY_HRNET

    set_seed(5)
    model = psa_zoo.create_model("hrnet_w18_psa_p", spec=TINY_HRNET)
    return model.state_dict()
