"""Residual sums written into the block's own output, and the switch that turns them off.

A residual block ends with ``act(bn(conv(h)) + shortcut)``. The batch-norm output is a fresh tensor that
nothing else refers to and that no backward needs (batch norm's backward reads its *input* and the batch
statistics it saved; the ReLU that follows saves its own output), so the shortcut can be added into it
(``out += shortcut``, as torchvision's and timm's ResNet blocks and the official HRNet code do) instead of
allocating one more activation-sized tensor per block. The result is the same bits: float addition is
commutative, and each element sees the same two operands.

:data:`ENABLED` (or the :func:`inplace_adds` context manager) switches every such sum of the backbones
back to out-of-place, e.g. to compare with it or to read a batch-norm output captured by a forward hook
before the shortcut lands in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from psa_zoo.layers._helpers import is_symbolic_tracing

__all__ = ["ENABLED", "inplace_adds", "residual_add"]

ENABLED = True  # read at every call: flipping it affects models already built


@contextmanager
def inplace_adds(enabled: bool) -> Iterator[None]:
    """Within the block, residual sums are in place (``True``) or out of place (``False``); the previous
    setting comes back on exit."""
    global ENABLED
    previous, ENABLED = ENABLED, bool(enabled)
    try:
        yield
    finally:
        ENABLED = previous


def residual_add(
    out: torch.Tensor, other: torch.Tensor, drop_path: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """``out + other``, written into ``out`` when :data:`ENABLED`; with a block's ``drop_path`` (stochastic
    depth), ``drop_path(out) + other`` — its output is ``out`` itself (eval, p = 0) or a fresh product, so
    the sum may still land in it.

    The caller guarantees that ``out`` is its own: a fresh tensor (a batch-norm, convolution or resize
    output) that is not the block's input, not shared with another consumer and not saved for backward by
    the op that made it. Out of place when the dtypes differ (under autocast an fp32 ``other`` would be
    rounded into a bf16 ``out``) and under ``torch.fx`` symbolic tracing (a traced graph stays free of
    mutation, and proxies have no dtype to compare).
    """
    if drop_path is not None:
        out = drop_path(out)
    if ENABLED and not is_symbolic_tracing() and out.dtype == other.dtype:
        return out.add_(other)
    return out + other
