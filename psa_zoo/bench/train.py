"""Training benchmark (pose): images/s of the real training loop, the data loader alone, and how long
the loop waits for data.

Everything runs on data generated into a temporary folder (:func:`psa_zoo.data.synthetic.make_pose_dataset`,
nothing is downloaded); every crop is ``input_size`` (256×192 by default, H×W), upsampled from the small
generated people, which costs the loader the same warp and target encoding as a COCO crop.

* **Loader alone**: the training items (HRNet augmentation, msra targets) through a ``DataLoader`` with the
  engine's :class:`~psa_zoo.train.sampler.StepBatchSampler` and worker set-up, for 0, 1 and 2 workers
  (0: in the main process). The first ``2 × workers`` batches (those the loader asks for before the
  first arrives: worker start and the filled prefetch queue) are left out; images/s is counted from the
  arrivals of the next ``loader_batches``. Worker counts run round-robin, median of ``loader_repeats``.
* **Training**: ``Trainer(PoseTask(config), config).fit()`` as ``psa-zoo train-pose`` runs it (2 workers,
  batch norm in training mode, no checkpoints, Adam of the ``hrnet`` recipe), ``warmup + steps`` optimiser
  steps. The engine's own counters (``data_seconds``: the loop waiting for batches, ``compute_seconds``:
  forward, backward and optimiser) are used, less those of the ``warmup`` first steps (worker start, first
  allocations, kernel selection), which are timed on the engine's batch stream (:class:`_StepTimedTrainer`).
  images/s = steps × batch / (data + compute); data-wait share = data / (data + compute). The evaluation
  and the final save after the loop are outside both counters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data.coco_keypoints import find_coco_split, load_keypoint_annotations
from ..data.synthetic import make_pose_dataset
from ..models.backbones.hrnet import HRNetSpec, hrnet_spec
from ..pose.codecs import build_codec
from ..pose.dataset import TopDownPoseDataset
from ..pose.transforms import TopDownAugmentation
from ..train.config import TrainConfig
from ..train.engine import Trainer, _worker_init
from ..train.pose import PoseTask
from ..train.recipes import RECIPES
from ..train.sampler import StepBatchSampler
from .attention import machine_description

__all__ = [
    "DEFAULT_CASES",
    "QUICK_CASES",
    "LoaderRow",
    "TrainBenchConfig",
    "TrainBenchReport",
    "TrainCase",
    "TrainRow",
    "bench_loader",
    "bench_training",
    "run_train_benchmark",
    "to_markdown",
]

RECIPE = "hrnet"  # augmentation, codec and optimiser of the published HRNet COCO recipe
LOADER_WORKERS = (0, 1, 2)
_PREFETCH = 2  # DataLoader's default prefetch_factor: batches each worker is asked for up front


def _spec(widths, blocks: int, stage1_width: int, stem: int) -> HRNetSpec:
    """HRNet layout with ``blocks`` blocks per branch (stage 1 too) and one module per stage."""
    spec = hrnet_spec(
        widths, num_blocks=blocks, num_modules=(1, 1, 1), stage1_blocks=blocks, stage1_width=stage1_width
    )
    return dataclasses.replace(spec, stem_width=stem)


SMALL_SPEC = _spec((16, 32, 64, 128), blocks=2, stage1_width=32, stem=32)  # the demo's model
TINY_SPEC = _spec((8, 16, 32, 64), blocks=1, stage1_width=16, stem=16)  # --quick only


@dataclass(frozen=True)
class TrainCase:
    """A registered pose model, optionally with a reduced ``spec``, and its data-wait target (if any)."""

    label: str  # as the table names it
    model: str
    spec: HRNetSpec | None = None
    data_wait_target: float | None = None  # e.g. 0.10: the loop waits for data < 10% of a step


DEFAULT_CASES: tuple[TrainCase, ...] = (
    TrainCase("hrnet_w18_psa_p (small spec)", "hrnet_w18_psa_p", SMALL_SPEC),
    TrainCase("hrnet_w32_psa_p", "hrnet_w32_psa_p", data_wait_target=0.10),
)
QUICK_CASES: tuple[TrainCase, ...] = (
    TrainCase("hrnet_w18_psa_p (tiny spec)", "hrnet_w18_psa_p", TINY_SPEC),
    TrainCase("hrnet_w32_psa_p (tiny spec)", "hrnet_w32_psa_p", TINY_SPEC),
)
TARGET_WORKERS = 2  # the data-wait targets are set for training with 2 loader workers


@dataclass(frozen=True)
class TrainBenchConfig:
    """What :func:`run_train_benchmark` measures. ``input_size`` is (height, width); ``batch_size`` is per
    process; ``steps`` optimiser steps are timed after ``warmup`` untimed ones, in each of ``repeats``
    round-robin runs per case (medians reported)."""

    cases: tuple[TrainCase, ...] = DEFAULT_CASES
    input_size: tuple[int, int] = (256, 192)
    batch_size: int = 8
    num_workers: int = 2
    steps: int = 5
    warmup: int = 1
    repeats: int = 1
    loader_batches: int = 24
    loader_repeats: int = 3
    threads: int = 2
    mixed_precision: str = "no"

    @classmethod
    def quick(cls, **overrides: Any) -> TrainBenchConfig:
        """Tiny models at 64×48 for tests and CI (seconds)."""
        values = dict(cases=QUICK_CASES, input_size=(64, 48), steps=2, loader_batches=3, loader_repeats=1)
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        counts = ("batch_size", "steps", "warmup", "repeats", "loader_batches", "loader_repeats", "threads")
        for name in counts:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} is {value!r}, expected a positive integer; give one ≥ 1")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(
                f"num_workers is {self.num_workers!r}, expected an integer ≥ 0 (0: load in the main "
                "process); give one"
            )
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(
                f"input_size is {tuple(self.input_size)}, expected (height, width) of at least 32 each "
                "(the models downsample by 32); give a larger size"
            )
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(
                f"mixed_precision is {self.mixed_precision!r}, expected 'no', 'bf16' or 'fp16'; pick one"
            )
        if self.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise ValueError(
                "mixed_precision 'fp16' was asked for but there is no CUDA GPU, expected one for fp16 "
                "autocast; use 'bf16' or 'no' on the CPU"
            )
        if not self.cases:
            raise ValueError("cases is empty, expected at least one TrainCase; give one")

    @property
    def train_images_needed(self) -> int:
        """Training instances for the loader measurements and for the engine's steps, within one epoch."""
        loader = (loader_skip(max(LOADER_WORKERS)) + self.loader_batches) * self.batch_size
        return max(loader, (self.warmup + self.steps) * self.batch_size)


def loader_skip(num_workers: int) -> int:
    """Batches left out at the start of a loader measurement: those asked for before the first arrives
    (``prefetch_factor`` per worker), at least the first."""
    return max(1, _PREFETCH * num_workers)


@dataclass
class LoaderRow:
    """Data loader alone: ``workers`` = 0 means the main process."""

    input: str  # "256×192 → 64×48" (crop H×W → heatmaps h×w)
    batch: int
    workers: int
    batches_skipped: int
    batches_timed: int
    images_per_s: float
    images_per_s_per_worker: float  # the main process's rate for 0 workers


@dataclass
class TrainRow:
    """One model's training loop; seconds are those of the timed (post-warm-up) steps of the median run."""

    model: str  # table label
    name: str  # registered name
    spec: dict | None  # the reduced HRNet spec (None: the registered one)
    input: str  # "256×192" (H×W)
    batch: int  # per process
    workers: int
    steps: int  # timed steps per run
    warmup_steps: int
    repeats: int
    images_per_s: float
    images_per_s_runs: list[float]  # every run's, in the order run (the row is the median one)
    ms_per_step: float
    data_wait_share: float
    data_seconds: float  # of the timed steps (median run)
    compute_seconds: float
    engine_data_seconds: float  # the engine's totals over all steps, warm-up included (median run)
    engine_compute_seconds: float
    step_seconds: list[float]  # each timed step's wait + compute (median run)
    device: str
    layout_dtype: str
    target: str = ""
    passed: bool | None = None


@dataclass
class TrainBenchReport:
    machine: str
    settings: dict
    loader: list[LoaderRow]
    train: list[TrainRow]

    def to_dict(self) -> dict:
        rows = [{"kind": "loader", **dataclasses.asdict(r)} for r in self.loader]
        rows += [{"kind": "train", **dataclasses.asdict(r)} for r in self.train]
        return {"machine": self.machine, "settings": self.settings, "rows": rows}


# --- data ------------------------------------------------------------------------------------------------


def make_bench_data(folder: str | Path, cfg: TrainBenchConfig) -> Path:
    """Generate enough training images for ``cfg`` (every image holds at least one person) into ``folder``,
    and two validation images for the engine's final evaluation."""
    return make_pose_dataset(Path(folder) / "data", num_train=cfg.train_images_needed, num_val=2, seed=0)


def loader_dataset(data_dir: str | Path, input_size: tuple[int, int]) -> TopDownPoseDataset:
    """The training items of ``data_dir`` as :class:`~psa_zoo.train.pose.PoseTask` makes them with the
    ``hrnet`` recipe: augmentation, msra targets at stride 4. ``input_size`` is (height, width)."""
    recipe = RECIPES[RECIPE]
    data = load_keypoint_annotations(*find_coco_split(data_dir, "train"))
    height, width = input_size
    codec = build_codec(recipe["codec"], (width, height), (math.ceil(width / 4), math.ceil(height / 4)))
    augmentation = TopDownAugmentation(
        flip_prob=recipe["flip_prob"],
        half_body_prob=recipe["half_body_prob"],
        scale_factor=recipe["scale_factor"],
        rotation_factor=recipe["rotation_factor"],
    )
    return TopDownPoseDataset(
        data.instances("train"), data.keypoint_set, (width, height), codec=codec, augmentation=augmentation
    )


def loader_images_per_second(
    dataset: TopDownPoseDataset, batch_size: int, num_workers: int, batches: int, skip: int
) -> float:
    """Images/s delivered by a loader set up as the engine's, over ``batches`` batches after the first
    ``skip`` (≥ 1): ``batches × batch_size / (arrival of the last − arrival of batch skip)``."""
    sampler = StepBatchSampler(len(dataset), batch_size, seed=0)
    if len(sampler) < skip + batches:
        raise ValueError(
            f"the dataset gives {len(sampler)} batches of {batch_size}, expected at least {skip + batches}; "
            "generate more images"
        )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        worker_init_fn=_worker_init,  # the engine's: one torch thread per worker, no cv2 threads
        generator=torch.Generator().manual_seed(0),
    )
    arrivals: list[float] = []
    iterator = iter(loader)
    try:
        for _ in range(skip + batches):
            next(iterator)
            arrivals.append(time.perf_counter())
    finally:
        del iterator  # stops the workers now, not when garbage is collected
    return batches * batch_size / (arrivals[-1] - arrivals[skip - 1])


def bench_loader(dataset: TopDownPoseDataset, cfg: TrainBenchConfig) -> list[LoaderRow]:
    """The loader alone for 0, 1 and 2 workers, round-robin, median of ``cfg.loader_repeats``."""
    rates: dict[int, list[float]] = {w: [] for w in LOADER_WORKERS}
    for _ in range(cfg.loader_repeats):
        for workers in LOADER_WORKERS:
            skip = loader_skip(workers)
            rates[workers].append(
                loader_images_per_second(dataset, cfg.batch_size, workers, cfg.loader_batches, skip)
            )
    height, width = cfg.input_size
    shape = f"{height}×{width} → {math.ceil(height / 4)}×{math.ceil(width / 4)}"
    rows = []
    for workers, values in rates.items():
        rate = statistics.median(values)
        per_worker = rate / max(workers, 1)
        skip = loader_skip(workers)
        rows.append(LoaderRow(shape, cfg.batch_size, workers, skip, cfg.loader_batches, rate, per_worker))
    return rows


# --- training --------------------------------------------------------------------------------------------


class _StepTimedTrainer(Trainer):
    """The engine unchanged, with each optimiser step's wait for its batches (``waits``) and the time from
    receiving them to asking for the next (``busy``: the step's compute plus the loop's bookkeeping)
    recorded, so the warm-up steps can be taken out of the engine's totals."""

    def __init__(self, task: PoseTask, config: TrainConfig) -> None:
        super().__init__(task, config)
        self.waits: list[float] = []
        self.busy: list[float] = []

    def _micro_batches(self, accelerator, dataset, state):
        inner = super()._micro_batches(accelerator, dataset, state)
        received = None
        while True:
            asked = time.perf_counter()
            if received is not None:
                self.busy.append(asked - received)
            item = next(inner)
            received = time.perf_counter()
            self.waits.append(received - asked)
            yield item


def train_config(case: TrainCase, data_dir: Path, output_dir: Path, cfg: TrainBenchConfig) -> TrainConfig:
    """The run ``psa-zoo train-pose`` would make of the case: ``warmup + steps`` steps, no checkpoints, no
    tracker, batch norm in training mode, one validation image (evaluated after the loop, not timed)."""
    return TrainConfig(
        model=case.model,
        data=str(data_dir),
        output_dir=str(output_dir),
        recipe=RECIPE,
        batch_size=cfg.batch_size,
        max_train_steps=cfg.warmup + cfg.steps,
        num_workers=cfg.num_workers,
        report_to="none",
        freeze_bn="off",
        input_size=list(cfg.input_size),
        max_val_images=1,
        flip_test=False,
        mixed_precision=cfg.mixed_precision,
        seed=0,
        model_kwargs={"spec": case.spec.to_dict()} if case.spec is not None else {},
    ).resolve()


def _timed_run(case: TrainCase, data_dir: Path, output_dir: Path, cfg: TrainBenchConfig) -> dict[str, Any]:
    """One engine run: its timed steps' data and compute seconds, the engine's totals, each timed step's
    seconds."""
    config = train_config(case, data_dir, output_dir, cfg)
    trainer = _StepTimedTrainer(PoseTask(config), config)
    with contextlib.redirect_stdout(io.StringIO()):  # the engine's evaluation line is not ours to print
        result = trainer.fit()
    shutil.rmtree(output_dir, ignore_errors=True)
    warm = cfg.warmup
    if len(trainer.waits) != result["train_steps"] or len(trainer.busy) < warm:
        raise RuntimeError(
            f"saw {len(trainer.waits)} batch requests for {result['train_steps']} engine steps, expected "
            "one per step; Trainer._micro_batches no longer feeds the loop, update _StepTimedTrainer"
        )
    data = result["data_seconds"] - sum(trainer.waits[:warm])
    compute = result["compute_seconds"] - sum(trainer.busy[:warm])
    # Each timed step's wait + compute (the last one's is what the engine's totals leave): shows how
    # steady the steps were, e.g. when other processes share the CPU.
    cycles = [w + b for w, b in zip(trainer.waits, trainer.busy, strict=False)]
    last = result["data_seconds"] + result["compute_seconds"] - sum(cycles)
    return {
        "data": data,  # ≥ 0: each of the engine's waits encloses the one timed here
        "compute": compute,
        "engine_data": result["data_seconds"],
        "engine_compute": result["compute_seconds"],
        "step_seconds": [*cycles[warm:], last],
    }


def _device_and_dtype(cfg: TrainBenchConfig) -> tuple[str, str]:
    device = f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "cpu"
    dtype = "fp32" if cfg.mixed_precision == "no" else f"{cfg.mixed_precision} autocast, fp32 weights"
    return device, f"NCHW, {dtype}"


def bench_training(data_dir: Path, run_dir: Path, cfg: TrainBenchConfig) -> list[TrainRow]:
    """Every case ``cfg.repeats`` times, round-robin; each row is the run of median images/s."""
    runs: list[list[dict[str, Any]]] = [[] for _ in cfg.cases]
    for repeat in range(cfg.repeats):
        for index, case in enumerate(cfg.cases):
            out = run_dir / f"case{index}-run{repeat}"
            runs[index].append(_timed_run(case, data_dir, out, cfg))
    device, layout = _device_and_dtype(cfg)
    height, width = cfg.input_size
    rows = []
    for case, timings in zip(cfg.cases, runs, strict=True):
        for t in timings:
            t["images_per_s"] = cfg.steps * cfg.batch_size / (t["data"] + t["compute"])
        median = sorted(timings, key=lambda t: t["images_per_s"])[(len(timings) - 1) // 2]
        total = median["data"] + median["compute"]
        row = TrainRow(
            model=case.label,
            name=case.model,
            spec=case.spec.to_dict() if case.spec is not None else None,
            input=f"{height}×{width}",
            batch=cfg.batch_size,
            workers=cfg.num_workers,
            steps=cfg.steps,
            warmup_steps=cfg.warmup,
            repeats=cfg.repeats,
            images_per_s=median["images_per_s"],
            images_per_s_runs=[t["images_per_s"] for t in timings],
            ms_per_step=total / cfg.steps * 1e3,
            data_wait_share=median["data"] / total,
            data_seconds=median["data"],
            compute_seconds=median["compute"],
            engine_data_seconds=median["engine_data"],
            engine_compute_seconds=median["engine_compute"],
            step_seconds=median["step_seconds"],
            device=device,
            layout_dtype=layout,
        )
        if case.data_wait_target is not None and cfg.num_workers == TARGET_WORKERS:
            row.target = f"data wait < {case.data_wait_target:.0%}"
            row.passed = row.data_wait_share < case.data_wait_target
        rows.append(row)
    return rows


def run_train_benchmark(cfg: TrainBenchConfig | None = None) -> TrainBenchReport:
    """Generate the data, measure the loader alone, then train every case; ``cfg.threads`` torch threads
    in this process (loader workers get one each, as in training)."""
    cfg = cfg or TrainBenchConfig()
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        machine = machine_description()
        with tempfile.TemporaryDirectory(prefix="psa_zoo_bench_train_") as tmp:
            data_dir = make_bench_data(tmp, cfg)
            loader = bench_loader(loader_dataset(data_dir, cfg.input_size), cfg)
            train = bench_training(data_dir, Path(tmp) / "runs", cfg)
    finally:
        torch.set_num_threads(previous)
    settings = {
        "task": "pose",
        "recipe": RECIPE,
        "input_size": list(cfg.input_size),
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "steps": cfg.steps,
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
        "loader_batches": cfg.loader_batches,
        "loader_repeats": cfg.loader_repeats,
        "threads": cfg.threads,
        "mixed_precision": cfg.mixed_precision,
    }
    return TrainBenchReport(machine, settings, loader, train)


# --- output ----------------------------------------------------------------------------------------------


def to_markdown(report: TrainBenchReport) -> str:
    """The training table, then the loader table."""
    lines = [
        "| model | input | batch | workers | steps timed | images/s | ms/step | data-wait share | device "
        "| layout/dtype | target | met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in report.train:
        met = "" if r.passed is None else ("yes" if r.passed else "**no**")
        lines.append(
            f"| {r.model} | {r.input} | {r.batch} | {r.workers} | {r.steps} | {r.images_per_s:.2f} | "
            f"{r.ms_per_step:,.0f} | {r.data_wait_share:.2%} | {r.device} | {r.layout_dtype} | {r.target} "
            f"| {met} |"
        )
    lines += [
        "",
        "| data loader alone | input → heatmaps | batch | workers | images/s | images/s per worker |",
        "|---|---|---:|---|---:|---:|",
    ]
    for r in report.loader:
        workers = "0 (main process)" if r.workers == 0 else str(r.workers)
        lines.append(
            f"| TopDownPoseDataset ({RECIPE} augmentation, msra) | {r.input} | {r.batch} | {workers} | "
            f"{r.images_per_s:.1f} | {r.images_per_s_per_worker:.1f} |"
        )
    return "\n".join(lines) + "\n"
