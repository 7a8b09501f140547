"""``psa-zoo demo`` end to end on a shortened schedule: every step runs for real (generated data, the
training engine, pycocotools / the confusion matrix, save_pretrained + from_pretrained, the predictors and
the attention maps). The full-length demo's AP / mIoU are measured and recorded in docs/demo.md."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import psa_zoo
from psa_zoo.data.synthetic import render_scene
from psa_zoo.demo import DEMO_MARK, HELDOUT_SEED, NUM_HELDOUT, DemoError, run_demo
from tests.train._pose_run import run_cli

SHORT = {"num_train": 16, "num_val": 4, "max_train_steps": 3, "num_workers": 0}


@pytest.fixture(scope="module")
def pose_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "pose"
    photo = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (150, 210, 3), dtype=np.uint8)).save(photo)
    return run_demo("pose", out, image=photo, log=lambda _: None, **SHORT), out


def test_the_pose_demo_trains_saves_reloads_and_predicts(pose_demo):
    _, out = pose_demo
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "AP" and summary["model"] == "hrnet_w18_small_psa_p"
    assert 0.0 <= summary["before"] <= 1.0 and 0.0 <= summary["after"] <= 1.0
    assert summary["reload_max_abs_diff"] == 0.0  # the reloaded folder is the trained model
    assert [s["name"] for s in summary["steps"]] == [
        "make data", "evaluate untrained", "fine-tune + evaluate", "save + reload", "predict held-out"
    ]  # fmt: skip
    assert json.loads((out / "run" / "metrics.json").read_text())["step"] == 3
    model = psa_zoo.from_pretrained(out / "run" / "model")
    assert model.metadata.input_size == (3, 128, 96)
    assert model.metadata.keypoints.num_keypoints == 17
    assert "AP" in (out / "run" / "model" / "README.md").read_text()


def test_the_pose_demo_predicts_every_held_out_person_and_the_given_image(pose_demo):
    _, out = pose_demo
    folder = out / "predictions"
    for i in range(NUM_HELDOUT):
        scene = render_scene(np.random.default_rng(HELDOUT_SEED + i))
        people = json.loads((folder / f"heldout_{i}_pose.json").read_text())["people"]
        assert len(people) == scene.num_people  # one prediction per true person box
        assert all(len(p["keypoints"]) == 17 for p in people)
        np.testing.assert_allclose([p["box"] for p in people], scene.boxes)
        overlay = Image.open(folder / f"heldout_{i}_pose.png")
        assert overlay.size == (scene.image.shape[1], scene.image.shape[0])
        assert Image.open(folder / f"heldout_{i}_attention.png").format == "PNG"
    people = json.loads((folder / "image_pose.json").read_text())["people"]
    assert len(people) == 1 and people[0]["box"] == [0.0, 0.0, 210.0, 150.0]  # the whole image is the box
    assert Image.open(folder / "image_pose.png").size == (210, 150)


def test_the_summary_says_what_ran_and_that_only_generated_data_was_learnt(pose_demo):
    result, _ = pose_demo
    text = result.format_summary()
    assert f"AP: {result.before:.3f} untrained → {result.after:.3f} fine-tuned" in text
    assert "goal ≥ 0.5" in text
    assert "learned the generated embedded scenes only" in text


def test_an_earlier_demo_is_replaced_only_when_asked_and_other_folders_never(pose_demo, tmp_path):
    _, out = pose_demo
    with pytest.raises(DemoError, match="holds an earlier demo; add --overwrite"):
        run_demo("pose", out, log=lambda _: None, **SHORT)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not written by psa-zoo demo"):
        run_demo("pose", other, overwrite=True, log=lambda _: None, **SHORT)
    assert (other / "notes.txt").read_text() == "keep me"
    assert not (other / DEMO_MARK).exists()
    with pytest.raises(DemoError, match="is not a demo"):
        run_demo("depth", tmp_path / "x")
    with pytest.raises(DemoError, match="does not exist"):
        run_demo("pose", tmp_path / "y", image=tmp_path / "missing.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(DemoError, match="cannot be read as an image"):
        run_demo("pose", tmp_path / "z", image=tmp_path / "notes.jpg")
    assert not (tmp_path / "z").exists()  # refused before anything was written


def test_the_seg_demo_through_the_command_line(tmp_path):
    out = tmp_path / "seg"
    args = ["demo", "--task", "seg", "--out", str(out), "--num-train", "8", "--num-val", "4",
            "--max-train-steps", "2", "--num-workers", "0", "--json", str(tmp_path / "s.json")]  # fmt: skip
    done = run_cli(args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mIoU:" in done.stdout and "learned the generated embedded scenes only" in done.stdout
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["metric"] == "mIoU" and summary["reload_max_abs_diff"] == 0.0
    folder = out / "predictions"
    for i in range(NUM_HELDOUT):
        image = Image.open(folder / f"heldout_{i}.png")
        labels = np.asarray(Image.open(folder / f"heldout_{i}_labels.png"))
        assert labels.shape == (image.size[1], image.size[0]) and labels.max() < 4
        shares = json.loads((folder / f"heldout_{i}_seg.json").read_text())["pixel_share"]
        assert sum(shares.values()) == pytest.approx(1.0)
        assert set(shares) <= {"background", "person", "box", "ball"}
        assert (folder / f"heldout_{i}_attention.png").is_file()
    again = run_cli(args[:-2])  # the same folder again, without --overwrite
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "add --overwrite" in again.stderr
