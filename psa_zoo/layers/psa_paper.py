"""Polarized Self-Attention as written in the paper's equations (arXiv 2107.00782, Eq. 1–5).

* Channel-only branch: ``A_ch(X) = σ(LN(W_z((W_v X) · softmax_HW(W_q X))))`` with W_q: C→1, W_v: C→C/2,
  W_z: C/2→C and a LayerNorm over the C channels inside W_z, before the sigmoid.
* Spatial-only branch: ``A_sp(X) = σ(softmax_C/2(GAP(W_q X))ᵀ · W_v X)`` with W_q, W_v: C→C/2; the softmax
  runs over the C/2 channels of the pooled query, *before* the product.
* Parallel: ``Z = A_ch(X) ⊙ X + A_sp(X) ⊙ X``; sequential: ``Z = A_sp(Y) ⊙ Y`` with ``Y = A_ch(X) ⊙ X``.

The released code differs from these equations (see ``psa.py``) and its checkpoints do not load here.
The paper leaves the biases of W_q/W_v/W_z open; like the released code we use none (``bias=True`` adds
them). Parameters: 2C² + 3C (the LayerNorm adds 2C).

As in ``psa.py``, the default forward never forms the C/2 × HW value maps: with ``q`` a softmax and W_v
linear, ``W_v(X)·q = W_v(X·q)`` and ``gᵀ·W_v·X = (W_vᵀ·g)ᵀ·X``. ``impl="reference"`` keeps the
straightforward form.
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
)

# Leaves under torch.fx (see psa.py).
torch.fx.wrap("apply_parallel_gates")
torch.fx.wrap("apply_sequential_gates")


class _PsaPaperBase(nn.Module):
    """Shared layers of the paper-equation PSA; ``sequential`` picks the layout."""

    sequential: bool
    # Set only while ``attention_maps.record_attention`` records this block (see ``psa.py``).
    _gate_hook: Callable[..., None] | None = None

    def __init__(
        self,
        channels: int,
        init: str = "official",
        impl: str = "fast",
        bias: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        check_psa_channels(channels, type(self).__name__)
        self.channels = channels
        self.impl = check_impl(impl)
        inner = channels // 2
        self.ch_wq = nn.Conv2d(channels, 1, 1, bias=bias, **dd)
        self.ch_wv = nn.Conv2d(channels, inner, 1, bias=bias, **dd)
        self.ch_wz = nn.Conv2d(inner, channels, 1, bias=bias, **dd)
        self.ch_norm = nn.LayerNorm(channels, **dd)
        self.sp_wq = nn.Conv2d(channels, inner, 1, bias=bias, **dd)
        self.sp_wv = nn.Conv2d(channels, inner, 1, bias=bias, **dd)
        convs = [self.ch_wq, self.ch_wv, self.ch_wz, self.sp_wq, self.sp_wv]
        init_psa_convs([self.ch_wq, self.ch_wv, self.sp_wq, self.sp_wv], convs, init)

    # --- pieces shared by both forms -------------------------------------------------------------
    def _channel_gate_from_context(self, context: torch.Tensor) -> torch.Tensor:
        """[N, C/2] → channel gate [N, C] = σ(LN(W_z · context))."""
        z = F.linear(context, self.ch_wz.weight.flatten(1), self.ch_wz.bias)
        return torch.sigmoid(self.ch_norm(z))

    def _spatial_query(self, pooled: torch.Tensor) -> torch.Tensor:
        """GAP(Y) [N, C] → softmax over the C/2 channels of W_q·GAP(Y): [N, C/2]."""
        return F.linear(pooled, self.sp_wq.weight.flatten(1), self.sp_wq.bias).softmax(dim=1)

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] → [N, C, H, W]."""
        check_input(x, self.channels, type(self).__name__)
        if self.impl == "reference":
            return self.forward_reference(x)
        return self.forward_fast(x)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        flat = x.flatten(2)  # [N, C, HW]
        w_cq = self.ch_wq.weight.view(1, 1, c).expand(n, 1, c).to(flat.dtype)
        query = torch.bmm(w_cq, flat)  # [N, 1, HW]
        if self.ch_wq.bias is not None:
            query = query + self.ch_wq.bias.view(1, 1, 1)
        query = query.softmax(dim=2)
        # One pass over HW gives both X·qᵀ (channel branch) and the mean (spatial branch's GAP).
        mean_row = torch.full_like(query, 1.0 / (h * w))
        pooled = torch.bmm(torch.cat([query, mean_row], dim=1).to(flat.dtype), flat.transpose(1, 2))
        x_query, x_mean = pooled[:, 0], pooled[:, 1]  # [N, C] each; the softmax sums to 1, so biases pass
        context = F.linear(x_query, self.ch_wv.weight.flatten(1), self.ch_wv.bias)
        channel_gate = self._channel_gate_from_context(context)  # [N, C]
        if self.sequential:  # the spatial branch sees y = x ⊙ channel_gate
            x_mean = x_mean * channel_gate
        g = self._spatial_query(x_mean)  # [N, C/2]
        u = g @ self.sp_wv.weight.flatten(1)  # [N, C]: gᵀ·W_v·y = (W_vᵀ·g)ᵀ·y
        if self.sequential:
            u = u * channel_gate
        logits = torch.bmm(u.unsqueeze(1).to(flat.dtype), flat)  # [N, 1, HW]
        if self.sp_wv.bias is not None:
            logits = logits + (g @ self.sp_wv.bias).view(n, 1, 1)
        spatial_gate = torch.sigmoid(logits).view(n, 1, h, w)
        channel_gate = channel_gate.view(n, c, 1, 1)
        if self._gate_hook is not None:
            self._gate_hook(channel_gate, spatial_gate)
        apply = apply_sequential_gates if self.sequential else apply_parallel_gates
        return apply(x, channel_gate, spatial_gate)

    def _channel_gate_reference(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        value = self.ch_wv(x).view(n, c // 2, h * w)
        query = self.ch_wq(x).view(n, 1, h * w).softmax(dim=2)
        context = torch.matmul(value, query.transpose(1, 2)).view(n, 1, 1, c // 2)
        z = self.ch_wz(context.permute(0, 3, 1, 2)).view(n, c)
        return torch.sigmoid(self.ch_norm(z)).view(n, c, 1, 1)

    def _spatial_gate_reference(self, y: torch.Tensor) -> torch.Tensor:
        n, c, h, w = y.shape
        query = F.adaptive_avg_pool2d(self.sp_wq(y), 1).view(n, 1, c // 2).softmax(dim=2)
        value = self.sp_wv(y).view(n, c // 2, h * w)
        return torch.sigmoid(torch.matmul(query, value)).view(n, 1, h, w)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        channel_gate = self._channel_gate_reference(x)
        y = x * channel_gate if self.sequential else x  # what the spatial branch sees
        spatial_gate = self._spatial_gate_reference(y)
        if self._gate_hook is not None:
            self._gate_hook(channel_gate, spatial_gate)
        if self.sequential:
            return y * spatial_gate
        return x * channel_gate + x * spatial_gate

    def extra_repr(self) -> str:
        return f"channels={self.channels}, impl={self.impl!r}"


class PsaPaperP(_PsaPaperBase):
    """PSA, parallel layout, as in the paper's equations (Eq. 1–4).

    Args:
        channels: C (even); inner width C/2.
        init: ``"official"`` (kaiming fan_in on the q/v convs, as the released module) or ``"hrnet"``
            (every conv ~ N(0, 0.001)).
        impl: ``"fast"`` (default) or ``"reference"``.
        bias: add biases to the 1×1 convs (the paper does not say; default False).

    Shapes: [N, C, H, W] → [N, C, H, W].
    """

    sequential = False


class PsaPaperS(_PsaPaperBase):
    """PSA, sequential layout, as in the paper's equations (Eq. 5). Arguments as :class:`PsaPaperP`."""

    sequential = True
