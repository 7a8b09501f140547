"""Behaviour every attention block shares: shapes, layouts, gradients, autocast, export, input checks."""

import pytest
import torch

from psa_zoo.layers import create_attn, list_attn
from tests.conftest import relative_error

BLOCKS = list_attn()
SHAPES = [(2, 16, 8, 8), (1, 16, 5, 7), (3, 16, 1, 9), (2, 16, 6, 1), (1, 16, 1, 1), (2, 24, 11, 3)]


def _randomize(block: torch.nn.Module) -> torch.nn.Module:
    """Random weights everywhere (zero-initialised outputs and γ = 0 would hide most of the math)."""
    with torch.no_grad():
        for param in block.parameters():
            param.copy_(torch.randn_like(param) * 0.3 + (0.5 if param.numel() == 1 else 0.0))
    return block


def _build(name: str, channels: int, dtype=torch.float32) -> torch.nn.Module:
    return _randomize(create_attn(name, channels)).to(dtype)


def _mode_for(name: str, shape) -> bool:
    """CBAM's BatchNorm cannot train on one value per channel (N·H·W == 1); use eval there."""
    n, _, h, w = shape
    return not (name == "cbam" and n * h * w == 1)


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_output_shape_and_finite(name, shape):
    block = _build(name, shape[1]).train(_mode_for(name, shape))
    x = torch.randn(shape)
    out = block(x)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", BLOCKS)
def test_channels_last_and_non_contiguous_inputs_give_the_same_output(name):
    block = _build(name, 16).eval()
    x = torch.randn(2, 16, 7, 9)
    expected = block(x)
    channels_last = x.to(memory_format=torch.channels_last)
    non_contiguous = torch.randn(2, 9, 16, 7).permute(0, 2, 3, 1)  # [2, 16, 7, 9] with odd strides
    non_contiguous.copy_(x)
    assert not non_contiguous.is_contiguous()
    for variant in (channels_last, non_contiguous):
        out = block(variant)
        assert relative_error(out, expected) < 1e-5


@pytest.mark.parametrize("name", BLOCKS)
def test_output_is_not_just_the_input(name):
    """With random weights every block must change its input (a block that returns x is broken)."""
    block = _build(name, 16).eval()
    x = torch.randn(2, 16, 6, 5)
    assert relative_error(block(x), x) > 1e-3


@pytest.mark.parametrize("name", BLOCKS)
def test_gradcheck_float64(name):
    block = _build(name, 8, torch.float64).eval()
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", BLOCKS)
def test_parameters_receive_gradients(name):
    block = _build(name, 16).train()
    block(torch.randn(2, 16, 5, 6)).square().sum().backward()
    missing = [n for n, p in block.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", BLOCKS)
def test_bfloat16_autocast_runs_close_to_float32(name):
    block = _build(name, 16).eval()
    x = torch.randn(2, 16, 8, 8)
    expected = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert relative_error(out.float(), expected) < 0.05


@pytest.mark.parametrize("name", BLOCKS)
def test_torch_export_matches_eager(name):
    block = _build(name, 16).eval()
    x = torch.randn(2, 16, 6, 5)
    exported = torch.export.export(block, (x,))
    assert relative_error(exported.module()(x), block(x)) < 1e-6


@pytest.mark.parametrize("name", BLOCKS)
def test_wrong_rank_is_a_clear_error(name):
    block = create_attn(name, 16)
    with pytest.raises(ValueError, match=r"expects an input \[N, 16, H, W\].*got shape \(16, 4, 4\)"):
        block(torch.randn(16, 4, 4))


@pytest.mark.parametrize("name", BLOCKS)
def test_wrong_channel_count_is_a_clear_error(name):
    block = create_attn(name, 16)
    with pytest.raises(ValueError, match=r"built for 16 channels.*got shape \(2, 8, 4, 4\)"):
        block(torch.randn(2, 8, 4, 4))
