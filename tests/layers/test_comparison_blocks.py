"""The comparison blocks of PSA's Table 1 against independent, explicit formulations of their references."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers.squeeze_excite import SEModule

from psa_zoo.bench._measure import peak_memory
from psa_zoo.layers import (
    Cbam,
    ChannelAttention,
    DualAttention,
    EfficientAttention,
    GlobalContext,
    NonLocal2d,
    PositionAttention,
    SimplifiedNonLocal2d,
    SqueezeExcite,
)
from tests.conftest import relative_error


def _randomize(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for param in module.parameters():
            fan_in = param[0].numel() if param.ndim >= 2 else 1
            param.copy_(torch.randn_like(param) * fan_in**-0.5)
    return module


# --- identity / neutral start -------------------------------------------------------------------------
RESIDUAL_BLOCKS = [NonLocal2d, SimplifiedNonLocal2d, GlobalContext, PositionAttention, ChannelAttention]


@pytest.mark.parametrize("cls", RESIDUAL_BLOCKS)
def test_residual_blocks_start_as_identity(cls):
    block = cls(32)
    x = torch.randn(2, 32, 6, 7)
    torch.testing.assert_close(block(x), x)


def test_dual_attention_sums_its_two_branches():
    block = DualAttention(16)
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(block(x), 2 * x)  # both γ start at 0
    _randomize(block)
    torch.testing.assert_close(block(x), block.pam(x) + block.cam(x))


# --- NL -----------------------------------------------------------------------------------------------
def test_non_local_matches_the_embedded_gaussian_equation():
    block = _randomize(NonLocal2d(16))
    x = torch.randn(2, 16, 5, 6)
    theta, phi, g = (conv(x).flatten(2) for conv in (block.theta, block.phi, block.g))  # [N, 8, HW]
    attn = torch.softmax(theta.transpose(1, 2) @ phi / 8**0.5, dim=-1)
    y = (g @ attn.transpose(1, 2)).view(2, 8, 5, 6)
    expected = x + block.conv_out(y)
    assert relative_error(block(x), expected) < 1e-5
    assert sum(p.numel() for p in NonLocal2d(64).parameters()) == 3 * (64 * 32 + 32) + 32 * 64 + 64


@pytest.mark.parametrize("cls", [NonLocal2d, DualAttention])
def test_fused_attention_equals_explicit_softmax_and_uses_far_less_memory(cls):
    fast = _randomize(cls(64))
    reference = cls(64, impl="reference")
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(1, 64, 24, 24, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, out_ref = fast(x), reference(x_ref)
    assert relative_error(out, out_ref) < 1e-5
    grad = torch.randn_like(out)
    out.backward(grad)
    out_ref.backward(grad)
    assert relative_error(x.grad, x_ref.grad) < 1e-4
    with torch.no_grad():
        fused, explicit = peak_memory(lambda: fast(x)), peak_memory(lambda: reference(x))
    hw_squared = (24 * 24) ** 2 * 4
    assert explicit >= hw_squared  # the explicit form holds the HW×HW matrix ...
    assert fused < 0.5 * explicit  # ... the fused one never does
    assert fused < hw_squared


def test_position_attention_pads_value_heads_when_channels_are_not_a_multiple():
    fast = _randomize(PositionAttention(20))  # key width 2, 10 heads; 60 → 7 heads with padding
    reference = PositionAttention(20, impl="reference")
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(2, 20, 4, 5)
    assert relative_error(fast(x), reference(x)) < 1e-5
    odd = _randomize(PositionAttention(60))
    odd_ref = PositionAttention(60, impl="reference")
    odd_ref.load_state_dict(odd.state_dict())
    x = torch.randn(1, 60, 3, 4)
    assert relative_error(odd(x), odd_ref(x)) < 1e-5


def test_channel_attention_uses_the_max_minus_energy_softmax():
    block = _randomize(ChannelAttention(8))
    x = torch.randn(2, 8, 3, 3)
    flat = x.flatten(2)
    energy = flat @ flat.transpose(1, 2)
    attn = torch.softmax(energy.max(-1, keepdim=True)[0] - energy, dim=-1)
    expected = block.gamma * (attn @ flat).view_as(x) + x
    assert relative_error(block(x), expected) < 1e-5


# --- SNL / GC -----------------------------------------------------------------------------------------
def test_simplified_non_local_adds_one_transformed_context_vector():
    block = _randomize(SimplifiedNonLocal2d(12))
    x = torch.randn(2, 12, 4, 5)
    weights = torch.softmax(block.conv_mask(x).flatten(2), dim=-1)  # [N, 1, HW]
    context = (x.flatten(2) * weights).sum(-1)[:, :, None, None]
    assert relative_error(block(x), x + block.transform(context)) < 1e-5


def test_global_context_widths_init_and_math():
    block = GlobalContext(48)
    assert block.inner == 3  # int(48 / 16), as the official ContextBlock
    assert GlobalContext(48, ratio=1 / 4).inner == 12
    last = block.channel_add_conv[-1]
    assert last.weight.abs().sum() == 0 and last.bias.abs().sum() == 0
    _randomize(block)
    x = torch.randn(2, 48, 5, 3)
    weights = torch.softmax(block.conv_mask(x).flatten(2), dim=-1)
    context = (x.flatten(2) * weights).sum(-1)[:, :, None, None]
    conv1, norm, _, conv2 = block.channel_add_conv
    hidden = F.layer_norm(conv1(context), (3, 1, 1), norm.weight, norm.bias, eps=1e-5)
    expected = x + conv2(F.relu(hidden))
    assert relative_error(block(x), expected) < 1e-5


# --- SE -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("channels", "reduced"), [(48, 3), (96, 6), (192, 12), (384, 24), (64, 4)])
def test_squeeze_excite_uses_exact_c_over_16(channels, reduced):
    assert SqueezeExcite(channels).fc1.out_channels == reduced


def test_squeeze_excite_is_timm_se_module_with_divisor_one():
    ours = _randomize(SqueezeExcite(48))
    timm_se = SEModule(48, rd_ratio=1 / 16, rd_divisor=1)
    timm_se.load_state_dict(ours.state_dict())
    x = torch.randn(2, 48, 4, 4)
    torch.testing.assert_close(ours(x), timm_se(x))
    gate = torch.sigmoid(ours.fc2(F.relu(ours.fc1(x.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(ours(x), x * gate)


# --- CBAM ---------------------------------------------------------------------------------------------
def test_cbam_follows_the_authors_code():
    block = Cbam(32)
    mlp = block.channel_gate.mlp
    assert mlp[1].bias is not None and mlp[1].out_features == 2
    assert block.spatial_gate.spatial.bn.weight.item() == 0.0
    assert block.spatial_gate.spatial.bn.momentum == 0.01
    _randomize(block).eval()
    x = torch.randn(2, 32, 6, 5)
    channel_scale = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    y = x * channel_scale
    pooled = torch.cat([y.amax(1, keepdim=True), y.mean(1, keepdim=True)], dim=1)  # [max, mean]
    expected = y * torch.sigmoid(block.spatial_gate.spatial(pooled))
    assert relative_error(block(x), expected) < 1e-5
    swapped = torch.cat([y.mean(1, keepdim=True), y.amax(1, keepdim=True)], dim=1)  # timm's order differs
    assert relative_error(block(x), y * torch.sigmoid(block.spatial_gate.spatial(swapped))) > 1e-3


def test_cbam_spatial_gate_is_one_half_at_start():
    block = Cbam(32).eval()
    x = torch.randn(2, 32, 6, 5)
    torch.testing.assert_close(block(x), 0.5 * block.channel_gate(x))


# --- Efficient attention ------------------------------------------------------------------------------
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_efficient_attention_matches_a_per_head_loop(heads):
    block = _randomize(EfficientAttention(32, num_heads=heads))
    x = torch.randn(2, 32, 5, 6)
    keys, queries, values = (conv(x).flatten(2) for conv in (block.keys, block.queries, block.values))
    dk, dv = 16 // heads, 16 // heads
    outs = []
    for i in range(heads):
        k = keys[:, i * dk : (i + 1) * dk].softmax(dim=2)
        q = queries[:, i * dk : (i + 1) * dk].softmax(dim=1)
        v = values[:, i * dv : (i + 1) * dv]
        outs.append(((k @ v.transpose(1, 2)).transpose(1, 2) @ q).view(2, dv, 5, 6))
    expected = block.reprojection(torch.cat(outs, dim=1)) + x
    assert relative_error(block(x), expected) < 1e-5


def test_efficient_attention_rejects_heads_that_do_not_divide():
    with pytest.raises(ValueError, match="num_heads=3 must divide"):
        EfficientAttention(32, num_heads=3)
