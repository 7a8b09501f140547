"""SimpleBaseline pose estimation: ResNet + three deconvolutions + a 1×1 heatmap layer.

"Simple Baselines for Human Pose Estimation and Tracking", Xiao et al., 2018, arXiv 1804.06208. Follows
the official ``lib/models/pose_resnet.py`` of leoxiaobin/deep-high-resolution-net.pytorch (MIT) with its
COCO configs (``res{50,101,152}_*_d256x3_adam_lr1e-3.yaml``):

* ResNet trunk at output stride 32 (``backbone``; torchvision names, see ``backbones/resnet.py``);
* ``deconv_layers``: 3 × [ConvTranspose2d 4×4, stride 2, padding 1, no bias → BN → ReLU], 256 channels,
  so the heatmaps are at stride 4 (64×48 for a 256×192 crop);
* ``final_layer``: 1×1 conv (with bias) to K heatmaps.

The head keeps the official names (``deconv_layers.{0,1,3,4,6,7}``, ``final_layer``); the official trunk
keys ``conv1.*, bn1.*, layer{1..4}.*`` become ``backbone.*`` (``psa_zoo.convert.simplebaseline``).
Attention (``attn``) goes after the 3×3 conv of every residual block of the trunk (the PSA paper's
placement); the head has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..labels import COCO_KEYPOINT_SET
from ..layers._helpers import check_positive_int
from .backbones._common import init_trunk_weights
from .backbones.resnet import RESNET_PRESETS, ResNet
from .base import PsaModel, check_drop_rate, to_json_value, wants_dict
from .outputs import PoseOutput

__all__ = ["SimpleBaseline"]

DECONV_KERNEL, DECONV_STRIDE, DECONV_PADDING = 4, 2, 1  # official NUM_DECONV_KERNELS 4 → padding 1, output 0


class SimpleBaseline(PsaModel):
    """SimpleBaseline (pose_resnet) with an optional attention block in every residual block.

    Args:
        depth: ResNet depth, 50, 101 or 152 (the paper's; 18 and 34 work too).
        num_classes: K, number of keypoint heatmaps (17 for COCO).
        attn: attention block for the trunk (name from ``psa_zoo.layers.list_attn()``, a constructor
            ``f(channels, **kw)``, or None).
        attn_kwargs: keyword arguments for the attention constructor.
        in_chans: input channels.
        deconv_channels: output channels of the deconvolution layers (official: three of 256).
        drop_rate: dropout before the heatmap layer (timm's ``drop_rate``; 0 in the official recipes).
        drop_path_rate: stochastic depth of the trunk's residual blocks, linear in depth from 0 to this
            (timm's ``drop_path_rate``; 0 in the official recipes).

    Shapes: ``forward(x)``: [N, in_chans, H, W] → heatmaps [N, K, 8·⌈H/32⌉, 8·⌈W/32⌉], i.e. [N, K, H/4, W/4]
    for H, W divisible by 32 (256×192 → 64×48); ``return_dict=True`` gives :class:`PoseOutput`.
    """

    task = "pose"
    default_labels = COCO_KEYPOINT_SET
    default_input_size = (256, 192)
    metadata_output_stride = 4
    classifier_name = "final_layer"
    first_conv_name = "backbone.conv1"

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 17,
        attn: str | Callable[..., nn.Module] | None = None,
        attn_kwargs: dict | None = None,
        in_chans: int = 3,
        deconv_channels: Sequence[int] = (256, 256, 256),
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if depth not in RESNET_PRESETS:
            raise ValueError(f"depth must be one of {sorted(RESNET_PRESETS)}, got {depth!r}")
        check_positive_int(num_classes, "num_classes", type(self).__name__)
        deconv_channels = tuple(deconv_channels)
        if not deconv_channels:
            raise ValueError("deconv_channels must name at least one deconvolution layer")
        for c in deconv_channels:
            check_positive_int(c, "deconv_channels entries", type(self).__name__)
        self.depth = depth
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.attn, self.attn_kwargs = attn, attn_kwargs
        self.deconv_channels = deconv_channels
        self.drop_rate = check_drop_rate(drop_rate)
        self.backbone = ResNet(
            depth,
            in_chans=in_chans,
            output_stride=32,
            attn=attn,
            attn_kwargs=attn_kwargs,
            drop_path_rate=drop_path_rate,
        )
        self.drop_path_rate = self.backbone.drop_path_rate
        layers, in_chs = [], self.backbone.num_features
        for out_chs in deconv_channels:
            deconv = nn.ConvTranspose2d(
                in_chs, out_chs, DECONV_KERNEL, DECONV_STRIDE, DECONV_PADDING, bias=False
            )
            layers += [deconv, nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True)]
            in_chs = out_chs
        self.deconv_layers = nn.Sequential(*layers)
        self.num_features = in_chs
        self.head_drop = nn.Dropout(self.drop_rate) if self.drop_rate else nn.Identity()
        self.final_layer = nn.Conv2d(in_chs, num_classes, 1)
        self._init_head()

    def _init_head(self) -> None:
        """Official ``init_weights``: deconv and final conv weights ~ N(0, 0.001), BN (1, 0), bias 0."""
        for m in [*self.deconv_layers, self.final_layer]:
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        init_trunk_weights(self.deconv_layers)  # the BN layers; the deconvs are left as set above

    def _reset_head(self, num_classes: int) -> None:
        """A fresh 1×1 ``final_layer`` for ``num_classes`` heatmaps, N(0, 0.001) as the official init."""
        w = self.final_layer.weight
        self.final_layer = nn.Conv2d(self.num_features, num_classes, 1, device=w.device, dtype=w.dtype)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def get_config(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "num_classes": self.num_classes,
            "attn": to_json_value(self.attn, "attn"),
            "attn_kwargs": to_json_value(self.attn_kwargs, "attn_kwargs"),
            "in_chans": self.in_chans,
            "deconv_channels": list(self.deconv_channels),
            "drop_rate": self.drop_rate,
            "drop_path_rate": self.drop_path_rate,
        }

    def output_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """Heatmap (h, w) for an input (H, W): the trunk rounds up at stride 32, each deconv doubles."""
        scale = 2 ** len(self.deconv_channels)
        return tuple(scale * math.ceil(v / 32) for v in input_size)  # type: ignore[return-value]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, in_chans, H, W] → deconvolved features [N, num_features, 8·⌈H/32⌉, 8·⌈W/32⌉]."""
        return self.deconv_layers(self.backbone.forward_features(x))

    def feature_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        return self.output_size(input_size)

    def forward_head(
        self, features: torch.Tensor, return_dict: bool = False, pre_logits: bool = False
    ) -> torch.Tensor | PoseOutput:
        """Deconvolved features → heatmaps [N, num_classes, h, w] (or :class:`PoseOutput`);
        ``pre_logits``: the input of ``final_layer`` (after ``drop_rate``'s dropout)."""
        if pre_logits:
            return self.head_drop(features)
        heatmaps = self.final_layer(self.head_drop(features))
        return PoseOutput(heatmaps=heatmaps, features=features) if wants_dict(return_dict) else heatmaps

    def forward(self, x: torch.Tensor, return_dict: bool = False) -> torch.Tensor | PoseOutput:
        """x: [N, in_chans, H, W] → heatmaps [N, num_classes, 8·⌈H/32⌉, 8·⌈W/32⌉]."""
        return self.forward_head(self.forward_features(x), return_dict=return_dict)
