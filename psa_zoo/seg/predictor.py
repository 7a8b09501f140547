"""``Segmenter``: a label map for an image of any size, from a segmentation model and its metadata.

The metadata gives the normalisation, the **channel order**, the class names and the palette; the
inference mode (whole image, sliding window, scales, flip) is the caller's choice
(:func:`psa_zoo.seg.inference.predict_probabilities`). The label map has the image's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.images import normalize_images, read_image
from ..metadata import ClassSet
from ..models._runtime import format_images, inference_module, maybe_compile, to_memory_format
from .inference import predict_probabilities

__all__ = ["SegPrediction", "Segmenter"]


@dataclass
class SegPrediction:
    """``labels`` [H, W] class indices; ``probabilities`` [K, H, W] when asked for; ``class_set``."""

    labels: np.ndarray
    class_set: ClassSet
    probabilities: np.ndarray | None = None

    def classes_present(self) -> list[str]:
        return [self.class_set.class_names[i] for i in np.unique(self.labels)]

    def colour(self) -> np.ndarray:
        """[H, W, 3] uint8: the labels in the palette's colours."""
        return np.asarray(self.class_set.palette, dtype=np.uint8)[self.labels]


class Segmenter:
    """Semantic segmentation with a psa_zoo segmentation model.

    Args:
        model: a segmentation :class:`~psa_zoo.models.PsaModel`.
        mode: ``"whole"``, ``"slide"`` (sliding window of ``crop_size`` with ``stride``) or
            ``"hierarchical"`` (HRNetV2-OCR's learned combination of ``scales``; see
            :func:`psa_zoo.seg.inference.predict_probabilities`).
        scales / flip: multi-scale and flip test (softmax probabilities averaged).
        device: where to run (default: the model's device).
        memory_format: ``"auto"`` (channels_last for the CPU and CUDA, where it is faster),
            ``"channels_last"`` or ``"contiguous"``; the probabilities agree to float rounding
            (:mod:`psa_zoo.models._runtime`).
        fold_batchnorm: run a copy of the model with each BatchNorm folded into the convolution before it
            (faster; the probabilities agree to float rounding). The copy is made here: build a new
            segmenter after changing the model's weights, device or dtype. ``False`` runs ``model`` itself
            (no second copy).
        compile: run the forward through ``torch.compile`` (an option: the first prediction, and each new
            image size, compiles first; inductor needs a C++ compiler on the CPU). Not with
            ``mode="hierarchical"``, whose multi-scale combination calls the model's methods directly.

    The model is put in eval mode, moved to ``device`` and laid out in ``memory_format`` in place.
    Attributes: ``model`` is the model as given, unfolded and eager (record attention maps on it),
    ``memory_format`` the resolved ``torch.memory_format``.
    """

    def __init__(
        self,
        model,
        *,
        mode: str = "whole",
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        crop_size: tuple[int, int] | None = None,
        stride: tuple[int, int] | None = None,
        device: str | None = None,
        memory_format: str = "auto",
        fold_batchnorm: bool = True,
        compile: bool = False,
    ) -> None:
        if getattr(model, "task", None) != "segmentation":
            raise ValueError(
                f"Segmenter needs a segmentation model, got a {getattr(model, 'task', None)!r} model"
            )
        if compile and mode == "hierarchical":
            raise ValueError(
                'compile=True does not reach mode="hierarchical": forward_multiscale calls the model\'s '
                'methods directly, which torch.compile does not wrap; use compile=False, or mode="whole" '
                "with scales"
            )
        self.model = model.eval() if device is None else model.to(device).eval()
        self.memory_format = to_memory_format(self.model, memory_format)
        self._runtime = inference_module(self.model, fold=fold_batchnorm, memory_format=self.memory_format)
        self._forward = maybe_compile(self._runtime, compile)
        self.metadata = model.metadata
        self.mode, self.scales, self.flip = mode, tuple(scales), flip
        self.crop_size, self.stride = crop_size, stride

    def model_input(self, image: Any) -> torch.Tensor:
        """``image`` (path, PIL image or [H, W, 3] RGB array) as the model takes it: [1, C, H, W] in the
        model's channel order, normalisation, dtype, device and memory format (e.g. for attention maps)."""
        pixels = read_image(image, self.metadata.channel_order)
        param = next(self._runtime.parameters())  # the module that predicts
        # [H, W, 3] pixels seen as [1, 3, H, W] are already channels_last: a copy only for contiguous
        batch = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
        batch = format_images(batch, self.memory_format).to(param.device)
        return normalize_images(batch, self.metadata, param.dtype)

    @torch.no_grad()
    def predict(self, image: Any, return_probabilities: bool = False) -> SegPrediction:
        """Labels of ``image`` (path, PIL image or [H, W, 3] RGB array) at its own size."""
        probabilities = predict_probabilities(
            self._forward,
            self.model_input(image),
            mode=self.mode,
            scales=self.scales,
            flip=self.flip,
            crop_size=self.crop_size,
            stride=self.stride,
        )[0]
        labels = probabilities.argmax(0).cpu().numpy()
        probs = probabilities.float().cpu().contiguous().numpy() if return_probabilities else None
        return SegPrediction(labels, self.metadata.classes, probs)

    def draw(
        self, image: Any, prediction: SegPrediction, out: str | Path | None = None, alpha: float = 0.5
    ) -> Image.Image:
        """The image blended with the label colours, and a legend of the classes present; PNG to ``out``."""
        pixels = read_image(image, "RGB").astype(np.float32)
        blended = ((1 - alpha) * pixels + alpha * prediction.colour()).round().astype(np.uint8)
        canvas = Image.fromarray(blended)
        pen = ImageDraw.Draw(canvas)
        palette = prediction.class_set.palette
        for row, index in enumerate(np.unique(prediction.labels)):
            y = 4 + 14 * row
            pen.rectangle([4, y, 14, y + 10], fill=tuple(palette[index]), outline=(0, 0, 0))
            pen.text((18, y - 1), prediction.class_set.class_names[index], fill=(255, 255, 255))
        if out is not None:
            canvas.save(out, format="PNG")
        return canvas
