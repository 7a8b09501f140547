"""ResNet backbone: timm key/shape and numeric equality, torchvision dilation rule, attention slot."""

import pytest
import timm
import torch
from timm.models._features import FeatureGetterNet
from torch import nn

from psa_zoo.layers import list_attn
from psa_zoo.models.backbones.resnet import RESNET_PRESETS, BasicBlock, Bottleneck, ResNet, filter_timm_resnet

STAGE_WIDTHS = (64, 128, 256, 512)


def _shapes(module: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _psa_p_params(channels: int) -> int:
    return 2 * channels**2 + channels  # PsaP: four C→C/2 or C→1 convs and conv_up C/2→C, no biases


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_keys_and_shapes_equal_timm_without_the_classifier(depth):
    with torch.device("meta"):
        theirs = timm.create_model(f"resnet{depth}", pretrained=False)
        ours = ResNet(depth)
    expected = {k: v for k, v in _shapes(theirs).items() if not k.startswith("fc.")}
    assert _shapes(ours) == expected


@pytest.mark.parametrize(("depth", "output_stride"), [(50, 16), (18, 8), (34, 32)])
def test_forward_equals_timm_with_its_weights(depth, output_stride):
    theirs = timm.create_model(f"resnet{depth}", pretrained=False, output_stride=output_stride).eval()
    ours = ResNet(depth, output_stride=output_stride).eval()
    ours.load_state_dict(filter_timm_resnet(theirs.state_dict()), strict=True)
    x = torch.randn(1, 3, 67, 61)
    with torch.no_grad():
        mine = ours.forward_intermediates(x, intermediates_only=True)
        ref = theirs.forward_intermediates(x, intermediates_only=True)
    assert len(mine) == len(ref) == 5
    for a, b in zip(mine, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _dilations(model: ResNet, layer: int) -> list[tuple[int, int]]:
    """(stride, dilation) of the 3×3 conv of each block in ``layer``."""
    blocks = getattr(model, f"layer{layer}")
    convs = [b.conv2 if isinstance(b, Bottleneck) else b.conv1 for b in blocks]
    return [(c.stride[0], c.dilation[0]) for c in convs]


def test_output_stride_replaces_stride_with_dilation_as_torchvision():
    # torchvision replace_stride_with_dilation: the first block of a dilated layer keeps the previous
    # dilation at stride 1, the other blocks use the new one.
    os16 = ResNet(50, output_stride=16)
    assert _dilations(os16, 3) == [(2, 1)] + [(1, 1)] * 5
    assert _dilations(os16, 4) == [(1, 1), (1, 2), (1, 2)]
    os8 = ResNet(50, output_stride=8)
    assert _dilations(os8, 3) == [(1, 1)] + [(1, 2)] * 5
    assert _dilations(os8, 4) == [(1, 2), (1, 4), (1, 4)]
    assert os8.layer3[0].downsample[0].stride == (1, 1)
    assert [b.conv2.padding[0] for b in os8.layer4] == [2, 4, 4]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_sizes_follow_output_stride(output_stride):
    model = ResNet(18, output_stride=output_stride).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, 64, 96), intermediates_only=True)
    for info, f in zip(model.feature_info, feats, strict=True):
        assert f.shape == (1, info["num_chs"], 64 // info["reduction"], 96 // info["reduction"])
    assert model.feature_info[-1]["reduction"] == output_stride
    assert feats[-1].shape[1] == model.num_features == 512


def test_odd_input_sizes_round_up():
    model = ResNet(18, output_stride=32).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 33, 65))
    assert out.shape == (1, 512, 2, 3)  # ⌈33/32⌉, ⌈65/32⌉


def test_forward_intermediates_selects_indices_and_stops_early():
    model = ResNet(18).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, feats = model.forward_intermediates(x, indices=[1, -1])
        assert [f.shape[1] for f in feats] == [64, 512]
        assert torch.equal(final, feats[-1])
        last2 = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [f.shape[1] for f in last2] == [256, 512]
        final, feats = model.forward_intermediates(x, indices=[2], stop_early=True)
        assert final.shape[1] == 128 and torch.equal(final, feats[0])
        torch.testing.assert_close(model.forward_features(x), model(x))
    with pytest.raises(ValueError, match="out of range"):
        model.forward_intermediates(x, indices=[5])
    with pytest.raises(ValueError, match="NCHW"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_timm_feature_getter_wraps_the_backbone():
    getter = FeatureGetterNet(ResNet(18, output_stride=16), out_indices=(1, 4)).eval()
    with torch.no_grad():
        feats = getter(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 16, 16), (1, 512, 4, 4)]
    assert getter.feature_info.reduction() == [4, 16]


class _Recorder(nn.Module):
    """Attention stand-in: remembers its input and returns zeros, so the residual branch after it is
    reduced to bn(conv(0))."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.seen = None

    def forward(self, x):
        self.seen = x.clone()
        return torch.zeros_like(x)


def test_bottleneck_attention_sits_after_the_3x3_conv_bn_relu():
    block = Bottleneck(64, 32, attn_layer=_Recorder).eval()
    x = torch.randn(2, 64, 9, 7)
    with torch.no_grad():
        out = block(x)
        inner = torch.relu(block.bn1(block.conv1(x)))
        after_3x3 = torch.relu(block.bn2(block.conv2(inner)))
        torch.testing.assert_close(block.attn.seen, after_3x3)
        torch.testing.assert_close(
            out, torch.relu(block.bn3(block.conv3(torch.zeros_like(after_3x3))) + block.downsample(x))
        )
    assert block.attn.channels == 32


def test_basic_block_attention_sits_after_the_first_conv_bn_relu():
    block = BasicBlock(16, 16, attn_layer=_Recorder).eval()
    x = torch.randn(2, 16, 9, 7)
    with torch.no_grad():
        out = block(x)
        torch.testing.assert_close(block.attn.seen, torch.relu(block.bn1(block.conv1(x))))
        zeros = torch.zeros(2, 16, 9, 7)
        torch.testing.assert_close(out, torch.relu(block.bn2(block.conv2(zeros)) + x))


@pytest.mark.parametrize("depth", [18, 50, 101])
def test_attention_in_every_block_and_none_without_it(depth):
    with torch.device("meta"):
        plain = ResNet(depth)
        psa = ResNet(depth, attn="psa_p")
    assert not any("attn" in name for name, _ in plain.named_parameters())
    assert not any(name.endswith("attn") for name, _ in plain.named_modules())
    preset = RESNET_PRESETS[depth]
    expected = sum(n * _psa_p_params(w) for n, w in zip(preset.layers, STAGE_WIDTHS, strict=True))
    added = sum(p.numel() for name, p in psa.named_parameters() if ".attn." in name)
    assert added == expected
    assert sum(p.numel() for p in psa.parameters()) - sum(p.numel() for p in plain.parameters()) == expected
    assert sum(1 for name, _ in psa.named_modules() if name.endswith(".attn")) == sum(preset.layers)


@pytest.mark.parametrize("name", list_attn())
def test_every_attention_block_trains_in_a_small_resnet(name):
    model = ResNet(18, attn=name).train()
    out = model(torch.randn(2, 3, 64, 64))  # layer4 is 2×2: N·H·W > 1 for CBAM's BatchNorm
    assert out.shape == (2, 512, 2, 2)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    attn_grads = [p.grad for n, p in model.named_parameters() if ".attn." in n and p.requires_grad]
    assert attn_grads and all(g is not None for g in attn_grads)


def test_attn_kwargs_reach_the_block():
    model = ResNet(18, attn="psa_p", attn_kwargs={"impl": "reference"})
    assert model.layer1[0].attn.impl == "reference"
    with pytest.raises(ValueError, match="without an attention block"):
        ResNet(18, attn_kwargs={"impl": "reference"})


def test_filter_timm_state_dict_drops_fc_and_adapts_in_chans():
    timm_sd = timm.create_model("resnet18", pretrained=False).state_dict()
    filtered = filter_timm_resnet(timm_sd)
    assert "fc.weight" not in filtered and "fc.bias" not in filtered
    ResNet(18).load_state_dict(filtered, strict=True)
    missing, unexpected = ResNet(18, attn="psa_p").load_state_dict(filtered, strict=False)
    assert not unexpected and missing and all(".attn." in k for k in missing)
    gray = ResNet(18, in_chans=1)
    gray.load_state_dict(gray.filter_timm_state_dict(timm_sd), strict=True)
    assert gray.conv1.weight.shape == (64, 1, 7, 7)
    with pytest.raises(ValueError, match="not a timm/torchvision ResNet"):
        filter_timm_resnet({"conv_stem.weight": torch.zeros(1)})


def test_bad_arguments_and_inputs_raise_value_error():
    with pytest.raises(ValueError, match="depth must be one of"):
        ResNet(42)
    with pytest.raises(ValueError, match="output_stride"):
        ResNet(18, output_stride=4)
    with pytest.raises(ValueError, match="in_chans"):
        ResNet(18, in_chans=0)
    with pytest.raises(ValueError, match="unknown attention block"):
        ResNet(18, attn="psa_x")
    model = ResNet(18, in_chans=4)
    with pytest.raises(ValueError, match=r"in_chans=4.*\[N, 4, H, W\].*\(1, 3, 32, 32\)"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="in_chans=4"):
        model(torch.randn(4, 32, 32))


def test_torch_export_matches_eager():
    model = ResNet(18, output_stride=16, attn="psa_p").eval()
    x = torch.randn(1, 3, 48, 40)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))
