"""Segmentation augmentation: random scale, crop with ignore padding, flip, colour jitter; evaluation resize.

Conventions: images are ``[H, W, 3]`` uint8 RGB, masks ``[H, W]`` integer class indices with an ignore
index (255); sizes are ``(height, width)`` as numpy shapes. Everything is numpy + cv2 and returns new arrays.

Alignment: images are resized with cv2 bilinear (``INTER_LINEAR``, pixel centres aligned, the
``align_corners=False`` convention) and masks with nearest neighbour **on the same centre-aligned grid**:
output pixel ``i`` takes source pixel ``floor((i + 0.5) · src / dst)`` (cv2 ``INTER_NEAREST_EXACT``, PIL
``NEAREST``). cv2's plain ``INTER_NEAREST`` takes ``floor(i · src / dst)`` instead, which shifts the labels
by up to half a source pixel towards the top-left relative to the image.

Training (:class:`SegTrainTransform`, the VainF/DeepLabV3Plus-Pytorch and mmseg recipe): scale by a
factor drawn uniformly from ``scale_range``, pad to at least the crop size (mask with the **ignore index**,
never class 0; image with the ImageNet mean colour, i.e. 0 after normalisation, as mmseg 1.x pads its
normalised batches), random crop, horizontal flip, then colour jitter of the image only. All randomness
comes from the ``rng`` passed in (never numpy's or Python's global generators).

Evaluation (:class:`SegEvalTransform`): the image as is, or resized to a fixed long side; the mask is never
resized — the model's logits are resized back to it, so the metric is computed at the label resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..labels import IMAGENET_MEAN

__all__ = [
    "MEAN_RGB_UINT8",
    "SegEvalTransform",
    "SegTrainTransform",
    "colour_jitter",
    "hflip",
    "pad_to",
    "resize_image",
    "resize_long_side",
    "resize_mask",
]

MEAN_RGB_UINT8: tuple[int, int, int] = tuple(round(255 * m) for m in IMAGENET_MEAN)  # (124, 116, 104)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(
            f"image must be a [H, W, 3] uint8 RGB array, got {type(image).__name__} of shape {shape} and "
            f"dtype {getattr(image, 'dtype', None)}; read it with psa_zoo.data.read_image"
        )
    return image


def _check_mask(mask: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(
            f"mask must be a [H, W] integer array of class indices, got {type(mask).__name__} of shape "
            f"{getattr(mask, 'shape', None)} and dtype {getattr(mask, 'dtype', None)}"
        )
    if image is not None and mask.shape != image.shape[:2]:
        raise ValueError(
            f"mask is {mask.shape[0]}×{mask.shape[1]} (H×W) but the image is "
            f"{image.shape[0]}×{image.shape[1]}; they must have the same size"
        )
    return mask


def _size(size: Sequence[int], what: str) -> tuple[int, int]:
    values = tuple(size) if isinstance(size, Sequence | np.ndarray) else ()
    if len(values) != 2 or any(int(v) != v or v < 1 for v in values):
        raise ValueError(f"{what} must be (height, width) of positive ints, got {size!r}")
    return int(values[0]), int(values[1])


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``[H, W, 3]`` uint8 → ``[h, w, 3]`` uint8, bilinear (cv2 ``INTER_LINEAR``, centre-aligned).

    Args:
        image: ``[H, W, 3]`` uint8.
        size: ``(h, w)``.
    """
    h, w = _size(size, "size")
    image = _check_image(image)
    if image.shape[:2] == (h, w):
        return image.copy()
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``[H, W]`` labels → ``[h, w]``, nearest neighbour on the centre-aligned grid of :func:`resize_image`.

    Output pixel ``(i, j)`` is source pixel ``(floor((i + 0.5) H / h), floor((j + 0.5) W / w))``, the rule of
    cv2 ``INTER_NEAREST_EXACT`` and PIL ``NEAREST``; written with numpy indexing so any integer dtype works.
    """
    h, w = _size(size, "size")
    mask = _check_mask(mask)
    rows = np.minimum(((np.arange(h) + 0.5) * (mask.shape[0] / h)).astype(np.int64), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (mask.shape[1] / w)).astype(np.int64), mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """The image resized (bilinear, aspect kept) so that its longer side is ``long_side`` pixels."""
    if int(long_side) != long_side or long_side < 1:
        raise ValueError(f"long_side must be a positive int, got {long_side!r}")
    height, width = _check_image(image).shape[:2]
    factor = long_side / max(height, width)
    return resize_image(image, (max(1, round(height * factor)), max(1, round(width * factor))))


def pad_to(
    image: np.ndarray, mask: np.ndarray, size: Sequence[int], fill: Sequence[int], ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pad image and mask at the bottom and right to at least ``size = (h, w)``.

    The image is padded with the colour ``fill``, the mask with ``ignore_index``: padding is never a class.
    """
    h, w = _size(size, "size")
    pad_h, pad_w = max(h - image.shape[0], 0), max(w - image.shape[1], 0)
    if pad_h == 0 and pad_w == 0:
        return image, mask
    out_image = np.empty((image.shape[0] + pad_h, image.shape[1] + pad_w, 3), dtype=image.dtype)
    out_image[...] = np.asarray(fill, dtype=image.dtype)
    out_image[: image.shape[0], : image.shape[1]] = image
    out_mask = np.full(out_image.shape[:2], ignore_index, dtype=mask.dtype)
    out_mask[: mask.shape[0], : mask.shape[1]] = mask
    return out_image, out_mask


def hflip(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror left ↔ right (copies). Segmentation classes have no left/right, so labels stay as they are."""
    return image[:, ::-1].copy(), None if mask is None else mask[:, ::-1].copy()


def colour_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.25,
    contrast: float = 0.25,
    saturation: float = 0.25,
    hue: float = 0.05,
) -> np.ndarray:
    """Random brightness, contrast, saturation and hue, in this order (torchvision ``ColorJitter`` factors).

    Each factor is drawn uniformly from ``[1 − x, 1 + x]`` (the hue shift from ``[−hue, hue]`` turns of the
    colour circle); brightness multiplies the image, contrast blends it with its mean grey, saturation with
    its grey (ITU-R 601 luma) image, hue rotates the HSV hue. Four draws from ``rng`` on every call.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        rng: the generator of this sample.

    Returns:
        ``[H, W, 3]`` uint8, a new array.
    """
    b, c, s = (rng.uniform(1 - x, 1 + x) for x in (brightness, contrast, saturation))
    h = rng.uniform(-hue, hue)
    out = image.astype(np.float32) * b
    grey = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = (out - grey.mean()) * c + grey.mean()
    grey = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = (out - grey[..., None]) * s + grey[..., None]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if h != 0.0:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)  # uint8 hue in 0..179 (degrees / 2)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + round(h * 180)) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


@dataclass
class SegTrainTransform:
    """Training augmentation: random scale → crop (padded with ignore) → h-flip → colour jitter.

    Steps, with the draws from ``rng`` in this order:

    1. scale factor ``s ~ U(scale_range)``; image resized bilinear, mask nearest (centre-aligned) to
       ``round(H·s) × round(W·s)`` (VainF ``ExtRandomScale``);
    2. crop offsets ``y ~ U{0..H'−h}``, ``x ~ U{0..W'−w}`` (0 where the scaled image is smaller than the
       crop); where it is smaller, the crop is padded at the bottom / right: image with ``pad_value``,
       mask with ``ignore_index`` (VainF "pad-if-needed, label 255"; mmseg ``seg_pad_val=255``);
    3. flip with probability ``flip_prob``;
    4. :func:`colour_jitter` of the image (not the padding) when ``photometric``.

    The crop is cut from the scaled image and then padded (the same as padding first, then cropping), so
    only image pixels are jittered, never the padding; the flip comes last, so a flipped crop has its
    padding on the left. The geometric draws come first, so the same seed gives the same geometry with or
    without the jitter.

    Args:
        crop_size: ``(h, w)`` of the output.
        scale_range: ``(low, high)`` scale factors, ``0 < low ≤ high``.
        flip_prob: probability of a horizontal flip.
        photometric: colour jitter on or off.
        ignore_index: the mask's padding value (the loss's ignore index).
        pad_value: RGB fill of the image padding; default the ImageNet mean colour (0 once normalised).
    """

    crop_size: tuple[int, int] = (512, 512)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip_prob: float = 0.5
    photometric: bool = True
    ignore_index: int = 255
    pad_value: tuple[int, int, int] = MEAN_RGB_UINT8

    def __post_init__(self) -> None:
        self.crop_size = _size(self.crop_size, "crop_size")
        low, high = (float(v) for v in self.scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be (low, high) with 0 < low ≤ high, got {self.scale_range!r}")
        self.scale_range = (low, high)
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be a probability in [0, 1], got {self.flip_prob!r}")
        if len(self.pad_value) != 3 or not all(0 <= int(v) <= 255 for v in self.pad_value):
            raise ValueError(f"pad_value must be an RGB colour (3 values 0..255), got {self.pad_value!r}")

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one sample.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.
            mask: ``[H, W]`` integer labels.
            rng: the sample's generator.

        Returns:
            image ``[h, w, 3]`` uint8 and mask ``[h, w]`` (the mask's dtype), ``(h, w) = crop_size``.
        """
        image, mask, rng = _check_image(image), _check_mask(mask, image), _check_rng(rng)
        limits = np.iinfo(mask.dtype)
        if not limits.min <= self.ignore_index <= limits.max:
            raise ValueError(
                f"mask dtype {mask.dtype} cannot hold the ignore index {self.ignore_index}; pass an int64 "
                "mask"
            )
        crop_h, crop_w = self.crop_size
        scale = rng.uniform(*self.scale_range)
        size = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
        image, mask = resize_image(image, size), resize_mask(mask, size)
        y = int(rng.integers(0, max(size[0] - crop_h, 0) + 1))
        x = int(rng.integers(0, max(size[1] - crop_w, 0) + 1))
        flip = bool(rng.random() < self.flip_prob)
        image, mask = image[y : y + crop_h, x : x + crop_w], mask[y : y + crop_h, x : x + crop_w]
        if self.photometric:  # before the padding: only image pixels are jittered
            image = colour_jitter(image, rng)
        image, mask = pad_to(image, mask, self.crop_size, self.pad_value, self.ignore_index)
        if flip:
            image, mask = hflip(image, mask)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)


@dataclass
class SegEvalTransform:
    """Evaluation: deterministic; the mask is returned untouched (metrics at the label resolution).

    Args:
        resize_long: ``None`` to keep the image as it is, or a long side in pixels to resize it to
            (bilinear, aspect kept); the predictor resizes its logits back to the mask's size.
    """

    resize_long: int | None = None

    def __post_init__(self) -> None:
        if self.resize_long is not None and (
            int(self.resize_long) != self.resize_long or self.resize_long < 1
        ):
            raise ValueError(f"resize_long must be None or a positive int, got {self.resize_long!r}")

    def __call__(
        self, image: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``image [H, W, 3]`` uint8 → the image (a copy, maybe resized); ``mask [H, W]`` as given."""
        image = _check_image(image)
        if mask is not None:
            _check_mask(mask, image)
        if self.resize_long is None:
            return image.copy(), mask
        return resize_long_side(image, self.resize_long), mask
