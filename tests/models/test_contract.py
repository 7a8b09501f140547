"""The model contract: live config and metadata, head reset, the forward contract, fine-tune round trips."""

from __future__ import annotations

import pytest
import torch

import psa_zoo
from psa_zoo.metadata import ClassSet, KeypointSet, ModelMetadata
from psa_zoo.models.outputs import PoseOutput, SegmentationOutput

from ._tiny import TINY_FAMILIES, tiny_model

FAMILIES = sorted(TINY_FAMILIES)


def _perturb(model: torch.nn.Module) -> None:
    """Change every floating tensor, as training would, so a reload that loses anything shows."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor) * 0.01)


@pytest.mark.parametrize("name", FAMILIES)
def test_fine_tune_round_trip_keeps_head_weights_and_metadata(name, tmp_path):
    model = tiny_model(name)
    labels = (
        KeypointSet("mine", ("a", "b", "c"), skeleton=((0, 1),), sigmas=(0.1, 0.2, 0.3))
        if model.task == "pose"
        else ClassSet("mine", ("sky", "road", "car"), palette=((0, 0, 255), (128, 128, 128), (255, 0, 0)))
    )
    model.reset_classifier(3, labels=labels)
    _perturb(model)
    model.eval()
    model.save_pretrained(tmp_path / "run")
    loaded = psa_zoo.from_pretrained(tmp_path / "run")
    assert loaded.num_classes == 3
    assert loaded.metadata == model.metadata
    assert loaded.metadata.label_names == labels.keypoint_names if model.task == "pose" else True
    assert loaded.get_config() == model.get_config()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_issue_example_reset_classifier_survives_save(tmp_path):
    model = psa_zoo.create_model("deeplabv3plus_mbv2")
    model.reset_classifier(4)
    model.save_pretrained(tmp_path / "run")
    loaded = psa_zoo.from_pretrained(tmp_path / "run")
    assert loaded.num_classes == 4
    assert torch.equal(loaded.head.weight, model.head.weight)
    assert loaded.metadata.label_names == ("class_0", "class_1", "class_2", "class_3")


def test_num_classes_5_saves_five_names_not_the_coco_joints(tmp_path):
    model = psa_zoo.create_model(
        "hrnet_w18_psa_p", spec=TINY_FAMILIES["hrnet_w18_psa_p"]["spec"], num_classes=5
    )
    model.save_pretrained(tmp_path / "k5")
    loaded = psa_zoo.from_pretrained(tmp_path / "k5")
    assert len(loaded.metadata.label_names) == 5
    assert "nose" not in loaded.metadata.label_names


def test_label_names_set_the_head_size_and_travel_with_the_weights(tmp_path):
    model = tiny_model("deeplabv3plus_mbv2_psa", label_names=["bg", "cat", "dog"])
    assert model.num_classes == 3
    assert model.metadata.classes.class_names == ("bg", "cat", "dog")
    model.save_pretrained(tmp_path / "m")
    assert psa_zoo.from_pretrained(tmp_path / "m").metadata.classes.class_names == ("bg", "cat", "dog")


def test_set_metadata_refuses_a_label_count_that_does_not_fit():
    model = tiny_model("hrnet_w18_psa_p")
    with pytest.raises(
        ValueError, match=r"names 3 outputs but the model has num_classes=17.*reset_classifier"
    ):
        model.set_metadata(KeypointSet("x", ("a", "b", "c")))
    with pytest.raises(ValueError, match="does not fit a pose model"):
        model.set_metadata(ClassSet("x", tuple(f"c{i}" for i in range(17))))


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_returns_a_tensor_and_named_outputs_on_request(name):
    model = tiny_model(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
        named = model(x, return_dict=True)
    assert isinstance(plain, torch.Tensor)
    if model.task == "pose":
        assert isinstance(named, PoseOutput)
        assert tuple(plain.shape[-2:]) == model.output_size((64, 64))
        torch.testing.assert_close(named.heatmaps, plain)
    else:
        assert isinstance(named, SegmentationOutput)
        assert plain.shape == (1, model.num_classes, 64, 64)
        torch.testing.assert_close(named.logits, plain)
        has_aux = hasattr(model, "ocr")
        assert (named.aux_logits is not None) == has_aux
        assert (named.scale_attn is not None) == (getattr(model, "scale_attn", None) is not None)


@pytest.mark.parametrize("name", FAMILIES)
def test_get_config_follows_the_live_model(name):
    model = tiny_model(name)
    before = model.get_config()
    model.reset_classifier(7)
    after = model.get_config()
    assert after["num_classes"] == 7
    assert {k: v for k, v in after.items() if k != "num_classes"} == {
        k: v for k, v in before.items() if k != "num_classes"
    }
    rebuilt = type(model)(**after)
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize("name", psa_zoo.list_models())
def test_every_registered_model_has_metadata_matching_its_head(name):
    model = psa_zoo.create_model(name, device="meta")
    meta = model.metadata
    assert isinstance(meta, ModelMetadata)
    assert meta.num_outputs == model.num_classes
    assert meta.task == psa_zoo.get_pretrained_cfg(name).task
    assert model.get_classifier().out_channels == model.num_classes
    assert model.get_submodule(model.pretrained_cfg["first_conv"]).in_channels == model.in_chans


def test_official_simplebaseline_tags_say_bgr_and_hrnet_tags_rgb():
    # leoxiaobin/deep-high-resolution-net.pytorch configs: COLOR_RGB false for ResNet, true for HRNet
    assert (
        psa_zoo.create_model("simplebaseline_r50.coco_256x192", device="meta").metadata.channel_order == "BGR"
    )
    assert psa_zoo.create_model("hrnet_w32.coco_256x192", device="meta").metadata.channel_order == "RGB"
    assert psa_zoo.create_model("simplebaseline_r50", device="meta").metadata.channel_order == "RGB"


def test_tag_sets_the_input_size_of_the_metadata():
    model = psa_zoo.create_model("hrnet_w48_psa_s.udp_coco_384x288", device="meta")
    assert model.metadata.input_size == (3, 384, 288)
    assert model.metadata.output_stride == 4


def test_in_chans_other_than_three_get_matching_normalisation():
    model = tiny_model("deeplabv3plus_mbv2_psa", in_chans=1)
    assert model.metadata.input_size[0] == 1
    assert len(model.metadata.mean) == len(model.metadata.std) == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [("hrnet_w18_psa_p", (64, 48)), ("simplebaseline_r50_psa_p", (64, 48))],
)
def test_output_size_formula_matches_the_heatmaps(name, expected):
    model = tiny_model(name).eval()
    assert model.output_size((256, 192)) == expected
    # sizes not divisible by 32: HRNet ⌈H/4⌉; SimpleBaseline 8·⌈H/32⌉ (three stride-2 deconvolutions)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 100, 70))
    assert tuple(out.shape[-2:]) == model.output_size((100, 70))
    if name.startswith("hrnet"):
        assert model.output_size((100, 70)) == (25, 18)
    else:
        assert model.output_size((100, 70)) == (32, 24)


@pytest.mark.parametrize("name", ["hrnet_w18_psa_p", "hrnetv2_w48_ocr_psa_s"])
def test_fresh_hrnet_models_give_small_finite_outputs_in_eval_mode(name):
    """Both official HRNet codes initialise every conv N(0, 0.001); with Kaiming init a fresh HRNet-W18
    pose model in eval mode gave heatmaps of about 4e6."""
    model = psa_zoo.create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert torch.isfinite(out).all()
    assert out.abs().max() < 1.0
    trunk_conv = model.conv2 if name.startswith("hrnet_w") else model.backbone.conv2
    assert trunk_conv.weight.std().item() == pytest.approx(0.001, rel=0.05)
