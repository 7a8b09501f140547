"""Named outputs of models whose forward can return more than one tensor (transformers-style)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SegmentationOutput:
    """Outputs of a segmentation model when training extras are asked for.

    Attributes:
        logits: [N, num_classes, H, W] class logits at the input size.
        aux_logits: [N, num_classes, H, W] auxiliary logits (OCR's soft object regions), or None.
        scale_attn: [N, 1, H, W] scale-attention map in (0, 1) (hierarchical multi-scale head), or None.
    """

    logits: torch.Tensor
    aux_logits: torch.Tensor | None = None
    scale_attn: torch.Tensor | None = None
