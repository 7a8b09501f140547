import json

import pytest
import timm
import torch
from timm.models.hrnet import HighResolutionNet

from psa_zoo.layers import PsaP
from psa_zoo.models.backbones.hrnet import (
    HRNET_PRESETS,
    HRNet,
    HRNetModule,
    HRNetSpec,
    StageSpec,
    filter_timm_state_dict,
    hrnet_spec,
    resolve_hrnet_spec,
)

TINY = hrnet_spec((8, 16, 32, 64), num_blocks=1, num_modules=(1, 1, 1), stage1_blocks=1, stage1_width=16)


def _ceil_halvings(n: int, times: int) -> int:
    for _ in range(times):
        n = (n + 1) // 2
    return n


def _timm_stage(n: int, widths, blocks, block="BASIC") -> dict:
    """One stage of timm's HRNet config format."""
    counts = dict(num_modules=n, num_branches=len(widths), num_blocks=blocks)
    return dict(counts, block_type=block, num_channels=widths, fuse_method="SUM")


def test_presets_have_the_released_widths_and_layout():
    for name, c in (("w18", 18), ("w32", 32), ("w48", 48)):
        spec = HRNET_PRESETS[name]
        assert spec.stage4.widths == (c, 2 * c, 4 * c, 8 * c)
        assert [s.num_modules for s in spec.stages] == [1, 1, 4, 3]
        assert spec.stage1 == StageSpec(1, (4,), (64,), "bottleneck")
        assert spec.stage3.num_blocks == (4, 4, 4)


def test_spec_dict_round_trip_and_validation():
    spec = HRNET_PRESETS["w32"]
    assert HRNetSpec.from_dict(spec.to_dict()) == spec
    assert HRNetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert resolve_hrnet_spec(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="one entry per branch"):
        StageSpec(1, (4, 4), (32,))
    with pytest.raises(ValueError, match="stage3 must have 3 branches"):
        HRNetSpec(spec.stage1, spec.stage2, spec.stage2, spec.stage4)
    with pytest.raises(ValueError, match="unknown HRNet preset 'w33'"):
        resolve_hrnet_spec("w33")
    bad = spec.to_dict()
    bad["stage2"]["num_branches"] = 3
    with pytest.raises(ValueError, match="num_branches=3"):
        HRNetSpec.from_dict(bad)


@pytest.mark.parametrize("name", ["hrnet_w18", "hrnet_w18_small"])
def test_trunk_keys_and_shapes_equal_timm(name):
    with torch.device("meta"):
        theirs = timm.create_model(name, pretrained=False).state_dict()
        ours = HRNet(name.removeprefix("hrnet_")).state_dict()
    trunk = filter_timm_state_dict(theirs)
    assert set(theirs) - set(trunk), "the timm head keys should have been dropped"
    head = {"incre_modules", "downsamp_modules", "final_layer", "classifier"}
    assert {k.split(".")[0] for k in set(theirs) - set(trunk)} == head
    assert list(trunk) == list(ours)
    assert {k: v.shape for k, v in trunk.items()} == {k: v.shape for k, v in ours.items()}


def test_timm_weights_load_strict_and_only_attention_keys_are_missing_with_psa():
    trunk = filter_timm_state_dict(timm.create_model("hrnet_w18", pretrained=False).state_dict())
    HRNet("w18").load_state_dict(trunk, strict=True)
    result = HRNet("w18", attn="psa_p").load_state_dict(trunk, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".deattn." in k for k in result.missing_keys)
    # 4 PSA_p weights per BasicBlock of stages 2-4: (1·4 + 4·4·3 + 3·4·4) blocks × 5 tensors
    assert len(result.missing_keys) == (8 + 48 + 48) * 5


def test_nearest_trunk_reproduces_timm_numerically():
    widths = (8, 16, 32, 64)
    cfg = dict(
        stem_width=64,
        stage1=_timm_stage(1, (16,), (1,), "BOTTLENECK"),
        stage2=_timm_stage(1, widths[:2], (1, 1)),
        stage3=_timm_stage(2, widths[:3], (1, 1, 1)),
        stage4=_timm_stage(1, widths, (1, 1, 1, 1)),
    )
    theirs = HighResolutionNet(cfg, head="").eval()
    spec = hrnet_spec(widths, num_blocks=1, num_modules=(1, 2, 1), stage1_blocks=1, stage1_width=16)
    ours = HRNet(spec).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        stem = theirs.act2(theirs.bn2(theirs.conv2(theirs.act1(theirs.bn1(theirs.conv1(x))))))
        expected = theirs.stages(stem)
        actual = ours(x)
    assert len(actual) == 4
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("fuse_upsample", ["nearest", "bilinear", "bilinear_align_corners"])
@pytest.mark.parametrize("multi_scale_output", [True, False])
def test_odd_input_sizes_give_ceil_rounded_branches(fuse_upsample, multi_scale_output):
    model = HRNet(TINY, fuse_upsample=fuse_upsample, multi_scale_output=multi_scale_output).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 97, 75))
    expected_branches = 4 if multi_scale_output else 1
    assert len(feats) == expected_branches
    assert len(model.feature_info) == 5  # the stem + one level per branch either way
    for b, f in enumerate(feats):
        assert f.shape == (1, 8 * 2**b, _ceil_halvings(97, b + 2), _ceil_halvings(75, b + 2))


def test_fuse_upsample_mode_changes_the_output():
    nearest = HRNet(TINY, fuse_upsample="nearest").eval()
    bilinear = HRNet(TINY, fuse_upsample="bilinear").eval()
    bilinear.load_state_dict(nearest.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = nearest(x), bilinear(x)
    assert [t.shape for t in a] == [t.shape for t in b]
    # relative: the official N(0, 0.001) init makes a fresh trunk's outputs tiny
    assert (a[0] - b[0]).abs().max() > 1e-3 * a[0].abs().max()


@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_fuse_resizes_the_lower_branch_with_the_chosen_align_corners(align_corners):
    mode = "bilinear_align_corners" if align_corners else "bilinear"
    stage = TINY.stage2
    module = HRNetModule((8, 16), stage, attn_layer=None, fuse_upsample=mode).eval()
    xs = [torch.randn(1, 8, 12, 10), torch.randn(1, 16, 6, 5)]
    with torch.no_grad():
        out = module([x.clone() for x in xs])
        high, low = (branch(x) for branch, x in zip(module.branches, xs, strict=True))
        up = torch.nn.functional.interpolate(
            module.fuse_layers[0][1](low), size=(12, 10), mode="bilinear", align_corners=align_corners
        )
    torch.testing.assert_close(out[0], torch.relu(high + up))


def test_multi_scale_output_false_builds_only_the_first_fuse_row():
    model = HRNet(TINY, multi_scale_output=False)
    last = model.stage4[-1]
    assert len(last.fuse_layers) == 1
    assert not any(".fuse_layers.1." in k for k in model.state_dict() if k.startswith("stage4.0."))
    assert len(model.stage3[-1].fuse_layers) == 3  # earlier stages keep every output


def test_attention_sits_in_basic_blocks_only_and_none_means_no_module():
    plain = HRNet(TINY)
    assert not any("deattn" in name for name, _ in plain.named_modules())
    assert not any("deattn" in name for name in plain.state_dict())
    with_attn = HRNet(TINY, attn="psa_p")
    blocks = [n for n, m in with_attn.named_modules() if isinstance(m, PsaP)]
    # stages 2-4 with 1 module and 1 block per branch: 2 + 3 + 4 BasicBlocks; none in layer1
    assert len(blocks) == 9
    assert all(n.endswith(".deattn") and n.startswith("stage") for n in blocks)


def test_attn_kwargs_reach_the_block():
    model = HRNet(TINY, attn="psa_p", attn_kwargs={"impl": "reference"})
    assert {m.impl for m in model.modules() if isinstance(m, PsaP)} == {"reference"}


def test_attention_in_a_bottleneck_stage_is_rejected():
    spec = TINY.to_dict()
    spec["stage2"]["block"] = "bottleneck"
    HRNet(spec)  # fine without attention
    with pytest.raises(ValueError, match="only in BasicBlocks; stage2"):
        HRNet(spec, attn="se")


def test_wrong_input_channels_raise_a_clear_error():
    model = HRNet(TINY, in_chans=1).eval()
    assert model.conv1.weight.shape[1] == 1
    with torch.no_grad():
        model(torch.randn(1, 1, 32, 32))
        with pytest.raises(ValueError, match=r"in_chans=1.*\[N, 1, H, W\].*got shape \(1, 3, 32, 32\)"):
            model(torch.randn(1, 3, 32, 32))
        with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
            model(torch.randn(1, 32, 32))
    with pytest.raises(ValueError, match="fuse_upsample"):
        HRNet(TINY, fuse_upsample="bicubic")


def test_feature_info_and_forward_intermediates_agree_with_the_maps():
    model = HRNet(TINY).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats, inter = model.forward_intermediates(x)
        assert len(inter) == len(model.feature_info) == 5
        for info, f in zip(model.feature_info, inter, strict=True):
            assert f.shape[1] == info["num_chs"]
            assert (64 // f.shape[2], 96 // f.shape[3]) == (info["reduction"], info["reduction"])
        for f, g in zip(feats, model.forward_features(x), strict=True):
            torch.testing.assert_close(f, g)
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [t.shape[1] for t in last_two] == [32, 64]
        picked = model.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
        assert [t.shape[1] for t in picked] == [64, 64] and picked[0].shape[-1] == 48
        final, stem_only = model.forward_intermediates(x, indices=[0], stop_early=True)
        assert final == [] and len(stem_only) == 1
    with pytest.raises(ValueError, match="out of range"):
        model.forward_intermediates(x, indices=[7])


def test_timm_feature_getter_wraps_the_trunk():
    from timm.models._features import FeatureGetterNet

    getter = FeatureGetterNet(HRNet(TINY).eval(), out_indices=(1, 2, 3, 4))
    assert getter.feature_info.channels() == [8, 16, 32, 64]
    assert getter.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        maps = getter(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(8, 16, 16), (16, 8, 8), (32, 4, 4), (64, 2, 2)]
