"""Keep freed CPU memory in the process for the next tensor, instead of handing it back to the kernel.

PyTorch's CPU tensors come from the C library's ``malloc``. With glibc's defaults a large block (from
128 KiB, a threshold glibc raises up to 32 MiB as it sees big blocks freed) is mapped fresh from the
kernel and unmapped when freed, and the top of the heap is given back once twice that threshold lies free
there. Every activation of a vision model is such a block, so a forward pass can pay one page fault per
4 KiB page it writes: on 2 Xeon threads, ``x * 2`` into a fresh 8×256×64×64 float tensor (32 MiB) takes
10.3 ms, 2.4 ms when the memory comes back from the heap.

:func:`keep_cpu_memory` sets glibc's ``M_MMAP_THRESHOLD`` to 1 GiB (32 MiB where glibc refuses more; blocks
below come from the heap) and ``M_TRIM_THRESHOLD`` to 2 GiB - 1 (free memory stays with the process): the
reuse that CPU tuning guides get by preloading TCMalloc or jemalloc (e.g. AMD's ZenDNN user guide, "Memory
Allocators"), without a library to install. Measured on the paper's models, each in processes of its own:
inference 1.00-1.14x and a training step 1.02-1.39x as fast, the peak resident memory of inference -1% to
+10%; the price is that the process holds on to its peak memory instead of returning what it frees
(docs/benchmarks.md, "Freed memory kept for the next tensor").

The ``psa-zoo`` command line and the training engine call it for their process (opt out with
``PSA_ZOO_KEEP_CPU_MEMORY=0``); a library user calls it once, in a process that runs models. Without glibc
(macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["ENV_VAR", "keep_cpu_memory", "keep_cpu_memory_unless_disabled", "mmap_threshold"]

ENV_VAR = "PSA_ZOO_KEEP_CPU_MEMORY"

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
# blocks below this size come from the heap; where glibc refuses 1 GiB (older versions cap it at
# HEAP_MAX_SIZE / 2), 32 MiB
_MMAP_THRESHOLDS = (1 << 30, 32 << 20)
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int


_threshold_set: int | None = None  # what keep_cpu_memory set M_MMAP_THRESHOLD to


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (Linux), else None."""
    try:
        if not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return ctypes.CDLL("libc.so.6")
    except (OSError, ValueError):  # confstr: name unknown to this system; CDLL: no such library (musl)
        return None


def keep_cpu_memory() -> bool:
    """Let this process reuse freed CPU memory for later tensors (see the module docstring); True when set
    (Linux with glibc), False where there is nothing to set. Process-wide and idempotent.

    Blocks up to :func:`mmap_threshold` come from the heap of the main thread; a thread's own malloc arena
    holds at most 64 MiB, so larger blocks allocated by other threads still come from the kernel. With
    TCMalloc or jemalloc preloaded, this sets glibc's unused allocator (harmless; theirs already reuses)."""
    global _threshold_set
    libc = glibc()
    if libc is None:
        return False
    threshold = next((v for v in _MMAP_THRESHOLDS if libc.mallopt(_M_MMAP_THRESHOLD, v) == 1), None)
    if threshold is None:
        return False
    _threshold_set = threshold
    # a refused trim threshold leaves the mmap threshold set: blocks still come from the heap
    return libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1


def mmap_threshold() -> int | None:
    """The ``M_MMAP_THRESHOLD`` :func:`keep_cpu_memory` set in this process (1 GiB, or 32 MiB where glibc
    refuses more, as older versions do); None when it has not run or had nothing to set."""
    return _threshold_set


def keep_cpu_memory_unless_disabled() -> bool:
    """:func:`keep_cpu_memory` unless the environment variable ``PSA_ZOO_KEEP_CPU_MEMORY`` is ``0``
    (``1`` or unset: on). For jobs that own their process: the command line, the training engine."""
    value = os.environ.get(ENV_VAR, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(
            f"{ENV_VAR} must be 0 (give freed memory back) or 1 (keep it, the default), got {value!r}; "
            f"set it to 0 or 1, or unset it"
        )
    return value == "1" and keep_cpu_memory()
