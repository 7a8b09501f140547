"""MobileNetV2 backbone: timm names and numerics (symmetric padding), VainF strides/dilations and fixed
padding, attention placement."""

import pytest
import timm
import torch
from torch import nn

from psa_zoo.layers import list_attn
from psa_zoo.models.backbones.mobilenetv2 import (
    MOBILENETV2_STAGES,
    DepthwiseSeparable,
    InvertedResidual,
    MobileNetV2,
    filter_timm_mobilenetv2,
)

# VainF's DeepLabV3+ MobileNetV2 backbone (fixture README: "backbone 1,811,712").
VAINF_BACKBONE_PARAMS = 1_811_712


def _shapes(module: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _timm_trunk_state(model: nn.Module) -> dict:
    return {
        k: v for k, v in model.state_dict().items() if not k.startswith(("conv_head.", "bn2.", "classifier."))
    }


def test_keys_and_shapes_equal_timm_mobilenetv2_100_without_the_head():
    with torch.device("meta"):
        theirs = timm.create_model("mobilenetv2_100", pretrained=False)
        ours = MobileNetV2()
    assert _shapes(ours) == {k: tuple(v.shape) for k, v in _timm_trunk_state(theirs).items()}
    assert sum(p.numel() for p in ours.parameters()) == VAINF_BACKBONE_PARAMS
    assert isinstance(ours.blocks[0][0], DepthwiseSeparable)
    assert all(isinstance(b, InvertedResidual) for stage in ours.blocks[1:] for b in stage)


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_symmetric_padding_equals_timm_features(output_stride):
    source = timm.create_model("mobilenetv2_100", pretrained=False)
    theirs = timm.create_model(
        "mobilenetv2_100", pretrained=False, features_only=True, output_stride=output_stride
    ).eval()
    theirs.load_state_dict(_timm_trunk_state(source), strict=True)
    ours = MobileNetV2(output_stride=output_stride, padding="symmetric").eval()
    ours.load_state_dict(filter_timm_mobilenetv2(source.state_dict()), strict=True)
    x = torch.randn(1, 3, 67, 61)
    with torch.no_grad():
        mine = ours.forward_intermediates(x, intermediates_only=True)
        ref = theirs(x)
    assert [i["reduction"] for i in ours.feature_info] == theirs.feature_info.reduction()
    for a, b in zip(mine, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _stride_dilation(model: MobileNetV2) -> dict[str, tuple[int, int]]:
    return {
        f"{s}.{i}": (b.conv_dw.stride[0], b.conv_dw.dilation[0])
        for s, stage in enumerate(model.blocks)
        for i, b in enumerate(stage)
    }


def test_output_stride_16_and_8_follow_vainf():
    # VainF network/backbone/mobilenetv2.py: once current_stride == output_stride a stage runs at stride 1
    # with dilation *= s; its first block keeps the previous dilation.
    os16 = _stride_dilation(MobileNetV2(output_stride=16))
    assert os16["3.0"] == (2, 1)  # the stage that reaches stride 16
    assert os16["5.0"] == (1, 1)  # first 160-channel block: stride 1, previous dilation
    assert os16["5.1"] == os16["5.2"] == os16["6.0"] == (1, 2)
    os8 = _stride_dilation(MobileNetV2(output_stride=8))
    assert os8["2.0"] == (2, 1)
    assert os8["3.0"] == (1, 1)
    assert [os8[f"3.{i}"] for i in (1, 2, 3)] == [(1, 2)] * 3
    assert [os8[f"4.{i}"] for i in range(3)] == [(1, 2)] * 3
    assert os8["5.0"] == (1, 2)
    assert os8["5.1"] == os8["5.2"] == os8["6.0"] == (1, 4)


def test_fixed_padding_sizes_match_vainf_for_an_odd_input():
    # Fixture README: for 129×161, stem 64×80, low-level 32×40, high-level 8×10 (OS16).
    model = MobileNetV2(output_stride=16, padding="fixed").eval()
    assert model.conv_stem.padding == (0, 0)
    assert all(b.conv_dw.padding == (0, 0) for stage in model.blocks for b in stage)
    assert model.blocks[6][0].input_pad == 2
    x = torch.randn(1, 3, 129, 161)
    with torch.no_grad():
        stem = model.act1(model.bn1(model.conv_stem(x)))
        feats = model.forward_intermediates(x, indices=[1, 4], intermediates_only=True)
    assert stem.shape[-2:] == (64, 80)
    assert feats[0].shape == (1, 24, 32, 40)
    assert feats[1].shape == (1, 320, 8, 10)


def test_fixed_and_symmetric_padding_share_weights_but_not_borders():
    fixed = MobileNetV2(padding="fixed").eval()
    symmetric = MobileNetV2(padding="symmetric").eval()
    symmetric.load_state_dict(fixed.state_dict(), strict=True)
    block = fixed.blocks[1][1]  # stride 1, expansion 6: the padded border passes through the 1×1 expansion
    sym_block = symmetric.blocks[1][1]
    with torch.no_grad():
        block.bn1.bias.fill_(1.0)  # ReLU6(BN(0)) ≠ 0, so padding before or after the expansion differs
        sym_block.bn1.bias.fill_(1.0)
        x = torch.randn(1, 24, 8, 8)
        a, b = block(x), sym_block(x)
    assert a.shape == b.shape
    torch.testing.assert_close(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1])
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_info_reductions_and_sizes(output_stride):
    model = MobileNetV2(output_stride=output_stride).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, 64, 96), intermediates_only=True)
    assert [i["num_chs"] for i in model.feature_info] == [16, 24, 32, 96, 320]
    assert model.feature_info[1]["reduction"] == 4
    assert model.feature_info[-1]["reduction"] == output_stride
    for info, f in zip(model.feature_info, feats, strict=True):
        assert f.shape == (1, info["num_chs"], 64 // info["reduction"], 96 // info["reduction"])


def _shortcut_blocks() -> dict[str, int]:
    """Blocks with an identity shortcut (stride 1, in == out) → expanded width, from the stage table."""
    out = {}
    for s, stage in enumerate(MOBILENETV2_STAGES):
        for i in range(1, stage.num_blocks):  # later blocks of a stage keep width and stride 1
            out[f"blocks.{s}.{i}.attn"] = stage.out_chs * stage.expand
    return out


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_attention_only_in_shortcut_blocks_after_the_depthwise_conv(output_stride):
    with torch.device("meta"):
        plain = MobileNetV2(output_stride=output_stride)
        psa = MobileNetV2(output_stride=output_stride, attn="psa_p")
    expected = _shortcut_blocks()
    assert {n: m.channels for n, m in psa.named_modules() if n.endswith(".attn")} == expected
    assert not any("attn" in n for n, _ in plain.named_parameters())
    added = sum(p.numel() for p in psa.parameters()) - sum(p.numel() for p in plain.parameters())
    assert added == sum(2 * c**2 + c for c in expected.values())  # PsaP: 2C² + C parameters


def test_attention_input_is_the_activated_depthwise_output():
    seen = {}

    class Spy(nn.Identity):
        def __init__(self, channels):
            super().__init__()

        def forward(self, x):
            seen["x"] = x.clone()
            return x

    block = InvertedResidual(16, 16, expand=6, attn_layer=Spy).eval()
    x = torch.randn(1, 16, 7, 9)
    with torch.no_grad():
        out = block(x)
        hidden = torch.clamp(block.bn1(block.conv_pw(x)), 0, 6)
        expected = torch.clamp(block.bn2(block.conv_dw(hidden)), 0, 6)
        torch.testing.assert_close(seen["x"], expected)
        torch.testing.assert_close(out, block.bn3(block.conv_pwl(expected)) + x)


@pytest.mark.parametrize("name", list_attn())
def test_every_attention_block_trains_in_mobilenetv2(name):
    model = MobileNetV2(output_stride=16, padding="fixed", attn=name).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 320, 4, 4)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for n, p in model.named_parameters() if ".attn." in n and p.requires_grad]
    assert grads and all(g is not None for g in grads)


def test_filter_timm_state_dict_drops_the_head_and_adapts_in_chans():
    timm_sd = timm.create_model("mobilenetv2_100", pretrained=False).state_dict()
    filtered = filter_timm_mobilenetv2(timm_sd)
    assert not any(k.startswith(("conv_head.", "bn2.", "classifier.")) for k in filtered)
    assert "blocks.0.0.bn2.weight" in filtered
    MobileNetV2().load_state_dict(filtered, strict=True)
    two = MobileNetV2(in_chans=2)
    two.load_state_dict(two.filter_timm_state_dict(timm_sd), strict=True)
    assert two.conv_stem.weight.shape == (32, 2, 3, 3)
    with pytest.raises(ValueError, match="not a timm mobilenetv2"):
        filter_timm_mobilenetv2({"conv1.weight": torch.zeros(1)})


def test_bad_arguments_and_inputs_raise_value_error():
    with pytest.raises(ValueError, match="padding must be one of"):
        MobileNetV2(padding="same")
    with pytest.raises(ValueError, match="output_stride"):
        MobileNetV2(output_stride=4)
    with pytest.raises(ValueError, match="in_chans"):
        MobileNetV2(in_chans=-1)
    with pytest.raises(ValueError, match=r"in_chans=3.*got shape \(1, 1, 32, 32\)"):
        MobileNetV2()(torch.randn(1, 1, 32, 32))


def test_torch_export_matches_eager():
    model = MobileNetV2(output_stride=16, padding="fixed", attn="psa_p").eval()
    x = torch.randn(1, 3, 45, 37)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))
