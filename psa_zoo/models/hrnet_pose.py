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

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ._mixin import PsaModelMixin
from .backbones.hrnet import HRNet, HRNetSpec

__all__ = ["HRNetPose"]


class HRNetPose(HRNet, PsaModelMixin):
    """HRNet pose estimator: image crop → keypoint heatmaps.

    Args:
        spec: ``"w32"`` / ``"w48"`` (also ``"w18"``), an :class:`~psa_zoo.models.backbones.hrnet.HRNetSpec`
            or its dict form.
        num_classes: number of keypoints K (17 for COCO).
        attn: attention block for the BasicBlock ``deattn`` slots (name, constructor or None).
        attn_kwargs: keyword arguments bound to ``attn``.
        in_chans: input channels.

    Forward: x [N, in_chans, H, W] → raw heatmaps [N, K, ⌈H/4⌉, ⌈W/4⌉] (e.g. 256×192 → 64×48); no flip
    test or decoding. The trunk API of :class:`HRNet` (``forward_features``, ``forward_intermediates``,
    ``feature_info``) is inherited; its single trunk output is the input of ``final_layer``.
    """

    def __init__(
        self,
        spec: str | HRNetSpec | Mapping = "w32",
        num_classes: int = 17,
        attn: str | Callable[..., nn.Module] | None = None,
        attn_kwargs: dict | None = None,
        in_chans: int = 3,
    ):
        super().__init__(
            spec, attn, attn_kwargs, in_chans=in_chans, fuse_upsample="nearest", multi_scale_output=False
        )
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes (keypoints) must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.final_layer = nn.Conv2d(self.spec.stage4.out_channels[0], num_classes, 1)
        # official pose head init: N(0, 0.001) weights, zero bias
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Trunk output list (one map [N, C, H/4, W/4]) → heatmaps [N, K, H/4, W/4]."""
        return self.final_layer(features[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, in_chans, H, W] → heatmaps [N, num_classes, ⌈H/4⌉, ⌈W/4⌉]."""
        return self.forward_head(self.forward_features(x))
