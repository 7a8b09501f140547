"""Segmentation samples for training and evaluation (the torch side of :mod:`psa_zoo.data.segmentation`).

Training items: image and mask through :class:`~psa_zoo.seg.transforms.SegTrainTransform` (random scale,
crop with the mask padded by the ignore index, flip, photometric jitter) drawn from the item's own seed.
Evaluation items: the image as it is and the mask at its original resolution. Images stay ``uint8`` in
the model's channel order; the engine normalises on the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.segmentation import SegmentationDataset
from .transforms import SegTrainTransform

__all__ = ["SegmentationSamples"]


class SegmentationSamples(Dataset):
    """Items of ``dataset``: ``image`` [3, H, W] uint8, ``mask`` [H, W] int64 (ignore index kept), ``index``.

    Args:
        dataset: the samples and their classes.
        transform: the training transform, or None for evaluation items (whole image, original mask).
        channel_order: ``"RGB"`` or ``"BGR"``, what the model's metadata says.
    """

    def __init__(
        self,
        dataset: SegmentationDataset,
        transform: SegTrainTransform | None = None,
        channel_order: str = "RGB",
    ) -> None:
        self.dataset, self.transform, self.channel_order = dataset, transform, channel_order

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        image, mask = self.dataset.read(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask, np.random.default_rng(seed))
        if self.channel_order == "BGR":
            image = image[..., ::-1]
        item = {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), "index": index}
        if mask is not None:  # a dataset loaded without masks (prediction only)
            item["mask"] = torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))
        return item
