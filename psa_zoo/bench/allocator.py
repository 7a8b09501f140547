"""What keeping freed CPU memory buys (:mod:`psa_zoo._cpu_memory`): each model in processes of its own.

The allocator's state belongs to the process, so the two settings cannot be interleaved inside one: each
round starts one process with freed memory given back (glibc's default, ``PSA_ZOO_KEEP_CPU_MEMORY=0``) and
one with it kept (``=1``, what the command line and the training engine set), one after the other, and
the rounds alternate which goes first. A process builds one model as the predictors run it (BatchNorm
folded, the default memory format), times its forward (and, with ``train``, one training step: forward in
training mode and backward of the output's sum), and reports its medians and its peak resident memory.
The row gives the median over rounds of each side. Several models timed in one process (``bench-models``)
hide part of the effect: the other models' blocks keep the heap from shrinking between calls.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from .._cpu_memory import ENV_VAR
from ._measure import time_interleaved
from .models import ModelCase, _forward, _train_step

__all__ = ["AllocatorRow", "bench_allocator", "to_markdown"]

_CHILD_TIMEOUT_S = 3600  # one model's process: the OCR model's training steps take minutes on 2 cores


@dataclass
class AllocatorRow:
    """One model: the medians over rounds of the processes with freed memory given back and kept."""

    name: str
    batch: int
    input: str
    rounds: int
    given_back_ms: float
    kept_ms: float
    speedup: float  # given_back_ms / kept_ms
    given_back_rss_mb: float  # peak resident memory of the process after the inference timing
    kept_rss_mb: float
    train_given_back_ms: float | None = None
    train_kept_ms: float | None = None
    train_speedup: float | None = None


def _median_ms(fn, repeats: int, warmup: int) -> float:
    return time_interleaved({"fn": fn}, repeats=repeats, warmup=warmup)["fn"] * 1e3


def _measure(
    name: str, batch: int, height: int, width: int, repeats: int, warmup: int, train: bool
) -> dict[str, float | bool]:
    """One process's measurements (run in the child): ``kept`` (the setting took effect), ``ms``,
    ``rss_mb`` and, with ``train``, ``train_ms``."""
    import torch

    from .._cpu_memory import keep_cpu_memory_unless_disabled
    from ..models import create_model
    from ..models._runtime import format_images, inference_module, to_memory_format

    kept = keep_cpu_memory_unless_disabled()
    torch.manual_seed(0)
    model = create_model(name).eval()
    memory_format = to_memory_format(model, "auto")
    folded = inference_module(model)
    x = format_images(torch.randn(batch, 3, height, width), memory_format)
    result: dict[str, float | bool] = {"kept": kept, "ms": _median_ms(_forward(folded, x), repeats, warmup)}
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if train:
        result["train_ms"] = _median_ms(_train_step(model, x), repeats, warmup)
    return result


def _run_child(case: ModelCase, keep: bool, repeats: int, warmup: int, train: bool, threads: int) -> dict:
    args = [case.name, case.batch, case.height, case.width, repeats, warmup, train]
    code = (
        "import json, sys, torch; from psa_zoo.bench.allocator import _measure; "
        f"torch.set_num_threads({threads}); print(json.dumps(_measure(*json.loads(sys.argv[1]))))"
    )
    env = {**os.environ, ENV_VAR: "1" if keep else "0"}
    setting = f"{ENV_VAR}={env[ENV_VAR]}"
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], env=env, capture_output=True, text=True, check=False,
        timeout=_CHILD_TIMEOUT_S,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the {case.name} process ({setting}) failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["kept"] != keep:
        raise RuntimeError(
            f"the {case.name} process ({setting}) found kept={result['kept']}, expected {keep}: this "
            "system's C library is not glibc, so there is nothing to compare; run it on Linux with glibc"
        )
    return result


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def bench_allocator(
    cases: Sequence[ModelCase], rounds: int = 3, repeats: int = 5, warmup: int = 1, train: bool = False,
    threads: int = 2,
) -> list[AllocatorRow]:  # fmt: skip
    """Per case (a :class:`~psa_zoo.bench.models.ModelCase`), ``rounds`` pairs of processes (see the
    module docstring)."""
    rows = []
    for case in cases:
        sides: dict[bool, list[dict]] = {False: [], True: []}
        for index in range(rounds):
            for keep in (False, True) if index % 2 == 0 else (True, False):
                sides[keep].append(_run_child(case, keep, repeats, warmup, train, threads))

        given_back, kept = sides[False], sides[True]
        given_back_ms, kept_ms = _median(given_back, "ms"), _median(kept, "ms")
        row = AllocatorRow(
            case.name, case.batch, f"{case.height}×{case.width}", rounds, given_back_ms, kept_ms,
            given_back_ms / kept_ms, _median(given_back, "rss_mb"), _median(kept, "rss_mb"),
        )  # fmt: skip
        if train:
            row.train_given_back_ms = _median(given_back, "train_ms")
            row.train_kept_ms = _median(kept, "train_ms")
            row.train_speedup = row.train_given_back_ms / row.train_kept_ms
        rows.append(row)
    return rows


def to_markdown(rows: list[AllocatorRow]) -> str:
    """The rows as the Markdown table of docs/benchmarks.md ("Freed memory kept for the next tensor")."""
    lines = [
        "| model | batch | input | rounds | given back ms | kept ms | speed-up | peak RSS given back MB "
        "| peak RSS kept MB | train given back ms | train kept ms | train speed-up |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        train = (
            f"{r.train_given_back_ms:,.0f} | {r.train_kept_ms:,.0f} | {r.train_speedup:.3f}×"
            if r.train_speedup is not None
            else "– | – | –"
        )
        lines.append(
            f"| {r.name} | {r.batch} | {r.input} | {r.rounds} | {r.given_back_ms:,.0f} | {r.kept_ms:,.0f} "
            f"| {r.speedup:.3f}× | {r.given_back_rss_mb:,.0f} | {r.kept_rss_mb:,.0f} | {train} |"
        )
    return "\n".join(lines)
