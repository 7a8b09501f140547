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
