"""``psa-zoo list`` / ``info`` / ``predict``: counts from the official models, MACs from the arithmetic of
a 1×1 head, predictions written for each image, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import psa_zoo
from psa_zoo.bench._measure import count_flops
from psa_zoo.cli import main
from psa_zoo.info import model_info
from tests.models._tiny import tiny_model
from tests.models.test_registry import EXACT_PARAMS


def _run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_every_model_with_the_official_parameter_counts(capsys, tmp_path):
    code, out, _ = _run(capsys, "list", "--json", str(tmp_path / "zoo.json"))
    assert code == 0
    assert all(f"| {name} |" in out for name in psa_zoo.list_models())
    rows = {r["name"]: r for r in json.loads((tmp_path / "zoo.json").read_text())}
    assert set(rows) == set(psa_zoo.list_models())
    for name, params in EXACT_PARAMS.items():
        assert rows[name]["params"] == params, name
    code, out, _ = _run(capsys, "list", "hrnet_w48*", "--pretrained")
    assert code == 0 and "| hrnet_w48 |" in out and "hrnet_w48_psa_p" not in out  # PSA weights: not released


def test_list_with_no_match_is_one_clear_error(capsys):
    code, _, err = _run(capsys, "list", "nothing*")
    assert code == 2 and err.count("\n") == 1 and "no registered model matches 'nothing*'" in err


def test_info_reports_counts_tags_and_provenance(capsys, tmp_path):
    code, out, _ = _run(capsys, "info", "hrnet_w32.coco_256x192", "--json", str(tmp_path / "w32.json"))
    assert code == 0
    info = json.loads((tmp_path / "w32.json").read_text())
    assert info["params"] == EXACT_PARAMS["hrnet_w32"]
    assert info["status"] == "convertible"
    metric = info["tags"][0]["metrics"][0]
    assert (metric["name"], metric["value"]) == ("AP", 74.4)  # HRNet's COCO val2017 table, 256×192
    assert "psa-zoo convert CHECKPOINT --format hrnet-pose" in out
    code, _, err = _run(capsys, "info", "hrnet_w33")
    assert code == 2 and "unknown model 'hrnet_w33'" in err


def test_macs_count_the_head_as_its_arithmetic_says():
    """One more output channel of HRNet-W32's 1×1 head (32 → K at 64×48 for a 256×192 input) adds
    64·48·32 multiply-accumulates (two FLOPs each), and nothing else changes."""
    x = torch.empty(1, 3, 256, 192, device="meta")
    with torch.device("meta"), torch.no_grad():
        k17 = count_flops(lambda: psa_zoo.create_model("hrnet_w32").eval()(x))
        k18 = count_flops(lambda: psa_zoo.create_model("hrnet_w32", num_classes=18).eval()(x))
    assert k18 - k17 == 2 * 64 * 48 * 32
    info = model_info("hrnet_w18_small_psa_p")
    assert info.attention_blocks == 18 and info.gmacs > 0


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    pose, seg = tiny_model("hrnet_w18_psa_p"), tiny_model("deeplabv3plus_mbv2_psa", num_classes=4)
    pose.save_pretrained(root / "pose")
    seg.save_pretrained(root / "seg")
    image = root / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(image)
    return root, image


def test_predict_pose_writes_named_keypoints_overlay_and_attention(capsys, saved):
    root, image = saved
    out = root / "out_pose"
    code, stdout, err = _run(capsys, "predict", str(root / "pose"), "--image", str(image), "--boxes",
                             "10,10,50,70", "60,5,40,60", "--out", str(out), "--attn-maps")  # fmt: skip
    assert code == 0, err
    assert "2 people" in stdout
    result = json.loads((out / "scene_pose.json").read_text())
    assert [p["box"] for p in result["people"]] == [[10, 10, 50, 70], [60, 5, 40, 60]]
    assert result["keypoint_names"] == list(psa_zoo.labels.COCO_KEYPOINTS)
    assert Image.open(out / "scene_pose.png").size == (120, 90)
    assert (out / "scene_attention.png").is_file()
    code, _, err = _run(capsys, "predict", str(root / "pose"), "--image", str(image), "--out", str(out))
    assert code == 2 and "exists; add --overwrite" in err  # the earlier results are kept


def test_predict_seg_writes_labels_at_the_image_size(capsys, saved):
    root, image = saved
    out = root / "out_seg"
    code, _, err = _run(capsys, "predict", str(root / "seg"), "--image", str(image), "--out", str(out))
    assert code == 0, err
    labels = np.asarray(Image.open(out / "scene_labels.png"))
    assert labels.shape == (90, 120) and labels.max() < 4
    shares = json.loads((out / "scene_seg.json").read_text())["pixel_share"]
    counts = np.bincount(labels.ravel(), minlength=4) / labels.size
    names = psa_zoo.from_pretrained(root / "seg").metadata.classes.class_names
    assert shares == pytest.approx({names[i]: counts[i] for i in np.flatnonzero(counts)})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--boxes", "1,2,3"], "--boxes takes X,Y,W,H"),
        (["--image", "missing.png"], "does not exist"),
    ],
)
def test_predict_bad_input_is_one_line(capsys, saved, args, message):
    root, image = saved
    full = ["predict", str(root / "pose"), "--image", str(image), "--out", str(root / "o"), *args]
    code, _, err = _run(capsys, *full)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_predict_needs_weights_for_a_registered_name_and_boxes_only_for_pose(capsys, saved):
    root, image = saved
    code, _, err = _run(capsys, "predict", "hrnet_w32", "--image", str(image))
    assert code == 2 and "no loadable weights" in err and "psa-zoo convert" in err
    code, _, err = _run(capsys, "predict", str(root / "seg"), "--image", str(image), "--boxes", "1,2,3,4")
    assert code == 2 and "for pose models" in err


def test_unknown_attention_blocks_are_refused_before_any_file_is_written(capsys, saved):
    root, image = saved
    out = root / "out_blocks"
    code, _, err = _run(capsys, "predict", str(root / "pose"), "--image", str(image), "--out", str(out),
                        "--attn-maps", "--attn-blocks", "no_such_block*")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "no_such_block*" in err
    assert not out.exists() or not any(out.iterdir())
    code, _, err = _run(capsys, "predict", str(root / "pose"), "--image", str(image), "--out", str(out),
                        "--attn-blocks", "*stage4*")  # fmt: skip
    assert code == 2 and "add --attn-maps" in err


def test_json_results_are_never_written_over_an_existing_file(capsys, tmp_path):
    target = tmp_path / "zoo.json"
    target.write_text("keep")
    code, _, err = _run(capsys, "list", "hrnet_w18*", "--json", str(target))
    assert code == 2 and "exists" in err
    assert target.read_text() == "keep"
