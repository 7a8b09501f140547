"""Top-down person crops for training and evaluation (the torch side of :mod:`psa_zoo.data.coco_keypoints`).

One item = one person instance: the image read in the model's channel order, its box turned into a
centre and a padded, aspect-fixed scale, (training) the HRNet augmentation drawn from the item's own seed,
the affine crop (the official 3-point warp, or UDP's unit-length one), and (training) the codec's target.
Images stay ``uint8`` here; the engine normalises on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.coco_keypoints import PersonInstance
from ..data.images import read_image
from ..metadata import KeypointSet
from .codecs import HeatmapCodec
from .transforms import (
    TopDownAugmentation,
    affine_points,
    box_to_center_scale,
    crop_matrix,
    flip_image_and_keypoints,
    warp_image,
)

__all__ = ["TopDownPoseDataset"]


class TopDownPoseDataset(Dataset):
    """Person crops of ``instances``.

    Args:
        instances: the people (ground-truth or detected boxes).
        keypoint_set: their keypoints (flip pairs, half-body groups, joint weights).
        input_size: (width, height) of the crop.
        codec: makes the training target; None for evaluation items.
        augmentation: None for deterministic crops.
        channel_order: what the model's metadata says (``"RGB"`` or ``"BGR"``).
        udp: the unit-length warp (UDP recipes) instead of the official 3-point one.
        use_joint_weights: multiply the target weights by the keypoint set's joint weights.
        padding: box padding (1.25 as the HRNet code).

    Items (keys are ``index`` or ``(index, sample_seed)``): ``image`` [3, H, W] uint8, ``center`` [2],
    ``scale`` [2] (pixels), ``rotation``, ``index``; with a codec also ``target`` [K, h, w] and
    ``target_weight`` [K].
    """

    def __init__(
        self,
        instances: Sequence[PersonInstance],
        keypoint_set: KeypointSet,
        input_size: tuple[int, int],
        *,
        codec: HeatmapCodec | None = None,
        augmentation: TopDownAugmentation | None = None,
        channel_order: str = "RGB",
        udp: bool = False,
        use_joint_weights: bool = False,
        padding: float = 1.25,
    ) -> None:
        self.instances = list(instances)
        self.keypoint_set = keypoint_set
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.codec, self.augmentation = codec, augmentation
        self.channel_order, self.udp, self.padding = channel_order, udp, padding
        weights = keypoint_set.joint_weights if use_joint_weights else (1.0,) * keypoint_set.num_keypoints
        self.joint_weights = np.asarray(weights, dtype=np.float32)
        self.flip_permutation = keypoint_set.flip_permutation()

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        instance = self.instances[index]
        image = read_image(instance.image_file, self.channel_order)
        width, height = self.input_size
        center, scale = box_to_center_scale(instance.box, width / height, self.padding)
        keypoints = instance.keypoints.astype(np.float64)
        visible = (instance.visibility > 0).astype(np.float32)
        rotation = 0.0
        if self.augmentation is not None:
            params = self.augmentation.sample(
                np.random.default_rng(seed),
                keypoints,
                visible,
                center,
                scale,
                self.keypoint_set,
                image_width=image.shape[1],
                aspect_ratio=width / height,
            )
            center, scale, rotation = params.center, params.scale, params.rotation
            if params.flip:
                image, keypoints, visible, center = flip_image_and_keypoints(
                    image, keypoints, visible, center, self.flip_permutation
                )
        matrix = crop_matrix(center, scale, rotation, self.input_size, udp=self.udp)
        crop = warp_image(image, matrix, self.input_size)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))),
            "center": torch.as_tensor(center, dtype=torch.float64),
            "scale": torch.as_tensor(scale, dtype=torch.float64),
            "rotation": torch.tensor(float(rotation), dtype=torch.float64),
            "index": index,
        }
        if self.codec is not None:
            target, weight = self.codec.encode(affine_points(keypoints, matrix), visible)
            item["target"] = torch.from_numpy(target)
            item["target_weight"] = torch.from_numpy(weight * self.joint_weights)
        return item
