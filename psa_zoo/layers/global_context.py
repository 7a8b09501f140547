"""Global Context block (Cao et al., "GCNet", arXiv 1904.11492).

Semantics of the official ``ContextBlock`` (xvjiarui/GCNet ``mmdet/ops/gcb/context_block.py``, identical to
mmcv's) with ``pooling_type="att"`` and ``fusion_types=("channel_add",)``: attention pooling, then
``channel_add_conv = [conv C→C·r, LayerNorm([C·r, 1, 1]), ReLU, conv C·r→C]`` added to every position.
Names and init follow the official module (``conv_mask`` kaiming fan_in; the last conv's weight and bias
zero), so official GCNet weights load by name. Inner width ``int(C·ratio)`` as the official code (floor),
at least 1. timm's ``GlobalContext`` differs (scale fusion by default, LayerNorm2d eps 1e-6, other names).
"""

from __future__ import annotations

import torch
from torch import nn

from ._helpers import check_input, check_positive_int, check_positive_ratio
from .simplified_non_local import attention_pool


class GlobalContext(nn.Module):
    """GC block with channel-add fusion.

    Args:
        channels: C.
        ratio: bottleneck ratio r > 0 (paper: 1/16 default, 1/4 also studied).

    Shapes: [N, C, H, W] → [N, C, H, W]. Parameters: 2·C·Cr + 3·Cr + 2C + 1 with Cr = int(C·r).
    """

    def __init__(self, channels: int, ratio: float = 1 / 16, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        block = type(self).__name__
        self.channels = check_positive_int(channels, "channels", block)
        check_positive_ratio(ratio, "ratio", block, "a positive number (inner width max(1, int(C·ratio)))")
        self.inner = max(1, int(channels * ratio))
        self.conv_mask = nn.Conv2d(channels, 1, 1, **dd)
        self.channel_add_conv = nn.Sequential(
            nn.Conv2d(channels, self.inner, 1, **dd),
            nn.LayerNorm([self.inner, 1, 1], **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.inner, channels, 1, **dd),
        )
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)
        nn.init.zeros_(self.channel_add_conv[-1].weight)
        nn.init.zeros_(self.channel_add_conv[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → x + channel_add_conv(context): [N, C, H, W]."""
        check_input(x, self.channels, type(self).__name__)
        n, c = x.shape[:2]
        context = attention_pool(x, self.conv_mask).view(n, c, 1, 1)
        return x + self.channel_add_conv(context).to(x.dtype)
