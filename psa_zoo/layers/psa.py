"""Polarized Self-Attention as released: ``PSA_p`` (parallel) and ``PSA_s`` (sequential).

Paper: "Polarized Self-Attention: Towards High-quality Pixel-wise Regression", Liu et al., 2021,
arXiv 2107.00782. Official code: DeLightCMU/PSA ``semantic-segmentation/network/PSA.py`` (Apache-2.0).

These modules follow the *released* math, not the paper's equations (see ``psa_paper.py`` for those):

* PSA_p has no LayerNorm; ``conv_up`` is one bias-free 1×1 conv C/2→C. Its spatial branch applies the
  softmax over positions *after* the query–value product, then a sigmoid.
* PSA_s has a GC-style bottleneck ``conv_up`` (conv C/2→C/8 + LayerNorm([C/8,1,1]) + ReLU + conv C/8→C,
  with biases) and softmaxes each value channel over positions *before* the product.

Sub-module names are the official ones (``conv_q_right``, ``conv_v_right``, ``conv_up``, ``conv_q_left``,
``conv_v_left``), so a released ``deattn`` state dict loads with ``strict=True``. The official code calls
the channel-only branch ``spatial_pool`` and the spatial-only branch ``channel_pool`` (swapped names,
DeLightCMU/PSA issue #5); here the branches are named by what they gate.

Fast forward (default): softmax weights sum to one and the value convs are linear, so
``W_v(X)·softmax(q) = W_v(X·softmax(q))`` and ``gᵀ·W_v·X = (W_vᵀ·g)ᵀ·X``. The block then needs a few
passes over X with vectors in between instead of two C/2 × HW value maps. ``impl="reference"`` keeps the
straightforward form (the released code line by line) for checking and benchmarking.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._helpers import (
    apply_parallel_gates,
    apply_sequential_gates,
    check_impl,
    check_input,
    check_psa_channels,
    init_psa_convs,
    is_symbolic_tracing,
    needs_graph,
)
from ._psa_p_fused import PsaPFunction, psa_p_gates, psa_p_inference

# Leaves under torch.fx: the gate products branch on shapes and requires_grad, which proxies cannot answer.
torch.fx.wrap("apply_parallel_gates")
torch.fx.wrap("apply_sequential_gates")


class _PsaOfficialBase(nn.Module):
    """The layers PSA_p and PSA_s share; ``conv_up`` is set by the subclass."""

    conv_up: nn.Module
    # Set on an instance only while ``attention_maps.record_attention`` records it; called with the gates
    # the forward applies ([N, C, 1, 1], [N, 1, H, W]). Otherwise None: one attribute test per forward.
    _gate_hook: Callable[..., None] | None = None

    def __init__(self, channels: int, init: str, impl: str, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        check_psa_channels(channels, type(self).__name__, min_channels=self._min_channels)
        self.channels = channels
        self.impl = check_impl(impl)
        inner = channels // 2
        # Official names (key-compatible with the released checkpoints).
        self.conv_q_right = nn.Conv2d(channels, 1, 1, bias=False, **dd)  # channel branch query W_q
        self.conv_v_right = nn.Conv2d(channels, inner, 1, bias=False, **dd)  # channel branch value W_v
        self.conv_q_left = nn.Conv2d(channels, inner, 1, bias=False, **dd)  # spatial branch query ("g")
        self.conv_v_left = nn.Conv2d(channels, inner, 1, bias=False, **dd)  # spatial branch value ("theta")

    _min_channels = 2

    def _init(self, init: str) -> None:
        kaiming = [self.conv_q_right, self.conv_v_right, self.conv_q_left, self.conv_v_left]
        init_psa_convs(kaiming, [m for m in self.modules() if isinstance(m, nn.Conv2d)], init)

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.channels
        return (
            self.conv_q_right.weight.view(1, c),
            self.conv_v_right.weight.view(c // 2, c),
            self.conv_q_left.weight.view(c // 2, c),
            self.conv_v_left.weight.view(c // 2, c),
        )

    def _channel_gate(self, pooled_value: torch.Tensor) -> torch.Tensor:
        """[N, C/2] context → channel gate [N, C] = σ(conv_up(context))."""
        n = pooled_value.shape[0]  # no view(n, -1, ...): N may be 0
        return torch.sigmoid(self.conv_up(pooled_value[:, :, None, None])).view(n, self.channels)

    def _channel_gate_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Released ``spatial_pool`` without the final product: the channel gate [N, C, 1, 1]."""
        n, c, h, w = x.shape
        value = self.conv_v_right(x).view(n, c // 2, h * w)
        query = self.conv_q_right(x).view(n, 1, h * w).softmax(dim=2)
        context = torch.matmul(value, query.transpose(1, 2)).unsqueeze(-1)  # [N, C/2, 1, 1]
        return torch.sigmoid(self.conv_up(context))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → [N, C, H, W]."""
        check_input(x, self.channels, type(self).__name__)
        if self.impl == "reference":
            return self.forward_reference(x)
        return self.forward_fast(x)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"channels={self.channels}, impl={self.impl!r}"


class PsaP(_PsaOfficialBase):
    """Released PSA_p (parallel layout): ``out = x ⊙ A_ch(x) + x ⊙ A_sp(x)``, no residual inside.

    Args:
        channels: C (even). Inner width C/2.
        init: ``"official"`` (kaiming fan_in on the q/v convs, ``conv_up`` PyTorch default — as the
            released module) or ``"hrnet"`` (every conv ~ N(0, 0.001) as the official HRNet training
            leaves it; the block then starts near identity, both gates ≈ σ(0)).
        impl: ``"fast"`` (default) or ``"reference"`` (released code line by line).

    Shapes: [N, C, H, W] → [N, C, H, W]. Parameters: 2C² + C.
    """

    def __init__(self, channels: int, init: str = "official", impl: str = "fast", device=None, dtype=None):
        super().__init__(channels, init, impl, device=device, dtype=dtype)
        # W_z: one bias-free conv, no LayerNorm (as released)
        self.conv_up = nn.Conv2d(channels // 2, channels, 1, bias=False, device=device, dtype=dtype)
        self._init(init)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """One autograd node when training (:class:`~psa_zoo.layers._psa_p_fused.PsaPFunction`), cache-sized
        chunks without autograd; plain ops under torch.compile / torch.export and torch.fx."""
        weights = (*self._weights(), self.conv_up.weight.view(self.channels, self.channels // 2))
        if torch.compiler.is_compiling() or is_symbolic_tracing():
            return self._forward_ops(x, weights)
        if needs_graph(x, *weights):
            return PsaPFunction.apply(x, *weights, self._gate_hook)
        return psa_p_inference(x, *weights, gate_hook=self._gate_hook)

    def _forward_ops(self, x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        n, c, h, w = x.shape
        # flatten(2) is a view for contiguous and channels_last input
        channel_gate, spatial_gate, *_ = psa_p_gates(x.flatten(2), *weights)
        channel_gate, spatial_gate = channel_gate.view(n, c, 1, 1), spatial_gate.view(n, 1, h, w)
        if self._gate_hook is not None:
            self._gate_hook(channel_gate, spatial_gate)
        return apply_parallel_gates(x, channel_gate, spatial_gate)

    def _spatial_gate_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Released PSA_p ``channel_pool`` without the final product: the spatial gate [N, 1, H, W]."""
        n, c, h, w = x.shape
        query = F.adaptive_avg_pool2d(self.conv_q_left(x), 1).view(n, c // 2, 1).permute(0, 2, 1)
        value = self.conv_v_left(x).view(n, c // 2, h * w)
        context = torch.matmul(query, value).softmax(dim=2).view(n, 1, h, w)
        return torch.sigmoid(context)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        spatial_gate, channel_gate = self._spatial_gate_reference(x), self._channel_gate_reference(x)
        if self._gate_hook is not None:
            self._gate_hook(channel_gate, spatial_gate)
        return x * spatial_gate + x * channel_gate


class PsaS(_PsaOfficialBase):
    """Released PSA_s (sequential layout): ``y = x ⊙ A_ch(x)``, ``out = y ⊙ A_sp(y)``, no residual inside.

    Args:
        channels: C (even, ≥ 8: the ``conv_up`` bottleneck is (C/2)//4 wide).
        init: ``"official"`` or ``"hrnet"`` (see :class:`PsaP`; with ``"hrnet"`` the block starts at
            ≈ 0.25·x because the default-initialised ``conv_up`` biases pass through the LayerNorm).
        impl: ``"fast"`` (default) or ``"reference"``.

    Shapes: [N, C, H, W] → [N, C, H, W]. Parameters: 1.6875C² + 2.375C (for C divisible by 8).
    """

    _min_channels = 8

    def __init__(self, channels: int, init: str = "official", impl: str = "fast", device=None, dtype=None):
        super().__init__(channels, init, impl, device=device, dtype=dtype)
        dd = {"device": device, "dtype": dtype}
        inner = channels // 2
        mid = inner // 4
        # Indices .0/.1/.3 are the released state-dict keys; LayerNorm over [C/8, 1, 1], eps 1e-5.
        self.conv_up = nn.Sequential(
            nn.Conv2d(inner, mid, 1, **dd),
            nn.LayerNorm([mid, 1, 1], **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1, **dd),
        )
        self._init(init)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        flat = x.flatten(2)  # [N, C, HW]
        w_qr, w_vr, w_ql, w_vl = self._weights()
        query = torch.bmm(w_qr.to(flat.dtype).expand(n, 1, c), flat).softmax(dim=2)  # [N, 1, HW]
        pooled = torch.bmm(query.to(flat.dtype), flat.transpose(1, 2)).squeeze(1)  # [N, C]
        channel_gate = self._channel_gate(F.linear(pooled, w_vr))  # [N, C]
        # Spatial branch on y = x ⊙ gate without forming y: W·y = (W·diag(gate))·x, mean(y) = gate ⊙ mean(x).
        query_sp = F.linear(flat.mean(dim=2) * channel_gate, w_ql)  # [N, C/2]
        scaled_value_weight = (w_vl * channel_gate.unsqueeze(1)).to(flat.dtype)  # [N, C/2, C]
        value = torch.bmm(scaled_value_weight, flat).softmax(dim=2)  # [N, C/2, HW], softmax per channel
        spatial_gate = torch.sigmoid(torch.bmm(query_sp.unsqueeze(1).to(value.dtype), value))  # [N, 1, HW]
        channel_gate, spatial_gate = channel_gate.view(n, c, 1, 1), spatial_gate.view(n, 1, h, w)
        if self._gate_hook is not None:
            self._gate_hook(channel_gate, spatial_gate)  # the spatial gate is of y = x ⊙ channel_gate
        return apply_sequential_gates(x, channel_gate, spatial_gate)

    def _spatial_gate_reference(self, y: torch.Tensor) -> torch.Tensor:
        """Released PSA_s ``channel_pool`` without the final product: the spatial gate [N, 1, H, W]."""
        n, c, h, w = y.shape
        query = F.adaptive_avg_pool2d(self.conv_q_left(y), 1).view(n, c // 2, 1).permute(0, 2, 1)
        value = self.conv_v_left(y).view(n, c // 2, h * w).softmax(dim=2)
        return torch.sigmoid(torch.matmul(query, value).view(n, 1, h, w))

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        channel_gate = self._channel_gate_reference(x)
        y = x * channel_gate
        spatial_gate = self._spatial_gate_reference(y)
        if self._gate_hook is not None:
            self._gate_hook(channel_gate, spatial_gate)
        return y * spatial_gate
