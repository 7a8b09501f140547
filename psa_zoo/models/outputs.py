"""Named outputs of models whose forward can return more than one tensor (transformers-style)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SegmentationOutput:
    """Outputs of a segmentation model with ``return_dict=True``.

    Attributes:
        logits: [N, num_classes, H, W] class logits at the input size.
        aux_logits: [N, num_classes, H, W] auxiliary logits (OCR's soft object regions), or None.
        scale_attn: [N, 1, H, W] scale-attention map in (0, 1) (hierarchical multi-scale head), or None.
    """

    logits: torch.Tensor
    aux_logits: torch.Tensor | None = None
    scale_attn: torch.Tensor | None = None


@dataclass
class PoseOutput:
    """Outputs of a pose model with ``return_dict=True``.

    Attributes:
        heatmaps: [N, K, h, w] raw keypoint heatmaps (no flip test, no decoding); h, w at the model's
            output stride (``model.output_size``).
        features: [N, C, h, w] the features the heatmap layer reads, or None.
    """

    heatmaps: torch.Tensor
    features: torch.Tensor | None = None
