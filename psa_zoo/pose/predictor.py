"""``PoseEstimator``: keypoints of the people in an image, from a pose model and its metadata.

The model's metadata says everything a prediction needs: the crop size, mean/std and channel order, the
codec it was trained with (UDP also selects the unit-length warp), the keypoint names, flip pairs and
skeleton. Person boxes come from the caller (a detector); without boxes the whole image is one person.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.images import normalize_images, read_image
from ..metadata import KeypointSet
from ..models._runtime import format_images, inference_module, maybe_compile, to_memory_format
from .inference import codec_for, crops_to_image, predict_heatmaps
from .transforms import box_to_center_scale, crop_matrix, warp_image

__all__ = ["PoseEstimator", "PosePrediction"]


@dataclass
class PosePrediction:
    """The people of one image.

    Attributes:
        keypoints: [P, K, 2] image pixels (x, y).
        scores: [P, K] heatmap maxima.
        boxes: [P, 4] the person boxes used (x, y, w, h).
        box_scores: [P].
        keypoint_set: names, skeleton and flip pairs of the K keypoints.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    keypoint_set: KeypointSet

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def skeleton(self) -> tuple[tuple[int, int], ...]:
        return self.keypoint_set.skeleton

    def to_dict(self) -> dict[str, Any]:
        """JSON form: one entry per person with named keypoints."""
        names = self.keypoint_set.keypoint_names
        people = []
        for p in range(len(self)):
            people.append(
                {
                    "box": [float(v) for v in self.boxes[p]],
                    "box_score": float(self.box_scores[p]),
                    "score": float(self.scores[p].mean()) if self.scores.shape[1] else 0.0,
                    "keypoints": {
                        name: [
                            float(self.keypoints[p, k, 0]),
                            float(self.keypoints[p, k, 1]),
                            float(self.scores[p, k]),
                        ]
                        for k, name in enumerate(names)
                    },
                }
            )
        return {"keypoint_names": list(names), "skeleton": [list(s) for s in self.skeleton], "people": people}


def _as_boxes(boxes: Any, image_shape: tuple[int, ...]) -> np.ndarray:
    height, width = image_shape[:2]
    if boxes is None:
        return np.array([[0.0, 0.0, float(width), float(height)]])
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be [P, 4] person boxes (x, y, width, height), got shape {array.shape}")
    if np.any(array[:, 2:] <= 0) or not np.isfinite(array).all():
        raise ValueError(f"boxes need a positive, finite width and height, got {array.tolist()}")
    return array


class PoseEstimator:
    """Top-down pose prediction with a psa_zoo pose model.

    Args:
        model: a pose :class:`~psa_zoo.models.PsaModel` (``create_model`` / ``from_pretrained``); it is
            put in eval mode, moved to ``device`` and laid out in ``memory_format`` in place.
        flip_test: average with the horizontally flipped crop (the paper's evaluation setting).
        batch_size: crops per forward pass.
        device: where to run (default: the model's device).
        memory_format: ``"auto"`` (channels_last for the CPU and CUDA, where it is faster),
            ``"channels_last"`` or ``"contiguous"``; the keypoints agree to float rounding
            (:mod:`psa_zoo.models._runtime`).
        fold_batchnorm: run a copy of the model with each BatchNorm folded into the convolution before it
            (faster; the keypoints agree to float rounding). The copy is made here: build a new estimator
            after changing the model's weights, device or dtype. ``False`` runs ``model`` itself (no
            second copy in memory).
        compile: run the forward through ``torch.compile`` (an option: the first prediction then compiles
            for seconds to minutes; inductor needs a C++ compiler on the CPU).

    Attributes:
        model: the model as given, unfolded and eager (record attention maps on it: the folded or compiled
            module that predicts does not see the hooks).
        memory_format: the resolved ``torch.memory_format`` of the model and its input crops.
    """

    def __init__(
        self,
        model,
        *,
        flip_test: bool = True,
        batch_size: int = 32,
        device: str | None = None,
        memory_format: str = "auto",
        fold_batchnorm: bool = True,
        compile: bool = False,
    ) -> None:
        if getattr(model, "task", None) != "pose":
            raise ValueError(
                f"PoseEstimator needs a pose model, got a {getattr(model, 'task', type(model))!r} model"
            )
        self.model = model.eval() if device is None else model.to(device).eval()
        self.memory_format = to_memory_format(self.model, memory_format)
        self._runtime = inference_module(self.model, fold=fold_batchnorm, memory_format=self.memory_format)
        self._forward = maybe_compile(self._runtime, compile)
        self.metadata = model.metadata
        _, self.height, self.width = self.metadata.input_size
        heatmap_h, heatmap_w = model.output_size((self.height, self.width))
        self.codec = codec_for(self.metadata, (heatmap_w, heatmap_h))
        self.udp = self.codec.udp_warp
        self.flip_test, self.batch_size = flip_test, batch_size

    def predict(self, image: Any, boxes: Any = None, box_scores: Any = None) -> PosePrediction:
        """Keypoints of the people in ``image`` (path, PIL image or [H, W, 3] RGB array).

        Args:
            boxes: [P, 4] person boxes (x, y, w, h) in image pixels; None = the whole image; an empty list
                = nobody (an empty prediction).
            box_scores: [P] detector scores (default 1).
        """
        pixels = read_image(image, self.metadata.channel_order)
        boxes = _as_boxes(boxes, pixels.shape)
        scores_in = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, dtype=np.float64)
        if scores_in.shape != (len(boxes),):
            raise ValueError(
                f"box_scores must hold one score per box ({len(boxes)}), got shape {scores_in.shape}"
            )
        k = self.metadata.keypoints.num_keypoints
        keypoints, scores = np.zeros((len(boxes), k, 2)), np.zeros((len(boxes), k), dtype=np.float32)
        for begin in range(0, len(boxes), self.batch_size):
            chunk = slice(begin, begin + self.batch_size)
            keypoints[chunk], scores[chunk] = self._predict_boxes(pixels, boxes[chunk])
        return PosePrediction(keypoints, scores, boxes, scores_in, self.metadata.keypoints)

    def input_crops(self, image: Any, boxes: Any = None) -> tuple[np.ndarray, torch.Tensor]:
        """The crops the model sees for ``boxes`` (as :meth:`predict`): [P, h, w, 3] uint8 RGB for display,
        and the normalised model input [P, 3, h, w] (e.g. for attention maps over the crops)."""
        pixels = read_image(image, self.metadata.channel_order)
        boxes = _as_boxes(boxes, pixels.shape)
        if len(boxes) == 0:
            return np.zeros((0, self.height, self.width, 3), np.uint8), torch.zeros(
                0, 3, self.height, self.width
            )
        crops, _, _ = self._crops(pixels, boxes)
        inputs = self._inputs(crops)
        rgb = crops if self.metadata.channel_order == "RGB" else crops[..., ::-1]
        return np.ascontiguousarray(rgb), inputs

    def _crops(self, pixels: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, list, list]:
        size = (self.width, self.height)
        centers, scales, crops = [], [], []
        for box in boxes:
            center, scale = box_to_center_scale(box, self.width / self.height)
            crops.append(warp_image(pixels, crop_matrix(center, scale, 0.0, size, udp=self.udp), size))
            centers.append(center)
            scales.append(scale)
        return np.stack(crops), centers, scales

    def _inputs(self, crops: np.ndarray) -> torch.Tensor:
        param = next(self._runtime.parameters())  # the module that predicts
        # [P, h, w, 3] pixels seen as [P, 3, h, w] are already channels_last: a copy only for contiguous
        batch = format_images(
            torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2), self.memory_format
        )
        return normalize_images(batch.to(param.device), self.metadata, param.dtype)

    def _predict_boxes(self, pixels: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = (self.width, self.height)
        crops, centers, scales = self._crops(pixels, boxes)
        inputs = self._inputs(crops)
        flip = self.metadata.keypoints.flip_permutation() if self.flip_test else None
        heatmaps = predict_heatmaps(self._forward, inputs, self.codec, flip)
        crop_kpts, scores = self.codec.decode(heatmaps)
        rotations = np.zeros(len(boxes))
        return crops_to_image(
            crop_kpts, np.stack(centers), np.stack(scales), rotations, size, self.udp
        ), scores

    def draw(
        self,
        image: Any,
        prediction: PosePrediction,
        out: str | Path | None = None,
        score_threshold: float = 0.3,
    ) -> Image.Image:
        """The image with boxes, limbs and joints (joints below ``score_threshold`` left out); saved to
        ``out`` (PNG) when given."""
        canvas = Image.fromarray(read_image(image, "RGB"))
        pen = ImageDraw.Draw(canvas)
        radius = max(2, round(min(canvas.size) / 150))
        for p in range(len(prediction)):
            x, y, w, h = prediction.boxes[p]
            pen.rectangle([x, y, x + w, y + h], outline=(255, 255, 0))
            kpts, ok = prediction.keypoints[p], prediction.scores[p] >= score_threshold
            for a, b in prediction.skeleton:
                if ok[a] and ok[b]:
                    pen.line(
                        [tuple(kpts[a]), tuple(kpts[b])],
                        fill=_limb_colour(a, b, prediction.keypoint_set),
                        width=radius,
                    )
            for j in np.flatnonzero(ok):
                cx, cy = kpts[j]
                pen.ellipse(
                    [cx - radius, cy - radius, cx + radius, cy + radius],
                    fill=(255, 255, 255),
                    outline=(0, 0, 0),
                )
        if out is not None:
            canvas.save(out, format="PNG")
        return canvas


def _limb_colour(a: int, b: int, keypoint_set: KeypointSet) -> tuple[int, int, int]:
    """Left limbs green, right limbs orange, the rest blue (by the flip pairs: left = first of a pair)."""
    left = {p[0] for p in keypoint_set.flip_pairs}
    right = {p[1] for p in keypoint_set.flip_pairs}
    if a in left or b in left:
        return (0, 200, 0)
    if a in right or b in right:
        return (255, 128, 0)
    return (0, 128, 255)
