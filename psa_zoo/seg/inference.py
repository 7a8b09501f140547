"""Segmentation inference on normalised image tensors: whole image or sliding window, multi-scale, flip.

:func:`predict_probabilities` gives class probabilities at the input resolution. Every scale (and its flipped
copy) is predicted, its logits resized back to the input size and turned into softmax probabilities, and the
probabilities are averaged, as mmseg's test-time augmentation (``SegTTAModel.merge_preds``). The argmax of
the result is the prediction to evaluate.

Memory stays bounded on full Cityscapes frames: one [N, K, H, W] accumulator, one logit buffer for the scale
being predicted, and one batch of windows at a time.

``mode="hierarchical"`` is HRNetV2-OCR's learned combination of scales instead (NVIDIA's hierarchical
multi-scale attention, the PSA paper's Cityscapes evaluation with scales 0.5, 1.0, 2.0): the model's
:meth:`~psa_zoo.models.hrnet_ocr.HRNetOCR.forward_multiscale` combines the scales' logits with its
scale-attention maps, and only flips are averaged (as probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["hierarchical_problem", "num_windows", "predict_probabilities", "sliding_windows"]

MODES = ("whole", "slide", "hierarchical")


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{what} must be a positive int or a (height, width) pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def num_windows(length: int, crop: int, stride: int) -> int:
    """Windows along one axis, as mmseg ``EncoderDecoder.slide_inference``:
    ``max(length − crop + stride − 1, 0) // stride + 1``."""
    return max(length - crop + stride - 1, 0) // stride + 1


def _starts(length: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of each window on one axis; the last is snapped to the border (mmseg slide_inference)."""
    spans = []
    for index in range(num_windows(length, crop, stride)):
        end = min(index * stride + crop, length)
        spans.append((max(end - crop, 0), end))
    return spans


def sliding_windows(
    height: int, width: int, crop_size: int | Sequence[int], stride: int | Sequence[int]
) -> list[tuple[int, int, int, int]]:
    """Windows ``(y1, y2, x1, x2)`` covering an image, row by row; all of one size, min(crop, image side).

    Args:
        crop_size / stride: an int or (height, width); 1 ≤ stride ≤ crop, so that no pixel is left out.
    """
    (crop_h, crop_w), (stride_h, stride_w) = _pair(crop_size, "crop_size"), _pair(stride, "stride")
    if stride_h > crop_h or stride_w > crop_w:
        raise ValueError(
            f"stride {(stride_h, stride_w)} is larger than crop_size {(crop_h, crop_w)}: pixels between "
            "windows would get no prediction; use a stride ≤ the crop size"
        )
    return [
        (y1, y2, x1, x2)
        for y1, y2 in _starts(height, crop_h, stride_h)
        for x1, x2 in _starts(width, crop_w, stride_w)
    ]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    # Rounded as mmcv's ``_scale_size`` (image/geometric.py): int(side · scale + 0.5).
    return max(int(height * scale + 0.5), 1), max(int(width * scale + 0.5), 1)


def _forward(model, x: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Float32 logits [N, K, h, w] of ``x`` [N, C, h, w], resized to the input if the model's are not."""
    out = model(x)
    logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4 or logits.shape[0] != x.shape[0]:
        raise ValueError(
            f"the model must return logits [N, K, H, W] for an input {tuple(x.shape)}, got "
            f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(out).__name__}"
        )
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"the model predicts {logits.shape[1]} classes but num_classes={num_classes}; give the model's "
            "number of classes (or None to take it from the model)"
        )
    return _resize(logits.float(), tuple(x.shape[-2:]))


def hierarchical_problem(model: nn.Module, scales: Sequence[float]) -> str | None:
    """Why ``mode="hierarchical"`` cannot run ``model`` at ``scales`` (None when it can): it needs
    HRNetV2-OCR's scale-attention head and the scale 1.0 (the output size)."""
    if getattr(model, "scale_attn", None) is None or not hasattr(model, "forward_multiscale"):
        return (
            f"needs a model with a scale-attention head (HRNetV2-OCR, e.g. hrnetv2_w48_ocr_psa_p), got "
            f'{type(model).__name__} without one; use mode "whole" with scales for the averaged '
            "multi-scale test"
        )
    if 1.0 not in [float(s) for s in scales]:
        return (
            f"combines scales around 1.0, got scales {list(scales)}; include 1 (the official evaluation: "
            "0.5 1 2)"
        )
    return None


def _hierarchical(
    model: nn.Module, x: torch.Tensor, scales: list[float], num_classes: int | None
) -> torch.Tensor:
    """Float32 logits of the model's own multi-scale combination (``forward_multiscale``)."""
    problem = hierarchical_problem(model, scales)
    if problem:
        raise ValueError(f'mode="hierarchical" {problem}')
    return _forward(lambda inputs: model.forward_multiscale(inputs, scales), x, num_classes)


def _slide(
    model: nn.Module,
    x: torch.Tensor,
    crop_size: tuple[int, int],
    stride: tuple[int, int],
    num_classes: int | None,
    window_batch: int,
) -> torch.Tensor:
    """Logits [N, K, h, w] of ``x`` [N, C, h, w]: window logits summed, divided by the windows per pixel."""
    n, _, height, width = x.shape
    windows = sliding_windows(height, width, crop_size, stride)
    total = None
    count = x.new_zeros((1, 1, height, width), dtype=torch.float32)
    for first in range(0, len(windows), window_batch):
        chunk = windows[first : first + window_batch]
        crops = torch.cat([x[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])  # [len(chunk)·N, C, ch, cw]
        logits = _forward(model, crops, num_classes)
        if total is None:
            total = x.new_zeros((n, logits.shape[1], height, width), dtype=torch.float32)
        for index, (y1, y2, x1, x2) in enumerate(chunk):
            total[:, :, y1:y2, x1:x2] += logits[index * n : (index + 1) * n]
            count[:, :, y1:y2, x1:x2] += 1
    if bool((count == 0).any()):  # cannot happen with stride ≤ crop; mmseg asserts the same
        raise RuntimeError("sliding window left pixels without a prediction (count 0)")
    return total.div_(count)


def _check_scales(scales: Sequence[float]) -> list[float]:
    values = [float(s) for s in scales]
    if not values or any(not s > 0 for s in values):
        raise ValueError(
            f"scales must be positive numbers (e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)), got {scales}"
        )
    return values


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    image: torch.Tensor,
    *,
    mode: str = "whole",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crop_size: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    num_classes: int | None = None,
    window_batch: int = 1,
) -> torch.Tensor:
    """Class probabilities [N, K, H, W] (float32, on the image's device) of normalised images at their size.

    For each scale s the image is resized to ⌊s·H + 0.5⌋×⌊s·W + 0.5⌋ (bilinear, ``align_corners=False``);
    with ``flip`` its horizontal mirror is predicted too and the result mirrored back. Each prediction's
    logits are resized to H×W and softmaxed; the probabilities are averaged over scales × flips (mmseg TTA).
    One scale without flip is the plain softmax of the model's logits.

    Args:
        model: returns logits [N, K, h, w] (any h, w: resized to its input); run in eval mode, the mode it
            was in is restored.
        image: [N, C, H, W] float, normalised with the model's mean/std (N = 1 in the usual evaluation).
        mode: ``"whole"`` (one forward per scale and flip), ``"slide"`` (mmseg ``slide_inference``: windows
            of ``crop_size`` every ``stride`` pixels, the last snapped to the border; logits of overlapping
            windows averaged; a side shorter than the crop gets one window of the image's size) or
            ``"hierarchical"`` (HRNetV2-OCR's ``forward_multiscale`` over ``scales``, which must include 1.0;
            official PSA Cityscapes evaluation: (0.5, 1.0, 2.0)).
        scales: image scales (DeepLab / mmseg multiply the image; 1.0 = as given).
        flip: add horizontally flipped predictions.
        crop_size / stride: window size and step (int or (height, width)), ``"slide"`` only; stride defaults
            to ⌊2/3 · crop⌋ (HRNet ``multi_scale_inference``), e.g. Cityscapes 769 / 513 in mmseg.
        num_classes: expected K, checked against the model's output (None: taken from it).
        window_batch: windows per forward in ``"slide"`` mode (memory vs speed).
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or not image.dtype.is_floating_point:
        got = (
            f"{tuple(image.shape)} {image.dtype}" if isinstance(image, torch.Tensor) else type(image).__name__
        )
        raise ValueError(
            f"image must be a float tensor [N, C, H, W] normalised with the model's mean/std, got {got}"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    scales = _check_scales(scales)
    if mode == "slide":
        if crop_size is None:
            raise ValueError('mode="slide" needs crop_size (e.g. 769 or (1024, 1024) for Cityscapes)')
        crop_size = _pair(crop_size, "crop_size")
        stride = (
            _pair(stride, "stride") if stride is not None else tuple(max(c * 2 // 3, 1) for c in crop_size)
        )
        sliding_windows(1, 1, crop_size, stride)  # checks stride ≤ crop before any forward
    elif crop_size is not None or stride is not None:
        raise ValueError('crop_size and stride are for mode="slide"; leave them out with mode="whole"')
    if not isinstance(window_batch, int) or window_batch < 1:
        raise ValueError(f"window_batch must be a positive int, got {window_batch!r}")

    height, width = image.shape[-2:]
    flips = (False, True) if flip else (False,)
    was_training = model.training
    model.eval()
    try:
        if mode == "hierarchical":
            return _average_flips(model, image, scales, flips, num_classes)
        probs = None
        for scale in scales:
            scaled = _resize(image, _scaled_size(height, width, scale))
            for flipped in flips:
                x = scaled.flip(-1) if flipped else scaled
                if mode == "slide":
                    logits = _slide(model, x, crop_size, stride, num_classes, window_batch)
                else:
                    logits = _forward(model, x, num_classes)
                if flipped:
                    logits = logits.flip(-1)
                # out of place: a model's output may share memory with its input
                prob = _resize(logits, (height, width)).softmax(dim=1)
                del logits
                if probs is None:
                    probs = prob
                else:
                    probs += prob
                del prob
    finally:
        model.train(was_training)
    return probs.div_(len(scales) * len(flips))


def _average_flips(
    model: nn.Module,
    image: torch.Tensor,
    scales: list[float],
    flips: tuple[bool, ...],
    num_classes: int | None,
) -> torch.Tensor:
    """Softmax of the hierarchical multi-scale logits, averaged over the flips."""
    probs = None
    for flipped in flips:
        x = image.flip(-1) if flipped else image
        logits = _hierarchical(model, x, scales, num_classes)
        prob = (logits.flip(-1) if flipped else logits).softmax(dim=1)
        probs = prob if probs is None else probs.add_(prob)
    return probs.div_(len(flips))
