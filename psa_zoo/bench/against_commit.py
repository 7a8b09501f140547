"""Whole models of today's code against the same models of an earlier commit, in one interleaved run.

The earlier commit's ``psa_zoo`` package is exported with ``git archive`` into a temporary folder under
another name (``psa_zoo_<commit>``, its own imports rewritten to that name), imported beside today's
package, and each model is built by both with the same weights (today's state dict loaded into the old
model, strictly) and the same input. Before timing, the two outputs must agree on a small contiguous input
(to 1e-4 of the largest output), so both sides run the same network. Both run in
channels_last, the layout today's predictors and engine choose by default on the CPU; the earlier code
ran in it when asked, and it was its faster layout too (so each side is in its best layout).
Today's model is timed twice: as built, and as the predictors and evaluations run it, with its BatchNorm
folded into the convolutions (:func:`~psa_zoo.models._runtime.inference_module`; the earlier code had no
folding, so its model as built is what its predictors ran). Times are medians of interleaved repeats
(:func:`~psa_zoo.bench._measure.time_interleaved`); the speed-ups are ``t_before / t_now`` and
``t_before / t_folded``. With ``train=True`` one training step of each side (forward in training mode and
backward of the output's sum, the model as built: nothing is folded in training) is timed as well, in a
second interleaved run after the inference one.

CLI: ``psa-zoo bench-models --against COMMIT [--train] [--models ...]`` (a git checkout of psa_zoo is
needed).
"""

from __future__ import annotations

import copy
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from ..models import create_model
from ..models._runtime import format_images, inference_module, to_memory_format
from ._measure import time_interleaved
from .models import DEFAULT_CASES, ModelCase, _forward, _train_step

__all__ = ["CommitRow", "bench_against_commit", "import_commit", "to_markdown"]

_PACKAGE = "psa_zoo"


@dataclass
class CommitRow:
    name: str
    batch: int
    input: str
    layout: str
    before_ms: float
    now_ms: float
    speedup: float  # before / now
    rel_diff: float  # max |Δ| of the two sides' outputs over max |output|, same weights and input
    folded_ms: float  # today's model as the predictors run it: BatchNorm folded into the convolutions
    folded_speedup: float  # before / folded
    train_before_ms: float | None = None  # one training step (forward + backward), with train=True
    train_now_ms: float | None = None
    train_speedup: float | None = None  # train_before / train_now


def _repo_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        raise RuntimeError(
            f"{root} is not a git checkout: --against needs psa_zoo's git history (clone the repository)"
        )
    return root


def import_commit(commit: str, workdir: Path) -> ModuleType:
    """Import ``psa_zoo`` as it was at ``commit`` under the name ``psa_zoo_<sha>`` (from ``workdir``)."""
    root = _repo_root()
    try:
        verify = [
            "git",
            "-C",
            str(root),
            "rev-parse",
            "--verify",
            "--quiet",
            "--short=10",
            f"{commit}^{{commit}}",
        ]
        sha = subprocess.run(verify, capture_output=True, text=True, check=True).stdout.strip()
        command = ["git", "-C", str(root), "archive", "--format=tar", sha, _PACKAGE]
        archive = subprocess.run(command, capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as error:
        message = error.stderr.decode() if isinstance(error.stderr, bytes) else (error.stderr or "")
        first = message.strip().splitlines()[0] if message.strip() else "no such commit"
        raise ValueError(
            f"cannot read commit {commit!r} of {root}: {first}; name a commit of its history"
        ) from None
    name = f"{_PACKAGE}_{sha}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python ≥ 3.10.12
        tar.extractall(workdir, **safe)
    (workdir / _PACKAGE).rename(workdir / name)
    pattern = re.compile(rf"\b{_PACKAGE}\b(?=[.\s])")  # `import psa_zoo`, `from psa_zoo.x import`
    for path in (workdir / name).rglob("*.py"):
        path.write_text(pattern.sub(name, path.read_text()))
    sys.path.insert(0, str(workdir))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(workdir))


def _relative_difference(now: torch.nn.Module, before: torch.nn.Module, x: torch.Tensor) -> float:
    """max |Δ| / max |output| of the two models on a small ``x``, both contiguous.

    Small and contiguous, where the same network gives the same bits whichever commit runs it: a freshly
    initialised model's logits reach 1e6, and PSA's softmaxes over such logits are so sharp that any change
    of rounding (another memory layout; PSA_p's per-chunk inference on maps of ≥ 1 MiB per sample) moves
    the output by tens of percent (measured for DeepLabV3+ R101 + PSA at init), which says nothing about
    whether the two commits compute one function.
    """
    with torch.no_grad():
        out = now(x)
        return ((out - before(x)).abs().max() / out.abs().max().clamp_min(1e-12)).item()


def _folding_difference(model: torch.nn.Module, x: torch.Tensor) -> float:
    """max |Δ| / max |output| of ``model`` and its folded copy, both in float64: in float32 a freshly
    initialised model's sharp softmaxes amplify the rounding change of folding (see above); in float64
    the same function gives ~1e-12."""
    exact = copy.deepcopy(model).double()
    return _relative_difference(inference_module(exact), exact, x.double())


def bench_case(
    old: ModuleType,
    case: ModelCase,
    repeats: int,
    warmup: int,
    layout: str = "channels_last",
    train: bool = False,
) -> CommitRow:
    """Time ``case.name`` built by ``old`` and by today's package, same weights, one interleaved run (and,
    with ``train``, one training step of each side in a second)."""
    torch.manual_seed(0)
    now = create_model(case.name).eval()
    before = old.create_model(case.name).eval()
    before.load_state_dict(now.state_dict(), strict=True)
    x = torch.randn(case.batch, 3, case.height, case.width)
    diff = _relative_difference(now, before, torch.randn(1, 3, 65, 65))
    if diff > 1e-4:
        raise RuntimeError(
            f"{case.name}: the commits' outputs differ by {diff:.2e} (relative); not one network"
        )
    fold_diff = _folding_difference(now, torch.randn(1, 3, 65, 65))
    if fold_diff > 1e-8:
        raise RuntimeError(f"{case.name}: folding changes the outputs by {fold_diff:.2e} (relative, float64)")
    folded = inference_module(now)
    fmt = to_memory_format(now, layout)
    to_memory_format(before, fmt)
    to_memory_format(folded, fmt)
    x = format_images(x, fmt)
    runs = {"before": _forward(before, x), "now": _forward(now, x), "folded": _forward(folded, x)}
    times = time_interleaved(runs, repeats=repeats, warmup=warmup)
    row = CommitRow(
        case.name,
        case.batch,
        f"{case.height}×{case.width}",
        layout,
        times["before"] * 1e3,
        times["now"] * 1e3,
        times["before"] / times["now"],
        diff,
        times["folded"] * 1e3,
        times["before"] / times["folded"],
    )
    if train:
        del folded, runs
        steps = {"before": _train_step(before, x), "now": _train_step(now, x)}
        train_times = time_interleaved(steps, repeats=repeats, warmup=warmup)
        row.train_before_ms, row.train_now_ms = train_times["before"] * 1e3, train_times["now"] * 1e3
        row.train_speedup = train_times["before"] / train_times["now"]
    return row


def bench_against_commit(
    commit: str,
    cases: tuple[ModelCase, ...] = DEFAULT_CASES,
    repeats: int = 7,
    warmup: int = 2,
    layout: str = "channels_last",
    train: bool = False,
) -> list[CommitRow]:
    """One :class:`CommitRow` per case: ``commit``'s code against today's, interleaved (``train``: also a
    training step of each)."""
    with tempfile.TemporaryDirectory(prefix="psa-zoo-commit-") as tmp:
        old = import_commit(commit, Path(tmp))
        rows = []
        for case in cases:
            rows.append(bench_case(old, case, repeats, warmup, layout, train))
            print(to_markdown(rows[-1:], commit).splitlines()[-1], flush=True)  # a row as soon as it is known
        return rows


def to_markdown(rows: list[CommitRow], commit: str) -> str:
    trained = any(r.train_speedup is not None for r in rows)
    train_head = f" train {commit} ms | train now ms | train speed-up |" if trained else ""
    lines = [
        f"| model | batch | input | layout | {commit} ms | now ms | speed-up | now folded ms | speed-up "
        f"folded |{train_head} max rel. Δ |",
        "|---|---|---|---|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if trained else "") + "---|",
    ]
    for r in rows:
        train_cells = ""
        if trained:
            train_cells = (
                " – | – | – |"
                if r.train_speedup is None
                else f" {r.train_before_ms:,.0f} | {r.train_now_ms:,.0f} | {r.train_speedup:.3f}× |"
            )
        lines.append(
            f"| {r.name} | {r.batch} | {r.input} | {r.layout} | {r.before_ms:,.0f} | {r.now_ms:,.0f} | "
            f"{r.speedup:.3f}× | {r.folded_ms:,.0f} | {r.folded_speedup:.3f}× |{train_cells} "
            f"{r.rel_diff:.1e} |"
        )
    return "\n".join(lines)
