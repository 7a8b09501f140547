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
from psa_zoo.pose import PoseEstimator
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
    # SGD: a gradient off by a factor would show directly (Adam normalises it away but for its eps)
    steps = ["--max-train-steps", "6", "--optimizer", "sgd", "--lr", "0.05"]
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

    # evaluation under two processes: each predicts half, the gather holds every instance once
    evals = {}
    for name, launcher in (("one", None), ("two", TORCHRUN_2)):
        out = root / f"eval_{name}.json"
        done = run_cli(["eval-pose", "--model", str(root / "one" / "model"), "--data", str(data), "--json",
                        str(out)], launcher=launcher)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        evals[name] = json.loads(out.read_text())
    assert evals["one"] == evals["two"]


def weights_init(root):
    """The tiny model's initial weights (the runs seed 5 before building it)."""
    from accelerate.utils import set_seed

    from tests.models._tiny import TINY_HRNET

    set_seed(5)
    model = psa_zoo.create_model("hrnet_w18_psa_p", spec=TINY_HRNET)
    return model.state_dict()


def test_fine_tuning_on_own_keypoints_makes_their_metadata_the_models(setup, tmp_path):
    from tests.train._pose_run import OWN_NAMES, OWN_SIGMAS, make_own_data

    data, config, _ = setup
    own = make_own_data(data, tmp_path / "own")
    run = run_cli(train_args(config, own, tmp_path / "run", "--max-train-steps", "2"))
    assert run.returncode == 0, run.stderr[-2000:]
    model = psa_zoo.from_pretrained(tmp_path / "run" / "model")
    keypoints = model.metadata.keypoints
    assert model.num_classes == 5 and list(keypoints.keypoint_names) == OWN_NAMES
    assert keypoints.flip_pairs == ((1, 2), (3, 4))  # inferred from left_/right_ names
    assert list(keypoints.sigmas) == OWN_SIGMAS and keypoints.skeleton[0] == (0, 1)  # 1-based → 0-based
    assert model.metadata.input_size == (3, 64, 48) and model.metadata.extra["codec"]["name"] == "dark"
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "person_keypoints_train2017.json" in card and f"| AP | {metrics['AP']:.4f} |" in card

    # the saved model evaluated again by eval-pose: the AP the run recorded
    from psa_zoo.cli import main

    stats_file = tmp_path / "stats.json"
    assert main(["eval-pose", "--model", str(tmp_path / "run" / "model"), "--data", str(own),
                 "--no-flip-test", "--json", str(stats_file)]) == 0  # fmt: skip
    assert json.loads(stats_file.read_text())["AP"] == metrics["AP"]

    prediction = PoseEstimator(model).predict(next((own / "val2017").iterdir()), boxes=[[5, 5, 40, 60]])
    people = prediction.to_dict()["people"]
    assert prediction.keypoints.shape == (1, 5, 2) and list(people[0]["keypoints"]) == OWN_NAMES


def test_a_non_empty_output_dir_is_refused_and_kept(setup, tmp_path, capsys):
    from tests.conftest import cli_error_line

    data, config, _ = setup
    out = tmp_path / "notes"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    line = cli_error_line(capsys, train_args(config, data, out, "--max-train-steps", "1"))
    assert "is not empty" in line and "--resume-from-checkpoint latest" in line and "--overwrite" in line
    line = cli_error_line(capsys, train_args(config, data, out, "--max-train-steps", "1", "--overwrite"))
    assert "not a psa_zoo run" in line
    line = cli_error_line(capsys, train_args(config, data, tmp_path / "new", "--max-train-steps", "1",
                                             "--resume-from-checkpoint", "latest"))  # fmt: skip
    assert "no complete checkpoint" in line
    assert (out / "mine.txt").read_text() == "keep me" and sorted(p.name for p in out.iterdir()) == [
        "mine.txt"
    ]


def test_a_broken_annotation_file_is_one_clear_error_before_any_work(setup, tmp_path, capsys):
    import shutil

    from tests.conftest import cli_error_line

    data, config, _ = setup
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    ann = broken / "annotations" / "person_keypoints_train2017.json"
    content = json.loads(ann.read_text())
    content["annotations"][0]["area"] = 0
    ann.write_text(json.dumps(content))
    before = ann.read_bytes()
    line = cli_error_line(capsys, train_args(config, broken, tmp_path / "out", "--max-train-steps", "1"))
    assert "area" in line and "person_keypoints_train2017.json" in line
    assert ann.read_bytes() == before and not (tmp_path / "out").exists()


def test_eval_pose_on_a_results_file_gives_the_ten_stats(setup, tmp_path, capsys):
    from psa_zoo.cli import main

    data, _, _ = setup
    ann = data / "annotations" / "person_keypoints_val2017.json"
    gt = json.loads(ann.read_text())
    # the ground truth as final results (only "score"): a perfect prediction
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
                "score": 1.0} for a in gt["annotations"] if a["num_keypoints"] > 0]  # fmt: skip
    res_file, out = tmp_path / "res.json", tmp_path / "stats.json"
    res_file.write_text(json.dumps(results))
    assert main(["eval-pose", "--ann", str(ann), "--results", str(res_file), "--json", str(out)]) == 0
    stats = json.loads(out.read_text())
    assert {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl", "per_keypoint"} <= set(
        stats
    )
    assert stats["AP"] == 1.0 and stats["AR"] == 1.0
    assert all(row["mean_error_px"] in (0.0, None) for row in stats["per_keypoint"])
    assert "AP" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ann", "a.json"], "--ann and --results go together"),
        (["--model", "m", "--ann", "a.json", "--results", "r.json"], "not both"),
        ([], "give --ann ANN.json --results RES.json, or --model NAME_OR_DIR --data DIR"),
    ],
)
def test_eval_pose_option_mistakes_are_one_line(argv, message, capsys):
    from tests.conftest import cli_error_line

    assert message in cli_error_line(capsys, ["eval-pose", *argv])


def test_a_short_run_lowers_the_loss_and_raises_ap_above_the_untrained_model(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from psa_zoo.pose import evaluate_pose_model
    from psa_zoo.train import TrainConfig, Trainer
    from psa_zoo.train.pose import PoseTask
    from tests.models._tiny import TINY_HRNET
    from tests.train._pose_run import make_data

    data = make_data(tmp_path / "data", num_train=40, num_val=8, seed=1)
    config = TrainConfig(model="hrnet_w18_psa_p", data=str(data), output_dir=str(tmp_path / "run"),
                         recipe="embedded", input_size=[64, 48], batch_size=8, max_train_steps=60,
                         num_workers=0, seed=0, log_every=5, report_to="tensorboard",
                         model_kwargs={"spec": TINY_HRNET.to_dict()}).resolve()  # fmt: skip
    task = PoseTask(config)
    untrained, _ = evaluate_pose_model(task.build_model().eval(), task.val_data, flip_test=False)
    result = Trainer(PoseTask(config), config).fit()

    events = EventAccumulator(str(tmp_path / "run" / "logs" / "psa_zoo")).Reload()
    loss = [e.value for e in events.Scalars("train/loss")]
    assert len(loss) == 12 and events.Scalars("val/AP")[-1].value == pytest.approx(result["metrics"]["AP"])
    assert sum(loss[-3:]) < 0.8 * sum(loss[:3]), loss
    assert result["metrics"]["AP"] > untrained.stats["AP"] + 0.02, (untrained.stats["AP"], result["metrics"])


def _quick_config(data, out, **changes):
    from psa_zoo.train import TrainConfig
    from tests.models._tiny import TINY_HRNET

    values = {"model": "hrnet_w18_psa_p", "data": str(data), "output_dir": str(out), "recipe": "embedded",
              "input_size": [64, 48], "batch_size": 4, "max_train_steps": 3, "num_workers": 0, "seed": 0,
              "max_val_images": 2, "model_kwargs": {"spec": TINY_HRNET.to_dict()}, **changes}  # fmt: skip
    return TrainConfig(**values).resolve()


def _bn_means(model_dir):
    return {k: v for k, v in weights(model_dir).items() if k.endswith("running_mean")}


def test_batch_norm_is_frozen_below_eight_per_process_unless_told_otherwise(setup, tmp_path):
    from psa_zoo.train.pose import train_pose

    data, _, _ = setup
    initial = {k: v for k, v in weights_init(None).items() if k.endswith("running_mean")}
    frozen = _bn_means(train_pose(_quick_config(data, tmp_path / "auto", seed=5))["model_dir"])
    trained = _bn_means(
        train_pose(_quick_config(data, tmp_path / "off", seed=5, freeze_bn="off"))["model_dir"]
    )
    assert all(torch.equal(frozen[k], initial[k]) for k in initial)  # batch 4 < 8: eval-mode statistics
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)


def test_bf16_mixed_precision_trains_on_the_cpu_and_fp16_is_refused(setup, tmp_path):
    from psa_zoo.train import ConfigError
    from psa_zoo.train.pose import train_pose

    data, _, _ = setup
    result = train_pose(_quick_config(data, tmp_path / "bf16", mixed_precision="bf16"))
    bf16 = weights(result["model_dir"])
    fp32 = weights(train_pose(_quick_config(data, tmp_path / "fp32"))["model_dir"])
    assert result["steps"] == 3 and all(torch.isfinite(v).all() for v in bf16.values())
    assert any(not torch.equal(bf16[k], fp32[k]) for k in fp32)  # autocast really ran in bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
            train_pose(_quick_config(data, tmp_path / "fp16", mixed_precision="fp16"))


@pytest.mark.parametrize("codec", ["msra", "udp"])
def test_the_codec_trained_with_is_the_one_the_saved_model_predicts_with(setup, tmp_path, codec):
    from psa_zoo.train.pose import train_pose

    data, _, _ = setup
    result = train_pose(_quick_config(data, tmp_path / codec, codec=codec, max_train_steps=1))
    model = psa_zoo.from_pretrained(result["model_dir"])
    estimator = PoseEstimator(model)
    assert model.metadata.extra["codec"]["name"] == codec == estimator.codec.name
    assert estimator.udp == (codec == "udp")  # UDP's unit-length warp goes with its codec


def test_gradient_accumulation_gives_the_large_batch_step(setup, tmp_path):
    from psa_zoo.train.pose import train_pose

    data, _, _ = setup
    sgd = {"optimizer": "sgd", "lr": 0.05, "max_train_steps": 4}
    big = weights(train_pose(_quick_config(data, tmp_path / "big", **sgd))["model_dir"])
    small = _quick_config(data, tmp_path / "acc", batch_size=2, gradient_accumulation_steps=2, **sgd)
    accumulated = weights(train_pose(small)["model_dir"])
    worst = max((big[k].double() - accumulated[k].double()).abs().max().item() for k in big
                if big[k].is_floating_point())  # fmt: skip
    assert worst < 1e-6, worst


def test_resume_with_other_settings_is_refused(setup, tmp_path, capsys):
    from tests.conftest import cli_error_line

    data, config, _ = setup
    out = tmp_path / "run"
    steps = ["--max-train-steps", "2", "--checkpointing-steps", "1"]
    assert run_cli(train_args(config, data, out, *steps)).returncode == 0
    line = cli_error_line(capsys, train_args(config, data, out, *steps, "--lr", "0.5",
                                             "--resume-from-checkpoint", "latest"))  # fmt: skip
    assert "other settings" in line and "'lr'" in line


def test_overwrite_replaces_a_run_folder_and_refuses_a_look_alike(setup, tmp_path, capsys):
    from psa_zoo.train.pose import train_pose
    from tests.conftest import cli_error_line

    data, config, _ = setup
    run = tmp_path / "run"
    train_pose(_quick_config(data, run, max_train_steps=1))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step_9").mkdir()  # an older run's checkpoint: must go
    train_pose(_quick_config(data, run, max_train_steps=1, overwrite=True))
    assert not (run / "checkpoints" / "step_9").exists() and (run / "model" / "model.safetensors").is_file()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train_config.json").write_text('{"lr_scheduler": "cosine"}')
    (foreign / "notes.txt").write_text("keep")
    capsys.readouterr()  # the two runs' output
    line = cli_error_line(capsys, train_args(config, data, foreign, "--max-train-steps", "1", "--overwrite"))
    assert "not a psa_zoo run folder" in line and (foreign / "notes.txt").read_text() == "keep"


def test_accelerates_own_gradient_accumulation_setting_is_refused(setup, tmp_path, monkeypatch):
    from psa_zoo.train import ConfigError
    from psa_zoo.train.pose import train_pose

    data, _, _ = setup
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    with pytest.raises(ConfigError, match="pass --gradient-accumulation-steps to psa-zoo"):
        train_pose(_quick_config(data, tmp_path / "run"))


def test_a_corrupt_image_met_in_a_worker_is_the_datasets_one_line_error(setup, tmp_path, capsys):
    import shutil

    from psa_zoo.cli import main

    data, config, _ = setup
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    image = sorted((broken / "train2017").iterdir())[0]
    image.write_bytes(image.read_bytes()[:300])  # truncated
    args = train_args(config, broken, tmp_path / "out", "--max-train-steps", "12")
    args[args.index("--num-workers") + 1] = "1"
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert stop.value.code == 2 and "Traceback" not in err and "worker" not in last
    assert last.startswith("psa-zoo train-pose: error: ") and f"{image} could not be decoded" in last
