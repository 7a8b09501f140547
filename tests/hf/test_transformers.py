"""psa_zoo.hf: transformers configs and models, Auto registration, save/load round trips and remote code.

Offline throughout (local directories, ``HF_HUB_OFFLINE``); small models (DeepLabV3+ MobileNetV2 on 65×65,
HRNet-W18 and width-reduced HRNet / HRNet-OCR specs) keep the file fast.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers", minversion="5.0")

import huggingface_hub.constants
from safetensors.torch import save_file
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
from psa_zoo.models.backbones.hrnet import hrnet_spec
from tests.conftest import REPO_ROOT

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
    custom = PsaSegConfig(arch="deeplabv3plus_mbv2", num_labels=5)
    assert custom.num_labels == 5 and custom.id2label[0] == "LABEL_0"


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
    assert (
        saved["model_type"] == "psa_seg" and saved["arch"] == "deeplabv3plus_mbv2" and saved["attn"] == "se"
    )
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
    assert saved["model_type"] == "psa_pose" and saved["arch"] == "hrnet_w18_psa_p"
    assert saved["model_kwargs"]["spec"]["stage4"]["widths"] == [8, 16, 32, 64]
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


def test_psa_zoo_state_dict_without_prefix_loads(tmp_path):
    # a checkpoint of psa_zoo's own keys (as psa_zoo.create_model saves them) beside a config.json
    source = psa_zoo.create_model("hrnet_w18_psa_p", spec=TINY_HRNET)
    save_file(source.state_dict(), tmp_path / "model.safetensors", metadata={"format": "pt"})
    PsaPoseConfig(arch="hrnet_w18_psa_p", model_kwargs={"spec": TINY_HRNET}).save_pretrained(tmp_path)
    loaded = PsaForPoseEstimation.from_pretrained(tmp_path)
    _assert_same_state(loaded.model, source)


def test_missing_head_gets_psa_zoo_initialisation_not_empty_memory(tmp_path):
    model = _seg()
    model.save_pretrained(tmp_path)
    loaded = PsaForSemanticSegmentation.from_pretrained(tmp_path, num_labels=4, ignore_mismatched_sizes=True)
    assert loaded.config.num_labels == 4
    head_weight, head_bias = loaded.model.head.weight, loaded.model.head.bias
    assert head_weight.shape == (4, 256, 1, 1)
    # psa_zoo initialises the 1×1 classifier Kaiming-normal (fan-in 256: std √(2/256) ≈ 0.088), bias 0
    assert torch.isfinite(head_weight).all() and 0.05 < head_weight.std().item() < 0.13
    assert torch.equal(head_bias, torch.zeros(4))
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("model.head.")}
    loaded_sd = loaded.state_dict()
    assert all(torch.equal(loaded_sd[k], v) for k, v in kept.items())


# --- remote code --------------------------------------------------------------------------------------------
_REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys

    import psa_zoo

    assert "transformers" not in sys.modules, "import psa_zoo imported transformers"
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForPoseEstimation, AutoModelForSemanticSegmentation

    seg_dir, pose_dir, tensors = sys.argv[1:4]
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
    print(json.dumps({
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


def test_remote_code_loads_without_registration_in_a_fresh_process(tmp_path, monkeypatch):
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

    seg_x, pose_x = torch.randn(1, 3, 65, 65), torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        expected = {"seg_x": seg_x, "seg_logits": seg(seg_x).logits, "pose_x": pose_x}
        expected["pose_heatmaps"] = pose(pose_x).heatmaps
    save_file(expected, tmp_path / "tensors.safetensors")

    package_root = Path(psa_zoo.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),  # the dynamic-module cache goes here, not to ~/.cache
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")])),
    }
    script = [
        sys.executable,
        "-c",
        _REMOTE_SCRIPT,
        str(seg_dir),
        str(pose_dir),
        str(tmp_path / "tensors.safetensors"),
    ]
    proc = subprocess.run(
        script, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["refused_without_trust"]
    assert result["seg_class"].startswith("transformers_modules.")  # the copied code, not psa_zoo.hf
    assert result["seg_class"].endswith("modeling_psa.PsaForSemanticSegmentation")
    assert result["pose_class"].endswith("modeling_psa.PsaForPoseEstimation")
    assert result["seg_output"] == "SemanticSegmenterOutput"
    assert result["seg_max_diff"] <= 1e-6 and result["pose_max_diff"] <= 1e-6  # see _assert_same_output
    assert not result["hf_imported"]


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
