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

Segmentation (``--task seg``, :func:`run_seg_benchmark`), on :func:`~psa_zoo.data.synthetic.make_seg_dataset`
images of the crop size (513×513 by default):

* **Training**: ``Trainer(SegTask(config), config).fit()`` as ``psa-zoo train-seg`` runs it, ``voc`` recipe
  (SGD, poly, 0.5-2.0 rescale, flip) with 513×513 crops, batch 4, 2 workers, batch norm in training mode,
  no checkpoints; timed exactly as pose (warm-up steps out, median of ``repeats``).
* **Evaluation**: ``evaluate_seg_model`` (whole image, one scale) on ``eval_images`` generated images, after
  one untimed image; images/s is the median of ``eval_repeats``.
* **Memory**: one ``predict_probabilities(mode="slide")`` (513×513 windows every 342 px) and one whole-image
  prediction of a 1024×2048 image with 19 classes, each in a fresh Python process: the peak RSS during the
  call over the RSS before it (the model built, the image made). One [1, 19, 1024, 2048] float32 buffer
  (K·H·W·4 bytes) is the floor: the probabilities returned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data.coco_keypoints import find_coco_split, load_keypoint_annotations
from ..data.synthetic import make_pose_dataset, make_seg_dataset
from ..models import create_model
from ..models.backbones.hrnet import HRNetSpec, hrnet_spec
from ..pose.codecs import build_codec
from ..pose.dataset import TopDownPoseDataset
from ..pose.transforms import TopDownAugmentation
from ..seg.evaluate import evaluate_seg_model
from ..seg.inference import predict_probabilities, sliding_windows
from ..train.config import TrainConfig
from ..train.engine import Trainer, TrainTask, _worker_init
from ..train.pose import PoseTask
from ..train.recipes import RECIPES
from ..train.sampler import StepBatchSampler
from ..train.seg import SegTask, load_seg_split
from .attention import machine_description

__all__ = [
    "DEFAULT_CASES",
    "QUICK_CASES",
    "LoaderRow",
    "SegBenchConfig",
    "SegBenchReport",
    "SegEvalRow",
    "SegMemoryRow",
    "TrainBenchConfig",
    "TrainBenchReport",
    "TrainCase",
    "TrainRow",
    "bench_loader",
    "bench_training",
    "memory_probe",
    "run_seg_benchmark",
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

    def __init__(self, task: TrainTask, config: TrainConfig) -> None:
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
    return _engine_run(PoseTask(config), config, output_dir, cfg.warmup)


def _engine_run(task: TrainTask, config: TrainConfig, output_dir: Path, warm: int) -> dict[str, Any]:
    """``Trainer(task, config).fit()`` with each step timed; the counters of the ``warm`` first steps out."""
    trainer = _StepTimedTrainer(task, config)
    with contextlib.redirect_stdout(io.StringIO()):  # the engine's evaluation line is not ours to print
        result = trainer.fit()
    shutil.rmtree(output_dir, ignore_errors=True)
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


def _device_and_dtype(cfg: Any) -> tuple[str, str]:
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
    height, width = cfg.input_size
    rows = []
    for case, timings in zip(cfg.cases, runs, strict=True):
        spec = case.spec.to_dict() if case.spec is not None else None
        rows.append(_train_row(case.label, case.model, spec, f"{height}×{width}", timings, cfg))
        if case.data_wait_target is not None and cfg.num_workers == TARGET_WORKERS:
            _judge(rows[-1], case.data_wait_target)
    return rows


def _judge(row: TrainRow, target: float) -> None:
    row.target = f"data wait < {target:.0%}"
    row.passed = row.data_wait_share < target


def _train_row(
    label: str, name: str, spec: dict | None, shape: str, timings: list[dict[str, Any]], cfg: Any
) -> TrainRow:
    """The row of the median run (by images/s) of ``timings`` (from :func:`_engine_run`); ``cfg`` has
    ``steps``, ``warmup``, ``repeats``, ``batch_size``, ``num_workers`` and ``mixed_precision``."""
    for t in timings:
        t["images_per_s"] = cfg.steps * cfg.batch_size / (t["data"] + t["compute"])
    median = sorted(timings, key=lambda t: t["images_per_s"])[(len(timings) - 1) // 2]
    total = median["data"] + median["compute"]
    device, layout = _device_and_dtype(cfg)
    return TrainRow(
        model=label,
        name=name,
        spec=spec,
        input=shape,
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


# --- segmentation ----------------------------------------------------------------------------------------

SEG_RECIPE = "voc"  # VainF's DeepLabV3+ VOC recipe (SGD, poly, scale 0.5-2.0, flip); only the crop is ours
SEG_MODEL = "deeplabv3plus_mbv2_psa"
SEG_MEMORY_CLASSES = 19  # Cityscapes: the sliding-window measurement is of a 1024×2048 Cityscapes frame
_MIB = 2**20


@dataclass(frozen=True)
class SegBenchConfig:
    """What :func:`run_seg_benchmark` measures. Sizes are (height, width). Training: ``warmup + steps`` engine
    steps on ``crop_size`` crops, ``repeats`` runs (median). Evaluation: whole-image inference of
    ``eval_images`` generated images of ``crop_size``, ``eval_repeats`` times after one untimed image
    (median). Memory: one sliding-window (``slide_crop`` every ``slide_stride``) and one whole-image
    prediction of a ``slide_size`` image with ``memory_classes`` classes, each in a fresh process."""

    model: str = SEG_MODEL
    crop_size: tuple[int, int] = (513, 513)
    batch_size: int = 4
    num_workers: int = 2
    steps: int = 3
    warmup: int = 1
    repeats: int = 1
    eval_images: int = 4
    eval_repeats: int = 3
    slide_size: tuple[int, int] = (1024, 2048)
    slide_crop: tuple[int, int] = (513, 513)
    slide_stride: tuple[int, int] = (342, 342)
    memory_classes: int = SEG_MEMORY_CLASSES
    threads: int = 2
    mixed_precision: str = "no"
    data_wait_target: float | None = 0.10

    @classmethod
    def quick(cls, **overrides: Any) -> SegBenchConfig:
        """64×64 crops, a 64×128 sliding-window image (3 windows), 1 timed step (about 20 s on 2 CPU
        threads); no data-wait target."""
        values = dict(
            crop_size=(64, 64), batch_size=2, steps=1, eval_images=1, eval_repeats=1, slide_size=(64, 128),
            slide_crop=(64, 64), slide_stride=(43, 43), data_wait_target=None,
        )  # fmt: skip
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        counts = ("batch_size", "steps", "warmup", "repeats", "eval_images", "eval_repeats", "threads")
        for name in (*counts, "memory_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} is {value!r}, expected a positive integer; give one ≥ 1")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(
                f"num_workers is {self.num_workers!r}, expected an integer ≥ 0 (0: load in the main "
                "process); give one"
            )
        if len(self.crop_size) != 2 or not 64 <= min(self.crop_size) <= max(self.crop_size) <= 4096:
            raise ValueError(
                f"crop_size is {tuple(self.crop_size)}, expected (height, width) from 64 to 4096 each (the "
                "generated images are that size); give one in that range"
            )
        for name in ("slide_size", "slide_crop", "slide_stride"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) < 32:
                raise ValueError(
                    f"{name} is {tuple(size)}, expected (height, width) of at least 32 each; "
                    "give a larger one"
                )
        if any(s > c for s, c in zip(self.slide_stride, self.slide_crop, strict=True)):
            raise ValueError(
                f"slide_stride {tuple(self.slide_stride)} is larger than slide_crop "
                f"{tuple(self.slide_crop)}, expected stride ≤ crop (no pixel without a window); "
                "give a smaller stride"
            )
        TrainBenchConfig(mixed_precision=self.mixed_precision)  # the same mixed-precision checks


@dataclass
class SegEvalRow:
    """Whole-image evaluation (``evaluate_seg_model``) of generated images; the median of the repeats."""

    model: str
    input: str  # "513×513" (H×W)
    images: int  # per repeat
    repeats: int
    images_per_s: float
    images_per_s_runs: list[float]
    ms_per_image: float
    device: str
    layout_dtype: str


@dataclass
class SegMemoryRow:
    """One prediction of an ``image`` (H×W) input in a fresh process: peak RSS over the RSS before it."""

    model: str
    image: str  # "1024×2048"
    mode: str  # "slide 513×513, stride 342×342" or "whole"
    windows: int  # forwards of the model (1 for whole)
    classes: int
    peak_rss_growth_mib: float
    rss_before_mib: float  # the process with the model built and the image made
    seconds: float
    logits_floor_mib: float  # one [1, K, H, W] float32 buffer: K·H·W·4 bytes
    cuda_peak_growth_mib: float | None  # max_memory_allocated over allocated before (GPU runs)


@dataclass
class SegBenchReport:
    machine: str
    settings: dict
    train: list[TrainRow]
    eval: list[SegEvalRow]
    memory: list[SegMemoryRow]

    def to_dict(self) -> dict:
        rows = [{"kind": "train", **dataclasses.asdict(r)} for r in self.train]
        rows += [{"kind": "eval", **dataclasses.asdict(r)} for r in self.eval]
        rows += [{"kind": "memory", **dataclasses.asdict(r)} for r in self.memory]
        return {"machine": self.machine, "settings": self.settings, "rows": rows}


def make_seg_bench_data(folder: str | Path, cfg: SegBenchConfig) -> Path:
    """Training images for ``warmup + steps`` batches and ``eval_images`` validation images, all of
    ``cfg.crop_size`` (the crop is then taken after the recipe's 0.5-2.0 rescale)."""
    height, width = cfg.crop_size
    return make_seg_dataset(
        Path(folder) / "seg_data",
        num_train=(cfg.warmup + cfg.steps) * cfg.batch_size,
        num_val=cfg.eval_images,
        image_size=(width, height),
        seed=0,
    )


def seg_train_config(data_dir: Path, output_dir: Path, cfg: SegBenchConfig) -> TrainConfig:
    """The run ``psa-zoo train-seg`` would make: the voc recipe with ``cfg.crop_size`` crops, batch norm in
    training mode, no checkpoints, one validation image after the loop (not timed)."""
    return TrainConfig(
        model=cfg.model,
        data=str(data_dir),
        output_dir=str(output_dir),
        task="seg",
        recipe=SEG_RECIPE,
        batch_size=cfg.batch_size,
        max_train_steps=cfg.warmup + cfg.steps,
        num_workers=cfg.num_workers,
        report_to="none",
        freeze_bn="off",
        crop_size=list(cfg.crop_size),
        max_val_images=1,
        mixed_precision=cfg.mixed_precision,
        seed=0,
    ).resolve()


def bench_seg_training(data_dir: Path, run_dir: Path, cfg: SegBenchConfig) -> TrainRow:
    """``cfg.repeats`` engine runs; the row of the median one, judged against ``cfg.data_wait_target`` when
    training with 2 workers."""
    timings = []
    for repeat in range(cfg.repeats):
        out = run_dir / f"seg-run{repeat}"
        config = seg_train_config(data_dir, out, cfg)
        timings.append(_engine_run(SegTask(config), config, out, cfg.warmup))
    height, width = cfg.crop_size
    row = _train_row(cfg.model, cfg.model, None, f"{height}×{width}", timings, cfg)
    if cfg.data_wait_target is not None and cfg.num_workers == TARGET_WORKERS:
        _judge(row, cfg.data_wait_target)
    return row


def _autocast(device: torch.device, mixed_precision: str):
    if mixed_precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if mixed_precision == "bf16" else torch.float16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_seg_evaluation(data_dir: Path, run_dir: Path, cfg: SegBenchConfig) -> SegEvalRow:
    """Images/s of ``evaluate_seg_model`` (whole image, one scale, no flip) on the validation images with a
    freshly built model of the dataset's classes (the speed does not depend on the weights)."""
    config = seg_train_config(data_dir, run_dir / "seg-eval", cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = SegTask(config).build_model().to(device).eval()
    dataset = load_seg_split(data_dir, "val")
    rates = []
    with _autocast(device, cfg.mixed_precision):
        evaluate_seg_model(model, dataset, max_images=1)  # first allocations and kernel choice, untimed
        for _ in range(cfg.eval_repeats):
            _sync(device)
            start = time.perf_counter()
            evaluate_seg_model(model, dataset, max_images=cfg.eval_images)
            _sync(device)
            rates.append(cfg.eval_images / (time.perf_counter() - start))
    rate = statistics.median(rates)
    height, width = cfg.crop_size
    device_name, layout = _device_and_dtype(cfg)
    return SegEvalRow(
        cfg.model, f"{height}×{width}", cfg.eval_images, cfg.eval_repeats, rate, rates, 1e3 / rate,
        device_name, layout,
    )  # fmt: skip


def _status_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, from Linux ``/proc/self/status``."""
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
    return kib / 1024


def _reset_peak_rss() -> bool:
    """Reset the peak RSS (``VmHWM``) to the RSS now (Linux ≥ 4.0: ``echo 5 > /proc/self/clear_refs``), so
    that the building of the model, whose transient peak can exceed a small prediction's, is not counted."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def memory_probe(
    model: str,
    classes: int,
    image_size: list[int],
    mode: str,
    crop_size: list[int],
    stride: list[int],
    threads: int,
    mixed_precision: str,
) -> dict[str, float | None]:
    """Run in a fresh process (:func:`bench_seg_memory`): build the model, make a [1, 3, H, W] image, then
    one :func:`~psa_zoo.seg.inference.predict_probabilities` (``crop_size`` / ``stride``: ``"slide"`` only);
    the peak RSS during it (``VmHWM`` after a reset) over the RSS just before it, and on a GPU the CUDA
    peak over the memory allocated before it."""
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = create_model(model, num_classes=classes).to(device).eval()
    image = torch.randn(1, 3, *image_size, generator=torch.Generator().manual_seed(0)).to(device)
    gc.collect()
    reset = _reset_peak_rss()
    before = _status_mib("VmRSS")
    cuda_before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    slide = {"crop_size": tuple(crop_size), "stride": tuple(stride)} if mode == "slide" else {}
    start = time.perf_counter()
    with _autocast(device, mixed_precision):
        probabilities = predict_probabilities(net, image, mode=mode, **slide)
    _sync(device)
    seconds = time.perf_counter() - start
    # without the reset, ru_maxrss (KiB on Linux): the process's peak so far, an upper bound
    peak = _status_mib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if tuple(probabilities.shape) != (1, classes, *image_size):
        raise RuntimeError(f"predict_probabilities gave {tuple(probabilities.shape)} for {image_size}")
    cuda = (torch.cuda.max_memory_allocated() - cuda_before) / _MIB if device.type == "cuda" else None
    return {"rss_before_mib": before, "peak_rss_growth_mib": peak - before, "seconds": seconds, "cuda": cuda}


_PROBE = (
    "import json, sys\n"
    "from psa_zoo.bench.train import memory_probe\n"
    "print('PROBE ' + json.dumps(memory_probe(**json.loads(sys.argv[1]))))\n"
)


def _in_fresh_process(args: dict[str, Any]) -> dict[str, Any]:
    """:func:`memory_probe` ``(**args)`` in a new Python process of this interpreter and package."""
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding psa_zoo/
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the {args['mode']} memory probe failed (exit code {done.returncode}): {tail}")
    return json.loads(lines[-1].removeprefix("PROBE "))


def bench_seg_memory(cfg: SegBenchConfig) -> list[SegMemoryRow]:
    """Sliding-window and whole-image prediction of one ``cfg.slide_size`` image, each in its own fresh
    Python process so that its peak RSS is its own (torch's allocations are invisible to tracemalloc)."""
    height, width = cfg.slide_size
    floor = cfg.memory_classes * height * width * 4 / _MIB
    windows = len(sliding_windows(height, width, cfg.slide_crop, cfg.slide_stride))
    crop, stride = "×".join(map(str, cfg.slide_crop)), "×".join(map(str, cfg.slide_stride))
    rows = []
    for mode, label, count in (("slide", f"slide {crop}, stride {stride}", windows), ("whole", "whole", 1)):
        args = dict(
            model=cfg.model, classes=cfg.memory_classes, image_size=[height, width], mode=mode,
            crop_size=list(cfg.slide_crop), stride=list(cfg.slide_stride), threads=cfg.threads,
            mixed_precision=cfg.mixed_precision,
        )  # fmt: skip
        result = _in_fresh_process(args)
        row = SegMemoryRow(
            cfg.model, f"{height}×{width}", label, count, cfg.memory_classes, result["peak_rss_growth_mib"],
            result["rss_before_mib"], result["seconds"], floor, result["cuda"],
        )  # fmt: skip
        rows.append(row)
    return rows


def run_seg_benchmark(cfg: SegBenchConfig | None = None) -> SegBenchReport:
    """Generate the data, train, evaluate, then the two memory probes; ``cfg.threads`` torch threads."""
    cfg = cfg or SegBenchConfig()
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        machine = machine_description()
        with tempfile.TemporaryDirectory(prefix="psa_zoo_bench_train_seg_") as tmp:
            data_dir = make_seg_bench_data(tmp, cfg)
            train = bench_seg_training(data_dir, Path(tmp) / "runs", cfg)
            evaluation = bench_seg_evaluation(data_dir, Path(tmp) / "runs", cfg)
        memory = bench_seg_memory(cfg)
    finally:
        torch.set_num_threads(previous)
    settings = {"task": "seg", "recipe": SEG_RECIPE, **dataclasses.asdict(cfg)}
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    return SegBenchReport(machine, settings, [train], [evaluation], memory)


# --- output ----------------------------------------------------------------------------------------------


def to_markdown(report: TrainBenchReport | SegBenchReport) -> str:
    """The training table, then the loader table (pose) or the evaluation and memory tables (seg)."""
    lines = _train_table(report.train)
    if isinstance(report, SegBenchReport):
        return "\n".join([*lines, "", *_seg_tables(report)]) + "\n"
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


def _train_table(train: list[TrainRow]) -> list[str]:
    lines = [
        "| model | input | batch | workers | steps timed | images/s | ms/step | data-wait share | device "
        "| layout/dtype | target | met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in train:
        met = "" if r.passed is None else ("yes" if r.passed else "**no**")
        lines.append(
            f"| {r.model} | {r.input} | {r.batch} | {r.workers} | {r.steps} | {r.images_per_s:.2f} | "
            f"{r.ms_per_step:,.0f} | {r.data_wait_share:.2%} | {r.device} | {r.layout_dtype} | {r.target} "
            f"| {met} |"
        )
    return lines


def _seg_tables(report: SegBenchReport) -> list[str]:
    lines = [
        "| evaluation (whole image) | input | images | repeats | images/s | ms/image | device "
        "| layout/dtype |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in report.eval:
        lines.append(
            f"| {r.model} | {r.input} | {r.images} | {r.repeats} | {r.images_per_s:.2f} | "
            f"{r.ms_per_image:,.0f} | {r.device} | {r.layout_dtype} |"
        )
    lines += [
        "",
        "| inference memory | image | mode | windows | classes | peak RSS growth MiB | seconds "
        "| logits buffer MiB (K·H·W·4) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report.memory:
        lines.append(
            f"| {r.model} | {r.image} | {r.mode} | {r.windows} | {r.classes} | "
            f"{r.peak_rss_growth_mib:,.1f} | {r.seconds:.2f} | {r.logits_floor_mib:,.1f} |"
        )
    return lines
