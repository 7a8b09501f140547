"""Top-down pose training: COCO keypoints or one's own COCO-format keypoints, on the shared engine.

The dataset's :class:`~psa_zoo.metadata.KeypointSet` becomes the model's: a head of another size is
replaced (``reset_classifier(K, labels=...)``), the input size, the codec and the dataset are recorded in
the metadata, so the saved model predicts with the right names, flip pairs and OKS sigmas.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.coco_keypoints import KeypointDataset, find_coco_split, load_keypoint_annotations
from ..data.images import normalize_images
from ..losses import keypoint_mse_sum_and_count
from ..models import PsaModel
from ..pose.codecs import build_codec
from ..pose.dataset import TopDownPoseDataset
from ..pose.evaluate import evaluate_pose_model
from ..pose.transforms import TopDownAugmentation
from ..version import __version__
from .config import ConfigError, TrainConfig
from .engine import Trainer, TrainResult, TrainTask
from .models import model_for_labels

__all__ = ["PoseTask", "train_pose"]


class PoseTask(TrainTask):
    name = "pose"
    primary_metric = "AP"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.train_data = self._load_split(config.data, "train")
        self.keypoint_set = self.train_data.keypoint_set
        # a validation split is optional for --data, required when named or needed (--val-data,
        # --detections, --eval-steps)
        needed = bool(config.val_data or config.detections or config.eval_steps)
        self.val_data = self._load_split(config.val_data or config.data, "val", required=needed)
        if self.val_data is None:
            warnings.warn(f"{config.data} has no val split: the run is not evaluated", stacklevel=2)
        elif self.val_data.keypoint_set.keypoint_names != self.keypoint_set.keypoint_names:
            val_names = list(self.val_data.keypoint_set.keypoint_names)
            raise ConfigError(
                f"the val split's keypoints {val_names} differ from the train split's "
                f"{list(self.keypoint_set.keypoint_names)}; give two splits of one dataset"
            )

    @staticmethod
    def _load_split(folder: str, split: str, required: bool = True) -> KeypointDataset | None:
        if not folder:
            raise ConfigError("no --data given; e.g. --data coco/ (annotations/ + train2017/ + val2017/)")
        try:
            ann_file, image_dir = find_coco_split(folder, split)
        except ValueError:
            if required:
                raise
            return None
        return load_keypoint_annotations(ann_file, image_dir)

    # --- model ---------------------------------------------------------------------------------------
    def build_model(self) -> PsaModel:
        config = self.config
        model, metadata = model_for_labels(config, "pose", self.keypoint_set)
        height, width = config.input_size or metadata.input_size[1:]
        self.input_size = (int(width), int(height))
        heatmap_h, heatmap_w = model.output_size((height, width))
        self.codec = build_codec(config.codec, self.input_size, (heatmap_w, heatmap_h), config.sigma)
        if self.codec.channels_per_keypoint != 1:
            raise ConfigError(
                f"codec {self.codec.name!r} with several channels per keypoint is not trainable yet"
            )
        extra = {**metadata.extra, "codec": self.codec.to_dict(), "dataset": str(self.train_data.ann_file)}
        model.set_metadata(metadata.replace(input_size=(metadata.input_size[0], height, width), extra=extra))
        self.model_metadata = model.metadata
        return model

    # --- data ----------------------------------------------------------------------------------------
    def train_dataset(self) -> TopDownPoseDataset:
        config = self.config
        augmentation = TopDownAugmentation(
            flip_prob=config.flip_prob,
            half_body_prob=config.half_body_prob,
            scale_factor=config.scale_factor,
            rotation_factor=config.rotation_factor,
        )
        return TopDownPoseDataset(
            self.train_data.instances("train"),
            self.keypoint_set,
            self.input_size,
            codec=self.codec,
            augmentation=augmentation,
            channel_order=self.model_metadata.channel_order,
            udp=self.codec.udp_warp,
            use_joint_weights=bool(config.use_joint_weights),
        )

    def loss_sum_and_count(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = normalize_images(batch["image"], self.model_metadata)
        heatmaps = model(inputs).float()
        return keypoint_mse_sum_and_count(heatmaps, batch["target"], batch["target_weight"])

    # --- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, accelerator) -> dict[str, float]:
        if self.val_data is None:
            return {}
        config = self.config
        instances = self.val_data.detections(config.detections) if config.detections else None
        evaluation, _ = evaluate_pose_model(
            model,
            self.val_data,
            instances,
            accelerator=accelerator,
            flip_test=bool(config.flip_test),
            batch_size=max(config.batch_size, 8),
            num_workers=config.num_workers,
            max_images=config.max_val_images,
            fold_batchnorm=config.fold_batchnorm,
        )
        return dict(evaluation.stats)

    def model_card(self, model: nn.Module, metrics: dict[str, float], config: TrainConfig) -> str:
        return pose_model_card(model, metrics, config, self.train_data, self.val_data)


def pose_model_card(model, metrics, config: TrainConfig, train_data, val_data) -> str:
    """A short card: what the model is, what it was trained on, what it measured."""
    meta = model.metadata
    boxes = f"detections `{config.detections}`" if config.detections else "ground-truth boxes"
    lines = [
        "---",
        "library_name: psa_zoo",
        "tags: [pose-estimation, polarized-self-attention, psa_zoo]",
        "---",
        f"# {config.model} fine-tuned on `{Path(train_data.ann_file).name}`",
        "",
        f"Trained with psa_zoo {__version__} (`psa-zoo train-pose`, recipe `{config.recipe}`).",
        "",
        f"- Data: `{train_data.ann_file}` ({len(train_data.instances('train'))} training instances, "
        f"{meta.keypoints.num_keypoints} keypoints: {', '.join(meta.keypoints.keypoint_names)})",
        f"- Input {meta.input_size[2]}×{meta.input_size[1]} (W×H), {meta.channel_order}, codec "
        f"`{meta.extra.get('codec', {}).get('name')}`",
    ]
    if metrics and val_data is not None:
        lines += [
            f"- Validation: `{val_data.ann_file}`, {boxes}, flip test {'on' if config.flip_test else 'off'}",
            "",
            "| metric | value |",
            "|---|---|",
            *(f"| {k} | {v:.4f} |" for k, v in metrics.items()),
        ]
    else:
        lines.append("- Not evaluated (no validation split).")
    lines += [
        "",
        'Load it with `psa_zoo.from_pretrained("<this folder>")`; predict with '
        "`psa_zoo.pose.PoseEstimator(model).predict(image, boxes)`.",
        "",
    ]
    return "\n".join(lines)


def train_pose(config: TrainConfig) -> TrainResult:
    """Run pose training as configured (see :class:`~psa_zoo.train.config.TrainConfig`)."""
    return Trainer(PoseTask(config), config).fit()
