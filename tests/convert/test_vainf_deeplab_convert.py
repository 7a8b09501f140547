"""VainF DeepLabV3+ → DeepLabV3Plus: the MobileNetV2 OS16 fixture reproduces VainF's recorded outputs;
the ResNet-50/101 key lists map 1:1; bad state dicts are rejected with the offending keys."""

import pytest
import torch
from safetensors.torch import load_file

from psa_zoo.convert.vainf_deeplab import convert_state_dict, infer_config
from psa_zoo.models.deeplabv3plus import DeepLabV3Plus
from tests.keylists import read_key_list, shapes

FIXTURE = "fixtures/official_deeplabv3plus"


@pytest.fixture(scope="module")
def vainf_mobilenet(shared_dir):
    path = shared_dir / FIXTURE / "deeplabv3plus_mobilenet_os16_checkpoint.pth"
    return torch.load(path, map_location="cpu", weights_only=True)["model_state"]


def test_mobilenet_checkpoint_reproduces_vainf_outputs(shared_dir, vainf_mobilenet):
    config = infer_config(vainf_mobilenet)
    assert config == {"encoder": "mobilenetv2", "num_classes": 21, "in_chans": 3}
    model = DeepLabV3Plus(**config, output_stride=16, encoder_kwargs={"padding": "fixed"}).eval()
    model.load_state_dict(convert_state_dict(vainf_mobilenet), strict=True)
    io = load_file(shared_dir / FIXTURE / "io_mobilenet_os16.safetensors")
    with torch.no_grad():
        low, high = model.backbone.forward_intermediates(io["input"], indices=[1, 4], intermediates_only=True)
        logits = model(io["input"])
    torch.testing.assert_close(low, io["backbone.low_level"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(high, io["backbone.out"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, io["logits"], atol=1e-4, rtol=1e-4)


def test_symmetric_padding_does_not_reproduce_vainf(shared_dir, vainf_mobilenet):
    model = DeepLabV3Plus(**infer_config(vainf_mobilenet), encoder_kwargs={"padding": "symmetric"}).eval()
    model.load_state_dict(convert_state_dict(vainf_mobilenet), strict=True)
    io = load_file(shared_dir / FIXTURE / "io_mobilenet_os16.safetensors")
    with torch.no_grad():
        logits = model(io["input"])
    assert logits.shape == io["logits"].shape
    assert (logits - io["logits"]).abs().max() > 0.1


def test_conversion_keeps_tensors_and_accepts_checkpoint_and_module_prefix(vainf_mobilenet):
    converted = convert_state_dict(vainf_mobilenet)
    assert converted["backbone.conv_stem.weight"] is vainf_mobilenet["backbone.low_level_features.0.0.weight"]
    assert (
        converted["backbone.blocks.0.0.conv_pw.weight"]
        is vainf_mobilenet["backbone.low_level_features.1.conv.1.weight"]
    )
    assert (
        converted["backbone.blocks.6.0.conv_pwl.weight"]
        is vainf_mobilenet["backbone.high_level_features.17.conv.2.weight"]
    )
    assert converted["head.bias"] is vainf_mobilenet["classifier.classifier.3.bias"]
    wrapped = {"model_state": {f"module.{k}": v for k, v in vainf_mobilenet.items()}, "cur_itrs": 0}
    assert infer_config(wrapped)["encoder"] == "mobilenetv2"
    assert convert_state_dict(wrapped).keys() == converted.keys()


@pytest.mark.parametrize("name", ["mobilenet", "resnet50", "resnet101"])
def test_key_lists_map_one_to_one_onto_our_model(shared_dir, name):
    official = read_key_list(shared_dir / FIXTURE / f"keys_deeplabv3plus_{name}.txt")
    config = infer_config(official)
    assert config["encoder"] == {"mobilenet": "mobilenetv2"}.get(name, name)
    assert config["num_classes"] == 21
    converted = convert_state_dict(official)
    with torch.device("meta"):
        model = DeepLabV3Plus(**config)
    assert len(converted) == len(official)
    assert shapes(converted) == shapes(model.state_dict())


def test_resnet_backbone_keys_are_unchanged(shared_dir):
    official = read_key_list(shared_dir / FIXTURE / "keys_deeplabv3plus_resnet50.txt")
    converted = convert_state_dict(official)
    assert {k for k in official if k.startswith("backbone.")} == {
        k for k in converted if k.startswith("backbone.")
    }


def test_bad_state_dicts_are_rejected_with_the_keys(vainf_mobilenet):
    extra = {**vainf_mobilenet, "classifier.extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"1 unused keys \['classifier.extra.weight'\]"):
        convert_state_dict(extra)
    missing = {k: v for k, v in vainf_mobilenet.items() if k != "classifier.aspp.project.1.bias"}
    with pytest.raises(ValueError, match=r"1 missing keys \['decoder.aspp.project.1.bias'\]"):
        convert_state_dict(missing)
    wrong = {**vainf_mobilenet, "classifier.project.1.weight": torch.zeros(47)}
    with pytest.raises(
        ValueError, match=r"shape mismatches \['decoder.project.1.weight: \(47,\) vs \(48,\)'\]"
    ):
        convert_state_dict(wrong)
    separable = {**vainf_mobilenet, "classifier.aspp.convs.1.0.body.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="separable"):
        infer_config(separable)
    with pytest.raises(ValueError, match="not a VainF DeepLabV3\\+"):
        infer_config({"backbone.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="expected a state dict"):
        infer_config([1, 2])
