"""Semantic-segmentation training: Pascal VOC aug, Cityscapes or one's own folder, on the shared engine.

The dataset's :class:`~psa_zoo.metadata.ClassSet` (names, palette, ignore index) becomes the model's: a
head of another size is replaced (``reset_classifier(K, labels=...)``), so the saved model predicts and
draws with the dataset's classes. The loss is the cross-entropy over the valid pixels of the whole step
(``cross_entropy_sum_and_count``), plus ``aux_weight`` × that of the auxiliary logits of HRNetV2-OCR.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.images import normalize_images
from ..data.segmentation import SegmentationDataset, load_cityscapes, load_folder, load_voc
from ..losses import cross_entropy_sum_and_count
from ..models import PsaModel
from ..seg.dataset import SegmentationSamples
from ..seg.evaluate import evaluate_seg_model
from ..seg.inference import hierarchical_problem
from ..seg.transforms import SegTrainTransform
from ..version import __version__
from .config import ConfigError, TrainConfig
from .engine import Trainer, TrainResult, TrainTask
from .models import model_for_labels

__all__ = ["SegTask", "detect_layout", "load_seg_split", "train_seg"]

_SPLITS = {"voc": ("train_aug", "val"), "cityscapes": ("train", "val"), "folder": ("train", "val")}


def detect_layout(folder: str | Path) -> str:
    """``"folder"`` (own data: ``classes.json``), ``"voc"`` (``JPEGImages``) or ``"cityscapes"``
    (``leftImg8bit``)."""
    root = Path(folder)
    if (root / "classes.json").is_file():
        return "folder"
    if (root / "JPEGImages").is_dir() or (root / "VOC2012" / "JPEGImages").is_dir():
        return "voc"
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    raise ConfigError(
        f"--data {folder}: not a dataset layout psa_zoo knows (looked for classes.json: own data; "
        "JPEGImages/: VOC 2012; leftImg8bit/: Cityscapes); see docs/segmentation.md for the layouts"
    )


def load_seg_split(folder: str | Path, split: str) -> SegmentationDataset:
    """``split`` = ``"train"`` or ``"val"`` of any known layout (VOC's train is ``train_aug``)."""
    layout = detect_layout(folder)
    name = _SPLITS[layout][0 if split == "train" else 1]
    loader = {"voc": load_voc, "cityscapes": load_cityscapes, "folder": load_folder}[layout]
    return loader(folder, name)


def has_val_split(folder: str | Path) -> bool:
    """Whether the dataset at ``folder`` has validation data at all (its files are checked on loading)."""
    root = Path(folder)
    layout = detect_layout(root)
    if layout == "folder":
        return (root / "images" / "val").is_dir()
    if layout == "cityscapes":
        return (root / "leftImg8bit" / "val").is_dir()
    voc = root / "VOC2012" if (root / "VOC2012").is_dir() else root
    return (voc / "ImageSets" / "Segmentation" / "val.txt").is_file()


def _check_eval_mode(config: TrainConfig, model: nn.Module) -> None:
    """``--eval-mode hierarchical`` is checked when the model is built, not at the evaluation after the
    training (which would lose the trained model)."""
    if config.eval_mode != "hierarchical":
        return
    problem = hierarchical_problem(model, config.eval_scales or [])
    if problem:
        raise ConfigError(f"--eval-mode hierarchical {problem}")


class SegTask(TrainTask):
    name = "seg"
    primary_metric = "mIoU"

    def __init__(self, config: TrainConfig) -> None:
        if not config.data:
            raise ConfigError("no --data given; e.g. --data VOCdevkit/VOC2012, cityscapes/ or an own folder")
        self.config = config
        self.train_data = load_seg_split(config.data, "train")
        self.class_set = self.train_data.class_set
        val_folder = config.val_data or config.data
        if config.val_data or config.eval_steps or has_val_split(val_folder):
            self.val_data = load_seg_split(val_folder, "val")  # named or needed: its errors are errors
        else:
            self.val_data = None
            warnings.warn(f"{config.data} has no val split: the run is not evaluated", stacklevel=2)
        if self.val_data is not None and self.val_data.class_set.class_names != self.class_set.class_names:
            raise ConfigError(
                "the val split's classes differ from the train split's; give two splits of one dataset"
            )

    def build_model(self) -> PsaModel:
        config = self.config
        model, metadata = model_for_labels(config, "segmentation", self.class_set)
        _check_eval_mode(config, model)
        height, width = config.input_size or config.crop_size or metadata.input_size[1:]
        extra = {**metadata.extra, "dataset": str(config.data)}
        model.set_metadata(metadata.replace(input_size=(metadata.input_size[0], height, width), extra=extra))
        self.model_metadata = model.metadata
        return model

    def param_groups(self, model: nn.Module, lr: float) -> list[dict[str, Any]]:
        """The backbone at ``backbone_lr_mult`` × lr (VainF's DeepLabV3+ recipe: 0.1), the rest at lr."""
        mult = self.config.backbone_lr_mult or 1.0
        backbone = getattr(model, "backbone", None)
        if backbone is None or mult == 1.0:
            return super().param_groups(model, lr)
        inside = {id(p) for p in backbone.parameters()}
        trainable = [p for p in model.parameters() if p.requires_grad]
        return [
            {"params": [p for p in trainable if id(p) in inside], "lr": lr * mult},
            {"params": [p for p in trainable if id(p) not in inside], "lr": lr},
        ]

    def train_dataset(self) -> SegmentationSamples:
        config = self.config
        transform = SegTrainTransform(
            crop_size=tuple(config.crop_size or self.model_metadata.input_size[1:]),
            scale_range=tuple(config.scale_range),
            flip_prob=config.flip_prob,
            ignore_index=self.class_set.ignore_index,
        )
        return SegmentationSamples(self.train_data, transform, self.model_metadata.channel_order)

    def loss_sum_and_count(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = normalize_images(batch["image"], self.model_metadata)
        output = model(inputs, return_dict=True)
        ignore = self.class_set.ignore_index
        total, count = cross_entropy_sum_and_count(output.logits.float(), batch["mask"], ignore)
        if output.aux_logits is not None and self.config.aux_weight:
            aux, _ = cross_entropy_sum_and_count(output.aux_logits.float(), batch["mask"], ignore)
            total = total + self.config.aux_weight * aux
        return total, count

    def evaluate(self, model: nn.Module, accelerator) -> dict[str, float]:
        if self.val_data is None:
            return {}
        config = self.config
        metrics = evaluate_seg_model(
            model,
            self.val_data,
            accelerator=accelerator,
            mode=config.eval_mode,
            scales=tuple(config.eval_scales),
            flip=bool(config.flip_test),
            crop_size=tuple(config.eval_crop_size) if config.eval_crop_size else None,
            max_images=config.max_val_images,
            fold_batchnorm=config.fold_batchnorm,
        )
        return {"mIoU": float(metrics.miou), "aAcc": float(metrics.aacc), "mAcc": float(metrics.macc)}

    def model_card(self, model: nn.Module, metrics: dict[str, float], config: TrainConfig) -> str:
        classes = model.metadata.classes
        lines = [
            "---",
            "library_name: psa_zoo",
            "tags: [image-segmentation, polarized-self-attention, psa_zoo]",
            "---",
            f"# {config.model} fine-tuned on `{config.data}`",
            "",
            f"Trained with psa_zoo {__version__} (`psa-zoo train-seg`, recipe `{config.recipe}`).",
            "",
            f"- Data: `{config.data}` ({len(self.train_data)} training images, {classes.num_classes} "
            f"classes: {', '.join(classes.class_names)}; ignore index {classes.ignore_index})",
        ]
        if metrics:
            lines += ["- Validation: the val split, single scale" if config.eval_scales == [1.0] else
                      f"- Validation: the val split, scales {config.eval_scales}", "", "| metric | value |",
                      "|---|---|", *(f"| {k} | {v:.4f} |" for k, v in metrics.items())]  # fmt: skip
        else:
            lines.append("- Not evaluated (no validation split).")
        lines += ["", 'Load it with `psa_zoo.from_pretrained("<this folder>")`; predict with '
                  "`psa_zoo.seg.Segmenter(model).predict(image)`.", ""]  # fmt: skip
        return "\n".join(lines)


def train_seg(config: TrainConfig) -> TrainResult:
    """Run segmentation training as configured (see :class:`~psa_zoo.train.config.TrainConfig`)."""
    return Trainer(SegTask(config), config).fit()
