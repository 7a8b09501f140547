import pytest
import torch

from psa_zoo.layers import get_attn, list_attn
from psa_zoo.models.backbones.hrnet import hrnet_spec
from psa_zoo.models.hrnet_pose import HRNetPose
from tests.keylists import read_key_list, rows

TINY = hrnet_spec((8, 16, 32, 64), num_blocks=1, num_modules=(1, 1, 1), stage1_blocks=1, stage1_width=16)

# Official numbers: fixture README (pose W32 / W48) and the PSA reference (PSA parameters for W32 / W48).
OFFICIAL_PARAMS = {"w32": 28_536_113, "w48": 63_595_745}
PSA_PARAMS = {
    ("w32", "psa_p"): 2_827_776,
    ("w32", "psa_s"): 2_400_832,
    ("w48", "psa_p"): 6_355_200,
    ("w48", "psa_s"): 5_384_544,
}


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", ["w32", "w48"])
def test_parameter_counts_match_the_official_models(size):
    with torch.device("meta"):
        base = _num_params(HRNetPose(size))
        assert base == OFFICIAL_PARAMS[size]
        for attn in ("psa_p", "psa_s"):
            assert _num_params(HRNetPose(size, attn=attn)) - base == PSA_PARAMS[(size, attn)]


@pytest.mark.parametrize("size", ["w32", "w48"])
def test_state_dict_equals_the_official_key_list(shared_dir, size):
    expected = read_key_list(shared_dir / "fixtures/official_pose_hrnet" / f"keys_full_{size}.txt")
    with torch.device("meta"):
        model = HRNetPose(size)
    assert rows(model.state_dict()) == rows(expected)


@pytest.mark.parametrize("hw", [(256, 192), (97, 75)])
def test_heatmaps_are_at_quarter_resolution(hw):
    model = HRNetPose(TINY, num_classes=5).eval()
    with torch.no_grad():
        heatmaps = model(torch.randn(2, 3, *hw))
    assert heatmaps.shape == (2, 5, -(-hw[0] // 4), -(-hw[1] // 4))
    # the stem, the trunk output (stride 4), then the last module's coarser branches before its fuse
    assert [i["reduction"] for i in model.feature_info] == [2, 4, 8, 16, 32]
    assert [i["module"] for i in model.feature_info][1:] == ["stage4"] + [
        f"stage4.0.branches.{b}" for b in (1, 2, 3)
    ]


def test_the_pose_trunk_fuses_into_branch_zero_only():
    model = HRNetPose(TINY)
    assert len(model.stage4[-1].fuse_layers) == 1
    assert model.final_layer.in_channels == 8 and model.final_layer.bias is not None


def test_attn_none_has_no_attention_parameters():
    model = HRNetPose(TINY)
    assert not any("deattn" in name for name, _ in model.named_parameters())
    with_psa = HRNetPose(TINY, attn="psa_s")
    extra = {n for n, _ in with_psa.named_parameters()} - {n for n, _ in model.named_parameters()}
    assert extra and all(".deattn." in n for n in extra)


@pytest.mark.parametrize("name", list_attn())
def test_every_registered_attention_block_builds_and_runs(name):
    model = HRNetPose(TINY, num_classes=3, attn=name).eval()
    blocks = [m for n, m in model.named_modules() if n.endswith(".deattn")]
    factory = get_attn(name)
    assert len(blocks) == 9 and all(isinstance(b, factory) for b in blocks)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 48))
    assert out.shape == (2, 3, 16, 12)
    assert torch.isfinite(out).all()


def test_wrong_input_channels_and_bad_arguments_raise_value_error():
    model = HRNetPose(TINY).eval()
    with pytest.raises(ValueError, match=r"HRNetPose.*\[N, 3, H, W\]"):
        model(torch.randn(1, 4, 64, 48))
    with pytest.raises(ValueError, match="num_classes"):
        HRNetPose(TINY, num_classes=0)
    with pytest.raises(ValueError, match="unknown attention block"):
        HRNetPose(TINY, attn="psa_x")


def test_torch_export_matches_eager():
    model = HRNetPose(TINY, attn="psa_p").eval()
    x = torch.randn(1, 3, 64, 48)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_training_step_reaches_every_parameter_including_attention():
    model = HRNetPose(TINY, num_classes=3, attn="psa_p").train()
    model(torch.randn(2, 3, 64, 48)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_coarser_feature_levels_are_the_last_modules_branch_maps():
    model = HRNetPose(TINY).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        heatmaps, features = model(x), model.forward_features(x)
    seen = {}
    last = model.stage4[-1]
    for b in (1, 2, 3):
        last.branches[b].register_forward_hook(lambda m, i, o, b=b: seen.__setitem__(b, o))
    with torch.no_grad():
        final, levels = model.forward_intermediates(x)
    assert torch.equal(final, features)  # timm: the final output is forward_features(x)
    assert [tuple(t.shape[1:]) for t in levels] == [
        (64, 32, 24), (8, 16, 12), (16, 8, 6), (32, 4, 3), (64, 2, 2)
    ]  # fmt: skip
    for b in (1, 2, 3):
        assert torch.equal(levels[b + 1], seen[b])
    torch.testing.assert_close(model.final_layer(levels[1]), heatmaps, rtol=0, atol=0)
