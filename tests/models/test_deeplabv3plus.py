"""DeepLabV3+ (VainF layout): parameter counts of the paper's baselines, shapes for any input size,
ASPP rates per output stride, attention in the encoder, export and argument checks."""

import pytest
import torch
from torch import nn

from psa_zoo.models.backbones.resnet import RESNET_PRESETS
from psa_zoo.models.deeplabv3plus import DeepLabV3Plus

# Fixture README (official_deeplabv3plus): VainF parameter counts for 21 and 19 classes.
VAINF_PARAMS = {
    "mobilenetv2": {21: 5_225_717, 19: 5_225_203},
    "resnet50": {21: 39_761_845, 19: 39_761_331},
    "resnet101": {21: 58_753_973, 19: 58_753_459},
}
# PSA paper, Pascal VOC table: DeepLabV3+ with PSA, millions of parameters.
PAPER_PSA_PARAMS_M = {"resnet50": 42.3, "resnet101": 63.5}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("encoder", list(VAINF_PARAMS))
@pytest.mark.parametrize("num_classes", [21, 19])
def test_parameter_counts_equal_vainf(encoder, num_classes):
    with torch.device("meta"):
        model = DeepLabV3Plus(encoder, num_classes=num_classes)
    assert _count(model) == VAINF_PARAMS[encoder][num_classes]


@pytest.mark.parametrize("encoder", list(PAPER_PSA_PARAMS_M))
def test_psa_p_parameter_counts_match_the_paper(encoder):
    with torch.device("meta"):
        plain = DeepLabV3Plus(encoder)
        psa = DeepLabV3Plus(encoder, attn="psa_p")
    layers = RESNET_PRESETS[int(encoder.removeprefix("resnet"))].layers
    # PsaP after the 3×3 conv of every Bottleneck: 2C² + C parameters at the inner width C.
    expected = sum(n * (2 * c**2 + c) for n, c in zip(layers, (64, 128, 256, 512), strict=True))
    assert _count(psa) - _count(plain) == expected
    assert round(_count(psa) / 1e6, 1) == PAPER_PSA_PARAMS_M[encoder]
    assert not any(".attn." in n for n, _ in psa.decoder.named_parameters())


@pytest.mark.parametrize(
    ("encoder", "size"), [("mobilenetv2", (129, 161)), ("mobilenetv2", (333, 500)), ("resnet18", (97, 75))]
)
def test_logits_have_the_input_size_for_any_size(encoder, size):
    model = DeepLabV3Plus(encoder, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 5, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("output_stride", "rates"), [(16, (6, 12, 18)), (8, (12, 24, 36))])
def test_aspp_rates_and_feature_stride_follow_output_stride(output_stride, rates):
    model = DeepLabV3Plus("resnet18", output_stride=output_stride).eval()
    aspp = model.decoder.aspp
    assert tuple(branch[0].dilation[0] for branch in aspp.convs[1:4]) == rates
    assert tuple(branch[0].padding[0] for branch in aspp.convs[1:4]) == rates
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        low, high = model.backbone.forward_intermediates(x, indices=[1, 4], intermediates_only=True)
        features = model.forward_features(x)
    assert low.shape[-2:] == (16, 16)
    assert high.shape[-2:] == (64 // output_stride, 64 // output_stride)
    assert features.shape == (1, 256, 16, 16)


def test_decoder_layout_matches_vainf():
    model = DeepLabV3Plus("mobilenetv2")
    assert model.decoder.project[0].weight.shape == (48, 24, 1, 1)
    assert model.decoder.aspp.project[0].weight.shape == (256, 5 * 256, 1, 1)
    assert isinstance(model.decoder.aspp.project[3], nn.Dropout) and model.decoder.aspp.project[3].p == 0.1
    assert model.decoder.fuse[0].weight.shape == (256, 304, 3, 3)
    assert model.head.weight.shape == (21, 256, 1, 1) and model.head.bias is not None
    r50 = DeepLabV3Plus("resnet50")
    assert r50.decoder.project[0].weight.shape == (48, 256, 1, 1)
    assert r50.decoder.aspp.convs[0][0].weight.shape == (256, 2048, 1, 1)


def test_image_pooling_branch_is_a_broadcast_of_the_global_average():
    model = DeepLabV3Plus("resnet18").eval()
    pooling = model.decoder.aspp.convs[4]
    x = torch.randn(2, 512, 5, 7)
    with torch.no_grad():
        out = pooling(x)
        ref = pooling[3](pooling[2](pooling[1](x.mean((2, 3), keepdim=True))))
    assert out.shape == (2, 256, 5, 7)
    torch.testing.assert_close(out, ref.expand(-1, -1, 5, 7))


def test_training_step_with_attention_in_the_encoder():
    model = DeepLabV3Plus("mobilenetv2", num_classes=3, attn="psa_s").train()
    out = model(torch.randn(2, 3, 65, 49))  # batch 2: the image-pooling BN sees 1×1 maps
    assert out.shape == (2, 3, 65, 49)
    out.mean().backward()
    assert model.backbone.blocks[1][1].attn.conv_q_right.weight.grad is not None


def test_reset_classifier_and_encoder_kwargs():
    model = DeepLabV3Plus("mobilenetv2", encoder_kwargs={"padding": "symmetric"})
    assert model.backbone.padding == "symmetric"
    assert DeepLabV3Plus("mobilenetv2").backbone.padding == "fixed"
    model.reset_classifier(4)
    assert model.num_classes == 4 and model.head.weight.shape == (4, 256, 1, 1)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 4, 32, 32)


def test_bad_arguments_and_inputs_raise_value_error():
    with pytest.raises(ValueError, match="encoder must be one of"):
        DeepLabV3Plus("vgg16")
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabV3Plus("resnet18", output_stride=32)
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV3Plus("resnet18", num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV3Plus("resnet18").reset_classifier(-2)
    model = DeepLabV3Plus("resnet18", in_chans=1)
    with pytest.raises(ValueError, match=r"in_chans=1.*\(1, 3, 32, 32\)"):
        model(torch.randn(1, 3, 32, 32))


def test_torch_export_matches_eager():
    model = DeepLabV3Plus("mobilenetv2", num_classes=4, attn="psa_p").eval()
    x = torch.randn(1, 3, 49, 41)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))
