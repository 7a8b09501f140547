import pytest
import torch

from psa_zoo.models.backbones.hrnet import hrnet_spec
from psa_zoo.models.hrnet_ocr import HRNetOCR
from psa_zoo.models.outputs import SegmentationOutput
from tests.keylists import read_key_list, rows

TINY = hrnet_spec((8, 16, 32, 64), num_blocks=1, num_modules=(1, 1, 1), stage1_blocks=1, stage1_width=16)
TINY_HEADS = dict(ocr_mid_channels=16, ocr_key_channels=8, scale_attn_channels=8)

# Released W48 model, 19 classes (official_psa_seg fixture README): total, trunk, OCR, scale attention, PSA.
OFFICIAL_PARAMS = {
    "psa_s": (77_527_974, 70_709_664, 5_047_558, 1_770_752, 5_384_544),
    "psa_p": (78_498_630, 71_680_320, 5_047_558, 1_770_752, 6_355_200),
}


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tiny(**kwargs) -> HRNetOCR:
    """A tiny model with Kaiming trunk convs: the official N(0, 0.001) init leaves a fresh trunk's
    features so small that the logits are the head biases, and resize differences would not show."""
    model = HRNetOCR(TINY, num_classes=5, **(TINY_HEADS | kwargs)).eval()
    for m in model.backbone.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    return model


@pytest.mark.parametrize("attn", ["psa_s", "psa_p"])
def test_parameter_counts_match_the_released_model(attn):
    total, trunk, ocr, scale_attn, psa = OFFICIAL_PARAMS[attn]
    with torch.device("meta"):
        model = HRNetOCR("w48", attn=attn)
        plain = HRNetOCR("w48")
        no_scale_head = HRNetOCR("w48", scale_attn_channels=None)
    assert _num_params(model) == total
    assert _num_params(plain) - _num_params(no_scale_head) == scale_attn
    parts = (model.backbone, model.ocr, model.scale_attn)
    assert tuple(map(_num_params, parts)) == (trunk, ocr, scale_attn)
    assert _num_params(model) - _num_params(plain) == psa
    assert model.num_features == 720


@pytest.mark.parametrize("attn", ["psa_s", "psa_p"])
def test_state_dict_equals_the_official_key_list(shared_dir, attn):
    key_list = shared_dir / "fixtures/official_psa_seg" / f"keys_full_w48_{attn}.txt"
    expected = rows(read_key_list(key_list, strip_prefix="module."))
    with torch.device("meta"):
        model = HRNetOCR("w48", attn=attn)
    ours = rows(model.state_dict())
    assert sorted(ours, key=str) == sorted(expected, key=str)
    # same order too, apart from the order of the sub-modules inside each PSA block
    not_psa = [row for row in expected if ".deattn." not in row[0]]
    assert [row for row in ours if ".deattn." not in row[0]] == not_psa


@pytest.mark.parametrize("hw", [(64, 128), (97, 75)])
def test_outputs_are_at_input_size(hw):
    model = _tiny(attn="psa_p")
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        logits = model(x)
        out = model(x, return_dict=True)
        feats = model.forward_features(x)
    assert logits.shape == (2, 5, *hw)
    assert isinstance(out, SegmentationOutput)
    torch.testing.assert_close(out.logits, logits)
    assert out.aux_logits.shape == (2, 5, *hw) and out.scale_attn.shape == (2, 1, *hw)
    assert out.scale_attn.min() > 0 and out.scale_attn.max() < 1
    assert feats.shape == (2, 8 + 16 + 32 + 64, -(-hw[0] // 4), -(-hw[1] // 4))


def test_multiscale_with_only_scale_one_is_the_single_scale_pass():
    model = _tiny()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_multiscale(x, scales=[1.0]), model(x))
        out = model.forward_multiscale(x, return_dict=True)
        single = model(x, return_dict=True)
    assert out.logits.shape == (1, 5, 64, 96) and out.aux_logits.shape == (1, 5, 64, 96)
    # relative: the official N(0, 0.001) trunk init makes a fresh model's logits small
    assert (out.logits - single.logits).abs().max() > 1e-3 * single.logits.abs().max()


def test_multiscale_handles_odd_sizes_and_checks_scales():
    model = _tiny()
    x = torch.randn(1, 3, 97, 75)
    with torch.no_grad():
        assert model.forward_multiscale(x, scales=(0.5, 1.0, 1.5, 2.0)).shape == (1, 5, 97, 75)
        assert model.forward_scale(x, 0.5).logits.shape == (1, 5, 48, 37)  # floor, as the official resize
    for bad in ([0.5, 2.0], [], [1.0, -1.0], [1.0, 1.0]):
        with pytest.raises(ValueError, match=r"including 1\.0"):
            model.forward_multiscale(x, scales=bad)


def test_plain_ocr_has_no_scale_attention_and_no_hierarchical_multiscale():
    plain = _tiny(scale_attn_channels=None, align_corners=True)
    mscale = _tiny()
    assert plain.scale_attn is None
    assert _num_params(mscale) - _num_params(plain) == _num_params(mscale.scale_attn)
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        out = plain(x, return_dict=True)
        assert out.scale_attn is None and out.logits.shape == out.aux_logits.shape == (1, 5, 48, 80)
        assert plain.forward_scale(x, 0.5).logits.shape == (1, 5, 24, 40)
        with pytest.raises(ValueError, match="no scale-attention head"):
            plain.forward_multiscale(x)


def test_align_corners_reaches_the_trunk_and_every_resize():
    model = _tiny(align_corners=True)
    assert model.backbone.fuse_upsample == "bilinear_align_corners"
    other = _tiny(align_corners=False)
    other.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), other(x)
    assert (a - b).abs().max() > 1e-4 * b.abs().max()  # relative: fresh outputs are small


def test_dropout_acts_only_in_training():
    model = _tiny(dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        model.train()
        torch.manual_seed(1)
        first = model(x)
        torch.manual_seed(2)
        assert not torch.allclose(first, model(x))


def test_attn_none_has_no_attention_parameters():
    assert not any("deattn" in n for n, _ in _tiny().named_parameters())
    assert any("deattn" in n for n, _ in _tiny(attn="psa_s").named_parameters())


def test_wrong_input_channels_raise_value_error():
    model = _tiny(in_chans=4)
    with torch.no_grad():
        assert model(torch.randn(1, 4, 32, 32)).shape == (1, 5, 32, 32)
        with pytest.raises(ValueError, match=r"\[N, 4, H, W\]"):
            model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        HRNetOCR(TINY, num_classes=0)


def test_torch_export_matches_eager():
    model = _tiny(attn="psa_s")
    x = torch.randn(1, 3, 64, 64)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))
