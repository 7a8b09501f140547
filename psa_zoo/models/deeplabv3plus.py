"""DeepLabV3+ with a ResNet or MobileNetV2 encoder, as VainF/DeepLabV3Plus-Pytorch (MIT).

"Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation", Chen et al., 2018,
arXiv 1802.02611. The PSA paper's Pascal VOC baselines (MobileNetV2 5.22M, ResNet-50 39.8M, ResNet-101
58.8M parameters) match VainF's ``deeplabv3plus_{mobilenet,resnet50,resnet101}`` with 21 classes, so this
follows VainF's ``network/_deeplab.py`` (``DeepLabHeadV3Plus``, ``ASPP``) and ``network/modeling.py``:

* encoder: ResNet (low level = layer1, 256 ch at stride 4; high level = layer4, 2048 ch) or MobileNetV2
  (low level = the 24-ch blocks at stride 4; high level = the 320-ch block), dilated to ``output_stride``;
* ASPP on the high-level map: 1×1 conv, three 3×3 convs with dilation 6/12/18 (OS16) or 12/24/36 (OS8),
  image pooling (global average → 1×1 conv → BN → ReLU → broadcast), each 256 ch + BN + ReLU;
  concat → 1×1 conv to 256 + BN + ReLU + dropout 0.1;
* low level → 1×1 conv to 48 + BN + ReLU; ASPP output upsampled bilinearly (align_corners=False) to the
  low-level size, concatenated (48 + 256 = 304 ch) → 3×3 conv 256 + BN + ReLU → 1×1 conv to K (with bias);
* logits upsampled bilinearly (align_corners=False) to the input size, for any H, W.

Not VainF's ``--separable_conv`` option (off by default; its released checkpoints do not use it).

Module names and the map from VainF's state dict (``psa_zoo.convert.vainf_deeplab`` applies it):

=====================================  ===========================================================
VainF                                  here
=====================================  ===========================================================
``backbone.*`` (ResNet)                ``backbone.*`` (unchanged: torchvision names)
``backbone.{low,high}_level_features`` ``backbone.conv_stem / bn1 / blocks.{s}.{i}.*`` (timm names)
``classifier.project.*``               ``decoder.project.*``
``classifier.aspp.*``                  ``decoder.aspp.*`` (``convs.{0..4}``, ``project``)
``classifier.classifier.{0,1}``        ``decoder.fuse.{0,1}`` (3×3 conv + BN on the concatenation)
``classifier.classifier.3``            ``head`` (1×1 conv to the classes)
=====================================  ===========================================================

Attention (``attn``) goes into the encoder's residual blocks (see ``backbones/resnet.py`` and
``backbones/mobilenetv2.py``); the decoder has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import VOC_CLASS_SET
from ..layers._helpers import check_positive_int
from .backbones._common import init_trunk_weights
from .backbones.mobilenetv2 import MobileNetV2
from .backbones.resnet import ResNet
from .base import PsaModel, check_drop_rate, to_json_value, wants_dict
from .outputs import SegmentationOutput

__all__ = ["ASPP", "ASPP_RATES", "DEEPLAB_ENCODERS", "DeepLabV3Plus", "DeepLabV3PlusDecoder"]

ASPP_RATES: dict[int, tuple[int, int, int]] = {16: (6, 12, 18), 8: (12, 24, 36)}  # VainF modeling.py
ASPP_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48
# feature_info indices of both backbone families: 1 = the stride-4 map, 4 = the last map.
LOW_LEVEL_INDEX, HIGH_LEVEL_INDEX = 1, 4


@dataclass(frozen=True)
class EncoderSpec:
    """How to build an encoder: its class and the keyword arguments that select the variant."""

    cls: type[nn.Module]
    kwargs: dict = field(default_factory=dict)


DEEPLAB_ENCODERS: dict[str, EncoderSpec] = {
    # VainF's MobileNetV2 pads as torchvision-DeepLab ("fixed"); override with encoder_kwargs.
    "mobilenetv2": EncoderSpec(MobileNetV2, {"padding": "fixed"}),
    **{f"resnet{d}": EncoderSpec(ResNet, {"depth": d}) for d in (18, 34, 50, 101, 152)},
}


class ASPPPooling(nn.Sequential):
    """Image-level branch: global average → 1×1 conv → BN → ReLU, broadcast back to H × W.

    Index 0 is the pooling so that the conv and BN keep VainF's keys ``convs.4.1`` / ``convs.4.2``.
    Shapes: [N, C_in, H, W] → [N, C_out, H, W].
    """

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # VainF upsamples the 1×1 map bilinearly; from a single pixel that is a broadcast.
        return super().forward(x).expand(-1, -1, x.shape[-2], x.shape[-1])


def _conv_bn_relu(in_chs: int, out_chs: int, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (VainF ``ASPP``; names ``convs.{0..4}``, ``project``).

    Args:
        in_chs: channels of the high-level map.
        rates: dilations of the three 3×3 branches.
        out_chs: width of every branch and of the output (256).
        dropout: dropout after the projection (0.1).

    Shapes: [N, in_chs, h, w] → [N, out_chs, h, w].
    """

    def __init__(
        self, in_chs: int, rates: tuple[int, int, int], out_chs: int = ASPP_CHANNELS, dropout: float = 0.1
    ):
        super().__init__()
        self.convs = nn.ModuleList(
            [_conv_bn_relu(in_chs, out_chs)]
            + [_conv_bn_relu(in_chs, out_chs, 3, rate) for rate in rates]
            + [ASPPPooling(in_chs, out_chs)]
        )
        self.project = nn.Sequential(
            nn.Conv2d(len(self.convs) * out_chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the high-level map, fused with the projected low-level map (VainF ``DeepLabHeadV3Plus``
    without its last 1×1 conv, which is :attr:`DeepLabV3Plus.head`).

    Args:
        low_chs: channels of the stride-4 map; high_chs: of the last map.
        rates: ASPP dilations.
        aspp_dropout: dropout after the ASPP projection (VainF: 0.1).

    Shapes: low [N, low_chs, H/4, W/4], high [N, high_chs, h, w] → [N, 256, H/4, W/4].
    """

    def __init__(self, low_chs: int, high_chs: int, rates: tuple[int, int, int], aspp_dropout: float = 0.1):
        super().__init__()
        self.project = _conv_bn_relu(low_chs, LOW_LEVEL_CHANNELS)
        self.aspp = ASPP(high_chs, rates, dropout=aspp_dropout)
        self.fuse = _conv_bn_relu(LOW_LEVEL_CHANNELS + ASPP_CHANNELS, ASPP_CHANNELS, 3)
        self.out_channels = ASPP_CHANNELS

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        low = self.project(low)
        context = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([low, context], dim=1))


class DeepLabV3Plus(PsaModel):
    """DeepLabV3+ (VainF layout) with an optional attention block in the encoder's residual blocks.

    Args:
        encoder: ``"mobilenetv2"``, ``"resnet50"`` or ``"resnet101"`` (VainF's set; ``"resnet18"``,
            ``"resnet34"`` and ``"resnet152"`` work too).
        num_classes: K, classes of the logits (21 for Pascal VOC).
        output_stride: 16 (ASPP rates 6/12/18) or 8 (12/24/36).
        attn: attention block for the encoder (name from ``psa_zoo.layers.list_attn()``, a constructor
            ``f(channels, **kw)``, or None).
        attn_kwargs: keyword arguments for the attention constructor.
        in_chans: input channels.
        encoder_kwargs: extra encoder arguments, e.g. ``{"padding": "symmetric"}`` for a MobileNetV2
            encoder with timm's padding instead of VainF's (the default ``"fixed"``).
        drop_rate: dropout before the final 1×1 conv (timm's ``drop_rate``; 0 as VainF).
        aspp_dropout: dropout after the ASPP projection (0.1 as VainF; 0 makes training deterministic
            across process counts, since each process draws its own dropout masks).
        drop_path_rate: stochastic depth of the encoder's residual blocks, linear in depth from 0 to this
            (timm's ``drop_path_rate``; 0 in the official recipes).

    Shapes: ``forward(x)``: [N, in_chans, H, W] → logits [N, K, H, W] for any H, W;
    ``forward(x, return_dict=True)`` → :class:`SegmentationOutput` (``aux_logits`` and ``scale_attn`` None).

    Attributes:
        backbone: the encoder (:class:`ResNet` or :class:`MobileNetV2`).
        decoder: :class:`DeepLabV3PlusDecoder`; head: the final 1×1 conv (256 → K, with bias).
    """

    task = "segmentation"
    default_labels = VOC_CLASS_SET
    default_input_size = (513, 513)
    classifier_name = "head"

    def __init__(
        self,
        encoder: str = "resnet50",
        num_classes: int = 21,
        output_stride: int = 16,
        attn: str | Callable[..., nn.Module] | None = None,
        attn_kwargs: dict | None = None,
        in_chans: int = 3,
        encoder_kwargs: dict | None = None,
        drop_rate: float = 0.0,
        aspp_dropout: float = 0.1,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if encoder not in DEEPLAB_ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(DEEPLAB_ENCODERS)}, got {encoder!r}")
        if output_stride not in ASPP_RATES:
            raise ValueError(f"output_stride must be one of {sorted(ASPP_RATES)}, got {output_stride!r}")
        check_positive_int(num_classes, "num_classes", type(self).__name__)
        spec = DEEPLAB_ENCODERS[encoder]
        self.encoder_name = encoder
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.output_stride = output_stride
        self.attn, self.attn_kwargs, self.encoder_kwargs = attn, attn_kwargs, encoder_kwargs
        self.drop_rate = check_drop_rate(drop_rate)
        self.aspp_dropout = check_drop_rate(aspp_dropout, "aspp_dropout")
        self.backbone = spec.cls(
            in_chans=in_chans,
            output_stride=output_stride,
            attn=attn,
            attn_kwargs=attn_kwargs,
            drop_path_rate=drop_path_rate,
            **{**spec.kwargs, **(encoder_kwargs or {})},
        )
        self.drop_path_rate = self.backbone.drop_path_rate
        info = self.backbone.feature_info
        self.decoder = DeepLabV3PlusDecoder(
            info[LOW_LEVEL_INDEX]["num_chs"],
            info[HIGH_LEVEL_INDEX]["num_chs"],
            ASPP_RATES[output_stride],
            self.aspp_dropout,
        )
        self.num_features = self.decoder.out_channels
        self.head_drop = nn.Dropout(self.drop_rate) if self.drop_rate else nn.Identity()
        self.head = nn.Conv2d(self.num_features, num_classes, 1)
        # VainF's head init: kaiming-normal (fan_in) convs, BN (1, 0).
        init_trunk_weights(self.decoder, conv_mode="fan_in")
        init_trunk_weights(self.head, conv_mode="fan_in")

    @property
    def first_conv_name(self) -> str:  # type: ignore[override]
        return "backbone.conv_stem" if self.encoder_name == "mobilenetv2" else "backbone.conv1"

    def _reset_head(self, num_classes: int) -> None:
        """A fresh final 1×1 conv for ``num_classes`` classes (VainF's kaiming-normal init)."""
        device, dtype = self.head.weight.device, self.head.weight.dtype
        self.head = nn.Conv2d(self.num_features, num_classes, 1, device=device, dtype=dtype)
        init_trunk_weights(self.head, conv_mode="fan_in")

    def get_config(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder_name,
            "num_classes": self.num_classes,
            "output_stride": self.output_stride,
            "attn": to_json_value(self.attn, "attn"),
            "attn_kwargs": to_json_value(self.attn_kwargs, "attn_kwargs"),
            "in_chans": self.in_chans,
            "encoder_kwargs": to_json_value(self.encoder_kwargs, "encoder_kwargs"),
            "drop_rate": self.drop_rate,
            "aspp_dropout": self.aspp_dropout,
            "drop_path_rate": self.drop_path_rate,
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, in_chans, H, W] → decoder features [N, 256, h, w] before the 1×1 head, at the size of
        the stride-4 low-level map."""
        low, high = self.backbone.forward_intermediates(
            x, indices=[LOW_LEVEL_INDEX, HIGH_LEVEL_INDEX], intermediates_only=True
        )
        return self.decoder(low, high)

    def feature_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """The stride-4 low-level map's (h, w): two stride-2 layers, each rounding up; VainF's fixed-padding
        MobileNetV2 stem (no padding) rounds ``(H − 1) / 2`` down instead."""
        fixed_stem = getattr(self.backbone, "padding", None) == "fixed"
        first = [(v - 1) // 2 if fixed_stem else math.ceil(v / 2) for v in input_size]
        return tuple(math.ceil(v / 2) for v in first)  # type: ignore[return-value]

    def forward_head(
        self,
        features: torch.Tensor,
        output_size: tuple[int, int] | None = None,
        return_dict: bool = False,
        pre_logits: bool = False,
    ) -> torch.Tensor | SegmentationOutput:
        """Decoder features [N, 256, h, w] → logits [N, K, H, W], resized bilinearly to ``output_size``
        (no resize when None); ``pre_logits``: the head's input [N, 256, h, w] (after ``drop_rate``'s
        dropout, not resized)."""
        if pre_logits:
            return self.head_drop(features)
        logits = self.head(self.head_drop(features))
        if output_size is not None:
            logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
        return SegmentationOutput(logits=logits) if wants_dict(return_dict) else logits

    def forward(self, x: torch.Tensor, return_dict: bool = False) -> torch.Tensor | SegmentationOutput:
        """x: [N, in_chans, H, W] → logits [N, num_classes, H, W] (or :class:`SegmentationOutput`)."""
        return self.forward_head(self.forward_features(x), x.shape[-2:], return_dict=return_dict)
