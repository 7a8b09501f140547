"""psa_zoo.hf: transformers configs and models, Auto registration, the one saved format both psa_zoo and
transformers read (cross-loading both ways, sha256, labels, dtype, overwrite rules), remote code and the Hub.

Offline throughout (local directories, ``HF_HUB_OFFLINE``; the Hub is a loopback server); small models
(DeepLabV3+ MobileNetV2 on 65×65, HRNet-W18 and width-reduced HRNet / HRNet-OCR specs) keep the file fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers", minversion="5.0")

import huggingface_hub.constants
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPoseEstimation,
    AutoModelForSemanticSegmentation,
)
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.utils import ModelOutput

import psa_zoo
from psa_zoo.hf import (
    PsaForPoseEstimation,
    PsaForSemanticSegmentation,
    PsaPoseConfig,
    PsaPoseEstimatorOutput,
    PsaSegConfig,
    prepare_remote_code,
    register_transformers,
)
from psa_zoo.labels import CITYSCAPES_CLASSES, COCO_KEYPOINTS, VOC_CLASSES
from psa_zoo.metadata import ClassSet, KeypointSet
from psa_zoo.models.backbones.hrnet import hrnet_spec
from tests.conftest import REPO_ROOT
from tests.models.test_hub import _FakeHub, _run_client

# width-reduced HRNet trunk, as a JSON-serialisable spec (travels in config.json's model_kwargs)
TINY_HRNET = hrnet_spec(
    (8, 16, 32, 64), num_blocks=1, num_modules=(1, 1, 1), stage1_blocks=1, stage1_width=16
).to_dict()
TINY_OCR_KWARGS = {
    "spec": TINY_HRNET,
    "ocr_mid_channels": 16,
    "ocr_key_channels": 8,
    "scale_attn_channels": 8,
    "dropout": 0.0,
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # is_offline_mode() reads this module global: any accidental Hub access fails instead of downloading
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _seg(arch: str = "deeplabv3plus_mbv2", **kwargs) -> PsaForSemanticSegmentation:
    return PsaForSemanticSegmentation(PsaSegConfig(arch=arch, **kwargs)).eval()


def _tiny_pose(**kwargs) -> PsaForPoseEstimation:
    config = PsaPoseConfig(arch="hrnet_w18_psa_p", model_kwargs={"spec": TINY_HRNET}, **kwargs)
    return PsaForPoseEstimation(config).eval()


def _tiny_ocr(**kwargs) -> PsaForSemanticSegmentation:
    return _seg("hrnetv2_w48_ocr_psa_s", model_kwargs=TINY_OCR_KWARGS, num_labels=5, **kwargs)


def _assert_same_output(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # Same weights, same input; loaded tensors sit at other memory alignments, which can change the order of
    # SIMD reductions and so the last bit of a float32 (seen: 4e-9 on logits of magnitude 1e-2).
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def _assert_same_state(actual: torch.nn.Module, expected: torch.nn.Module) -> None:
    actual_sd, expected_sd = actual.state_dict(), expected.state_dict()
    assert actual_sd.keys() == expected_sd.keys()
    different = [k for k, v in expected_sd.items() if not torch.equal(actual_sd[k], v)]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# --- configs ------------------------------------------------------------------------------------------------
def test_seg_config_defaults_to_the_architectures_labels():
    voc = PsaSegConfig(arch="deeplabv3plus_mbv2")
    assert voc.num_labels == 21 and voc.id2label[15] == "person" and voc.label2id["tvmonitor"] == 20
    assert [voc.id2label[i] for i in range(21)] == list(VOC_CLASSES)
    city = PsaSegConfig(arch="hrnetv2_w48_ocr_psa_s")
    assert [city.id2label[i] for i in range(19)] == list(CITYSCAPES_CLASSES)
    assert PsaSegConfig().arch == "deeplabv3plus_r101_psa"
    custom = PsaSegConfig(arch="deeplabv3plus_mbv2", num_labels=5)  # psa_zoo's generic names
    assert custom.num_labels == 5 and custom.id2label[0] == "class_0" and custom.label2id["class_4"] == 4
    assert custom.model_args["num_classes"] == 5 and custom.model_class == "DeepLabV3Plus"


def test_pose_config_keypoints():
    config = PsaPoseConfig()
    assert config.arch == "hrnet_w48_psa_p"
    assert config.num_keypoints == config.num_labels == 17
    assert config.keypoint_names == list(COCO_KEYPOINTS)
    named = PsaPoseConfig(arch="hrnet_w18", keypoint_names=["head", "neck", "tail"])
    assert named.num_keypoints == 3 and named.keypoint_names == ["head", "neck", "tail"]
    assert named.label2id == {"head": 0, "neck": 1, "tail": 2}
    assert PsaPoseConfig(arch="hrnet_w18", num_keypoints=4).keypoint_names == [
        f"keypoint_{i}" for i in range(4)
    ]
    with pytest.raises(ValueError, match="num_keypoints"):
        PsaPoseConfig(arch="hrnet_w18", num_keypoints=2, keypoint_names=["a", "b", "c"])


def test_configs_reject_wrong_architectures_and_reserved_kwargs():
    with pytest.raises(ValueError, match="pose model"):
        PsaSegConfig(arch="hrnet_w18")
    with pytest.raises(ValueError, match="segmentation model"):
        PsaPoseConfig(arch="deeplabv3plus_mbv2")
    with pytest.raises(ValueError):
        PsaSegConfig(arch="deeplabv3plus_r102")
    for key in ("num_classes", "attn", "pretrained_backbone", "pretrained"):
        with pytest.raises(ValueError, match=key):
            PsaSegConfig(arch="deeplabv3plus_mbv2", model_kwargs={key: 1})


def test_config_attn_and_model_kwargs_reach_the_psa_zoo_model():
    own = _seg("deeplabv3plus_mbv2_psa")  # attn=None: the architecture's own PSA_p
    none = _seg("deeplabv3plus_mbv2_psa", attn="none")
    plain = psa_zoo.create_model("deeplabv3plus_mbv2")
    assert any(type(m).__name__ == "PsaP" for m in own.model.modules())
    assert sum(p.numel() for p in none.parameters()) == sum(p.numel() for p in plain.parameters())
    assert not any(type(m).__name__ == "PsaP" for m in none.model.modules())
    se = _seg("deeplabv3plus_mbv2", attn="se", model_kwargs={"output_stride": 8})
    assert any(type(m).__name__ == "SqueezeExcite" for m in se.model.modules())
    dilations = {m.dilation for m in se.model.modules() if isinstance(m, torch.nn.Conv2d)}
    assert (36, 36) in dilations  # output_stride 8: ASPP rates 12/24/36 (16 would give 6/12/18)


# --- forward and loss ---------------------------------------------------------------------------------------
def test_segmentation_forward_gives_input_size_logits():
    model = _seg()
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        out = model(pixel_values=x)
        as_tuple = model(x, return_dict=False)
    assert isinstance(out, SemanticSegmenterOutput)
    assert out.loss is None and out.logits.shape == (1, 21, 65, 65)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1 and torch.equal(as_tuple[0], out.logits)
    assert torch.equal(out.logits, model.model(x))


def test_segmentation_loss_is_cross_entropy_over_labelled_pixels():
    model = _seg()
    x = torch.randn(2, 3, 65, 65)
    labels = torch.randint(0, 21, (2, 65, 65))
    labels[:, :20] = 255  # an ignored band
    out = model(x, labels=labels)
    expected = F.cross_entropy(out.logits, labels, ignore_index=255)
    torch.testing.assert_close(out.loss, expected)
    loss, logits = model(x, labels=labels, return_dict=False)
    torch.testing.assert_close(loss, expected)
    assert torch.equal(logits, out.logits)
    # labels at another size: logits are resized (bilinear) to the labels first
    small = torch.randint(0, 21, (2, 33, 33))
    resized = F.interpolate(out.logits, size=(33, 33), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model(x, labels=small).loss, F.cross_entropy(resized, small))


def test_segmentation_loss_with_every_pixel_ignored_is_zero_and_differentiable():
    model = _seg(ignore_index=7)
    labels = torch.full((1, 65, 65), 7)
    loss = model(torch.randn(1, 3, 65, 65), labels=labels).loss
    assert loss.item() == 0.0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() and not g.any() for g in grads)


def test_ocr_adds_the_weighted_aux_loss_in_training_only():
    model = _tiny_ocr(aux_loss_weight=0.4)
    x = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 5, (2, 64, 64))
    with torch.no_grad():
        model.train()  # BN in training mode uses batch statistics: the same for both calls
        loss = model(x, labels=labels).loss
        parts = model.model(x, return_dict=True)
        expected = F.cross_entropy(parts.logits, labels) + 0.4 * F.cross_entropy(parts.aux_logits, labels)
        torch.testing.assert_close(loss, expected)
        model.eval()
        out = model(x, labels=labels)
        torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))


def test_pose_forward_gives_quarter_size_heatmaps():
    model = PsaForPoseEstimation(PsaPoseConfig(arch="hrnet_w18")).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        out = model(pixel_values=x)
    assert isinstance(out, PsaPoseEstimatorOutput) and isinstance(out, ModelOutput)
    assert out.loss is None and out.heatmaps.shape == (1, 17, 16, 12)
    assert out[0] is out.heatmaps  # ModelOutput indexing skips the None loss


def _joints_mse_loss(output, target, target_weight):
    """HRNet's JointsMSELoss (leoxiaobin/deep-high-resolution-net.pytorch lib/core/loss.py), same logic."""
    batch_size, num_joints = output.shape[:2]
    heatmaps_pred = output.reshape((batch_size, num_joints, -1)).split(1, 1)
    heatmaps_gt = target.reshape((batch_size, num_joints, -1)).split(1, 1)
    loss = 0
    for idx in range(num_joints):
        heatmap_pred, heatmap_gt = heatmaps_pred[idx].squeeze(), heatmaps_gt[idx].squeeze()
        if target_weight is None:
            loss += 0.5 * F.mse_loss(heatmap_pred, heatmap_gt)
        else:
            weight = target_weight[:, idx]
            loss += 0.5 * F.mse_loss(heatmap_pred.mul(weight), heatmap_gt.mul(weight))
    return loss / num_joints


def test_pose_loss_is_hrnet_joints_mse_loss():
    model = _tiny_pose()
    x = torch.randn(2, 3, 64, 48)
    target = torch.rand(2, 17, 16, 12)
    weight = torch.ones(2, 17, 1)
    weight[0, 3] = weight[1, 10] = 0  # unlabelled joints
    with torch.no_grad():
        heatmaps = model(x).heatmaps
        weighted = model(x, labels=target, target_weight=weight).loss
        flat_weight = model(x, labels=target, target_weight=weight[..., 0]).loss
        unweighted, _ = model(x, labels=target, return_dict=False)
    torch.testing.assert_close(weighted, _joints_mse_loss(heatmaps, target, weight))
    torch.testing.assert_close(flat_weight, weighted)
    torch.testing.assert_close(unweighted, _joints_mse_loss(heatmaps, target, None))
    assert not torch.allclose(weighted, unweighted)
    with pytest.raises(ValueError, match="target heatmaps"):
        model(x, labels=torch.rand(2, 17, 64, 48))


# --- initialisation, save / load ----------------------------------------------------------------------------
def test_wrapping_keeps_psa_zoo_initialisation():
    torch.manual_seed(0)
    direct = psa_zoo.create_model("hrnet_w18_psa_p", spec=TINY_HRNET)
    torch.manual_seed(0)
    wrapped = _tiny_pose()
    _assert_same_state(wrapped.model, direct)


def test_seg_round_trip_through_auto_classes(tmp_path):
    register_transformers()
    model = _seg("deeplabv3plus_mbv2", attn="se")
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "psa_seg" and saved["architecture"] == "deeplabv3plus_mbv2"
    assert saved["model_class"] == "DeepLabV3Plus" and saved["model_args"]["attn"] == "se"
    assert saved["architectures"] == ["PsaForSemanticSegmentation"]
    assert saved["id2label"]["15"] == "person" and saved["ignore_index"] == 255
    assert "auto_map" not in saved and not list(tmp_path.glob("*.py"))  # no remote code unless asked

    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, PsaSegConfig) and config.id2label == model.config.id2label
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert type(loaded) is PsaForSemanticSegmentation
    _assert_same_state(loaded, model)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        _assert_same_output(loaded(x).logits, model(x).logits)
    assert type(AutoModelForSemanticSegmentation.from_config(config)) is PsaForSemanticSegmentation


def test_pose_round_trip_through_auto_classes(tmp_path):
    register_transformers()
    model = _tiny_pose(keypoint_names=[f"k{i}" for i in range(5)])
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "psa_pose" and saved["architecture"] == "hrnet_w18_psa_p"
    assert saved["model_args"]["spec"]["stage4"]["widths"] == [8, 16, 32, 64]
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        expected = model(x).heatmaps
    for auto in (AutoModelForPoseEstimation, AutoModel):
        loaded = auto.from_pretrained(tmp_path).eval()
        assert (
            type(loaded) is PsaForPoseEstimation
            and loaded.config.keypoint_names == model.config.keypoint_names
        )
        _assert_same_state(loaded, model)
        with torch.no_grad():
            _assert_same_output(loaded(x).heatmaps, expected)


# --- one saved format: psa_zoo's folder, read by both libraries ---------------------------------------------
TOY_KEYPOINTS = KeypointSet(
    "toy",
    ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    skeleton=((0, 1), (0, 2), (1, 3), (2, 4)),
    flip_pairs=((1, 2), (3, 4)),
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035),
)
TOY_CLASSES = ClassSet("toy", ("sky", "road", "car"), palette=((0, 0, 255), (128, 64, 128), (0, 0, 142)))


def _psa_pose() -> tuple[torch.nn.Module, torch.Tensor]:
    """A psa_zoo pose model of its own labels (names, skeleton, flip pairs, OKS sigmas), and an input."""
    model = psa_zoo.create_model("hrnet_w18_psa_p", spec=TINY_HRNET, num_classes=5).eval()
    model.set_metadata(TOY_KEYPOINTS)
    return model, torch.randn(1, 3, 64, 48)


def _psa_seg() -> tuple[torch.nn.Module, torch.Tensor]:
    """A psa_zoo segmentation model of its own classes (names, palette, ignore index 254), and an input."""
    model = psa_zoo.create_model("deeplabv3plus_mbv2", num_classes=3).eval()
    model.set_metadata(dataclasses.replace(TOY_CLASSES, ignore_index=254))
    return model, torch.randn(1, 3, 65, 65)


_FAMILIES = {
    "pose": (_psa_pose, PsaForPoseEstimation, AutoModelForPoseEstimation),
    "seg": (_psa_seg, PsaForSemanticSegmentation, AutoModelForSemanticSegmentation),
}


def _raw(output: ModelOutput) -> torch.Tensor:
    return output.heatmaps if isinstance(output, PsaPoseEstimatorOutput) else output.logits


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_a_folder_psa_zoo_saved_loads_through_transformers(tmp_path, family):
    register_transformers()
    build, wrapper, auto = _FAMILIES[family]
    source, x = build()
    source.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    with torch.no_grad():
        expected = source(x)
    for loader in (auto, wrapper):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert type(loaded) is wrapper
        _assert_same_state(loaded.model, source)  # every tensor bit-identical
        assert loaded.model.metadata == source.metadata  # skeleton, flip pairs, sigmas, palette, ...
        assert loaded.config.label_names == list(source.metadata.label_names)
        assert loaded.config.label2id == {name: i for i, name in enumerate(source.metadata.label_names)}
        with torch.no_grad():
            assert torch.equal(_raw(loaded(x)), expected)
    if family == "seg":  # the loss ignores what the metadata's classes call void
        assert loaded.config.ignore_index == 254


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_a_folder_the_wrapper_saved_loads_with_psa_zoo(tmp_path, family):
    build, wrapper, _ = _FAMILIES[family]
    source, x = build()
    model = wrapper.from_pretrained(_saved(source, tmp_path / "source")).eval()
    model.save_pretrained(tmp_path / "wrapped")
    folder = tmp_path / "wrapped"

    with safe_open(folder / "model.safetensors", framework="pt") as handle:
        keys = set(handle.keys())
    assert keys == set(source.state_dict())  # psa_zoo's keys: no "model." prefix
    saved = json.loads((folder / "config.json").read_text())
    assert saved["weights_sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert not {"arch", "attn", "model_kwargs", "dtype"} & saved.keys()  # one record, not two
    assert saved["id2label"] == {str(i): name for i, name in enumerate(source.metadata.label_names)}
    # both libraries read this one file: the same class, arguments and labels
    config = wrapper.config_class.from_pretrained(folder)
    assert (config.model_class, config.model_args) == (saved["model_class"], saved["model_args"])

    loaded = psa_zoo.from_pretrained(folder)
    assert type(loaded) is type(source)
    _assert_same_state(loaded, source)
    assert loaded.metadata == source.metadata
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def _saved(model: torch.nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


def test_transformers_loads_check_the_recorded_sha256(tmp_path):
    register_transformers()
    source, _ = _psa_seg()
    source.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # inside the tensor data: safetensors itself would load it
    weights.write_bytes(bytes(data))
    for loader in (AutoModelForSemanticSegmentation, PsaForSemanticSegmentation):
        with pytest.raises(ValueError, match="checksum mismatch"):
            loader.from_pretrained(tmp_path)


def test_psa_zoo_state_dict_without_prefix_loads(tmp_path):
    # a checkpoint of psa_zoo's own keys beside a config.json written by the config alone (no sha256)
    source = psa_zoo.create_model("hrnet_w18_psa_p", spec=TINY_HRNET)
    save_file(source.state_dict(), tmp_path / "model.safetensors", metadata={"format": "pt"})
    PsaPoseConfig(arch="hrnet_w18_psa_p", model_kwargs={"spec": TINY_HRNET}).save_pretrained(tmp_path)
    loaded = PsaForPoseEstimation.from_pretrained(tmp_path)
    _assert_same_state(loaded.model, source)
    _assert_same_state(psa_zoo.from_pretrained(tmp_path), source)  # the config alone is psa_zoo's too


def test_missing_head_gets_psa_zoo_initialisation_not_empty_memory(tmp_path):
    model = _seg()
    model.save_pretrained(tmp_path)
    loaded = PsaForSemanticSegmentation.from_pretrained(tmp_path, num_labels=4, ignore_mismatched_sizes=True)
    assert loaded.config.num_labels == 4
    assert (
        loaded.config.label_names
        == list(loaded.model.metadata.label_names)
        == [f"class_{i}" for i in range(4)]
    )
    _assert_classifier_reinitialised(loaded, model, 4)


def _assert_classifier_reinitialised(loaded, model, num_classes: int) -> None:
    head_weight, head_bias = loaded.model.head.weight, loaded.model.head.bias
    assert head_weight.shape == (num_classes, 256, 1, 1)
    # psa_zoo initialises the 1×1 classifier Kaiming-normal (fan-in 256: std √(2/256) ≈ 0.088), bias 0
    assert torch.isfinite(head_weight).all() and 0.04 < head_weight.std().item() < 0.14
    assert torch.equal(head_bias, torch.zeros(num_classes))
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("model.head.")}
    loaded_sd = loaded.state_dict()
    assert all(torch.equal(loaded_sd[k], v) for k, v in kept.items())


def test_new_labels_at_load_replace_only_the_classifier_and_reach_the_metadata(tmp_path):
    register_transformers()
    model = _seg()  # VOC's 21 classes
    model.save_pretrained(tmp_path / "voc")
    city = AutoModelForSemanticSegmentation.from_pretrained(
        tmp_path / "voc",
        id2label={0: "road", 1: "car"},
        label2id={"road": 0, "car": 1},
        ignore_mismatched_sizes=True,
    )
    assert city.model.num_classes == 2 and city.config.id2label == {0: "road", 1: "car"}
    assert city.model.metadata.label_names == ("road", "car")
    assert city.model.metadata.input_size == model.model.metadata.input_size  # the rest of the metadata kept
    _assert_classifier_reinitialised(city, model, 2)
    city.save_pretrained(tmp_path / "city")
    reloaded = psa_zoo.from_pretrained(tmp_path / "city")
    assert reloaded.num_classes == 2 and reloaded.metadata.label_names == ("road", "car")
    # without ignore_mismatched_sizes, the trained 21-class head is not dropped silently
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "voc", id2label={0: "road", 1: "car"})


def test_labels_changed_on_either_side_reach_the_saved_folder(tmp_path):
    model = _tiny_pose(keypoint_names=list("abcde"))
    model.config.id2label = dict(enumerate("vwxyz"))  # the transformers way
    model.save_pretrained(tmp_path / "config_side")
    assert psa_zoo.from_pretrained(tmp_path / "config_side").metadata.label_names == tuple("vwxyz")
    model.model.set_metadata(KeypointSet("toy", tuple("pqrst")))  # the psa_zoo way
    model.save_pretrained(tmp_path / "metadata_side")
    saved = json.loads((tmp_path / "metadata_side" / "config.json").read_text())
    assert [saved["id2label"][str(i)] for i in range(5)] == list("pqrst")
    assert model.config.label2id == {name: i for i, name in enumerate("pqrst")}
    model.config.id2label = {0: "only"}
    with pytest.raises(ValueError, match=r"1 labels but the model has 5 outputs.*reset_classifier\(1\)"):
        model.save_pretrained(tmp_path / "wrong_count")
    assert not (tmp_path / "wrong_count").exists()


def test_dtype_round_trips_through_both_loaders(tmp_path):
    model = _tiny_pose().to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded = PsaForPoseEstimation.from_pretrained(tmp_path)
    assert loaded.dtype == torch.bfloat16
    _assert_same_state(loaded, model)
    assert {p.dtype for p in psa_zoo.from_pretrained(tmp_path).parameters()} == {torch.bfloat16}


def test_saving_keeps_psa_zoos_overwrite_rules(tmp_path):
    model = _tiny_pose()
    model.save_pretrained(tmp_path / "model")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save_pretrained(tmp_path / "model")
    model.save_pretrained(tmp_path / "model", overwrite=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not part of a saved model"):
        model.save_pretrained(tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "notes"]  # no temporary folder left
    with pytest.raises(ValueError, match="variant"):
        model.save_pretrained(tmp_path / "fp16", variant="fp16")


def test_state_dicts_with_the_prefix_save_and_psa_zoo_keys_load(tmp_path):
    # Trainer saves with save_pretrained(dir, state_dict=model.state_dict()) and reloads checkpoints with
    # model.load_state_dict(safetensors.torch.load_file(dir / "model.safetensors"), False)
    torch.manual_seed(1)
    trained = _tiny_pose()
    torch.manual_seed(2)
    model = _tiny_pose()
    model.save_pretrained(tmp_path, state_dict=trained.state_dict())
    _assert_same_state(psa_zoo.from_pretrained(tmp_path), trained.model)
    result = model.load_state_dict(load_file(tmp_path / "model.safetensors"), False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    _assert_same_state(model, trained)
    with pytest.raises(ValueError, match="state_dict does not fit"):
        model.save_pretrained(
            tmp_path / "partial", state_dict={"model.conv1.weight": model.model.conv1.weight}
        )


def test_a_config_of_the_old_wrapper_format_says_what_to_do(tmp_path):
    register_transformers()
    old = _seg("deeplabv3plus_mbv2", attn="se")
    save_file(old.state_dict(), tmp_path / "model.safetensors", metadata={"format": "pt"})  # "model." keys
    old_config = {
        "model_type": "psa_seg",
        "arch": "deeplabv3plus_mbv2",
        "attn": "se",
        "model_kwargs": {},
        "architectures": ["PsaForSemanticSegmentation"],
        "id2label": {str(i): name for i, name in enumerate(VOC_CLASSES)},
        "transformers_version": "5.0.0",
    }
    (tmp_path / "config.json").write_text(json.dumps(old_config))
    expected = (
        r"older psa_zoo\.hf.*PsaForSemanticSegmentation\(PsaSegConfig\(arch='deeplabv3plus_mbv2', attn='se'"
    )
    for load in (AutoConfig.from_pretrained, AutoModelForSemanticSegmentation.from_pretrained):
        with pytest.raises(ValueError, match=expected):
            load(tmp_path)
    # the conversion the message describes
    converted = PsaForSemanticSegmentation(
        PsaSegConfig(arch="deeplabv3plus_mbv2", attn="se", model_kwargs={}, id2label=old_config["id2label"])
    )
    converted.load_state_dict(load_file(tmp_path / "model.safetensors"))
    converted.save_pretrained(tmp_path / "converted")
    _assert_same_state(psa_zoo.from_pretrained(tmp_path / "converted"), old.model)


# --- remote code --------------------------------------------------------------------------------------------
_REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys

    import psa_zoo

    assert "transformers" not in sys.modules, "import psa_zoo imported transformers"
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForPoseEstimation, AutoModelForSemanticSegmentation

    seg_dir, pose_dir, tensors, saved_dir = sys.argv[1:5]
    t = load_file(tensors)
    try:
        AutoModelForSemanticSegmentation.from_pretrained(seg_dir, trust_remote_code=False)
        refused = False
    except ValueError as err:
        refused = "trust_remote_code=True" in str(err)
    seg = AutoModelForSemanticSegmentation.from_pretrained(seg_dir, trust_remote_code=True).eval()
    pose = AutoModelForPoseEstimation.from_pretrained(pose_dir, trust_remote_code=True).eval()
    with torch.no_grad():
        seg_out, pose_out = seg(t["seg_x"]), pose(t["pose_x"])

    # the Hub (a loopback server): push the remote-code model, load it back through both libraries
    url = pose.push_to_hub("someone/hf-pushed", token="test-token")  # transformers' PushToHubMixin
    pose.save_pretrained(saved_dir, push_to_hub=True, repo_id="someone/hf-saved", token="test-token")
    by_transformers = AutoModelForPoseEstimation.from_pretrained("someone/hf-pushed", trust_remote_code=True)
    with torch.no_grad():
        hub_psa_zoo = psa_zoo.from_pretrained("someone/hf-pushed")(t["pose_x"])
        hub_transformers = by_transformers.eval()(t["pose_x"]).heatmaps
    try:
        type(pose).from_pretrained("someone/corrupted")
        corrupted = "loaded"
    except ValueError as err:
        corrupted = str(err)
    print(json.dumps({
        "hub_url": str(url),
        "hub_psa_zoo_equal": torch.equal(hub_psa_zoo, pose_out.heatmaps),
        "hub_transformers_equal": torch.equal(hub_transformers, pose_out.heatmaps),
        "corrupted": corrupted,
        "refused_without_trust": refused,
        "seg_class": f"{type(seg).__module__}.{type(seg).__name__}",
        "pose_class": f"{type(pose).__module__}.{type(pose).__name__}",
        "seg_output": type(seg_out).__name__,
        "seg_max_diff": (seg_out.logits - t["seg_logits"]).abs().max().item(),
        "pose_max_diff": (pose_out.heatmaps - t["pose_heatmaps"]).abs().max().item(),
        "hf_imported": any(m == "psa_zoo.hf" or m.startswith("psa_zoo.hf.") for m in sys.modules),
    }))
    """
)


def test_remote_code_and_the_hub_in_a_fresh_process(tmp_path, monkeypatch):
    # prepare_remote_code registers per class: undo it when the test ends
    for cls in (PsaForSemanticSegmentation, PsaForPoseEstimation, PsaSegConfig, PsaPoseConfig):
        monkeypatch.setattr(cls, "_auto_class", None)
    seg, pose = _seg(), _tiny_pose()
    seg_dir, pose_dir = tmp_path / "seg", tmp_path / "pose"
    prepare_remote_code(seg).save_pretrained(seg_dir)
    prepare_remote_code(pose).save_pretrained(pose_dir)
    auto_map = json.loads((seg_dir / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_psa.PsaSegConfig",
        "AutoModelForSemanticSegmentation": "modeling_psa.PsaForSemanticSegmentation",
    }
    assert json.loads((pose_dir / "config.json").read_text())["auto_map"]["AutoModelForPoseEstimation"] == (
        "modeling_psa.PsaForPoseEstimation"
    )
    assert {p.name for p in seg_dir.glob("*.py")} == {"configuration_psa.py", "modeling_psa.py"}
    prepare_remote_code(seg).save_pretrained(seg_dir, overwrite=True)  # the code files belong to the folder
    _assert_same_state(psa_zoo.from_pretrained(seg_dir), seg.model)  # psa_zoo reads it as its own

    seg_x, pose_x = torch.randn(1, 3, 65, 65), torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        expected = {"seg_x": seg_x, "seg_logits": seg(seg_x).logits, "pose_x": pose_x}
        expected["pose_heatmaps"] = pose(pose_x).heatmaps
    save_file(expected, tmp_path / "tensors.safetensors")

    # a Hub repository whose weights have one flipped bit: refused through transformers too
    corrupted = _saved(_psa_pose()[0], tmp_path / "corrupted")
    weights = bytearray((corrupted / "model.safetensors").read_bytes())
    weights[-3] ^= 0x01
    commit = "c" * 40
    hub = _FakeHub(
        files={
            ("someone/corrupted", commit, "config.json"): (corrupted / "config.json").read_bytes(),
            ("someone/corrupted", commit, "model.safetensors"): bytes(weights),
        },
        refs={("someone/corrupted", "main"): commit},
    )
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # the dynamic-module cache, not ~/.cache
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    args = (str(seg_dir), str(pose_dir), str(tmp_path / "tensors.safetensors"), str(tmp_path / "saved"))
    result = _run_client(hub, tmp_path, _REMOTE_SCRIPT, *args)

    assert result["refused_without_trust"]
    assert result["seg_class"].startswith("transformers_modules.")  # the copied code, not psa_zoo.hf
    assert result["seg_class"].endswith("modeling_psa.PsaForSemanticSegmentation")
    assert result["pose_class"].endswith("modeling_psa.PsaForPoseEstimation")
    assert result["seg_output"] == "SemanticSegmenterOutput"
    assert result["seg_max_diff"] <= 1e-6 and result["pose_max_diff"] <= 1e-6  # see _assert_same_output
    assert not result["hf_imported"]

    assert "/someone/hf-pushed/commit/" in result["hub_url"]
    code = {"configuration_psa.py", "modeling_psa.py"}
    for repo_id in (
        "someone/hf-pushed",
        "someone/hf-saved",
    ):  # push_to_hub; save_pretrained(push_to_hub=True)
        uploaded = {path for (repo, _, path) in hub.files if repo == repo_id}
        assert uploaded == {"config.json", "model.safetensors", "README.md", *code}
    saved = {path: data for (repo, _, path), data in hub.files.items() if repo == "someone/hf-saved"}
    assert saved["model.safetensors"] == (tmp_path / "saved" / "model.safetensors").read_bytes()
    assert result["hub_psa_zoo_equal"] and result["hub_transformers_equal"]
    assert "checksum mismatch" in result["corrupted"]


def test_prepare_remote_code_rejects_other_models():
    with pytest.raises(TypeError, match="PsaForSemanticSegmentation"):
        prepare_remote_code(torch.nn.Linear(1, 1))


def test_docs_python_examples_run(tmp_path, monkeypatch):
    for cls in (PsaForSemanticSegmentation, PsaForPoseEstimation, PsaSegConfig, PsaPoseConfig):
        monkeypatch.setattr(cls, "_auto_class", None)  # the examples call prepare_remote_code
    monkeypatch.chdir(tmp_path)  # the examples write folders
    text = (REPO_ROOT / "docs" / "transformers.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    # left out: the ImageNet download, and the remote-code load (tested in a fresh process above)
    skipped = ("pretrained_backbone=True", "trust_remote_code=True")
    runnable = [block for block in blocks if not any(marker in block for marker in skipped)]
    assert len(runnable) >= 4
    namespace: dict = {}
    exec(compile("\n".join(runnable), "docs/transformers.md", "exec"), namespace)
    assert tuple(namespace["out"].logits.shape) == (1, 21, 65, 65)
    assert tuple(namespace["heatmaps"].shape) == (1, 17, 64, 48)
    assert namespace["city"].config.id2label == {0: "road", 1: "car"}
    assert torch.isfinite(namespace["loss"]) and namespace["loss"] > 0
    auto_map = json.loads((tmp_path / "psa-seg-remote" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSemanticSegmentation"] == "modeling_psa.PsaForSemanticSegmentation"


# --- optional dependency ------------------------------------------------------------------------------------
def test_importing_hf_without_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    for name in [m for m in sys.modules if m == "psa_zoo.hf" or m.startswith("psa_zoo.hf.")]:
        monkeypatch.delitem(sys.modules, name)  # restored when the test ends
    with pytest.raises(ImportError, match=r"pip install 'psa_zoo\[hf\]'"):
        importlib.import_module("psa_zoo.hf")
