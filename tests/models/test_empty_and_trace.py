"""Every model family on an empty batch (a top-down pose pipeline with zero detections), on images without
pixels, and under ``torch.fx`` symbolic tracing. Small models and 64×64 inputs keep this fast."""

import inspect

import pytest
import torch

import psa_zoo
from psa_zoo.models.backbones.hrnet import hrnet_spec
from psa_zoo.models.hrnet_ocr import HRNetOCR
from psa_zoo.models.hrnet_pose import HRNetPose
from psa_zoo.models.simplebaseline import SimpleBaseline

TINY_HRNET = hrnet_spec(
    (8, 16, 32, 64), num_blocks=1, num_modules=(1, 1, 1), stage1_blocks=1, stage1_width=16
)
TINY_OCR = {"ocr_mid_channels": 16, "ocr_key_channels": 8, "scale_attn_channels": 8}

# name → (builder, output shape [K, h, w] for a 64×64 input): the smallest registered model of each family
# with attention, and tiny stand-ins for what only exists at W48 (HRNet-OCR, PSA_s in HRNet) or as a
# BasicBlock ResNet, which take seconds to build at full size.
MODELS = {
    "hrnet_w18_psa_p": (lambda: psa_zoo.create_model("hrnet_w18_psa_p"), (17, 16, 16)),
    "deeplabv3plus_mbv2_psa": (lambda: psa_zoo.create_model("deeplabv3plus_mbv2_psa"), (21, 64, 64)),
    "simplebaseline_r50_psa_p": (lambda: psa_zoo.create_model("simplebaseline_r50_psa_p"), (17, 16, 16)),
    "hrnet_tiny_psa_s": (lambda: HRNetPose(TINY_HRNET, attn="psa_s"), (17, 16, 16)),
    "simplebaseline_r18_psa_p": (
        lambda: SimpleBaseline(18, attn="psa_p", deconv_channels=(32,) * 3),
        (17, 16, 16),
    ),
    "hrnetv2_ocr_tiny": (lambda: HRNetOCR(TINY_HRNET, num_classes=5, **TINY_OCR), (5, 64, 64)),
    "hrnetv2_ocr_tiny_psa_p": (
        lambda: HRNetOCR(TINY_HRNET, num_classes=5, attn="psa_p", **TINY_OCR),
        (5, 64, 64),
    ),
}
PARAMS = list(MODELS)


@pytest.fixture(scope="module")
def model_of():
    """``model_of(name)``: each model built once for this module (eval mode, seeded weights), then freed."""
    cache: dict[str, torch.nn.Module] = {}

    def build(name: str) -> torch.nn.Module:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = MODELS[name][0]().eval()
        return cache[name]

    yield build
    cache.clear()


def _flag_args(model: torch.nn.Module) -> dict:
    """Defaults of ``forward``'s keyword flags (``return_dict=False``): fx cannot trace a branch on them."""
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    return {p.name: p.default for p in params}


def test_every_registered_family_is_covered():
    families = {name.split("_")[0] for name in psa_zoo.list_models()}
    assert families <= {name.split("_")[0] for name in MODELS}


@pytest.mark.parametrize("name", PARAMS)
def test_empty_batch_in_eval_gives_an_empty_output(model_of, name):
    with torch.no_grad():
        out = model_of(name)(torch.zeros(0, 3, 64, 64))
    assert out.shape == (0, *MODELS[name][1])


@pytest.mark.parametrize("name", ["hrnet_w18_psa_p", "deeplabv3plus_mbv2_psa", "simplebaseline_r50_psa_p"])
@pytest.mark.parametrize("shape", [(1, 3, 0, 64), (2, 3, 64, 0)], ids=str)
def test_image_without_pixels_is_a_clear_error(model_of, name, shape):
    with pytest.raises(ValueError) as error:
        model_of(name)(torch.zeros(shape))
    message = str(error.value)
    assert (
        f"was built for in_chans=3 and expects an input [N, 3, H, W] with H, W ≥ 1, got shape {shape}"
        in message
    )
    assert "an empty batch, N = 0, is fine" in message


@pytest.mark.parametrize("name", PARAMS)
def test_fx_symbolic_trace_matches_eager(model_of, name):
    model = model_of(name)
    traced = torch.fx.symbolic_trace(model, concrete_args=_flag_args(model))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
        assert traced(torch.zeros(0, 3, 64, 64)).shape == (0, *MODELS[name][1])


@pytest.mark.parametrize("name", PARAMS)
def test_plain_fx_symbolic_trace_returns_the_tensor_output(model_of, name):
    """Without ``concrete_args`` fx makes ``return_dict`` a proxy too; the graph is that of ``model(x)``."""
    model = model_of(name)
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)
