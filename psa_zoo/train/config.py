"""One training configuration for every task: flags in the vocabulary of timm's ``train.py`` and the HF
``no_trainer`` examples, a recipe preset underneath, a YAML/JSON ``--config`` file above it, and the
command line on top (command line > config file > recipe > defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..models._runtime import MEMORY_FORMATS
from .recipes import RECIPES, default_recipe

__all__ = [
    "ConfigError",
    "TrainConfig",
    "add_pose_arguments",
    "add_seg_arguments",
    "add_train_arguments",
    "config_from_args",
    "load_config_file",
]


class ConfigError(ValueError):
    """A training configuration that cannot run (unknown key, wrong type, impossible combination)."""


@dataclass
class TrainConfig:
    """Every setting of a training run (``psa-zoo train-pose --help`` documents each flag).

    Recipe-dependent fields are ``None`` until :meth:`resolve` fills them from the recipe.
    """

    model: str = ""
    data: str = ""
    output_dir: str = ""
    task: str = "pose"
    recipe: str | None = None
    pretrained: bool = False
    # schedule and optimiser
    batch_size: int | None = None  # per process, per micro-batch
    lr: float | None = None  # None: the recipe's lr scaled linearly to the total batch
    reference_batch: int | None = None  # total batch the recipe's lr was tuned for
    scale_lr: bool | None = None  # lr × total batch / reference_batch (default: when --lr is not given)
    epochs: int | None = None
    max_train_steps: int | None = None
    gradient_accumulation_steps: int = 1
    optimizer: str | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    lr_schedule: str | None = None  # multistep | poly | constant
    lr_milestones: list[float] | None = None  # epochs (multistep)
    lr_gamma: float | None = None
    poly_power: float | None = None
    warmup_steps: int | None = None
    max_grad_norm: float | None = None
    # run
    mixed_precision: str = "no"
    seed: int = 42
    num_workers: int = 2
    checkpointing_steps: int | None = None
    checkpoints_total_limit: int | None = 3
    resume_from_checkpoint: str | None = None
    overwrite: bool = False
    report_to: str = "none"
    log_every: int = 10
    eval_steps: int | None = None  # evaluate every N steps as well as at the end
    freeze_bn: str = "auto"  # auto | on | off ("auto": on below 8 samples per process)
    cpu: bool = False
    memory_format: str = "auto"  # auto | channels_last | contiguous (auto: channels_last on the CPU and CUDA)
    compile: bool = False  # the training forward and backward through torch.compile
    compile_backend: str = "inductor"  # torch.compile backend (e.g. "aot_eager": no C++ compiler needed)
    fold_batchnorm: bool = True  # evaluate with a BatchNorm-folded copy of the model (faster, same math)
    # input and data
    input_size: list[int] | None = None  # (height, width) of the network input
    val_data: str | None = None  # defaults to the val split of --data
    max_val_images: int | None = None
    # pose
    codec: str | None = None
    sigma: float | None = None
    flip_prob: float | None = None
    half_body_prob: float | None = None
    scale_factor: float | None = None
    rotation_factor: float | None = None
    flip_test: bool | None = None
    detections: str | None = None  # evaluate on a detection file instead of the ground-truth boxes
    use_joint_weights: bool | None = None
    # segmentation
    crop_size: list[int] | None = None  # (height, width) of the training crop
    scale_range: list[float] | None = None  # random scale (min, max)
    backbone_lr_mult: float | None = None  # backbone lr = lr × this (VainF's DeepLabV3+: 0.1)
    aux_weight: float | None = None  # HRNetV2-OCR auxiliary loss weight (0.4)
    eval_mode: str | None = None  # whole | slide | hierarchical (HRNetV2-OCR forward_multiscale)
    eval_scales: list[float] | None = None
    eval_crop_size: list[int] | None = None  # sliding-window size (height, width)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # create_model keyword arguments (config file)

    def resolve(self) -> TrainConfig:
        """Fill the unset recipe fields; check what can be checked before any work."""
        if not self.model:
            raise ConfigError("no --model given; e.g. --model hrnet_w32_psa_p")
        if not self.output_dir:
            raise ConfigError("no --output-dir given; training writes checkpoints and the final model there")
        recipe_name = self.recipe or default_recipe(self.task, self.model)
        if recipe_name not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe_name!r}; known recipes: {sorted(RECIPES)}")
        recipe = RECIPES[recipe_name]
        if recipe["task"] != self.task:
            raise ConfigError(f"recipe {recipe_name!r} is for {recipe['task']}, not {self.task}")
        values = dataclasses.asdict(self)
        if self.scale_lr is None:
            self.scale_lr = self.lr is None
        for key, value in recipe.items():
            if key in values and values[key] is None:
                setattr(self, key, value)
        self.recipe = recipe_name
        self._check()
        return self

    def _check(self) -> None:
        positive = (
            "batch_size",
            "gradient_accumulation_steps",
            "epochs",
            "max_train_steps",
            "checkpointing_steps",
            "checkpoints_total_limit",
            "log_every",
            "eval_steps",
        )
        for name in positive:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.epochs is None and self.max_train_steps is None:
            raise ConfigError("give --epochs or --max-train-steps")
        choices = {
            "mixed_precision": ("no", "bf16", "fp16"),
            "report_to": ("none", "tensorboard"),
            "freeze_bn": ("auto", "on", "off"),
            "optimizer": ("adam", "adamw", "sgd"),
            "lr_schedule": ("multistep", "poly", "constant"),
            "eval_mode": (None, "whole", "slide", "hierarchical"),
            "memory_format": MEMORY_FORMATS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        self._check_numbers()
        if not isinstance(self.compile, bool):
            raise ConfigError(f"--compile is a switch (true or false in a config file), got {self.compile!r}")
        if not isinstance(self.fold_batchnorm, bool):
            raise ConfigError(
                "fold_batchnorm is a switch (true or false in a config file; --no-fold-batchnorm on the "
                f"command line), got {self.fold_batchnorm!r}"
            )
        if not isinstance(self.compile_backend, str) or not self.compile_backend:
            raise ConfigError(
                "--compile-backend must name a torch.compile backend (e.g. inductor), got "
                f"{self.compile_backend!r}"
            )
        for name in ("crop_size", "eval_crop_size"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or not all(isinstance(v, int) and v >= 8 for v in size)):
                raise ConfigError(f"--{name.replace('_', '-')} takes HEIGHT WIDTH (ints ≥ 8), got {size}")
        scales = self.scale_range
        if scales is not None and (len(scales) != 2 or not 0 < scales[0] <= scales[1]):
            raise ConfigError(f"--scale-range takes MIN MAX with 0 < MIN ≤ MAX, got {scales}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 8):
            raise ConfigError(f"--input-size takes HEIGHT WIDTH (each ≥ 8), got {self.input_size}")

    def _check_numbers(self) -> None:
        for name in ("lr", "weight_decay", "momentum", "lr_gamma", "poly_power", "sigma", "max_grad_norm",
                     "scale_factor", "rotation_factor", "flip_prob", "half_body_prob"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a number, got {value!r}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        for name in ("flip_prob", "half_body_prob"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} is a probability in [0, 1], got {value}")
        for name in ("seed", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer ≥ 0, got {value!r}")

    def scaled_lr(self, num_processes: int) -> float:
        """``--lr`` when given, else the recipe's lr × total batch / the recipe's reference batch."""
        if not self.scale_lr or not self.reference_batch:
            return self.lr
        total = self.batch_size * self.gradient_accumulation_steps * num_processes
        return self.lr * total / self.reference_batch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A ``--config`` file (YAML or JSON): an object whose keys are flag names (``-`` or ``_``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        data = (
            yaml.safe_load(path.read_text())
            if path.suffix in (".yaml", ".yml")
            else json.loads(path.read_text())
        )
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ConfigError(f"--config {path}: not valid {path.suffix[1:].upper()} ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config {path}: expected a mapping of flag names to values, got {type(data).__name__}"
        )
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS:
            raise ConfigError(f"--config {path}: unknown key {key!r}; keys are the flag names of --help")
        out[name] = _number_from_text(name, value, path)
    return out


def _number_from_text(name: str, value: Any, path: Path) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: numbers of float fields are read from text here."""
    if isinstance(value, str) and "float" in str(_FIELDS[name].type):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"--config {path}: {name} must be a number, got {value!r}") from None
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags shared by ``train-pose`` and ``train-seg`` (defaults ``None``: unset means "not given")."""
    add = parser.add_argument
    add("--model", help="registered model name (psa-zoo list) or a saved folder")
    add("--data", help="dataset folder (see the README for the layouts)")
    add("--output-dir", help="run folder: checkpoints/, logs/, model/ (the final save_pretrained folder)")
    add("--config", help="YAML or JSON file of flag values; the command line wins")
    add("--recipe", help=f"preset of schedule and augmentation ({', '.join(sorted(RECIPES))})")
    add("--pretrained", action="store_const", const=True, help="start from the model's published weights")
    add("--batch-size", type=int, help="samples per process per micro-batch")
    add("--lr", type=float, help="learning rate (default: the recipe's, scaled linearly to the total batch)")
    add("--epochs", type=int)
    add("--max-train-steps", type=int, help="optimiser steps (overrides --epochs)")
    add("--gradient-accumulation-steps", type=int)
    add("--optimizer", choices=("adam", "adamw", "sgd"))
    add("--weight-decay", type=float)
    add("--lr-schedule", choices=("multistep", "poly", "constant"))
    add("--warmup-steps", type=int)
    add("--max-grad-norm", type=float)
    add("--mixed-precision", choices=("no", "bf16", "fp16"))
    add("--seed", type=int)
    add("--num-workers", type=int, help="data-loader workers per process")
    add("--checkpointing-steps", type=int, help="save_state every N optimiser steps")
    add("--checkpoints-total-limit", type=int, help="keep the newest N checkpoints (default 3)")
    add("--resume-from-checkpoint", metavar="DIR|latest", help="continue a run exactly where it stopped")
    add("--overwrite", action="store_const", const=True, help="start over in a non-empty --output-dir")
    add("--report-to", choices=("none", "tensorboard"))
    add("--log-every", type=int, help="log the loss every N steps")
    add("--eval-steps", type=int, help="also evaluate every N steps")
    add(
        "--freeze-bn",
        choices=("auto", "on", "off"),
        help="batch norm in eval mode while training (auto: when fewer than 8 samples per process)",
    )
    add("--cpu", action="store_const", const=True, help="train on the CPU even when a GPU is there")
    add(
        "--memory-format",
        choices=MEMORY_FORMATS,
        help="layout of the model and the batches (auto: channels_last on the CPU and CUDA: faster there)",
    )
    add(
        "--compile",
        action="store_const",
        const=True,
        help="run the training forward and backward through torch.compile (compiles first; off by default)",
    )
    add("--compile-backend", help="torch.compile backend for --compile (default inductor)")
    add(
        "--no-fold-batchnorm",
        dest="fold_batchnorm",
        action="store_const",
        const=False,
        help="evaluate the model itself, not a copy with BatchNorm folded into the convolutions",
    )
    add("--input-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="network input size")
    add("--val-data", help="validation dataset (default: the val split of --data)")
    add("--max-val-images", type=int, help="evaluate on the first N validation images only (by image id)")


def add_pose_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``train-pose`` only."""
    add = parser.add_argument
    add("--codec", choices=("msra", "dark", "udp"), help="heatmap codec (udp also selects the UDP warp)")
    add("--sigma", type=float, help="target Gaussian σ in heatmap pixels (default: 2 at 64×48, scaled)")
    add("--flip-prob", type=float)
    add("--half-body-prob", type=float)
    add("--scale-factor", type=float)
    add("--rotation-factor", type=float)
    add(
        "--no-flip-test",
        dest="flip_test",
        action="store_const",
        const=False,
        help="evaluate without flip test",
    )
    add("--detections", help="evaluate on the boxes of this detection file instead of the ground-truth boxes")
    add("--use-joint-weights", action="store_const", const=True, help="weight the loss by the joint weights")


def add_seg_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``train-seg`` only."""
    add = parser.add_argument
    add("--crop-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="training crop (VOC: 513 513)")
    add("--scale-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="random scale (default 0.5 2.0)")
    add("--flip-prob", type=float)
    add("--backbone-lr-mult", type=float, help="backbone lr = lr × this (VOC recipe: 0.1)")
    add("--aux-weight", type=float, help="auxiliary loss weight of HRNetV2-OCR (0.4)")
    add(
        "--eval-mode",
        choices=("whole", "slide", "hierarchical"),
        help="whole image, sliding window, or HRNetV2-OCR's learned multi-scale combination (hierarchical)",
    )
    add("--eval-scales", type=float, nargs="+", help="evaluation scales (with --flip-test: + flip)")
    add("--eval-crop-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="sliding-window size")
    add("--flip-test", dest="flip_test", action="store_const", const=True, help="also evaluate flipped")


def config_from_args(args: argparse.Namespace, task: str) -> TrainConfig:
    """Defaults < recipe < ``--config`` file < flags given on the command line."""
    values: dict[str, Any] = {"task": task}
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    for name, value in vars(args).items():
        if name in _FIELDS and value is not None:
            values[name] = value
    values["task"] = task
    try:
        config = TrainConfig(**values)
    except TypeError as err:
        raise ConfigError(str(err)) from None
    return config.resolve()
