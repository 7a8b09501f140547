"""mIoU of a segmentation model on a dataset: every image at its original resolution, one dataset-level
confusion matrix, summed over processes once.

With an ``accelerator`` each process predicts every ``world``-th image (no padding, so no image is
counted twice) and the confusion matrices are summed with one all-reduce.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.images import normalize_images
from ..data.segmentation import SegmentationDataset
from ..evaluation.segmentation import ConfusionMatrix, SegmentationMetrics
from ..models._runtime import inference_module
from .dataset import SegmentationSamples
from .inference import predict_probabilities

__all__ = ["evaluate_seg_model"]


@torch.no_grad()
def evaluate_seg_model(
    model: nn.Module,
    dataset: SegmentationDataset,
    *,
    accelerator=None,
    mode: str = "whole",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    max_images: int | None = None,
    fold_batchnorm: bool = True,
) -> SegmentationMetrics:
    """Per-class IoU, mIoU, pixel and mean accuracy of ``model`` on ``dataset`` (see
    :func:`psa_zoo.seg.inference.predict_probabilities` for the modes); ``fold_batchnorm`` predicts with a
    BatchNorm-folded copy of ``model`` (:func:`psa_zoo.models._runtime.inference_module`: faster, equal
    to float rounding)."""
    metadata = model.metadata
    classes = metadata.classes
    samples = SegmentationSamples(dataset, channel_order=metadata.channel_order)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    count = len(samples) if max_images is None else min(max_images, len(samples))
    runtime = inference_module(model, fold=fold_batchnorm)
    param = next(runtime.parameters())  # the module that predicts
    matrix = ConfusionMatrix(classes.num_classes, classes.ignore_index)
    for index in range(rank, count, world):
        item = samples[index]
        image = normalize_images(item["image"][None].to(param.device), metadata, param.dtype)
        probabilities = predict_probabilities(
            runtime, image, mode=mode, scales=scales, flip=flip, crop_size=crop_size, stride=stride
        )
        matrix.update(probabilities.argmax(1)[0], item["mask"].to(probabilities.device))
    if accelerator is not None and world > 1:
        matrix.all_reduce(accelerator)
    return matrix.compute()
