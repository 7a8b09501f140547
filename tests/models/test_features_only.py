"""timm's ``features_only=True`` / ``out_indices`` on every family: the trunk's maps, as timm's own
feature extractors give them for the same weights."""

from __future__ import annotations

import pytest
import timm
import torch

import psa_zoo
from tests.models._tiny import TINY_FAMILIES


def test_simplebaseline_features_are_timms_resnet50_features_for_the_same_weights():
    theirs = timm.create_model("resnet50", pretrained=False, features_only=True).eval()
    ours = timm.create_model("simplebaseline_r50", pretrained=False, features_only=True).eval()
    ours.model.load_state_dict(theirs.state_dict(), strict=True)  # the same trunk keys
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            assert torch.equal(a, b)
    assert ours.feature_info.channels() == theirs.feature_info.channels() == [64, 256, 512, 1024, 2048]
    assert ours.feature_info.reduction() == theirs.feature_info.reduction() == [2, 4, 8, 16, 32]


def test_deeplab_features_are_its_encoders_with_the_dilated_last_stage():
    theirs = timm.create_model("mobilenetv2_100", pretrained=False, features_only=True)
    ours = psa_zoo.create_model("deeplabv3plus_mbv2", features_only=True)
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    # output stride 16: the last stage is dilated instead of strided (VainF's DeepLabV3+)
    assert ours.feature_info.reduction() == [2, 4, 8, 16, 16]


@pytest.mark.parametrize("name", sorted(TINY_FAMILIES))
def test_every_family_returns_the_maps_its_feature_info_describes(name):
    net = psa_zoo.create_model(name, features_only=True, **TINY_FAMILIES[name]).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = net(x)
    info = net.feature_info
    assert len(maps) == len(info.channels()) >= 2
    for fmap, channels, reduction in zip(maps, info.channels(), info.reduction(), strict=True):
        assert fmap.shape[:2] == (2, channels)
        assert abs(fmap.shape[-1] - 64 / reduction) <= 1  # ⌈⌉ / ⌊⌋ of the strided convs


def test_out_indices_select_levels_and_bad_requests_are_clear_errors():
    net = psa_zoo.create_model("deeplabv3plus_mbv2", features_only=True, out_indices=(1, 4))
    low, high = net(torch.randn(1, 3, 64, 64))
    assert (low.shape[1], high.shape[1]) == (24, 320)  # the two maps the DeepLabV3+ decoder reads
    with pytest.raises(ValueError, match="out of range"):
        psa_zoo.create_model("deeplabv3plus_mbv2", features_only=True, out_indices=(7,))
    with pytest.raises(ValueError, match="feature_cls='hook' is not supported"):
        psa_zoo.create_model("hrnet_w18_small", features_only=True, feature_cls="hook")
