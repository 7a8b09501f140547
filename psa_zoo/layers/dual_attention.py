"""Dual Attention (DANet: Fu et al., "Dual Attention Network for Scene Segmentation", arXiv 1809.02983).

Semantics of the official ``PAM_Module`` / ``CAM_Module`` (junfu1115/DANet ``encoding/nn/da_att.py``):

* PAM (position attention): query/key 1×1 convs C→C/8, value C→C (biases), ``energy = QᵀK`` without
  scaling, softmax over positions, ``out = γ·(V·Aᵀ) + x`` with γ = 0 at start.
* CAM (channel attention): ``energy = X·Xᵀ`` [C, C], ``softmax(max(energy) − energy)`` (the official trick),
  ``out = γ·(A·X) + x`` with γ = 0 at start.
* :class:`DualAttention` sums the two outputs, as the DANet head sums its two branches; at start the block
  therefore returns 2·x.

PAM's default forward uses ``F.scaled_dot_product_attention`` (value channels split into heads of width
C/8 that share Q and K), so the HW × HW matrix is never formed; ``impl="reference"`` is the explicit form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._helpers import check_impl, check_input, check_positive_int


class PositionAttention(nn.Module):
    """DANet PAM. Args: channels C; impl ``"fast"`` or ``"reference"``. [N, C, H, W] → [N, C, H, W]."""

    def __init__(self, channels: int, impl: str = "fast", device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.channels = check_positive_int(channels, "channels", type(self).__name__)
        self.key_channels = max(1, channels // 8)
        self.impl = check_impl(impl)
        self.query_conv = nn.Conv2d(channels, self.key_channels, 1, **dd)
        self.key_conv = nn.Conv2d(channels, self.key_channels, 1, **dd)
        self.value_conv = nn.Conv2d(channels, channels, 1, **dd)
        self.gamma = nn.Parameter(torch.zeros(1, **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, type(self).__name__)
        n, c, h, w = x.shape
        query = self.query_conv(x).flatten(2).transpose(1, 2)  # [N, HW, C/8]
        key = self.key_conv(x).flatten(2).transpose(1, 2)  # [N, HW, C/8]
        value = self.value_conv(x).flatten(2).transpose(1, 2)  # [N, HW, C]
        if self.impl == "reference":
            attn = torch.softmax(query @ key.transpose(1, 2), dim=-1)  # [N, HW, HW]
            out = attn @ value
        else:
            out = self._attend_fused(query, key, value)
        return self.gamma.to(x.dtype) * out.transpose(1, 2).reshape(n, c, h, w) + x

    def _attend_fused(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """softmax(Q·Kᵀ)·V as [N, HW, C] through SDPA: V is split into heads of the query width that share
        Q and K. Inputs are made contiguous: SDPA's fused CPU kernel needs a unit last stride."""
        n, hw = query.shape[:2]
        c, d = self.channels, self.key_channels  # Python ints, so torch.fx can trace the padding branch
        heads = -(-c // d)
        value = value.contiguous()
        if heads * d != c:  # pad the value channels up to a multiple of the head width
            value = F.pad(value, (0, heads * d - c))
        value = value.view(n, hw, heads, d).transpose(1, 2)  # [N, heads, HW, d]
        query = query.contiguous().unsqueeze(1).expand(n, heads, hw, d)
        key = key.contiguous().unsqueeze(1).expand(n, heads, hw, d)
        out = F.scaled_dot_product_attention(query, key, value, scale=1.0)  # [N, heads, HW, d]
        return out.transpose(1, 2).reshape(n, hw, heads * d)[:, :, :c]


class ChannelAttention(nn.Module):
    """DANet CAM (no convolutions). Args: channels C. [N, C, H, W] → [N, C, H, W]."""

    def __init__(self, channels: int, device=None, dtype=None):
        super().__init__()
        self.channels = check_positive_int(channels, "channels", type(self).__name__)
        self.gamma = nn.Parameter(torch.zeros(1, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, type(self).__name__)
        flat = x.flatten(2)  # [N, C, HW]
        energy = flat @ flat.transpose(1, 2)  # [N, C, C]
        energy = energy.amax(dim=-1, keepdim=True) - energy  # official trick (softmax is shift-invariant)
        out = torch.softmax(energy, dim=-1).to(flat.dtype) @ flat
        return self.gamma.to(x.dtype) * out.view_as(x) + x


class DualAttention(nn.Module):
    """DANet position + channel attention on the same input, summed: ``pam(x) + cam(x)``.

    Args:
        channels: C (C/8 query/key width, at least 1).
        impl: PAM's ``"fast"`` (SDPA) or ``"reference"`` (explicit softmax) forward.

    Shapes: [N, C, H, W] → [N, C, H, W]. Parameters: C² + 2·C·(C/8) + C + 2·(C/8) + 2.
    """

    def __init__(self, channels: int, impl: str = "fast", device=None, dtype=None):
        super().__init__()
        self.channels = check_positive_int(channels, "channels", type(self).__name__)
        self.impl = impl  # of PAM; CAM has no HW × HW matrix
        self.pam = PositionAttention(channels, impl=impl, device=device, dtype=dtype)
        self.cam = ChannelAttention(channels, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → [N, C, H, W]."""
        check_input(x, self.channels, type(self).__name__)
        return self.pam(x) + self.cam(x)
