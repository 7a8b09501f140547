"""Stochastic depth (timm's ``drop_path_rate``): the per-block probabilities follow the linear depth rule
written out here, a dropped sample passes its shortcut only and a kept one its residual branch scaled by
1 / (1 − p), eval mode is untouched, and the rate travels with the saved model."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import psa_zoo
from psa_zoo.models.backbones import _inplace
from psa_zoo.models.backbones.hrnet import BasicBlock as HRNetBasicBlock
from psa_zoo.models.backbones.mobilenetv2 import InvertedResidual
from psa_zoo.models.backbones.resnet import BasicBlock, Bottleneck
from tests.models._tiny import TINY_HRNET


def _probabilities(blocks: list[nn.Module]) -> list[float]:
    return [0.0 if b.drop_path is None else b.drop_path.drop_prob for b in blocks]


def test_resnet_rate_rises_linearly_over_its_blocks():
    model = psa_zoo.create_model("simplebaseline_r50", drop_path_rate=0.3, device="meta")
    blocks = [b for i in range(1, 5) for b in getattr(model.backbone, f"layer{i}")]
    assert len(blocks) == 3 + 4 + 6 + 3
    expected = [0.3 * i / 15 for i in range(16)]  # 0 at the first block, the rate at the last
    assert _probabilities(blocks) == pytest.approx(expected)
    assert blocks[0].drop_path is None  # p = 0 builds no module


def test_hrnet_rate_rises_with_depth_and_parallel_branches_share_it():
    model = psa_zoo.create_model("hrnet_w32", drop_path_rate=0.35, device="meta")
    # depth: layer1 4 bottlenecks, then 4 blocks per module: stage2 1 module, stage3 4, stage4 3 → 36
    depth = 4 + 4 * (1 + 4 + 3)
    rate = [0.35 * i / (depth - 1) for i in range(depth)]
    assert _probabilities(list(model.layer1)) == pytest.approx(rate[:4])
    modules = [*model.stage2, *model.stage3, *model.stage4]
    for m, module in enumerate(modules):
        for branch in module.branches:
            assert _probabilities(list(branch)) == pytest.approx(rate[4 + 4 * m : 8 + 4 * m])
    assert modules[-1].branches[0][-1].drop_path.drop_prob == pytest.approx(0.35)


def test_mobilenetv2_rate_counts_every_block_and_skips_those_without_shortcut():
    model = psa_zoo.create_model("deeplabv3plus_mbv2", drop_path_rate=0.16, device="meta")
    blocks = [b for stage in model.backbone.blocks for b in stage]
    assert len(blocks) == 1 + 2 + 3 + 4 + 3 + 3 + 1
    for k, block in enumerate(blocks):
        expected = 0.16 * k / 16 if block.has_shortcut else 0.0
        assert _probabilities([block]) == pytest.approx([expected])
    assert sum(b.has_shortcut for b in blocks) == 0 + 1 + 2 + 3 + 2 + 2 + 0  # each stage's repeats


def _resnet_branch(block: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    return block.bn2(block.conv2(block.act1(block.bn1(block.conv1(x)))))


def _bottleneck_branch(block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
    out = block.act2(block.bn2(block.conv2(block.act1(block.bn1(block.conv1(x))))))
    return block.bn3(block.conv3(out))


def _inverted_branch(block: InvertedResidual, x: torch.Tensor) -> torch.Tensor:
    out = block.act2(block.bn2(block.conv_dw(block.act1(block.bn1(block.conv_pw(x))))))
    return block.bn3(block.conv_pwl(out))


BLOCKS = {
    "resnet_basic": (lambda: BasicBlock(8, 8, drop_path=0.5), _resnet_branch, True),
    "resnet_bottleneck": (lambda: Bottleneck(32, 8, drop_path=0.5), _bottleneck_branch, True),
    "hrnet_basic": (lambda: HRNetBasicBlock(8, 8, drop_path=0.5), _resnet_branch, True),
    "mbv2_inverted": (lambda: InvertedResidual(8, 8, expand=2, drop_path=0.5), _inverted_branch, False),
}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_a_sample_keeps_its_shortcut_and_its_branch_is_dropped_or_scaled(name):
    """p = 0.5: out_n = act(x_n + m_n · branch_n / 0.5) with m_n ∈ {0, 1} (ReLU for the ResNet and HRNet
    blocks, none after MobileNetV2's linear bottleneck); BN statistics are over the whole batch either way."""
    make, branch_of, relu = BLOCKS[name]
    torch.manual_seed(0)
    block = make().train()
    x = torch.randn(64, block.conv1.in_channels if hasattr(block, "conv1") else 8, 6, 6)
    with torch.no_grad():
        branch = branch_of(block, x)
        out = block(x)
    act = torch.relu if relu else (lambda t: t)
    dropped, kept = act(x), act(x + branch / 0.5)
    is_dropped = [torch.allclose(o, d, atol=1e-6) for o, d in zip(out, dropped, strict=True)]
    is_kept = [torch.allclose(o, k, atol=1e-6) for o, k in zip(out, kept, strict=True)]
    assert all(d != k for d, k in zip(is_dropped, is_kept, strict=True))  # each sample is one of the two
    assert 10 < sum(is_dropped) < 54  # Binomial(64, 0.5): both happen (P(outside) < 1e-7)


@pytest.mark.parametrize("name", list(BLOCKS))
def test_in_place_sum_after_drop_path_gives_the_out_of_place_gradients(name):
    make, _, _ = BLOCKS[name]
    torch.manual_seed(0)
    block = make().train()
    x = torch.randn(16, block.conv1.in_channels if hasattr(block, "conv1") else 8, 6, 6)
    grads = []
    for inplace in (True, False):
        block.zero_grad()
        torch.manual_seed(3)  # the same drop masks
        with _inplace.inplace_adds(inplace):
            block(x).square().sum().backward()
        grads.append([p.grad.clone() for p in block.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_eval_mode_and_state_dict_are_those_of_the_model_without_drop_path():
    plain = psa_zoo.create_model("hrnet_w18_psa_p", spec=TINY_HRNET).eval()
    dropped = psa_zoo.create_model("hrnet_w18_psa_p", spec=TINY_HRNET, drop_path_rate=0.4).eval()
    dropped.load_state_dict(plain.state_dict(), strict=True)  # same keys: DropPath has no tensors
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(dropped(x), plain(x))


def test_the_rate_is_saved_and_restored(tmp_path):
    model = psa_zoo.create_model("simplebaseline_r50", depth=18, deconv_channels=(8,), drop_path_rate=0.2)
    model.save_pretrained(tmp_path / "m")
    loaded = psa_zoo.from_pretrained(tmp_path / "m")
    assert loaded.get_config()["drop_path_rate"] == 0.2
    last = loaded.backbone.layer4[-1]
    assert last.drop_path.drop_prob == pytest.approx(0.2)


def test_timm_create_model_passes_drop_path_rate():
    model = timm.create_model("hrnet_w18_psa_p", pretrained=False, drop_path_rate=0.1, spec=TINY_HRNET)
    assert model.stage4[-1].branches[0][-1].drop_path.drop_prob == pytest.approx(0.1)


@pytest.mark.parametrize("rate", [-0.1, 1.0, "0.1", True])
def test_a_rate_outside_zero_to_one_is_a_clear_error(rate):
    with pytest.raises(ValueError, match=r"drop_path_rate must be a number in \[0, 1\)"):
        psa_zoo.create_model("hrnet_w18", drop_path_rate=rate, device="meta")
