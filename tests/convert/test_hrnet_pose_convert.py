import pytest
import torch
from safetensors.torch import load_file

from psa_zoo.convert.hrnet_pose import convert_state_dict, infer_attn, infer_config
from psa_zoo.models.backbones.hrnet import HRNetSpec, hrnet_spec
from psa_zoo.models.hrnet_ocr import HRNetOCR
from psa_zoo.models.hrnet_pose import HRNetPose

# The fixture's configuration as its README states it (reduced w32_256x192 yaml).
FIXTURE_SPEC = hrnet_spec((16, 32, 64, 128), num_blocks=2, num_modules=(1, 2, 1))
TINY = hrnet_spec((8, 16, 32, 64), num_blocks=1, num_modules=(1, 2, 1), stage1_blocks=1, stage1_width=16)


@pytest.fixture(scope="module")
def fixture_dir(shared_dir):
    return shared_dir / "fixtures/official_pose_hrnet"


@pytest.fixture(scope="module")
def official(fixture_dir):
    return torch.load(fixture_dir / "pose_hrnet_w16_checkpoint.pth", map_location="cpu", weights_only=True)


def test_infer_config_reads_the_fixture_configuration(official):
    config = infer_config(official)
    assert HRNetSpec.from_dict(config["spec"]) == FIXTURE_SPEC
    assert (config["num_classes"], config["attn"], config["in_chans"]) == (17, None, 3)
    assert len(official) == 518  # README: 518 keys


def test_converted_fixture_reproduces_the_official_heatmaps(official, fixture_dir):
    model = HRNetPose(**infer_config(official)).eval()
    model.load_state_dict(convert_state_dict(official), strict=True)
    assert sum(p.numel() for p in model.parameters()) == 1_835_329  # README
    io = load_file(fixture_dir / "io.safetensors")
    with torch.no_grad():
        features = model.forward_features(io["input"])
        heatmaps = model(io["input"])
    torch.testing.assert_close(features, io["stage4_out0"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(heatmaps, io["heatmaps"], atol=1e-4, rtol=1e-4)


def test_module_prefix_and_checkpoint_dict_are_unwrapped(official):
    converted = convert_state_dict(official)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in official.items()}}
    rewrapped = convert_state_dict(wrapped)
    assert list(rewrapped) == list(converted)
    assert all(rewrapped[k] is converted[k] for k in converted)


def test_unknown_keys_are_listed_in_the_error(official):
    bad = dict(official)
    bad["head.extra.weight"] = torch.zeros(1)
    bad["deconv_layers.0.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unused.*'head\.extra\.weight', 'deconv_layers\.0\.weight'"):
        convert_state_dict(bad)
    with pytest.raises(ValueError, match="must be tensors"):
        convert_state_dict({"conv1.weight": [1.0]})


@pytest.mark.parametrize("attn", [None, "psa_p", "psa_s"])
def test_infer_config_round_trips_our_own_models(attn):
    model = HRNetPose(TINY, num_classes=5, attn=attn, in_chans=1)
    config = infer_config(model.state_dict())
    assert config == {"spec": TINY.to_dict(), "num_classes": 5, "attn": attn, "in_chans": 1}
    rebuilt = HRNetPose(**config)
    rebuilt.load_state_dict(convert_state_dict(model.state_dict()), strict=True)


def test_a_segmentation_trunk_is_not_taken_for_a_pose_model():
    seg = HRNetOCR(TINY, num_classes=5, ocr_mid_channels=16, ocr_key_channels=8, scale_attn_channels=8)
    trunk = {k.removeprefix("backbone."): v for k, v in seg.state_dict().items() if k.startswith("backbone.")}
    trunk["final_layer.weight"] = torch.zeros(17, 8, 1, 1)
    trunk["final_layer.bias"] = torch.zeros(17)
    with pytest.raises(ValueError, match="fuses all branches"):
        infer_config(trunk)


def test_unknown_attention_keys_are_rejected():
    with pytest.raises(ValueError, match="neither PSA_p nor PSA_s"):
        infer_attn({"stage2.0.branches.0.0.deattn.fc1.weight": torch.zeros(1)})
