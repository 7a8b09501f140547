"""Segmentation training through the shared engine: the loss falls and mIoU rises, a resume equals the
uninterrupted run, the dataset's classes become the model's, eval-seg on saved predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import psa_zoo
from psa_zoo.data.synthetic import make_seg_dataset
from psa_zoo.seg import Segmenter, evaluate_seg_model
from psa_zoo.train import TrainConfig, Trainer
from psa_zoo.train.seg import SegTask, train_seg
from tests.train._pose_run import weights


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    return make_seg_dataset(tmp_path_factory.mktemp("seg") / "data", num_train=24, num_val=6, seed=4,
                            image_size=(96, 80))  # fmt: skip


def _config(data, out, **changes):
    values = {"model": "deeplabv3plus_mbv2_psa", "data": str(data), "output_dir": str(out),
              "recipe": "embedded_seg", "crop_size": [64, 64], "batch_size": 4, "max_train_steps": 3,
              "num_workers": 0, "seed": 0, **changes}  # fmt: skip
    return TrainConfig(task="seg", **values).resolve()


def test_a_short_run_lowers_the_loss_and_raises_miou(seg_data, tmp_path):
    config = _config(seg_data, tmp_path / "run", max_train_steps=30, log_every=3, report_to="tensorboard",
                     lr=3e-3)  # fmt: skip
    task = SegTask(config)
    untrained = evaluate_seg_model(task.build_model().eval(), task.val_data)
    result = Trainer(SegTask(config), config).fit()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "logs" / "psa_zoo")).Reload()
    loss = [e.value for e in events.Scalars("train/loss")]
    assert sum(loss[-3:]) < 0.8 * sum(loss[:3]), loss
    assert result["metrics"]["mIoU"] > untrained.miou + 0.05, (untrained.miou, result["metrics"])


def test_resume_from_a_checkpoint_gives_the_uninterrupted_weights(seg_data, tmp_path):
    straight = train_seg(_config(seg_data, tmp_path / "a", max_train_steps=4, checkpointing_steps=2))
    run = tmp_path / "b"
    train_seg(_config(seg_data, run, max_train_steps=4, checkpointing_steps=2))
    import shutil

    shutil.rmtree(run / "checkpoints" / "step_4")
    shutil.rmtree(run / "model")
    resumed = train_seg(_config(seg_data, run, max_train_steps=4, checkpointing_steps=2,
                                resume_from_checkpoint="latest"))  # fmt: skip
    a, b = weights(straight["model_dir"]), weights(resumed["model_dir"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_datasets_classes_become_the_models(seg_data, tmp_path):
    result = train_seg(_config(seg_data, tmp_path / "run", max_train_steps=1))
    model = psa_zoo.from_pretrained(result["model_dir"])
    classes = json.loads((seg_data / "classes.json").read_text())
    assert list(model.metadata.classes.class_names) == classes["class_names"] and model.num_classes == 4
    assert [list(c) for c in model.metadata.classes.palette] == classes["palette"]
    image = next((seg_data / "images" / "val").iterdir())
    prediction = Segmenter(model).predict(image)
    assert prediction.labels.shape == np.asarray(Image.open(image)).shape[:2]
    out = tmp_path / "overlay.png"
    Segmenter(model).draw(image, prediction, out=out)
    assert Image.open(out).size == Image.open(image).size
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "mIoU" in card and "background, person, box, ball" in card


def test_eval_seg_on_saved_predictions(seg_data, tmp_path):
    from psa_zoo.cli import main

    gt = seg_data / "masks" / "val"
    pred = tmp_path / "pred"
    pred.mkdir()
    for mask in gt.iterdir():  # the ground truth, with the "person" class (1) predicted as background
        labels = np.asarray(Image.open(mask)).copy()
        labels[labels == 1] = 0
        Image.fromarray(labels).save(pred / mask.name)
    out = tmp_path / "miou.json"
    assert (
        main(["eval-seg", "--pred", str(pred), "--gt", str(gt), "--num-classes", "4", "--json", str(out)])
        == 0
    )
    stats = json.loads(out.read_text())
    assert {"mIoU", "aAcc", "mAcc", "IoU", "Acc"} <= set(stats)
    assert (
        stats["IoU"]["class_1"] == 0.0 and stats["IoU"]["class_2"] == 1.0 and stats["IoU"]["class_3"] == 1.0
    )


def test_kill_mid_epoch_and_resume_is_exact_with_dropout_in_the_model(seg_data, tmp_path):
    """DeepLabV3+'s ASPP has Dropout(0.1): the resumed run must draw the same masks (RNG states restored)."""
    import signal
    import subprocess
    import sys
    import time

    from tests.train._pose_run import cli_env, run_cli

    args = ["train-seg", "--model", "deeplabv3plus_mbv2_psa", "--data", str(seg_data),
            "--recipe", "embedded_seg", "--crop-size", "64", "64", "--batch-size", "4", "--num-workers", "0",
            "--seed", "3", "--max-train-steps", "30", "--checkpointing-steps", "4"]  # fmt: skip
    straight = run_cli([*args, "--output-dir", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr[-2000:]
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "psa_zoo.cli", *args, "--output-dir", str(out)]
    process = subprocess.Popen(command, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "step_8").is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = run_cli([*args, "--output-dir", str(out), "--resume-from-checkpoint", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = weights(tmp_path / "straight" / "model"), weights(out / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)  # 24 images / batch 4: step 8 is mid-epoch


def _write_png(path, array, palette=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette)
    image.save(path)


def _cityscapes_layout(root):
    """labelIds only, as downloaded: road (7), a car (26) and an unlabelled band (0) on random images."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(4 if split == "train" else 2):
            stem = f"aachen_000000_00000{i}"
            _write_png(root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png",
                       rng.integers(0, 255, (64, 128, 3), dtype=np.uint8))  # fmt: skip
            ids = np.full((64, 128), 7, np.uint8)  # road
            ids[20:40, 30:90] = 26  # car
            ids[:5] = 0  # unlabelled
            _write_png(root / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelIds.png", ids)
    return root


def test_train_seg_reads_a_cityscapes_layout_and_maps_label_ids(tmp_path):
    """A Cityscapes-layout folder (labelIds only, as downloaded) trains without a preprocessing step: the
    labels the model learns are train ids (road: labelId 7 → trainId 0, car: 26 → 13, unlabelled → 255)."""
    from psa_zoo.train.seg import detect_layout, load_seg_split

    root = _cityscapes_layout(tmp_path / "cityscapes")
    assert detect_layout(root) == "cityscapes"
    _, mask = load_seg_split(root, "train").read(0)
    assert set(np.unique(mask).tolist()) == {0, 13, 255}
    result = train_seg(
        _config(root, tmp_path / "run", max_train_steps=2, crop_size=[32, 64], recipe="embedded_seg")
    )
    model = psa_zoo.from_pretrained(result["model_dir"])
    assert model.num_classes == 19 and model.metadata.classes.class_names[13] == "car"
    assert 0.0 <= result["metrics"]["mIoU"] <= 1.0


def test_an_unknown_data_layout_is_one_clear_error(tmp_path):
    from psa_zoo.train import ConfigError

    (tmp_path / "photos").mkdir()
    with pytest.raises(ConfigError, match="not a dataset layout psa_zoo knows"):
        train_seg(_config(tmp_path / "photos", tmp_path / "run"))


def test_eval_seg_under_two_processes_counts_every_image_once(seg_data, tmp_path):
    from tests.train._pose_run import TORCHRUN_2, run_cli

    model_dir = train_seg(_config(seg_data, tmp_path / "run", max_train_steps=2))["model_dir"]
    stats = {}
    for name, launcher in (("one", None), ("two", TORCHRUN_2)):
        out = tmp_path / f"{name}.json"
        done = run_cli(["eval-seg", "--model", model_dir, "--data", str(seg_data), "--json", str(out)],
                       launcher=launcher)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        stats[name] = json.loads(out.read_text())
    assert stats["one"] == stats["two"]  # one confusion matrix: 6 images split 3 + 3, summed once
    labelled = sum(
        int((np.asarray(Image.open(m)) != 255).sum()) for m in (seg_data / "masks" / "val").iterdir()
    )
    assert stats["two"]["num_pixels"] == labelled  # each image counted exactly once


def test_two_processes_train_the_same_steps_as_one(seg_data, tmp_path):
    from tests.train._pose_run import TORCHRUN_2, run_cli

    # without the ASPP dropout nothing random differs between one and two processes (each process draws
    # its own dropout masks); BN is frozen below 8 samples per process, so its statistics agree too
    config = tmp_path / "no_dropout.json"
    config.write_text(json.dumps({"model": "deeplabv3plus_mbv2_psa", "model_kwargs": {"aspp_dropout": 0.0}}))

    def args(out, batch):
        return ["train-seg", "--config", str(config), "--data", str(seg_data), "--output-dir", str(out),
                "--recipe", "embedded_seg", "--crop-size", "64", "64", "--batch-size", str(batch),
                "--num-workers", "0", "--seed", "2", "--max-train-steps", "4", "--optimizer", "sgd",
                "--lr", "0.05"]  # fmt: skip

    one = run_cli(args(tmp_path / "one", 4))
    two = run_cli(args(tmp_path / "two", 2), launcher=TORCHRUN_2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert json.loads((tmp_path / "two" / "train_config.json").read_text())["num_processes"] == 2
    a, b = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    assert psa_zoo.from_pretrained(tmp_path / "two" / "model").aspp_dropout == 0.0
    # the loss is the mean over the valid pixels of the whole step on both: equal but for summation order
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst < 1e-5, worst
    from accelerate.utils import set_seed

    set_seed(2)  # the runs seed 2 before building the model: its initial weights
    start = psa_zoo.create_model("deeplabv3plus_mbv2_psa", aspp_dropout=0.0).state_dict()
    stem = "backbone.conv_stem.weight"
    moved = (a[stem].double() - start[stem].double()).abs().max().item()
    assert 1e-4 < moved < 0.1, moved  # the steps moved the weights: the equality above is not trivial


def test_the_ocr_recipe_adds_the_auxiliary_loss_and_evaluates_hierarchically(tmp_path):
    """HRNetV2-OCR on Cityscapes: the step's loss is CE(logits) + 0.4 · CE(aux logits) over the valid
    pixels (the official OCR criterion), and the hierarchical multi-scale evaluation runs in training."""
    import torch.nn.functional as F

    from tests.models._tiny import TINY_FAMILIES

    root = _cityscapes_layout(tmp_path / "cityscapes")
    kwargs = {
        **TINY_FAMILIES["hrnetv2_w48_ocr_psa_s"],
        "spec": TINY_FAMILIES["hrnetv2_w48_ocr_psa_s"]["spec"].to_dict(),
    }
    config = TrainConfig(task="seg", model="hrnetv2_w48_ocr_psa_s", data=str(root),
                         output_dir=str(tmp_path / "run"), model_kwargs=kwargs, crop_size=[32, 64],
                         batch_size=2, max_train_steps=2, num_workers=0, eval_mode="hierarchical",
                         eval_scales=[0.5, 1.0]).resolve()  # fmt: skip
    assert config.recipe == "cityscapes_ocr" and config.aux_weight == 0.4
    task = SegTask(config)
    model = task.build_model().eval()  # no OCR dropout: both passes below see the same network
    batch = next(iter(torch.utils.data.DataLoader(task.train_dataset(), batch_size=2)))
    total, count = task.loss_sum_and_count(model, batch)
    from psa_zoo.data.images import normalize_images

    output = model(normalize_images(batch["image"], model.metadata), return_dict=True)
    mask = batch["mask"].long()
    expected = F.cross_entropy(
        output.logits, mask, ignore_index=255, reduction="sum"
    ) + 0.4 * F.cross_entropy(output.aux_logits, mask, ignore_index=255, reduction="sum")
    assert count.item() == int((mask != 255).sum())
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-4)

    result = Trainer(SegTask(config), config).fit()
    assert 0.0 <= result["metrics"]["mIoU"] <= 1.0
    reloaded = psa_zoo.from_pretrained(result["model_dir"])
    assert reloaded.scale_attn is not None and reloaded.num_classes == 19


def test_hierarchical_evaluation_is_checked_before_training(seg_data, tmp_path):
    """A model without a scale-attention head, or scales without 1.0, fail when the run starts, not at
    the evaluation after the training (which would lose the trained model)."""
    from psa_zoo.train import ConfigError

    with pytest.raises(ConfigError, match="needs a model with a scale-attention head"):
        train_seg(_config(seg_data, tmp_path / "a", eval_mode="hierarchical", eval_scales=[0.5, 1.0]))
    assert not (tmp_path / "a" / "checkpoints").exists()
