"""Training losses of the paper's recipes, shared by the training engine and the transformers wrappers.

* :func:`keypoint_mse_loss`: HRNet's ``JointsMSELoss`` (leoxiaobin/deep-high-resolution-net.pytorch
  ``lib/core/loss.py``, ``USE_TARGET_WEIGHT``): 0.5 · mean over batch, joints and pixels of
  (w · (heatmaps − targets))², w the per-joint target weight (0 leaves an unlabelled joint out) times the
  dataset's joint weight where a recipe uses it.
* :func:`segmentation_cross_entropy`: cross-entropy over the pixels whose label is not ``ignore_index``;
  :func:`cross_entropy_sum_and_count` gives the sum and the count, so an engine can average over the
  valid pixels of a whole step (gradient accumulation, several processes) instead of per micro-batch.
* :func:`segmentation_loss`: main + ``aux_weight`` × auxiliary cross-entropy for models with an auxiliary
  head (HRNetV2-OCR's soft object regions; 0.4 as NVIDIA's ``LOSS.OCR_ALPHA`` and HRNet-Semantic-
  Segmentation's ``LOSS.BALANCE_WEIGHTS``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .models.outputs import SegmentationOutput

__all__ = [
    "cross_entropy_sum_and_count",
    "keypoint_mse_loss",
    "keypoint_mse_sum_and_count",
    "segmentation_cross_entropy",
    "segmentation_loss",
]


def keypoint_mse_loss(
    heatmaps: torch.Tensor, targets: torch.Tensor, target_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """0.5 · mean((w · (heatmaps − targets))²).

    Args:
        heatmaps: [N, K, h, w] predictions.
        targets: [N, K, h, w] target heatmaps.
        target_weight: [N, K] or [N, K, 1] per-joint weights, or None (all 1).
    Returns:
        scalar loss.
    """
    if heatmaps.shape != targets.shape:
        raise ValueError(
            f"target heatmaps must have the predictions' shape {tuple(heatmaps.shape)}, got "
            f"{tuple(targets.shape)}"
        )
    diff = heatmaps - targets
    if target_weight is not None:
        n, k = heatmaps.shape[:2]
        if target_weight.numel() != n * k:
            raise ValueError(
                f"target_weight must hold one weight per joint [N, K] = [{n}, {k}], got "
                f"{tuple(target_weight.shape)}"
            )
        diff = diff * target_weight.reshape(n, k, 1, 1).to(diff.dtype)
    return 0.5 * diff.pow(2).mean()


def keypoint_mse_sum_and_count(
    heatmaps: torch.Tensor, targets: torch.Tensor, target_weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(0.5 · sum((w · (heatmaps − targets))²), number of elements): :func:`keypoint_mse_loss` as a sum and
    a count, so an engine averages over a whole step (micro-batches and processes) exactly."""
    loss = keypoint_mse_loss(heatmaps, targets, target_weight)
    count = torch.tensor(heatmaps.numel(), device=heatmaps.device)
    return loss * heatmaps.numel(), count


def _check_labels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.ndim != 3 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must be [N, H, W] class ids for logits {tuple(logits.shape)}, got {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    return labels.long()


def cross_entropy_sum_and_count(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the per-pixel cross-entropy, number of labelled pixels).

    Args:
        logits: [N, K, H, W]; resized bilinearly to the label size when the sizes differ.
        labels: [N, H', W'] class ids, ``ignore_index`` for pixels left out.
    """
    labels = _check_labels(logits, labels)
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    return total, (labels != ignore_index).sum()


def segmentation_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels; 0 (still differentiable) when every pixel is ignored."""
    total, count = cross_entropy_sum_and_count(logits, labels, ignore_index)
    return total / count.clamp_min(1)


def segmentation_loss(
    output: torch.Tensor | SegmentationOutput,
    labels: torch.Tensor,
    ignore_index: int = 255,
    aux_weight: float = 0.4,
) -> torch.Tensor:
    """Cross-entropy of the logits, plus ``aux_weight`` × that of the auxiliary logits when the output has
    them (a :class:`SegmentationOutput` from ``model(x, return_dict=True)``)."""
    if isinstance(output, torch.Tensor):
        return segmentation_cross_entropy(output, labels, ignore_index)
    loss = segmentation_cross_entropy(output.logits, labels, ignore_index)
    if output.aux_logits is not None and aux_weight:
        loss = loss + aux_weight * segmentation_cross_entropy(output.aux_logits, labels, ignore_index)
    return loss
