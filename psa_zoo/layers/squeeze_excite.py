"""Squeeze-and-Excitation (Hu et al., arXiv 1709.01507).

GAP → 1×1 conv C→C/r (bias) → ReLU → 1×1 conv C/r→C (bias) → sigmoid → scale. This is timm's
``SEModule`` exactly (reused here), with ``rd_divisor=1`` so the reduced width is C/16 rounded to the
nearest integer (48 → 3, 96 → 6) rather than timm's default multiple of 8 (48 → 8). Only an input check is
added.
"""

from __future__ import annotations

import torch
from timm.layers.squeeze_excite import SEModule

from ._helpers import check_input, check_positive_int, check_positive_ratio


class SqueezeExcite(SEModule):
    """SE block (timm ``SEModule`` with the paper's r = 16 and no divisor rounding).

    Args:
        channels: C.
        rd_ratio: reduction ratio > 0 (default 1/16).
        rd_channels: explicit reduced width, an int ≥ 1 (overrides ``rd_ratio``).
        **kwargs: further ``timm.layers.SEModule`` arguments (``act_layer``, ``gate_layer``, ...).

    Shapes: [N, C, H, W] → [N, C, H, W]. Parameters: 2·C·Cr + Cr + C.
    """

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None, **kwargs):
        block = type(self).__name__
        check_positive_int(channels, "channels", block)
        if rd_channels is None:
            check_positive_ratio(rd_ratio, "rd_ratio", block, "a positive number (width ≈ C·rd_ratio)")
        else:
            check_positive_int(rd_channels, "rd_channels", block)
        kwargs.setdefault("rd_divisor", 1)
        super().__init__(channels, rd_ratio=rd_ratio, rd_channels=rd_channels, **kwargs)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → x ⊙ gate: [N, C, H, W]."""
        check_input(x, self.channels, type(self).__name__)
        return super().forward(x)
