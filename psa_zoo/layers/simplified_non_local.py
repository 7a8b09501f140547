"""Simplified non-local block (SNL) of the GCNet paper (Cao et al., arXiv 1904.11492, Fig. 3b).

Attention pooling (1×1 conv C→1, softmax over positions, weighted sum → [N, C]), one 1×1 transform
W_v: C→C, and a broadcast add to every position. No official standalone class exists; this one reuses the
semantics of GCNet's ``ContextBlock.spatial_pool`` (``conv_mask`` kaiming fan_in) and zero-initialises the
transform so the block starts as the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from ._helpers import check_input, check_positive_int


def attention_pool(x: torch.Tensor, conv_mask: nn.Conv2d) -> torch.Tensor:
    """GCNet attention pooling: x [N, C, H, W] → Σ_p softmax_p(conv_mask(x)) · x[:, :, p] as [N, C]."""
    weights = conv_mask(x).flatten(2).softmax(dim=2)  # [N, 1, HW]; no view(n, 1, -1): N may be 0
    return torch.bmm(weights.to(x.dtype), x.flatten(2).transpose(1, 2)).squeeze(1)


class SimplifiedNonLocal2d(nn.Module):
    """SNL: ``out = x + W_v(attention_pool(x))`` broadcast over positions.

    Args:
        channels: C.

    Shapes: [N, C, H, W] → [N, C, H, W]. Parameters: C² + 2C + 1.
    """

    def __init__(self, channels: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.channels = check_positive_int(channels, "channels", type(self).__name__)
        self.conv_mask = nn.Conv2d(channels, 1, 1, **dd)
        self.transform = nn.Conv2d(channels, channels, 1, **dd)
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)
        nn.init.zeros_(self.transform.weight)
        nn.init.zeros_(self.transform.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → [N, C, H, W]."""
        check_input(x, self.channels, type(self).__name__)
        n, c = x.shape[:2]
        context = attention_pool(x, self.conv_mask).view(n, c, 1, 1)
        return x + self.transform(context).to(x.dtype)
