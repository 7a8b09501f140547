"""The model registry: names, lookup errors, kwargs, timm registration, parameter counts (meta device)."""

import pytest
import timm
import torch

import psa_zoo
from psa_zoo.layers import list_attn
from psa_zoo.models._loading import is_attention_key

PAPER_NAMES = {
    "simplebaseline_r50", "simplebaseline_r101", "simplebaseline_r152", "simplebaseline_r50_psa_p",
    "simplebaseline_r152_psa_p", "hrnet_w18", "hrnet_w32", "hrnet_w48", "hrnet_w18_psa_p", "hrnet_w32_psa_p",
    "hrnet_w48_psa_p", "hrnet_w48_psa_s", "deeplabv3plus_mbv2", "deeplabv3plus_r50", "deeplabv3plus_r101",
    "deeplabv3plus_mbv2_psa", "deeplabv3plus_r50_psa", "deeplabv3plus_r101_psa", "hrnetv2_w48_ocr",
    "hrnetv2_w48_ocr_psa_p", "hrnetv2_w48_ocr_psa_s",
}  # fmt: skip
# Official baseline releases registered beside the paper's names (their own architecture variant).
RELEASE_NAMES = {"hrnetv2_w48_ocr_plain"}
# Small members for CPU fine-tuning (psa-zoo demo): HRNet-W18-Small v1, as timm's hrnet_w18_small.
SMALL_NAMES = {"hrnet_w18_small", "hrnet_w18_small_psa_p"}

# Official parameter counts (fixture READMEs in ../shared, computed from the official code) and the
# PSA additions (2C² + C per PSA_p block, 1.6875C² + 2.375C per PSA_s block).
EXACT_PARAMS = {
    "hrnet_w32": 28_536_113,
    "hrnet_w48": 63_595_745,
    "hrnet_w48_psa_p": 63_595_745 + 6_355_200,
    "hrnet_w48_psa_s": 63_595_745 + 5_384_544,
    "hrnet_w32_psa_p": 28_536_113 + 2_827_776,
    "simplebaseline_r50": 33_999_697,
    "simplebaseline_r101": 52_991_825,
    "simplebaseline_r152": 68_635_473,
    "deeplabv3plus_mbv2": 5_225_717,
    "deeplabv3plus_r50": 39_761_845,
    "deeplabv3plus_r101": 58_753_973,
    "hrnetv2_w48_ocr_psa_p": 78_498_630,
    "hrnetv2_w48_ocr_psa_s": 77_527_974,
    # the PSA_s model less its PSA blocks and its scale-attention head (both counted in the fixture README)
    "hrnetv2_w48_ocr_plain": 77_527_974 - 5_384_544 - 1_770_752,
}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_paper_model_is_registered():
    assert set(psa_zoo.list_models()) == PAPER_NAMES | RELEASE_NAMES | SMALL_NAMES
    assert psa_zoo.list_models("hrnet_w48*") == ["hrnet_w48", "hrnet_w48_psa_p", "hrnet_w48_psa_s"]
    assert psa_zoo.list_models("*_psa*") == sorted(n for n in PAPER_NAMES | SMALL_NAMES if "_psa" in n)
    assert psa_zoo.list_models("nothing*") == []


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_parameter_counts_equal_the_official_models(name):
    with torch.device("meta"):
        model = psa_zoo.create_model(name)
    assert _params(model) == EXACT_PARAMS[name]


def test_hrnet_w18_small_is_timms_trunk_with_a_pose_head_and_18_psa_blocks():
    """timm's hrnet_w18_small trunk (its head dropped) + a 1×1 head 16 → 17 + PSA_p (2C² + C each) in the
    2 BasicBlocks of every branch of stages 2–4 (branch widths 16, 32, 64, 128)."""
    from psa_zoo.models.backbones import filter_timm_state_dict

    with torch.device("meta"):
        trunk = filter_timm_state_dict(timm.create_model("hrnet_w18_small", pretrained=False).state_dict())
        plain, psa = psa_zoo.create_model("hrnet_w18_small"), psa_zoo.create_model("hrnet_w18_small_psa_p")
    head = 16 * 17 + 17
    # the pose trunk's last module fuses into the stride-4 branch only (HRNet pose: multiscale_output=False)
    dropped = tuple(f"stage4.0.fuse_layers.{i}." for i in (1, 2, 3))
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    trunk_params = sum(
        v.numel() for k, v in trunk.items() if not k.endswith(buffers) and not k.startswith(dropped)
    )
    assert _params(plain) == trunk_params + head
    widths = [16, 32] * 2 + [16, 32, 64] * 2 + [16, 32, 64, 128] * 2
    assert _params(psa) == _params(plain) + sum(2 * c * c + c for c in widths)


@pytest.mark.parametrize("name", sorted(PAPER_NAMES | SMALL_NAMES))
def test_every_name_builds_on_meta_with_attention_where_named(name):
    model = psa_zoo.create_model(name, device="meta")
    attention = [k for k, _ in model.named_parameters() if is_attention_key(k)]
    assert bool(attention) == ("_psa" in name)
    cfg = psa_zoo.get_pretrained_cfg(name)
    assert model.psa_cfg == cfg
    assert model.pretrained_cfg["num_classes"] == cfg.num_classes == model.num_classes
    assert cfg.num_classes == len(cfg.label_names)


@pytest.mark.parametrize("name", ["hrnet_w48_psa_p", "deeplabv3plus_r101_psa", "simplebaseline_r152_psa_p"])
def test_attn_none_removes_every_attention_parameter(name):
    with_attn = psa_zoo.create_model(name, device="meta")
    without = psa_zoo.create_model(name, device="meta", attn=None)
    same_without = psa_zoo.create_model(name, device="meta", attn="none")
    assert not [k for k, _ in without.named_parameters() if is_attention_key(k)]
    assert _params(without) == _params(same_without) < _params(with_attn)
    assert set(without.state_dict()) < set(with_attn.state_dict())


def test_attn_and_num_classes_kwargs():
    model = psa_zoo.create_model("hrnet_w18", device="meta", attn="se", num_classes=5)
    assert any(type(m).__name__ == "SqueezeExcite" for m in model.modules())
    out = model(torch.empty(1, 3, 64, 48, device="meta"))
    assert out.shape == (1, 5, 16, 12)


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'hrnet_w48_psa'.*'hrnet_w48_psa_p'"):
        psa_zoo.create_model("hrnet_w48_psa")


def test_unknown_kwarg_and_attention_name_are_clear_errors():
    with pytest.raises(ValueError, match=r"hrnet_w32 does not take output_stride; it takes: .*num_classes"):
        psa_zoo.create_model("hrnet_w32", output_stride=8, device="meta")
    with pytest.raises(ValueError, match=r"unknown attention block 'psa_x'"):
        psa_zoo.create_model("hrnet_w32", attn="psa_x", device="meta")


def test_unknown_tag_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown tag 'nope' for 'hrnet_w32'"):
        psa_zoo.create_model("hrnet_w32.nope")


def test_pretrained_without_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="has no default pretrained weights; name a tag"):
        psa_zoo.create_model("hrnet_w18", pretrained=True, device="meta")


def test_models_are_registered_in_timm_without_shadowing_timm_models():
    timm_names = {"hrnet_w18", "hrnet_w32", "hrnet_w48", "hrnet_w18_small"}
    for name in timm_names:  # timm's ImageNet classifiers keep their names
        assert not psa_zoo.registered_in_timm(name)
        assert type(timm.create_model(name, pretrained=False, num_classes=3)).__name__ == "HighResolutionNet"
    for name in (PAPER_NAMES | SMALL_NAMES) - timm_names:
        assert psa_zoo.registered_in_timm(name)
        assert timm.is_model(name)
    model = timm.create_model("hrnet_w18_psa_p", pretrained=False, num_classes=4, attn="se")
    assert isinstance(model, psa_zoo.HRNetPose)
    assert any(type(m).__name__ == "SqueezeExcite" for m in model.modules())


@pytest.mark.parametrize("attn", list_attn())
def test_every_attention_block_plugs_into_every_family(attn):
    """Small inputs on the smallest member of each family (full widths, CPU)."""
    for name, shape in (("hrnet_w18", (2, 3, 64, 48)), ("deeplabv3plus_mbv2", (2, 3, 65, 49))):
        model = psa_zoo.create_model(name, attn=attn).eval()
        with torch.no_grad():
            out = model(torch.randn(shape))
        assert out.shape[-2:] == ((16, 12) if name == "hrnet_w18" else (65, 49))
        assert torch.isfinite(out).all()
