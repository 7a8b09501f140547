"""Measurement primitives shared by the benchmarks: interleaved median timing, peak tensor memory, FLOPs.

Timings on a shared CPU are noisy, so candidates are run round-robin (A, B, C, A, B, C, ...) and each gets
the median of its own repeats; ratios computed from one such run compare like with like.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import weakref
from collections.abc import Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula


def time_interleaved(
    candidates: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 2
) -> dict[str, float]:
    """Median wall time in seconds of each callable, run round-robin ``repeats`` times after ``warmup``."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of tensor storages created under it that are still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # Views and in-place results share an input's storage: those are not new allocations (and an input
        # may be a parameter or a tensor made before tracking began).
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
        }
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key and key not in self.live and key not in inputs:
                self.live[key] = storage.nbytes()
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
                weakref.finalize(storage, self._release, key)
        return out


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes of tensors alive at once among those ``fn`` allocates (outputs, temporaries, autograd
    buffers, gradients). Kernel-internal workspaces are not seen; inputs and parameters are not counted.

    Counted at the dispatcher level, so the figure is exact and the same on every machine and allocator.
    """
    tracker = _LiveTensorBytes()
    with tracker:
        fn()
    return tracker.peak


def saved_for_backward(fn: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the tensor storages autograd keeps for the backward pass of the graph ``fn`` builds (each
    storage once), leaving out those of ``exclude`` (the input and the parameters, which exist anyway).
    This is the activation memory a module holds from its forward until its backward.
    """
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(saved.values())


def _sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """2·B·H·Lq·Lk·(Dq + Dv): the two matrix products of attention."""
    *batch, lq, dq = query_shape
    lk = key_shape[-2]
    dv = value_shape[-1]
    heads = 1
    for size in batch:
        heads *= size
    return 2 * heads * lq * lk * (dq + dv)


def _register_cpu_sdpa_flops() -> None:
    """torch's FLOP counter knows the CUDA attention kernels but not the CPU one; teach it."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None:
        return
    with contextlib.suppress(RuntimeError, ValueError):  # already registered (by torch or an earlier import)
        register_flop_formula(op)(_sdpa_flops)


_register_cpu_sdpa_flops()


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of matmul / conv / attention ops run by ``fn`` (``torch.utils.flop_counter``; elementwise
    ops are not counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()
