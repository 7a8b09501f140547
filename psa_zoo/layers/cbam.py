"""CBAM: Convolutional Block Attention Module (Woo et al., arXiv 1807.06521).

Follows the authors' code (Jongchan/attention-module ``MODELS/cbam.py`` and the init in
``MODELS/model_resnet.py``), not timm's ``CbamModule``, which orders the spatial input [mean, max] and drops
the MLP biases:

* channel gate: a shared MLP ``Linear(C, C//16) → ReLU → Linear(C//16, C)`` *with biases* on the average-
  and max-pooled vectors, summed, sigmoid;
* spatial gate: channel-wise ``[max, mean]`` (in that order) → 7×7 conv (no bias) → BatchNorm
  (eps 1e-5, momentum 0.01) → sigmoid, whose BN weight starts at 0 (gate 0.5 at start).

Key map to the official module: ``ChannelGate.mlp.{1,3}`` → ``channel_gate.mlp.{1,3}``,
``SpatialGate.spatial.{conv,bn}`` → ``spatial_gate.spatial.{conv,bn}``. The reduced width is
``max(1, C // 16)`` (the official code fails for C < 16).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from ._helpers import check_input, check_positive_int


class _ChannelGate(nn.Module):
    # Set only while ``attention_maps.record_attention`` records the Cbam block: called with
    # ``channel_gate=`` [N, C, 1, 1]. Otherwise None (one attribute test per forward).
    _gate_hook: Callable[..., None] | None = None

    def __init__(self, channels: int, reduction: int, dd: dict):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, hidden, **dd),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, **dd),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → x ⊙ σ(mlp(avg) + mlp(max))."""
        logits = self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3)))
        gate = torch.sigmoid(logits)[:, :, None, None].to(x.dtype)
        if self._gate_hook is not None:
            self._gate_hook(channel_gate=gate)
        return x * gate


class _SpatialGate(nn.Module):
    # As ``_ChannelGate._gate_hook``, called with ``spatial_gate=`` [N, 1, H, W].
    _gate_hook: Callable[..., None] | None = None

    def __init__(self, kernel_size: int, dd: dict):
        super().__init__()
        conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False, **dd)
        bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, **dd)
        self.spatial = nn.Sequential(OrderedDict(conv=conv, bn=bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → x ⊙ σ(bn(conv([max_c x, mean_c x])))."""
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        gate = torch.sigmoid(self.spatial(pooled)).to(x.dtype)
        if self._gate_hook is not None:
            self._gate_hook(spatial_gate=gate)
        return x * gate


class Cbam(nn.Module):
    """CBAM: channel gate, then spatial gate; no residual inside.

    Args:
        channels: C.
        reduction: MLP reduction ratio, an int ≥ 1 (default 16).
        kernel_size: spatial-gate conv size, odd (default 7; ``k // 2`` padding keeps H × W).

    Shapes: [N, C, H, W] → [N, C, H, W]. Parameters: 2·C·Cr + Cr + C + 2·k² + 2 (Cr = max(1, C // 16)).
    Note: the BatchNorm of the spatial gate needs more than one value per channel in training mode
    (N·H·W > 1), as any BatchNorm does.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        block = type(self).__name__
        self.channels = check_positive_int(channels, "channels", block)
        check_positive_int(reduction, "reduction", block, "a positive int (hidden width max(1, C // r))")
        odd = "an odd positive int (k // 2 padding keeps H × W only for odd k)"
        if check_positive_int(kernel_size, "kernel_size", block, odd) % 2 == 0:
            raise ValueError(f"{block}: kernel_size must be {odd}, got {kernel_size!r}")
        self.channel_gate = _ChannelGate(channels, reduction, dd)
        self.spatial_gate = _SpatialGate(kernel_size, dd)
        # Init of the authors' ResNet: conv kaiming fan_out, spatial-gate BN weight 0, every bias 0.
        nn.init.kaiming_normal_(self.spatial_gate.spatial.conv.weight, mode="fan_out")
        nn.init.zeros_(self.spatial_gate.spatial.bn.weight)
        for linear in (self.channel_gate.mlp[1], self.channel_gate.mlp[3]):
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → [N, C, H, W]."""
        check_input(x, self.channels, type(self).__name__)
        return self.spatial_gate(self.channel_gate(x))
