"""Stochastic depth ("Deep Networks with Stochastic Depth", Huang et al., 2016, arXiv 1603.09382) for
the residual blocks, as timm's ``drop_path_rate``.

In training, each sample's residual branch is dropped with probability p (the block then passes its
shortcut only) and kept branches are scaled by 1 / (1 − p), so the expected output equals the eval-mode
one; in eval mode nothing changes. timm's :class:`~timm.layers.DropPath` does the sampling. p grows
linearly with depth, ``rate · i / (depth − 1)`` from 0 at the first residual block to ``drop_path_rate``
at the last (timm's ResNet schedule; timm's EfficientNet builder, which its MobileNetV2 uses, divides by
``depth`` instead). In MobileNetV2 only blocks with a shortcut drop; its last block has none, so the
largest rate applied there is that of the block before it.
"""

from __future__ import annotations

from timm.layers import DropPath

from ..base import check_drop_rate

__all__ = ["drop_path_module", "drop_path_rates"]


def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """``depth`` probabilities rising linearly from 0 (first block) to ``drop_path_rate`` (last block)."""
    rate = check_drop_rate(drop_path_rate, "drop_path_rate")
    if depth <= 1:
        return [0.0] * depth
    return [rate * i / (depth - 1) for i in range(depth)]


def drop_path_module(p: float) -> DropPath | None:
    """timm's ``DropPath(p)`` for a block's residual branch, or None (no module) when ``p`` is 0."""
    return DropPath(p) if p > 0 else None
