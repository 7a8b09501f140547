"""Efficient Attention (Shen et al., "Efficient Attention: Attention with Linear Complexities",
arXiv 1812.01243).

Semantics of the official ``EfficientAttention`` (cmsflash/efficient-attention): 1×1 convs ``keys``,
``queries``, ``values`` (biases) and ``reprojection``; per head, keys are softmaxed over positions and
queries over channels, ``context = k·vᵀ`` [d_k, d_v], ``out_head = contextᵀ·q``; heads are concatenated,
reprojected and added to the input. The cost is linear in HW. Default widths key = value = C/2 (the
paper's drop-in setting for a non-local block) and one head (the paper's form; heads are an addition of
the official code). Default PyTorch init.
"""

from __future__ import annotations

import torch
from torch import nn

from ._helpers import check_input, check_positive_int


class EfficientAttention(nn.Module):
    """Efficient attention with residual.

    Args:
        channels: C.
        key_channels: total key/query width, an int ≥ 1 (default max(1, C // 2)).
        value_channels: total value width, an int ≥ 1 (default max(1, C // 2)).
        num_heads: heads, an int ≥ 1 that divides both widths.

    Shapes: [N, C, H, W] → [N, C, H, W].
    """

    def __init__(
        self,
        channels: int,
        key_channels: int | None = None,
        value_channels: int | None = None,
        num_heads: int = 1,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        block = type(self).__name__
        self.channels = check_positive_int(channels, "channels", block)
        default_width = max(1, channels // 2)
        self.key_channels = check_positive_int(
            default_width if key_channels is None else key_channels, "key_channels", block
        )
        self.value_channels = check_positive_int(
            default_width if value_channels is None else value_channels, "value_channels", block
        )
        check_positive_int(num_heads, "num_heads", block, "a positive int that divides both widths")
        if self.key_channels % num_heads or self.value_channels % num_heads:
            raise ValueError(
                f"num_heads={num_heads} must divide key_channels={self.key_channels} "
                f"and value_channels={self.value_channels}"
            )
        self.num_heads = num_heads
        self.keys = nn.Conv2d(channels, self.key_channels, 1, **dd)
        self.queries = nn.Conv2d(channels, self.key_channels, 1, **dd)
        self.values = nn.Conv2d(channels, self.value_channels, 1, **dd)
        self.reprojection = nn.Conv2d(self.value_channels, channels, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → x + reprojection(attended values): [N, C, H, W]."""
        check_input(x, self.channels, type(self).__name__)
        n, _, h, w = x.shape
        heads = self.num_heads
        keys = self.keys(x).view(n, heads, self.key_channels // heads, h * w).softmax(dim=3)
        queries = self.queries(x).view(n, heads, self.key_channels // heads, h * w).softmax(dim=2)
        values = self.values(x).view(n, heads, self.value_channels // heads, h * w)
        context = keys @ values.transpose(2, 3)  # [N, heads, d_k, d_v]
        attended = (context.transpose(2, 3) @ queries).reshape(n, self.value_channels, h, w)
        return self.reprojection(attended) + x
