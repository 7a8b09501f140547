"""What the ResNet and MobileNetV2 backbones share: the stride → dilation plan, weight init that leaves
attention blocks alone, input checks and the timm-style intermediate-index selection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from timm.models._features import feature_take_indices
from torch import nn

from psa_zoo.layers._helpers import check_input

__all__ = [
    "StagePlan",
    "check_image_input",
    "check_in_chans",
    "init_trunk_weights",
    "plan_stages",
    "take_indices",
]


@dataclass(frozen=True)
class StagePlan:
    """Stride and dilation of one stage after dilation has replaced striding.

    ``stride`` belongs to the stage's first block; its 3×3 conv uses ``first_dilation``, every later 3×3
    conv of the stage ``dilation``; ``reduction`` is the stage's output stride relative to the input.
    """

    stride: int
    first_dilation: int
    dilation: int
    reduction: int


def plan_stages(strides: Sequence[int], stem_stride: int, output_stride: int) -> list[StagePlan]:
    """Turn stage strides into dilations once ``output_stride`` is reached.

    The rule of torchvision's ``replace_stride_with_dilation`` (used by VainF/DeepLabV3Plus-Pytorch for
    ResNet), of VainF's MobileNetV2 (``current_stride == output_stride``) and of timm's builders: a stage
    whose stride would take the network past ``output_stride`` runs at stride 1 and multiplies the dilation
    by its stride instead; its first block keeps the previous dilation (so the receptive field grows
    exactly as with striding), the later blocks use the new one.

    Args:
        strides: nominal stride of each stage (e.g. ResNet ``(1, 2, 2, 2)``).
        stem_stride: stride before the first stage (ResNet 4, MobileNetV2 2).
        output_stride: wanted stride of the last stage.
    """
    plans = []
    reduction, dilation = stem_stride, 1
    for stride in strides:
        first_dilation = dilation
        if reduction >= output_stride:
            dilation *= stride
            stride = 1
        else:
            reduction *= stride
        plans.append(StagePlan(stride, first_dilation, dilation, reduction))
    return plans


def init_trunk_weights(module: nn.Module, conv_mode: str = "fan_out") -> None:
    """Kaiming-normal convs (ReLU gain, zero bias) and BatchNorm (1, 0), skipping every sub-module named
    ``attn``: attention blocks bring their own initialisation (PSA's kaiming fan_in, NL/GC zero-init)."""
    for name, m in module.named_modules():
        if "attn" in name.split("."):
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_in_chans(in_chans: int) -> int:
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
    return in_chans


_IMAGE_REMEDIES = {
    "rank": "pass a batch of images (x.unsqueeze(0) for a single one)",
    "channels": "build the model with in_chans={got} or convert the images to {channels} channels",
    "empty": "an image without pixels cannot be processed; leave it out of the batch "
    "(an empty batch, N = 0, is fine)",
}


def check_image_input(x: torch.Tensor, in_chans: int, model: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``[N, in_chans, H, W]`` with H, W ≥ 1; N = 0 passes.

    Same wording as the attention blocks' input check; skipped under ``torch.fx`` symbolic tracing, where
    shapes are proxies that Python cannot branch on (it still runs under torch.compile / torch.export).
    """
    check_input(x, in_chans, model, _IMAGE_REMEDIES, f"in_chans={in_chans}")


def take_indices(num_features: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices`` with a ``ValueError`` for out-of-range indices.

    ``None`` → all; an int n → the last n; a sequence → those indices (negative ones count from the end).
    Returns (sorted absolute indices, largest index).
    """
    picked = [indices] if isinstance(indices, int) else list(indices) if indices is not None else []
    if isinstance(indices, int) and not 0 < indices <= num_features:
        raise ValueError(
            f"indices={indices} asks for the last n of {num_features} features (1..{num_features})"
        )
    if not isinstance(indices, int) and any(not -num_features <= i < num_features for i in picked):
        raise ValueError(f"feature indices {picked} out of range for {num_features} features")
    taken, max_index = feature_take_indices(num_features, indices)
    return sorted(taken), max_index
