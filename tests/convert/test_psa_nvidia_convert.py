import pytest
import torch
from safetensors.torch import load_file

from psa_zoo.convert.psa_nvidia import convert_state_dict, infer_config
from psa_zoo.layers import PsaP, PsaS
from psa_zoo.models.backbones.hrnet import HRNetSpec, hrnet_spec
from psa_zoo.models.hrnet_ocr import HRNetOCR

# The fixtures' configuration as their README states it.
FIXTURE_SPEC = hrnet_spec((16, 32, 64, 128), num_blocks=1, num_modules=(1, 2, 1))
# README: total, trunk, OCR block, scale attention, inside PSA
FIXTURE_PARAMS = {
    "psa_s": (1_725_606, 1_476_224, 221_574, 27_808, 58_240),
    "psa_p": (1_735_462, 1_486_080, 221_574, 27_808, 68_096),
}
PSA_CLASS = {"psa_s": PsaS, "psa_p": PsaP}
TOL = dict(atol=1e-4, rtol=1e-4)


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module", params=["psa_s", "psa_p"])
def variant(request, shared_dir):
    folder = shared_dir / "fixtures/official_psa_seg"
    checkpoint = torch.load(folder / f"{request.param}_checkpoint.pth", map_location="cpu", weights_only=True)
    io = load_file(folder / f"io_{request.param}.safetensors")
    return request.param, checkpoint, io


@pytest.fixture(scope="module")
def model(variant):
    _, checkpoint, _ = variant
    model = HRNetOCR(**infer_config(checkpoint)).eval()
    model.load_state_dict(convert_state_dict(checkpoint), strict=True)
    return model


def test_infer_config_reads_the_fixture_configuration(variant):
    name, checkpoint, _ = variant
    assert checkpoint["arch"] == "ocrnet.HRNet_Mscale"
    config = infer_config(checkpoint)
    assert HRNetSpec.from_dict(config.pop("spec")) == FIXTURE_SPEC
    expected = dict(attn=name, in_chans=3, num_classes=19, ocr_mid_channels=64, ocr_key_channels=32)
    assert config == expected | {"scale_attn_channels": 32}


def test_converted_model_has_the_official_parameter_split(variant, model):
    name = variant[0]
    psa = sum(_num_params(m) for m in model.modules() if isinstance(m, PSA_CLASS[name]))
    split = (
        _num_params(model),
        _num_params(model.backbone),
        _num_params(model.ocr),
        _num_params(model.scale_attn),
    )
    assert (*split, psa) == FIXTURE_PARAMS[name]


def test_single_scale_outputs_reproduce_the_official_model(variant, model):
    _, _, io = variant
    x = io["input"]
    with torch.no_grad():
        feats = model.forward_features(x)
        out = model(x, return_dict=True)
    torch.testing.assert_close(feats, io["fwd_1.0x.backbone_feats"], **TOL)
    torch.testing.assert_close(out.logits, io["fwd_1.0x.cls_out"], **TOL)
    torch.testing.assert_close(out.aux_logits, io["fwd_1.0x.aux_out"], **TOL)
    torch.testing.assert_close(out.scale_attn, io["fwd_1.0x.logit_attn"], **TOL)


def test_multiscale_prediction_reproduces_the_official_evaluation(variant, model):
    _, _, io = variant
    x = io["input"]
    with torch.no_grad():
        pred = model.forward_multiscale(x, scales=(0.5, 1.0, 2.0))
        half = model.forward_scale(x, 0.5)
    torch.testing.assert_close(pred, io["nscale.pred"], **TOL)
    torch.testing.assert_close(half.logits, io["nscale.pred_0.5x"], **TOL)
    torch.testing.assert_close(half.scale_attn, io["nscale.attn_0.5x"], **TOL)


@pytest.mark.parametrize("block", ["stage2.0.branches.0.0", "stage4.0.branches.3.0"])
def test_psa_modules_inside_the_trunk_reproduce_the_official_ones(variant, model, block):
    _, _, io = variant
    key = f"psa.backbone.{block}.deattn"
    psa = model.backbone.get_submodule(f"{block}.deattn")
    with torch.no_grad():
        torch.testing.assert_close(psa(io[f"{key}.input"]), io[f"{key}.output"], **TOL)
    seen = {}
    handle = psa.register_forward_hook(lambda _m, args, out: seen.update(input=args[0], output=out))
    try:
        with torch.no_grad():
            model(io["input"])
    finally:
        handle.remove()
    torch.testing.assert_close(seen["input"], io[f"{key}.input"], **TOL)
    torch.testing.assert_close(seen["output"], io[f"{key}.output"], **TOL)


def test_prefixes_are_renamed_and_unused_keys_are_reported(variant):
    _, checkpoint, _ = variant
    converted = convert_state_dict(checkpoint)
    assert len(converted) == len(checkpoint["state_dict"])
    assert {k.split(".")[0] for k in converted} == {"backbone", "ocr", "scale_attn"}
    assert convert_state_dict(converted).keys() == converted.keys()  # already-unwrapped input is accepted
    extra = dict(checkpoint["state_dict"], **{"module.criterion.weight": torch.ones(19)})
    with pytest.raises(ValueError, match=r"unused.*'criterion\.weight'"):
        convert_state_dict(extra)
    no_attn_head = {k: v for k, v in converted.items() if not k.startswith("scale_attn.")}
    with pytest.raises(ValueError, match="no scale_attn"):
        convert_state_dict(no_attn_head)
