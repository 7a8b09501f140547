"""Official pose_resnet → SimpleBaseline: the official key list maps 1:1 (keys and shapes), depth and
head are inferred from the keys, bad state dicts are rejected with the offending keys."""

import pytest
import torch

from psa_zoo.convert.simplebaseline import convert_state_dict, infer_config
from psa_zoo.models.simplebaseline import SimpleBaseline
from tests.keylists import read_key_list, shapes

KEY_LIST = "fixtures/official_pose_resnet/keys_pose_resnet_50_256x192.txt"
# Fixture README: official key counts of pose_resnet_{101,152}.
OFFICIAL_KEYS = {101: 644, 152: 950}


@pytest.fixture(scope="module")
def official_r50(shared_dir):
    return read_key_list(shared_dir / KEY_LIST)


def test_official_key_list_maps_one_to_one(official_r50):
    config = infer_config(official_r50)
    assert config == {"depth": 50, "num_classes": 17, "in_chans": 3, "deconv_channels": (256, 256, 256)}
    converted = convert_state_dict(official_r50)
    with torch.device("meta"):
        model = SimpleBaseline(**config)
    assert len(converted) == len(official_r50) == 338
    assert shapes(converted) == shapes(model.state_dict())
    trunk = {k for k in official_r50 if not k.startswith(("deconv_layers.", "final_layer."))}
    assert {f"backbone.{k}" for k in trunk} == {k for k in converted if k.startswith("backbone.")}
    assert converted["deconv_layers.0.weight"] is official_r50["deconv_layers.0.weight"]


@pytest.mark.parametrize("depth", list(OFFICIAL_KEYS))
def test_depth_is_inferred_from_the_block_counts(depth):
    with torch.device("meta"):
        ours = SimpleBaseline(depth).state_dict()
    # Official layout = ours with the trunk at the top level (what convert_state_dict undoes).
    official = {k.removeprefix("backbone."): v for k, v in ours.items()}
    assert len(official) == OFFICIAL_KEYS[depth]
    assert infer_config(official)["depth"] == depth
    assert shapes(convert_state_dict(official)) == shapes(ours)


def test_head_variants_are_inferred(official_r50):
    custom = dict(official_r50)
    custom["final_layer.weight"] = torch.empty(14, 256, 1, 1, device="meta")
    custom["final_layer.bias"] = torch.empty(14, device="meta")
    assert infer_config(custom)["num_classes"] == 14
    wrapped = {"state_dict": {f"module.{k}": v for k, v in custom.items()}}
    assert convert_state_dict(wrapped).keys() == convert_state_dict(custom).keys()


def test_bad_state_dicts_are_rejected_with_the_keys(official_r50):
    with pytest.raises(ValueError, match=r"1 unused keys \['extra.weight'\]"):
        convert_state_dict({**official_r50, "extra.weight": torch.zeros(1)})
    missing = {k: v for k, v in official_r50.items() if k != "deconv_layers.4.running_var"}
    with pytest.raises(ValueError, match=r"1 missing keys \['deconv_layers.4.running_var'\]"):
        convert_state_dict(missing)
    wrong = {**official_r50, "layer1.0.bn1.weight": torch.zeros(65)}
    with pytest.raises(ValueError, match=r"backbone.layer1.0.bn1.weight: \(65,\) vs \(64,\)"):
        convert_state_dict(wrong)
    three = {**official_r50, "deconv_layers.0.weight": torch.empty(2048, 256, 3, 3, device="meta")}
    with pytest.raises(ValueError, match="4×4 deconvolutions"):
        infer_config(three)
    no_block = {k: v for k, v in official_r50.items() if not k.startswith("layer3.5.")}
    with pytest.raises(ValueError, match=r"blocks per layer \(3, 4, 5, 3\)"):
        infer_config(no_block)
    with pytest.raises(ValueError, match=r"final_layer\.weight missing"):
        infer_config({k: v for k, v in official_r50.items() if not k.startswith("final_layer")})
