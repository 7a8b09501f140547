"""Every model family at reduced width, with every attention block: forward, shapes, input checks."""

import pytest
import torch

import psa_zoo
from psa_zoo.layers import list_attn
from psa_zoo.models._loading import is_attention_key
from psa_zoo.models.backbones import hrnet_spec

TINY_HRNET = hrnet_spec(
    (8, 16, 32, 64), num_blocks=1, num_modules=(1, 1, 1), stage1_blocks=1, stage1_width=16
)


def _families(attn):
    return {
        "simplebaseline": psa_zoo.SimpleBaseline(
            depth=18, num_classes=5, attn=attn, deconv_channels=(16, 16, 16)
        ),
        "hrnet_pose": psa_zoo.HRNetPose(spec=TINY_HRNET, num_classes=5, attn=attn),
        "deeplabv3plus": psa_zoo.DeepLabV3Plus("resnet18", num_classes=5, attn=attn),
        "hrnet_ocr": psa_zoo.HRNetOCR(
            TINY_HRNET,
            num_classes=5,
            attn=attn,
            ocr_mid_channels=16,
            ocr_key_channels=8,
            scale_attn_channels=8,
        ),
    }


@pytest.mark.parametrize("attn", [*list_attn(), None])
def test_every_family_runs_with_every_attention_block(attn):
    x = torch.randn(2, 3, 67, 45)  # odd size on purpose
    for family, model in _families(attn).items():
        model.train()
        out = model(x)
        # heatmaps: HRNet at ⌈H/4⌉; SimpleBaseline 8× its stride-32 map (= H/4 when 32 divides H, as in COCO
        # crops); segmentation logits at the input size
        expected = {"simplebaseline": (24, 16), "hrnet_pose": (17, 12)}.get(family, (67, 45))
        assert out.shape == (2, 5, *expected), family
        assert torch.isfinite(out).all(), family
        out.mean().backward()
        attention = [n for n, _ in model.named_parameters() if is_attention_key(n)]
        assert bool(attention) == (attn is not None), family
        assert all(p.grad is not None for n, p in model.named_parameters() if n in attention), family


@pytest.mark.parametrize("name", ["hrnet_w18", "deeplabv3plus_mbv2", "simplebaseline_r50"])
def test_wrong_input_channels_are_a_clear_error(name):
    model = psa_zoo.create_model(name, in_chans=1).eval()
    with pytest.raises(ValueError, match=r"expects? .*1.*channel|in_chans"):
        model(torch.randn(1, 3, 64, 64))
