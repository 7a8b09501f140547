"""The training engine: one loop for every task, on accelerate.

A task (:class:`TrainTask`: pose in :mod:`psa_zoo.train.pose`) says how to build the model and the
datasets, how a batch becomes a loss, and how to evaluate; :class:`Trainer` does the rest the same way for
all of them:

* **processes and precision** through ``accelerate.Accelerator`` (``accelerate launch``, ``torchrun`` or plain
  ``python``; DDP with ``find_unused_parameters`` from the model; bf16 / fp16 autocast and gradient scaling);
* **the data order** from :class:`~psa_zoo.train.sampler.StepBatchSampler` (a function of seed, epoch and
  step; per-sample augmentation seeds), so two processes see what one process sees, and a resumed run
  sees what the uninterrupted one saw;
* **the loss of a step** is the sum over the step's micro-batches and processes divided by their total
  count (joints, valid pixels), not a mean of per-micro-batch means: gradients are accumulated from the
  sums divided by one constant shared by all processes, and scaled once by ``world_size · constant /
  total_count`` (DDP averages over processes);
* **speed** without changing the math: the model and the input batches in the memory format
  ``--memory-format`` resolves to (``auto``: channels_last for convolutional models on the CPU and CUDA,
  :mod:`psa_zoo.models._runtime`), and with ``--compile`` the training forward and backward through
  ``torch.compile`` (evaluation and saving use the eager module);
* **checkpoints** every ``--checkpointing-steps`` with ``save_state`` written atomically
  (:mod:`psa_zoo.train.checkpoint`), and **exact resume**: model, optimiser, scaler, schedule, RNG states,
  step and epoch come back, the loader restarts at the step, bit for bit on CPU;
* **logging** to a progress bar and, with ``--report-to tensorboard``, TensorBoard scalars (loss, lr,
  metrics); the final model is a ``save_pretrained`` folder with the data's metadata and a model card.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .._atomic import write_json_atomic
from .._cpu_memory import keep_cpu_memory_unless_disabled
from ..models._runtime import format_images, maybe_compile, memory_format_name, to_memory_format
from ..version import __version__
from .checkpoint import (
    CHECKPOINTS_DIR,
    CheckpointError,
    TrainState,
    drop_checkpoints_after,
    find_checkpoint,
    save_checkpoint,
)
from .config import ConfigError, TrainConfig
from .sampler import StepBatchSampler, steps_per_epoch

__all__ = ["TrainResult", "TrainTask", "Trainer"]

FINAL_MODEL_DIR = "model"
LOG_DIR = "logs"
RUN_CONFIG = "train_config.json"
METRICS_FILE = "metrics.json"


class TrainTask:
    """What a task gives the engine. Subclasses implement every method."""

    name = ""
    primary_metric = ""

    def build_model(self) -> nn.Module:
        """The model, its head and metadata matched to the training data."""
        raise NotImplementedError

    def train_dataset(self) -> Dataset:
        """Items for ``(index, sample_seed)`` keys (see :mod:`psa_zoo.train.sampler`)."""
        raise NotImplementedError

    def loss_sum_and_count(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of the per-element losses of a micro-batch and the count to divide the step's sum by."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, accelerator) -> dict[str, float]:
        """Metrics of ``model`` on the validation data, the same dict on every process."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module, lr: float) -> list[dict[str, Any]]:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]

    def model_card(self, model: nn.Module, metrics: dict[str, float], config: TrainConfig) -> str:
        raise NotImplementedError


def create_accelerator(cpu: bool = False, **kwargs):
    """``accelerate.Accelerator`` that also forms a process group on a machine without a GPU.

    Under ``torchrun`` (or ``accelerate launch``) on a CPU-only machine, accelerate 1.x starts each process
    alone (``DistributedType.NO``, world size 1: every process trains on everything) unless told to run
    on the CPU; with ``cpu=True`` it joins them with gloo (``MULTI_CPU``). So ``cpu`` is forced when CUDA
    is absent.

    accelerate keeps one ``AcceleratorState`` per process and refuses a second ``Accelerator`` with other
    settings (another ``mixed_precision``): a second run in the same Python session (a notebook, a test
    session) would fail. The state of an earlier run is therefore cleared first; the process group
    (``PartialState``) is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    accelerator = Accelerator(cpu=cpu or not torch.cuda.is_available(), **kwargs)
    if accelerator.gradient_accumulation_steps != 1:
        raise ConfigError(
            f"accelerate is set to accumulate {accelerator.gradient_accumulation_steps} steps (accelerate "
            "launch --gradient_accumulation_steps, an accelerate config file or "
            "ACCELERATE_GRADIENT_ACCUMULATION_STEPS): "
            "psa_zoo accumulates itself; drop that setting and pass --gradient-accumulation-steps to psa-zoo"
        )
    return accelerator


# Settings that do not change what is trained (where files go, how often to log, how many workers load
# the data, what is evaluated, where and in which compiled form the same math runs): a resumed run may
# change them; every other setting must be the run's. The memory format is the run's too: element-wise
# dropout draws its masks in memory order.
RESUMABLE_CHANGES = frozenset({
    "output_dir", "resume_from_checkpoint", "overwrite", "report_to", "log_every", "eval_steps",
    "checkpointing_steps", "checkpoints_total_limit", "num_workers", "val_data", "max_val_images",
    "detections", "flip_test", "cpu", "eval_mode", "eval_scales", "eval_crop_size", "compile",
    "compile_backend", "fold_batchnorm",
})  # fmt: skip


def run_setup(config: TrainConfig, global_batch: int, num_samples: int, total_steps: int) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes from it."""
    fixed = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}
    return {**fixed, "global_batch": global_batch, "num_samples": num_samples, "total_steps": total_steps}


class LossNotFiniteError(FloatingPointError, ValueError):
    """The loss became NaN or infinite (the run stops; its checkpoints stay)."""


class TrainResult(dict):
    """``{"output_dir", "model_dir", "steps", "metrics", "seconds", "main_process", "train_steps",
    "data_seconds", "compute_seconds"}``: ``data_seconds`` is the time the loop waited for batches (the
    loader starving the model), ``compute_seconds`` forward, backward and optimiser of the
    ``train_steps`` run here."""


def _check_output_dir(config: TrainConfig) -> None:
    out = Path(config.output_dir)
    if config.resume_from_checkpoint or not out.exists() or not any(out.iterdir()):
        return
    if not config.overwrite:
        raise ConfigError(
            f"--output-dir {out} is not empty (an earlier run?); continue it with --resume-from-checkpoint "
            "latest, start over with --overwrite, or choose another folder"
        )
    if not is_run_folder(out):
        raise ConfigError(
            f"--output-dir {out} is not a psa_zoo run folder (no {RUN_CONFIG} written by psa_zoo); "
            "--overwrite only replaces run folders: choose another folder"
        )


RUN_MARK = "psa_zoo_run"
RUN_ENTRIES = (
    CHECKPOINTS_DIR,
    LOG_DIR,
    FINAL_MODEL_DIR,
    METRICS_FILE,
    f".{METRICS_FILE}.tmp",
    f".{RUN_CONFIG}.tmp",
)


def is_run_folder(folder: Path) -> bool:
    try:
        return RUN_MARK in json.loads((folder / RUN_CONFIG).read_text())
    except (OSError, ValueError, TypeError):
        return False


def clear_run_folder(folder: Path) -> None:
    """Remove what a run wrote (and nothing else); the run record last, so a kill halfway leaves a folder
    that ``--overwrite`` still recognises."""
    for name in RUN_ENTRIES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (folder / RUN_CONFIG).unlink(missing_ok=True)


class Trainer:
    """Runs ``task`` with ``config``; :meth:`fit` returns a :class:`TrainResult`.

    :meth:`fit` treats its process as a training job's: it keeps freed CPU memory for later tensors
    (:func:`psa_zoo.keep_cpu_memory`, process-wide; ``PSA_ZOO_KEEP_CPU_MEMORY=0`` leaves glibc's defaults)."""

    def __init__(self, task: TrainTask, config: TrainConfig) -> None:
        self.task, self.config = task, config
        self._model: nn.Module | None = None
        self.memory_format = torch.contiguous_format  # resolved by fit()

    @property
    def model(self) -> nn.Module:
        """The model of the last :meth:`fit` as it ended (not wrapped by DDP), e.g. to compare with the
        saved folder."""
        if self._model is None:
            raise RuntimeError("Trainer.model is set by fit(); call fit() first")
        return self._model

    # --- set-up --------------------------------------------------------------------------------------
    def _accelerator(self):
        from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

        config = self.config
        if config.mixed_precision == "fp16" and (config.cpu or not torch.cuda.is_available()):
            raise ConfigError(
                "--mixed-precision fp16 needs a CUDA GPU (on the CPU autocast would silently not run); use "
                "bf16 or no"
            )
        if config.report_to == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "--report-to tensorboard needs the tensorboard package: pip install 'psa_zoo[train]'"
                ) from None
        find_unused = bool(getattr(self._model, "ddp_find_unused_parameters", False))
        return create_accelerator(
            cpu=config.cpu,
            mixed_precision=config.mixed_precision,
            log_with=None if config.report_to == "none" else config.report_to,
            project_config=ProjectConfiguration(
                project_dir=config.output_dir, logging_dir=str(Path(config.output_dir) / LOG_DIR)
            ),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused)],
        )

    def _optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        config = self.config
        groups = self.task.param_groups(model, lr)
        if config.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        return cls(groups, lr=lr, weight_decay=config.weight_decay)

    def _schedule(self, optimizer, steps_epoch: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, LrSchedule.from_config(self.config, steps_epoch, total_steps)
        )

    def _loader(self, dataset: Dataset, epoch: int, start_step: int, accelerator) -> DataLoader:
        config = self.config
        sampler = StepBatchSampler(
            len(dataset),
            config.batch_size,
            world_size=accelerator.num_processes,
            rank=accelerator.process_index,
            accumulation=config.gradient_accumulation_steps,
            epoch=epoch,
            seed=config.seed,
            start_step=start_step,
        )
        # The loader's own generator: creating an iterator must not draw from the global torch RNG (the
        # resumed run creates one mid-epoch, the uninterrupted run does not).
        generator = torch.Generator().manual_seed(config.seed + epoch)
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=config.num_workers,
            generator=generator,
            worker_init_fn=_worker_init,
            persistent_workers=False,
            pin_memory=accelerator.device.type == "cuda",
        )

    # --- the loop ------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        config = self.config
        started = time.perf_counter()
        keep_cpu_memory_unless_disabled()  # a training job owns its process: reuse freed memory (_cpu_memory)
        _check_output_dir(config)
        from accelerate.utils import set_seed

        set_seed(config.seed)  # before the model is built: its initial weights are part of the run
        self._model = model = self.task.build_model()
        accelerator = self._accelerator()
        self.memory_format = to_memory_format(model, config.memory_format, accelerator.device)
        dataset = self.task.train_dataset()
        world = accelerator.num_processes
        global_batch = config.batch_size * world * config.gradient_accumulation_steps
        steps_epoch = steps_per_epoch(len(dataset), global_batch)
        if steps_epoch == 0:
            raise ConfigError(
                f"the training set has {len(dataset)} samples, fewer than one step's total batch "
                f"({config.batch_size} × {world} processes × {config.gradient_accumulation_steps} "
                f"accumulation = {global_batch}); lower --batch-size"
            )
        total_steps = config.max_train_steps or config.epochs * steps_epoch
        lr = config.scaled_lr(world)
        optimizer = self._optimizer(model, lr)
        schedule = self._schedule(optimizer, steps_epoch, total_steps)
        model, optimizer = accelerator.prepare(model, optimizer)
        # compiled around the prepared (DDP) model, as torch.compile advises; accelerate keeps the prepared
        # one for checkpoints, and evaluation / saving unwrap it: only the training forward is compiled
        forward = maybe_compile(model, config.compile, backend=config.compile_backend)
        state = TrainState(setup=run_setup(config, global_batch, len(dataset), total_steps))
        accelerator.register_for_checkpointing(schedule, state)
        self._resume(accelerator, state)
        self._write_run_config(accelerator, lr, world)
        if accelerator.is_main_process and config.report_to != "none":
            accelerator.init_trackers(
                "psa_zoo",
                config={k: v for k, v in config.to_dict().items() if isinstance(v, int | float | str | bool)},
            )
        timing = self._train_steps(
            accelerator, model, forward, optimizer, schedule, dataset, state, steps_epoch, total_steps
        )
        metrics = self._evaluate(accelerator, model, state)
        model_dir = self._save_final(accelerator, model, metrics, state)
        accelerator.end_training()
        return TrainResult(
            output_dir=config.output_dir,
            model_dir=str(model_dir),
            steps=state.step,
            metrics=metrics,
            seconds=time.perf_counter() - started,
            main_process=accelerator.is_main_process,
            **timing,
        )

    def _resume(self, accelerator, state: TrainState) -> None:
        which = self.config.resume_from_checkpoint
        if not which:
            return
        checkpoint = find_checkpoint(self.config.output_dir, which)
        expected = dict(state.setup)
        accelerator.load_state(str(checkpoint))
        if state.setup != expected:
            diff = {k: (state.setup.get(k), v) for k, v in expected.items() if state.setup.get(k) != v}
            raise CheckpointError(
                f"{checkpoint} was written with other settings {{name: (checkpoint, now)}} = {diff}; an "
                "exact resume needs the settings of the run: give those, or start a new --output-dir"
            )
        if accelerator.is_main_process:
            drop_checkpoints_after(self.config.output_dir, state.step)
        accelerator.print(f"resumed from {checkpoint} at step {state.step} (epoch {state.epoch})")

    def _micro_batches(self, accelerator, dataset, state: TrainState) -> Iterator[tuple[int, list[dict]]]:
        """(epoch, the micro-batches of one optimiser step) from the resume point on, forever."""
        accumulation = self.config.gradient_accumulation_steps
        epoch, start = state.epoch, state.step_in_epoch
        while True:
            group: list[dict] = []
            for batch in _unwrapped_worker_errors(self._loader(dataset, epoch, start, accelerator)):
                group.append(batch)
                if len(group) == accumulation:
                    yield epoch, group
                    group = []
            epoch, start = epoch + 1, 0

    def _train_steps(
        self, accelerator, model, forward, optimizer, schedule, dataset, state, steps_epoch, total_steps
    ):
        """The optimiser steps; ``forward`` is what the training loss calls: ``model`` (the prepared model)
        or its compiled form."""
        self._set_train_mode(model)
        bar = tqdm(total=total_steps, initial=state.step, desc=f"train {self.task.name}", unit="step",
                   disable=not accelerator.is_local_main_process, dynamic_ncols=True)  # fmt: skip
        batches = self._micro_batches(accelerator, dataset, state)
        timing = {"train_steps": 0, "data_seconds": 0.0, "compute_seconds": 0.0}
        try:
            while state.step < total_steps:
                tick = time.perf_counter()
                epoch, group = next(batches)
                tock = time.perf_counter()
                loss = self._step(accelerator, model, forward, optimizer, group)
                timing["data_seconds"] += tock - tick
                timing["compute_seconds"] += time.perf_counter() - tock
                timing["train_steps"] += 1
                if not math.isfinite(loss):
                    raise LossNotFiniteError(
                        f"the training loss is {loss} at step {state.step + 1}; lower --lr (now "
                        f"{optimizer.param_groups[-1]['lr']:.3g}) or set --max-grad-norm; the checkpoints "
                        "written so far are kept"
                    )
                schedule.step()
                state.step += 1
                state.step_in_epoch += 1
                if state.step_in_epoch == steps_epoch:
                    state.epoch, state.step_in_epoch = epoch + 1, 0
                bar.update(1)
                self._after_step(accelerator, model, optimizer, state, loss, epoch, total_steps, bar)
        finally:
            bar.close()
        return timing

    def _after_step(self, accelerator, model, optimizer, state, loss, epoch, total_steps, bar) -> None:
        """Logging, evaluation and checkpoint of the step just done."""
        config = self.config
        if state.step % config.log_every == 0 or state.step == total_steps:
            lr_now = optimizer.param_groups[-1]["lr"]
            bar.set_postfix(loss=f"{loss:.3g}", lr=f"{lr_now:.2g}", epoch=epoch)
            accelerator.log({"train/loss": loss, "train/lr": lr_now, "train/epoch": epoch}, step=state.step)
        if config.eval_steps and state.step % config.eval_steps == 0 and state.step < total_steps:
            self._evaluate(accelerator, model, state)
            self._set_train_mode(model)
        if config.checkpointing_steps and state.step % config.checkpointing_steps == 0:
            save_checkpoint(accelerator, config.output_dir, state, keep=config.checkpoints_total_limit)

    def _step(self, accelerator, model, forward, optimizer, group: list[dict]) -> float:
        """One optimiser step over the micro-batches of this process; returns the step's mean loss.
        ``forward`` is what the loss calls (``model`` or its compiled form)."""
        total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # loss sum, count
        unit = None  # backward runs on loss_sum / unit (a per-step constant) to keep fp16 gradients in range
        for i, batch in enumerate(group):
            batch = _to_device(batch, accelerator.device, self.memory_format)
            sync = i == len(group) - 1
            context = (
                accelerator.no_sync(model)
                if not sync and accelerator.num_processes > 1
                else contextlib.nullcontext()
            )
            with context, accelerator.autocast():
                loss_sum, count = self.task.loss_sum_and_count(forward, batch)
            if unit is None:
                unit = self._common_unit(accelerator, count)
            accelerator.backward(loss_sum / unit)
            total += torch.stack([loss_sum.detach().double(), count.detach().double()])
        total = accelerator.reduce(total, reduction="sum")
        count = total[1].clamp_min(1.0)
        # gradients hold (this process's loss sum / unit) averaged by DDP over processes: × world · unit /
        # count makes them the gradient of the step's mean loss.
        scale = accelerator.num_processes * unit / count.item()
        for param in model.parameters():
            if param.grad is not None:
                param.grad.mul_(scale)
        if self.config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), self.config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return (total[0] / count).item()

    @staticmethod
    def _common_unit(accelerator, count: torch.Tensor) -> float:
        """The divisor of every process's backward in this step: the mean over processes of their first
        micro-batch's count. It must be one number for all processes, since DDP averages the gradients
        before the step's total count is known; counts differ between processes (ignored pixels, invisible
        joints)."""
        count = count.detach().double().reshape(1)
        if accelerator.num_processes > 1:
            count = accelerator.reduce(count, reduction="mean")
        return max(count.item(), 1.0)

    def _set_train_mode(self, model: nn.Module) -> None:
        model.train()
        freeze = self.config.freeze_bn
        if freeze == "on" or (freeze == "auto" and self.config.batch_size < 8):
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _evaluate(self, accelerator, model, state: TrainState) -> dict[str, float]:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        with torch.no_grad():
            metrics = self.task.evaluate(unwrapped, accelerator)
        state.metrics = dict(metrics)
        accelerator.log(
            {f"val/{k}": v for k, v in metrics.items() if isinstance(v, int | float)}, step=state.step
        )
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, int | float))
        accelerator.print(f"step {state.step}: {shown}")
        return metrics

    def _write_run_config(self, accelerator, lr: float, world: int) -> None:
        if not accelerator.is_main_process:
            return
        out = Path(self.config.output_dir)
        if self.config.overwrite and not self.config.resume_from_checkpoint and is_run_folder(out):
            clear_run_folder(out)
        out.mkdir(parents=True, exist_ok=True)
        record = {RUN_MARK: __version__, **self.config.to_dict(), "effective_lr": lr, "num_processes": world,
                  "effective_memory_format": memory_format_name(self.memory_format)}  # fmt: skip
        write_json_atomic(out / RUN_CONFIG, record)

    def _save_final(self, accelerator, model, metrics, state: TrainState) -> Path:
        out = Path(self.config.output_dir)
        model_dir = out / FINAL_MODEL_DIR
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            card = self.task.model_card(unwrapped, metrics, self.config)
            unwrapped.save_pretrained(model_dir, model_card=card, overwrite=model_dir.exists())
            write_json_atomic(out / METRICS_FILE, {"step": state.step, **metrics})
        accelerator.wait_for_everyone()
        return model_dir


class LrSchedule:
    """Learning-rate factor per optimiser step: linear warm-up, then multistep (milestones in epochs),
    poly ``(1 − t/T)^p`` or constant. A plain object so ``LambdaLR`` checkpoints it."""

    def __init__(self, kind: str, milestones: list[int], gamma: float, power: float, warmup: int, total: int):
        self.kind, self.milestones, self.gamma = kind, sorted(milestones), gamma
        self.power, self.warmup, self.total = power, warmup, total

    @classmethod
    def from_config(cls, config: TrainConfig, steps_epoch: int, total_steps: int) -> LrSchedule:
        milestones = [round(m * steps_epoch) for m in (config.lr_milestones or [])]
        return cls(
            config.lr_schedule,
            milestones,
            config.lr_gamma,
            config.poly_power,
            config.warmup_steps or 0,
            total_steps,
        )

    def __call__(self, step: int) -> float:
        factor = 1.0
        if self.kind == "multistep":
            factor = self.gamma ** sum(step >= m for m in self.milestones)
        elif self.kind == "poly":
            factor = max(1.0 - step / max(self.total, 1), 0.0) ** self.power
        if step < self.warmup:
            factor *= (step + 1) / self.warmup
        return factor


def _unwrapped_worker_errors(loader: DataLoader) -> Iterator[dict]:
    """The loader's batches; an error raised in a worker comes out as the error the dataset raised (a
    DataLoader re-raises it with the worker's whole traceback as its message)."""
    try:
        yield from loader
    except Exception as error:
        text = str(error)
        if "Original Traceback" not in text:
            raise
        last = text.strip().splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
        try:
            clean = type(error)(message)
        except Exception:
            raise error from None
        raise clean from None


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(0)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass


def _to_device(
    batch: dict[str, Any], device: torch.device, memory_format: torch.memory_format | None = None
) -> dict[str, Any]:
    """The batch's tensors on ``device``; with ``memory_format``, the 4-D ones (images, heatmap targets) in
    it (the model's layout: its first convolution then reads the images without converting them)."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if memory_format is not None:
                value = format_images(value, memory_format)
        out[key] = value
    return out
