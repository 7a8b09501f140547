"""SimpleBaseline (pose_resnet): official parameter and key counts, head layout, heatmap size,
attention in the trunk, export and argument checks."""

import pytest
import torch
from torch import nn

from psa_zoo.models.backbones.resnet import RESNET_PRESETS
from psa_zoo.models.simplebaseline import SimpleBaseline

# Fixture README (official_pose_resnet): official parameters and state-dict keys per depth.
OFFICIAL = {50: (33_999_697, 338), 101: (52_991_825, 644), 152: (68_635_473, 950)}
# PSA paper, COCO pose table: SimpleBaseline ResNet-152 + PSA, millions of parameters.
PAPER_R152_PSA_M = 75.2


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", list(OFFICIAL))
def test_parameter_and_key_counts_equal_the_official_model(depth):
    with torch.device("meta"):
        model = SimpleBaseline(depth)
    params, keys = OFFICIAL[depth]
    assert _count(model) == params
    assert len(model.state_dict()) == keys


@pytest.mark.parametrize("depth", list(OFFICIAL))
def test_psa_p_adds_one_block_per_bottleneck(depth):
    with torch.device("meta"):
        plain = SimpleBaseline(depth)
        psa = SimpleBaseline(depth, attn="psa_p")
    layers = RESNET_PRESETS[depth].layers
    expected = sum(n * (2 * c**2 + c) for n, c in zip(layers, (64, 128, 256, 512), strict=True))
    assert _count(psa) - _count(plain) == expected
    assert not any("attn" in n for n, _ in plain.named_parameters())
    assert not any("attn" in n for n, _ in psa.deconv_layers.named_parameters())
    if depth == 152:
        assert round(_count(psa) / 1e6, 1) == PAPER_R152_PSA_M


def test_head_layout_is_the_official_one():
    model = SimpleBaseline(50)
    deconvs = [model.deconv_layers[i] for i in (0, 3, 6)]
    assert all(isinstance(d, nn.ConvTranspose2d) and d.bias is None for d in deconvs)
    assert [(d.kernel_size, d.stride, d.padding, d.output_padding) for d in deconvs] == [
        ((4, 4), (2, 2), (1, 1), (0, 0))
    ] * 3
    assert deconvs[0].weight.shape == (2048, 256, 4, 4)
    assert all(isinstance(model.deconv_layers[i], nn.BatchNorm2d) for i in (1, 4, 7))
    assert model.final_layer.weight.shape == (17, 256, 1, 1) and model.final_layer.bias is not None
    # Official init_weights: deconv and final conv ~ N(0, 0.001), final bias 0.
    assert model.deconv_layers[0].weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert model.final_layer.weight.abs().max().item() < 0.01
    assert torch.count_nonzero(model.final_layer.bias) == 0


@pytest.mark.parametrize(("size", "heatmap"), [((256, 192), (64, 48)), ((100, 75), (32, 24))])
def test_heatmaps_are_8x_the_stride_32_trunk_output(size, heatmap):
    model = SimpleBaseline(18, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 5, *heatmap)


def test_training_step_with_attention_in_the_trunk():
    model = SimpleBaseline(18, num_classes=3, attn="psa_p").train()
    out = model(torch.randn(2, 3, 96, 64))
    assert out.shape == (2, 3, 24, 16)
    out.square().mean().backward()
    assert model.backbone.layer4[1].attn.conv_up.weight.grad is not None


def test_reset_classifier_and_custom_deconvs():
    model = SimpleBaseline(18, deconv_channels=(64, 32))
    assert model.num_features == 32
    model.reset_classifier(21)
    assert model.final_layer.weight.shape == (21, 32, 1, 1)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 21, 8, 8)


def test_bad_arguments_and_inputs_raise_value_error():
    with pytest.raises(ValueError, match="depth must be one of"):
        SimpleBaseline(77)
    with pytest.raises(ValueError, match="num_classes"):
        SimpleBaseline(18, num_classes=0)
    with pytest.raises(ValueError, match="deconv_channels"):
        SimpleBaseline(18, deconv_channels=())
    with pytest.raises(ValueError, match="unknown attention block"):
        SimpleBaseline(18, attn="nope")
    with pytest.raises(ValueError, match=r"in_chans=3.*\(1, 2, 64, 48\)"):
        SimpleBaseline(18)(torch.randn(1, 2, 64, 48))


def test_torch_export_matches_eager():
    model = SimpleBaseline(18, attn="psa_p").eval()
    x = torch.randn(1, 3, 64, 48)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))
