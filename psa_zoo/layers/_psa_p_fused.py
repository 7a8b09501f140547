"""PSA_p's fast forward as one autograd node, and its inference path in cache-sized chunks.

The fast PSA_p (``psa.py``) reads X a few times with small vectors in between:

    m = mean_hw(X)            u = W_vlᵀ W_ql m          (spatial branch query, [N, C])
    l_q = w_qr · X            l_s = u · X                (one [N, 2, HW] product)
    p = softmax(l_q)          s = σ(softmax(l_s))        ([N, HW])
    a = σ(W_up W_vr (X p))                               (channel gate, [N, C])
    out = X ⊙ (a + s)

Plain autograd on those ops keeps several [N, C, HW] gradients alive and sums them one by one. Every
gradient that reaches X through a gate is a rank-one map (a C-vector times an HW-vector), so the backward
here forms dX in one buffer: ``dX = G ⊙ (a + s) + A·B`` with A = [w_qr, u, dpooled, dm / HW] ([N, C, 4])
and B = [dl_q, dl_s, p, 1] ([N, 4, HW]), one batched matrix product added in place. It saves X and the
small vectors only.

Without autograd, a batch whose samples are large and whose X does not fit the CPU's last-level cache is run
a few samples at a time, so that the passes over one chunk find it in the cache instead of main memory; the
output is written chunk by chunk into one buffer.

The CPU's BLAS is sensitive to the orientation of these thin products: a reduction over positions runs as
the row ``vᵀ Xᵀ`` ([N, k, HW] @ [N, HW, C]), 2.2-3.4x faster than the column ``X v`` at HRNet-W48's maps in
either layout, and the rank-4 update is written with the output's contiguous dimension last. Measured on
2 Xeon threads (docs/benchmarks.md, "PSA_p's products in the orientation BLAS runs fastest").
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F

from ._helpers import gated_sum

__all__ = ["PsaPFunction", "last_level_cache_bytes", "psa_p_gates", "psa_p_inference", "runs_in_chunks"]

# The inference path splits the batch only when one sample's X reaches CHUNK_FROM bytes and the whole X
# exceeds half the last-level cache Linux reports (all of it when that is unknown), into chunks of about
# CHUNK_BYTES; other batches run whole, where the fixed cost of PSA_p's small ops would grow with the number
# of chunks. Measured at (8, 256, 64, 64), 32 MiB: on 2 EPYC cores 4 MiB chunks (one sample) 23 ms, the
# whole batch 28 ms; on 2 Xeon cores reporting a 480 MiB L3 the whole batch 4.2 ms, one-sample chunks
# 5.0 ms (channels_last, freed memory kept; docs/benchmarks.md).
CHUNK_FROM = 1 << 20
CHUNK_BYTES = 4 << 20
CPU_CACHES = "/sys/devices/system/cpu/cpu0/cache"


@functools.cache
def last_level_cache_bytes(root: str = CPU_CACHES) -> int | None:
    """Bytes of the largest-level data or unified CPU cache under ``root`` (Linux sysfs: ``index*/level``,
    ``type``, ``size`` such as ``"491520K"``); None where nothing readable is there (another OS)."""
    found: tuple[int, int] | None = None  # (level, bytes)
    for index in sorted(Path(root).glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = _size_bytes((index / "size").read_text().strip())
        except (OSError, ValueError):
            continue
        if kind != "Instruction" and (found is None or level > found[0]):
            found = (level, size)
    return None if found is None else found[1]


def _size_bytes(text: str) -> int:
    """``"48K"`` / ``"32M"`` / ``"1G"`` / ``"512"`` → bytes (ValueError for anything else)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def runs_in_chunks(x: torch.Tensor, cache_bytes: int | None) -> bool:
    """Whether :func:`psa_p_inference` splits ``x``'s batch by default (see :data:`CHUNK_FROM`), given the
    last-level cache's size (None: unknown)."""
    n = max(x.shape[0], 1)
    per_sample = x.numel() // n * x.element_size()
    if not x.is_cpu or x.shape[0] < 2 or per_sample < CHUNK_FROM:
        return False
    return cache_bytes is None or per_sample * n > cache_bytes // 2


def psa_p_gates(
    flat: torch.Tensor, w_qr: torch.Tensor, w_vr: torch.Tensor, w_ql: torch.Tensor, w_vl: torch.Tensor,
    w_up: torch.Tensor,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """flat [N, C, HW] → (channel gate a [N, C], spatial gate s [N, HW], and for backward: u [N, C],
    q_sp [N, C/2], m [N, C], p [N, HW], t = softmax(l_s) [N, HW], pooled [N, C], z [N, C/2]).

    Weights as matrices: w_qr [1, C], w_vr / w_ql / w_vl [C/2, C], w_up [C, C/2] (``conv_up``)."""
    n, c, hw = flat.shape
    # the mean as the row (1/HW)ᵀ Xᵀ: BLAS beats the reduction kernel at large maps (8x256x64x64: forward
    # 1.09x faster; HRNet-W48's maps unchanged, docs/benchmarks.md)
    # (in float16 1/HW is subnormal beyond 16384 positions: the mean loses some precision there, where a sum
    # of ones could overflow instead)
    m = torch.bmm(flat.new_full((n, 1, hw), 1.0 / hw), flat.transpose(1, 2)).squeeze(1)  # [N, C]
    q_sp = F.linear(m, w_ql)  # [N, C/2]
    u = q_sp @ w_vl  # [N, C]
    rows = torch.cat([w_qr.to(u.dtype).expand(n, 1, c), u.unsqueeze(1)], dim=1)  # [N, 2, C]
    # both softmaxes in one call (the second after the product, as released): p, t = probs[:, 0], probs[:, 1]
    probs = torch.bmm(rows.to(flat.dtype), flat).softmax(dim=2)  # [N, 2, HW]
    p, t = probs[:, 0], probs[:, 1]
    s = torch.sigmoid(t)
    # X p as the row pᵀ Xᵀ: the orientation BLAS runs 2.2-3.4x faster than the column X p, in both layouts
    pooled = torch.bmm(probs[:, :1].to(flat.dtype), flat.transpose(1, 2)).squeeze(1)  # [N, C]
    z = F.linear(pooled, w_vr)  # [N, C/2]
    a = torch.sigmoid(F.linear(z, w_up))  # [N, C]
    return a, s, u, q_sp, m, p, t, pooled, z


def _softmax_backward(y: torch.Tensor, grad_y: torch.Tensor) -> torch.Tensor:
    """d softmax: y ⊙ (g − Σ y g) along the last dim."""
    return y * (grad_y - (y * grad_y).sum(dim=-1, keepdim=True))


class PsaPFunction(torch.autograd.Function):
    """``PSA_p(x)`` [N, C, H, W] (any memory format) with the weights as matrices (see
    :func:`psa_p_gates`); gradients for x and every weight. ``gate_hook(a [N, C, 1, 1], s [N, 1, H, W])``,
    when given, sees the two gates (attention-map recording)."""

    @staticmethod
    def forward(ctx, x, w_qr, w_vr, w_ql, w_vl, w_up, gate_hook=None):
        n, c, h, w = x.shape
        flat = x.flatten(2)
        a, s, u, q_sp, m, p, t, pooled, z = psa_p_gates(flat, w_qr, w_vr, w_ql, w_vl, w_up)
        ctx.save_for_backward(x, w_qr, w_vr, w_ql, w_vl, w_up, a, s, u, q_sp, m, p, t, pooled, z)
        a4, s4 = a.view(n, c, 1, 1), s.view(n, 1, h, w)
        if gate_hook is not None:
            gate_hook(a4, s4)
        return gated_sum(x, a4, s4)

    @staticmethod
    @torch.autograd.function.once_differentiable  # the vectors saved are constants to a second backward
    def backward(ctx, grad_out):
        x, w_qr, w_vr, w_ql, w_vl, w_up, *small = ctx.saved_tensors
        # the vectors in the weights' dtype (under autocast some came out of bf16 products)
        a, s, u, q_sp, m, p, t, pooled, z = (v.to(w_up.dtype) for v in small)
        n, c, h, w = x.shape
        hw = h * w
        g = grad_out.flatten(2)  # any layout, read where it lies (the stride-0 gradient of .sum() too)
        flat = x.flatten(2)
        gx = g * flat  # [N, C, HW]
        grad_a, grad_s = gx.sum(dim=2).to(a.dtype), gx.sum(dim=1).to(a.dtype)  # [N, C], [N, HW]
        del gx
        # channel gate a = σ(W_up z), z = W_vr pooled, pooled = X p, p = softmax(l_q)
        grad_za = grad_a * a * (1 - a)  # [N, C]
        grad_w_up = grad_za.t() @ z
        grad_z = grad_za @ w_up  # [N, C/2]
        grad_w_vr = grad_z.t() @ pooled
        grad_pooled = grad_z @ w_vr  # [N, C]
        grad_p = torch.bmm(grad_pooled.unsqueeze(1).to(flat.dtype), flat).squeeze(1).to(a.dtype)  # [N, HW]
        grad_lq = _softmax_backward(p, grad_p)
        # spatial gate s = σ(t), t = softmax(l_s), l_s = u · X
        grad_ls = _softmax_backward(t, grad_s * s * (1 - s))
        grads_l = torch.stack([grad_lq, grad_ls], dim=1)  # [N, 2, HW]
        grad_rows = torch.bmm(grads_l.to(flat.dtype), flat.transpose(1, 2)).to(a.dtype)  # [N, 2, C]
        grad_w_qr = grad_rows[:, 0].sum(dim=0, keepdim=True)
        grad_u = grad_rows[:, 1]
        grad_w_vl = q_sp.t() @ grad_u
        grad_q = grad_u @ w_vl.t()  # [N, C/2]
        grad_w_ql = grad_q.t() @ m
        grad_m = grad_q @ w_ql  # [N, C]
        # dX = G ⊙ (a + s) + [w_qr, u, dpooled, dm/HW] · [dl_q; dl_s; p; 1]
        left = torch.stack([w_qr.expand(n, c), u, grad_pooled, grad_m / hw], dim=2)  # [N, C, 4]
        right = torch.cat([grads_l, p.unsqueeze(1), torch.ones_like(p).unsqueeze(1)], dim=1)  # [N, 4, HW]
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = gated_sum(g, a.unsqueeze(2), s.unsqueeze(1), out=torch.empty_like(flat))  # x's layout
            _add_product_(grad_x, left.to(g.dtype), right.to(g.dtype))
            grad_x = grad_x.view(n, c, h, w)
        weight_grads = [
            grad.to(weight.dtype)
            for grad, weight in zip(
                (grad_w_qr, grad_w_vr, grad_w_ql, grad_w_vl, grad_w_up),
                (w_qr, w_vr, w_ql, w_vl, w_up),
                strict=True,
            )
        ]
        return grad_x, *weight_grads, None  # grad_x in x's memory format (a buffer like flat)


def _add_product_(out: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> None:
    """``out += left @ right`` in place, out [N, C, HW]; run with the output's contiguous dimension last (a
    channels_last map flattens to a transposed [N, C, HW]), the orientation BLAS writes fastest."""
    if out.stride(-1) == 1:
        out.baddbmm_(left, right)
    else:
        out.transpose(1, 2).baddbmm_(right.transpose(1, 2), left.transpose(1, 2))


def psa_p_inference(
    x: torch.Tensor, *weights: torch.Tensor, gate_hook=None, chunk_bytes: int | None = None
) -> torch.Tensor:
    """``PSA_p(x)`` without autograd; the output has x's dtype and memory format. ``gate_hook`` as in
    :class:`PsaPFunction`.

    The batch runs a few samples at a time when :func:`runs_in_chunks` says so (large samples on a CPU
    whose last-level cache X does not fit; see the module docstring), in chunks of about ``chunk_bytes``
    (default :data:`CHUNK_BYTES`). A ``chunk_bytes`` given splits any batch to that size."""
    n = x.shape[0]
    per_sample = max(x.numel() // max(n, 1) * x.element_size(), 1)
    if chunk_bytes is None:
        chunk_bytes = CHUNK_BYTES if runs_in_chunks(x, last_level_cache_bytes()) else None
    step = max(1, chunk_bytes // per_sample) if chunk_bytes else max(n, 1)
    if step >= n:  # the whole batch at once (every HRNet-W48 map at batch 8): no slices of x or the output
        a, s = _inference_gates(x, *weights)
        if gate_hook is not None:
            gate_hook(a, s)
        return gated_sum(x, a, s)
    out = torch.empty_like(x)
    gates = []
    for start in range(0, n, step):
        xs = x[start : start + step]
        a, s = _inference_gates(xs, *weights)
        gated_sum(xs, a, s, out=out[start : start + step])  # into the output's chunk
        if gate_hook is not None:
            gates.append((a, s))
    if gate_hook is not None:
        gate_hook(*(torch.cat(g) for g in zip(*gates, strict=True)))
    return out


def _inference_gates(
    x: torch.Tensor, w_qr: torch.Tensor, w_vr: torch.Tensor, w_ql: torch.Tensor, w_vl: torch.Tensor,
    w_up: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """x [N, C, H, W] → (channel gate [N, C, 1, 1], spatial gate [N, 1, H, W]): the math of
    :func:`psa_p_gates` in the same order (a batch run whole gets the training forward's bits), without the
    vectors backward needs.

    At HRNet-W48's smaller maps a block's fixed cost, its ATen calls, outweighs its passes over X
    (8×384×8×6 inside the model: about 0.3 ms against 12–21 µs for ``x * 2``), so the inference path keeps
    them few: with :func:`psa_p_inference`'s whole-batch branch a block's forward makes 34 dispatcher
    calls under ``no_grad``, 39 before (41 with a gate hook; docs/benchmarks.md, "PSA_p's inference in
    fewer calls")."""
    n, c, h, w = x.shape
    flat = x.flatten(2)  # [N, C, HW], a view in either layout
    m = torch.bmm(flat.new_full((n, 1, h * w), 1.0 / (h * w)), flat.transpose(1, 2)).squeeze(1)  # mean [N, C]
    u = F.linear(m, w_ql) @ w_vl  # [N, C]
    rows = torch.cat([w_qr.to(u.dtype).expand(n, 1, c), u.unsqueeze(1)], dim=1)  # [N, 2, C]
    probs = torch.bmm(rows.to(flat.dtype), flat).softmax(dim=2)  # [N, 2, HW]: softmax(l_q), softmax(l_s)
    pooled = torch.bmm(probs[:, :1].to(flat.dtype), flat.transpose(1, 2)).squeeze(1)  # X p as a row [N, C]
    a = torch.sigmoid(F.linear(F.linear(pooled, w_vr), w_up))  # [N, C]
    return a.view(n, c, 1, 1), torch.sigmoid(probs[:, 1]).view(n, 1, h, w)
