"""Top-down pose HRNet (SimpleBaseline-style heatmap regression) with optional attention in its blocks.

Architecture of leoxiaobin/deep-high-resolution-net.pytorch ``lib/models/pose_hrnet.py``
(``PoseHighResolutionNet``): the HRNet trunk with nearest-neighbour fuse upsampling, the last stage-4
module fusing into the highest-resolution branch only, and ``final_layer``, a 1×1 conv (with bias) from
that branch to one heatmap per keypoint at stride 4. The state-dict keys equal the official ones, so a
released ``pose_hrnet_w32/w48`` file loads as it is (see ``psa_zoo.convert.hrnet_pose``).

PSA for pose (the paper's UDP-Pose + PSA results) has no released code; attention goes into the same
``deattn`` slot as in the released segmentation model (every BasicBlock of stages 2–4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..labels import COCO_KEYPOINT_SET
from ..layers._helpers import check_positive_int
from .backbones.hrnet import HRNET_PRESETS, HRNet, HRNetSpec
from .base import PsaModel, check_drop_rate, to_json_value, wants_dict
from .outputs import PoseOutput

__all__ = ["HRNetPose", "hrnet_spec_value"]


def hrnet_spec_value(spec: HRNetSpec) -> str | dict:
    """The config form of a spec: its preset name when it is one (``"w48"``), else its dict form."""
    return next((name for name, preset in HRNET_PRESETS.items() if preset == spec), None) or spec.to_dict()


class HRNetPose(HRNet, PsaModel):
    """HRNet pose estimator: image crop → keypoint heatmaps.

    Args:
        spec: ``"w32"`` / ``"w48"`` (also ``"w18"``), an :class:`~psa_zoo.models.backbones.hrnet.HRNetSpec`
            or its dict form.
        num_classes: number of keypoints K (17 for COCO).
        attn: attention block for the BasicBlock ``deattn`` slots (name, constructor or None).
        attn_kwargs: keyword arguments bound to ``attn``.
        in_chans: input channels.
        drop_rate: dropout before the heatmap layer (timm's ``drop_rate``; 0 in the official recipes).
        drop_path_rate: stochastic depth of the trunk's residual blocks, linear in depth from 0 to this
            (timm's ``drop_path_rate``; 0 in the official recipes).

    Forward: x [N, in_chans, H, W] → raw heatmaps [N, K, ⌈H/4⌉, ⌈W/4⌉] (e.g. 256×192 → 64×48); no flip
    test or decoding; ``return_dict=True`` gives :class:`PoseOutput`. ``forward_features`` gives the single
    trunk output [N, C, ⌈H/4⌉, ⌈W/4⌉], the input of ``final_layer``; ``forward_intermediates`` and
    ``feature_info`` (the stem, that map and the coarser branch maps of the last module) come from
    :class:`HRNet`.
    """

    task = "pose"
    default_labels = COCO_KEYPOINT_SET
    default_input_size = (256, 192)
    metadata_output_stride = 4
    classifier_name = "final_layer"
    first_conv_name = "conv1"

    def __init__(
        self,
        spec: str | HRNetSpec | Mapping = "w32",
        num_classes: int = 17,
        attn: str | Callable[..., nn.Module] | None = None,
        attn_kwargs: dict | None = None,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__(
            spec,
            attn,
            attn_kwargs,
            in_chans=in_chans,
            fuse_upsample="nearest",
            multi_scale_output=False,
            drop_path_rate=drop_path_rate,
        )
        check_positive_int(num_classes, "num_classes (keypoints)", type(self).__name__)
        self.attn, self.attn_kwargs = attn, attn_kwargs
        self.num_classes = num_classes
        self.num_features = self.spec.stage4.out_channels[0]
        self.drop_rate = check_drop_rate(drop_rate)
        self.head_drop = nn.Dropout(self.drop_rate) if self.drop_rate else nn.Identity()
        self.final_layer = self._new_final_layer(num_classes)

    def _new_final_layer(self, num_classes: int) -> nn.Conv2d:
        """1×1 conv to K heatmaps with the official pose head init: N(0, 0.001) weights, zero bias."""
        conv = nn.Conv2d(self.num_features, num_classes, 1)
        nn.init.normal_(conv.weight, std=0.001)
        nn.init.zeros_(conv.bias)
        return conv

    def _reset_head(self, num_classes: int) -> None:
        w = self.final_layer.weight
        self.final_layer = self._new_final_layer(num_classes).to(device=w.device, dtype=w.dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            "spec": hrnet_spec_value(self.spec),
            "num_classes": self.num_classes,
            "attn": to_json_value(self.attn, "attn"),
            "attn_kwargs": to_json_value(self.attn_kwargs, "attn_kwargs"),
            "in_chans": self.in_chans,
            "drop_rate": self.drop_rate,
            "drop_path_rate": self.drop_path_rate,
        }

    @staticmethod
    def output_size(input_size: tuple[int, int]) -> tuple[int, int]:
        """Heatmap (h, w) for an input (H, W): (⌈H/4⌉, ⌈W/4⌉)."""
        return math.ceil(input_size[0] / 4), math.ceil(input_size[1] / 4)

    def feature_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        return self.output_size(input_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """x [N, in_chans, H, W] → trunk output [N, num_features, ⌈H/4⌉, ⌈W/4⌉]."""
        return super().forward_features(x)[0]

    def forward_intermediates(self, x: torch.Tensor, *args, **kwargs):  # type: ignore[override]
        """:meth:`HRNet.forward_intermediates`, whose final output is this model's ``forward_features``
        tensor (the stride-4 trunk output) instead of the trunk's one-element list."""
        out = super().forward_intermediates(x, *args, **kwargs)
        if isinstance(out, tuple):
            feats, intermediates = out
            return (feats[0] if feats else feats), intermediates
        return out

    def forward_head(
        self, features: torch.Tensor, return_dict: bool = False, pre_logits: bool = False
    ) -> torch.Tensor | PoseOutput:
        """Trunk output [N, C, H/4, W/4] → heatmaps [N, K, H/4, W/4] (or :class:`PoseOutput`);
        ``pre_logits``: the input of ``final_layer`` [N, C, H/4, W/4] (after ``drop_rate``'s dropout)."""
        if pre_logits:
            return self.head_drop(features)
        heatmaps = self.final_layer(self.head_drop(features))
        return PoseOutput(heatmaps=heatmaps, features=features) if wants_dict(return_dict) else heatmaps

    def forward(self, x: torch.Tensor, return_dict: bool = False) -> torch.Tensor | PoseOutput:
        """x [N, in_chans, H, W] → heatmaps [N, num_classes, ⌈H/4⌉, ⌈W/4⌉] (or :class:`PoseOutput`)."""
        return self.forward_head(self.forward_features(x), return_dict=return_dict)
