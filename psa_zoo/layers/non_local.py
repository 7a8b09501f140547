"""Non-local block, embedded-Gaussian form (Wang et al., "Non-local Neural Networks", arXiv 1711.07971).

Semantics of mmcv's ``NonLocal2d(mode="embedded_gaussian", reduction=2, use_scale=True)``: 1×1 convs
``theta``/``phi``/``g`` C→C/2 with bias (init N(0, 0.01)), ``y = softmax(θᵀφ / sqrt(C/2)) · g``, and
``out = x + conv_out(y)`` with ``conv_out`` (C/2→C) zero-initialised so the block starts as the identity.
Deviation from mmcv: plain convs instead of ConvModule (keys ``g.weight`` rather than ``g.conv.weight``)
and no sub-sampling option.

The default forward uses ``F.scaled_dot_product_attention``, which never forms the HW × HW matrix;
``impl="reference"`` is the explicit softmax form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._helpers import check_impl, check_input, check_positive_int


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block with residual.

    Args:
        channels: C.
        reduction: an int ≥ 1; inner width max(1, C // reduction) (default 2, as the paper and mmcv).
        impl: ``"fast"`` (scaled-dot-product attention) or ``"reference"`` (explicit softmax).

    Shapes: [N, C, H, W] → [N, C, H, W]. Parameters: 2C² + 3·C/2 + C (biases included) for even C.
    """

    def __init__(self, channels: int, reduction: int = 2, impl: str = "fast", device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        block = type(self).__name__
        self.channels = check_positive_int(channels, "channels", block)
        check_positive_int(reduction, "reduction", block, "a positive int (inner width max(1, C // r))")
        self.inner = max(1, channels // reduction)
        self.impl = check_impl(impl)
        self.theta = nn.Conv2d(channels, self.inner, 1, **dd)
        self.phi = nn.Conv2d(channels, self.inner, 1, **dd)
        self.g = nn.Conv2d(channels, self.inner, 1, **dd)
        self.conv_out = nn.Conv2d(self.inner, channels, 1, **dd)
        for conv in (self.theta, self.phi, self.g):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → x + W_z(y): [N, C, H, W]."""
        check_input(x, self.channels, type(self).__name__)
        n, _, h, w = x.shape
        # [N, HW, C/2]; contiguous so that SDPA can pick its fused CPU kernel (it needs unit last stride)
        query = self.theta(x).flatten(2).transpose(1, 2).contiguous()
        key = self.phi(x).flatten(2).transpose(1, 2).contiguous()
        value = self.g(x).flatten(2).transpose(1, 2).contiguous()
        if self.impl == "reference":
            attn = torch.softmax(query @ key.transpose(1, 2) * self.inner**-0.5, dim=-1)  # [N, HW, HW]
            y = attn @ value
        else:
            y = F.scaled_dot_product_attention(query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1))[:, 0]
        y = y.transpose(1, 2).reshape(n, self.inner, h, w)
        return x + self.conv_out(y)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inner={self.inner}, impl={self.impl!r}"
