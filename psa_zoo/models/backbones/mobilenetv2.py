"""MobileNetV2 (width 1.0) backbone with an attention slot in the residual inverted-residual blocks.

"MobileNetV2: Inverted Residuals and Linear Bottlenecks", Sandler et al., 2018, arXiv 1801.04381.

* Parameter names are timm's ``mobilenetv2_100`` (``conv_stem, bn1, blocks.{stage}.{i}.*``; the first
  block is a depthwise-separable block ``conv_dw, bn1, conv_pw, bn2``, the others inverted residuals
  ``conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3``). The backbone ends with the 320-channel block, like
  VainF/DeepLabV3Plus-Pytorch's DeepLab backbone (which drops feature 18, the 1×1 conv to 1280): timm's
  ``conv_head``, ``bn2`` and ``classifier`` are absent, and :func:`filter_timm_mobilenetv2` drops them
  from a timm state dict.
* ``output_stride`` 16 / 8 as VainF's ``network/backbone/mobilenetv2.py``: once the running stride reaches
  ``output_stride``, a stage runs at stride 1 and multiplies the dilation by its stride; its first block
  keeps the previous dilation. OS16: the first 160-channel block at stride 1, dilation 2 from the second
  160-channel block on (the 320 block too). OS8: the 64-channel stage is the first at stride 1, dilation 2
  from its second block, then 4 from the second 160-channel block.
* ``padding="fixed"`` reproduces VainF (the torchvision-DeepLab port of TF's "fixed padding"): the stem
  3×3 stride-2 conv has **no** padding, and every block zero-pads its *input* by ``dilation`` pixels per
  side before its first conv (the 1×1 expansion, so the padded border goes through expansion, BN and
  ReLU6), all inner convs with padding 0. ``padding="symmetric"`` is timm's ordinary ``k // 2 · d``
  padding on the stem and the depthwise convs. The two give different sizes for odd inputs (129 → 64 vs
  65 after the stem) and different border values, so weights should run in the mode they were trained in.
* Attention: the PSA paper names no place in MobileNetV2. We apply its rule for the other backbones ("after
  the first 3×3 conv of every residual block"): the block goes after the depthwise 3×3 conv + BN + ReLU6
  (at the expanded width) of every block with an identity shortcut (stride 1 and in == out); the
  sub-module is named ``attn``. That is 10 blocks at widths 144, 192 (×2), 384 (×3), 576 (×2), 960 (×2),
  the same for every output stride. With ``psa_p`` (2C² + C parameters per block) this adds 6,091,920
  parameters to the 1,811,712 of the backbone — far from the paper's table, which lists the same 5.22M
  for DeepLabV3+ MobileNetV2 with and without PSA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models import adapt_input_conv
from torch import nn

from psa_zoo.layers import attn_factory

from ._common import check_image_input, check_in_chans, init_trunk_weights, plan_stages, take_indices
from ._drop_path import drop_path_module, drop_path_rates
from ._inplace import residual_add

__all__ = [
    "MOBILENETV2_STAGES",
    "DepthwiseSeparable",
    "InvertedResidual",
    "MobileNetV2",
    "MobileNetV2Stage",
    "filter_timm_mobilenetv2",
]


@dataclass(frozen=True)
class MobileNetV2Stage:
    """One row of the paper's Table 2: expansion t, output channels c, repeats n, stride s."""

    expand: int
    out_chs: int
    num_blocks: int
    stride: int


MOBILENETV2_STAGES: tuple[MobileNetV2Stage, ...] = (
    MobileNetV2Stage(1, 16, 1, 1),
    MobileNetV2Stage(6, 24, 2, 2),
    MobileNetV2Stage(6, 32, 3, 2),
    MobileNetV2Stage(6, 64, 4, 2),
    MobileNetV2Stage(6, 96, 3, 1),
    MobileNetV2Stage(6, 160, 3, 2),
    MobileNetV2Stage(6, 320, 1, 1),
)
STEM_CHANNELS = 32
FEATURE_STAGES = (0, 1, 2, 4, 6)  # stages whose outputs timm's mobilenetv2_100 reports as features
PADDING_MODES = ("fixed", "symmetric")

AttnLayer = Callable[[int], nn.Module] | None


class _Block(nn.Module):
    """Shared parts of the two block types: input padding (``"fixed"``), shortcut, stochastic depth (a
    sample's residual branch dropped with probability ``drop_path`` in training; blocks with a shortcut
    only)."""

    def __init__(
        self, in_chs: int, out_chs: int, stride: int, dilation: int, padding: str, drop_path: float = 0.0
    ):
        super().__init__()
        self.has_shortcut = stride == 1 and in_chs == out_chs
        self.drop_path = drop_path_module(drop_path) if self.has_shortcut else None
        # "fixed": pad the block input once (VainF's F.pad before the first conv); "symmetric": per conv.
        self.input_pad = dilation if padding == "fixed" else 0
        self.conv_pad = 0 if padding == "fixed" else dilation

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        p = self.input_pad
        return F.pad(x, (p, p, p, p)) if p else x


class DepthwiseSeparable(_Block):
    """Expansion-1 block: dw3×3 → BN → ReLU6 → [attn] → pw1×1 → BN (→ + input when it has a shortcut).

    Names as timm's ``DepthwiseSeparableConv``: ``conv_dw, bn1, conv_pw, bn2``.
    Shapes: [N, in_chs, H, W] → [N, out_chs, H/stride, W/stride].
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        dilation: int = 1,
        padding: str = "symmetric",
        attn_layer: AttnLayer = None,
        drop_path: float = 0.0,
    ):
        super().__init__(in_chs, out_chs, stride, dilation, padding, drop_path)
        self.conv_dw = nn.Conv2d(
            in_chs, in_chs, 3, stride, self.conv_pad, dilation=dilation, groups=in_chs, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act1 = nn.ReLU6(inplace=True)
        self.attn = attn_layer(in_chs) if attn_layer is not None and self.has_shortcut else None
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_dw(self._pad(x))))
        if self.attn is not None:
            out = self.attn(out)
        out = self.bn2(self.conv_pw(out))
        return residual_add(out, x, self.drop_path) if self.has_shortcut else out  # into the BN output


class InvertedResidual(_Block):
    """pw1×1 expand → BN → ReLU6 → dw3×3 → BN → ReLU6 → [attn] → pw1×1 project → BN (→ + input).

    Names as timm's ``InvertedResidual``: ``conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3``. The attention
    block (at the expanded width ``in_chs · expand``) exists only when the block has an identity shortcut.
    Shapes: [N, in_chs, H, W] → [N, out_chs, H/stride, W/stride].
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        dilation: int = 1,
        expand: int = 6,
        padding: str = "symmetric",
        attn_layer: AttnLayer = None,
        drop_path: float = 0.0,
    ):
        super().__init__(in_chs, out_chs, stride, dilation, padding, drop_path)
        hidden = in_chs * expand
        self.conv_pw = nn.Conv2d(in_chs, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv_dw = nn.Conv2d(
            hidden, hidden, 3, stride, self.conv_pad, dilation=dilation, groups=hidden, bias=False
        )
        self.bn2 = nn.BatchNorm2d(hidden)
        self.act2 = nn.ReLU6(inplace=True)
        self.attn = attn_layer(hidden) if attn_layer is not None and self.has_shortcut else None
        self.conv_pwl = nn.Conv2d(hidden, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_pw(self._pad(x))))
        out = self.act2(self.bn2(self.conv_dw(out)))
        if self.attn is not None:
            out = self.attn(out)
        out = self.bn3(self.conv_pwl(out))
        return residual_add(out, x, self.drop_path) if self.has_shortcut else out  # into the BN output


class MobileNetV2(nn.Module):
    """MobileNetV2-1.0 trunk up to the 320-channel block (no 1280 head, no classifier).

    Args:
        in_chans: input channels.
        output_stride: 32 (plain), 16 or 8 (dilation as VainF, see the module docstring).
        padding: ``"symmetric"`` (timm, default) or ``"fixed"`` (VainF / torchvision-DeepLab).
        attn: attention block name from ``psa_zoo.layers.list_attn()``, a constructor ``f(channels, **kw)``
            or None (no ``attn`` sub-modules).
        attn_kwargs: keyword arguments for the attention constructor.
        drop_path_rate: stochastic depth, rising linearly from 0 at the first block to this at the last
            (blocks without a shortcut have none; timm's ``drop_path_rate``, 0 as VainF).

    Shapes: ``forward(x)`` = ``forward_features(x)``: [N, in_chans, H, W] → [N, 320, H', W'];
    H' = ⌈H / output_stride⌉ with ``"symmetric"``, ⌈⌊(H − 1) / 2⌋ / (output_stride / 2)⌉ with ``"fixed"``
    (its stem drops the last row of odd sizes: 129 → 64 → … → 8 at OS16).

    Attributes:
        feature_info: timm-style ``dict(num_chs, reduction, module)`` for the outputs of ``blocks.0``
            (16 ch, stride 2), ``blocks.1`` (24 ch, stride 4: DeepLabV3+'s low-level map), ``blocks.2``
            (32), ``blocks.4`` (96) and ``blocks.6`` (320, the final map); ``reduction`` reflects
            ``output_stride``.
        num_features: 320.
    """

    def __init__(
        self,
        in_chans: int = 3,
        output_stride: int = 32,
        padding: str = "symmetric",
        attn: str | Callable[..., nn.Module] | None = None,
        attn_kwargs: dict | None = None,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
        self.in_chans = check_in_chans(in_chans)
        self.output_stride = output_stride
        self.padding = padding
        attn_layer = attn_factory(attn, attn_kwargs)
        drop_paths = iter(drop_path_rates(drop_path_rate, sum(s.num_blocks for s in MOBILENETV2_STAGES)))
        self.drop_path_rate = float(drop_path_rate)

        self.conv_stem = nn.Conv2d(
            in_chans, STEM_CHANNELS, 3, stride=2, padding=0 if padding == "fixed" else 1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.act1 = nn.ReLU6(inplace=True)

        plans = plan_stages([s.stride for s in MOBILENETV2_STAGES], 2, output_stride)
        stages, in_chs = [], STEM_CHANNELS
        for stage, plan in zip(MOBILENETV2_STAGES, plans, strict=True):
            blocks = []
            for b in range(stage.num_blocks):
                kwargs = dict(
                    stride=plan.stride if b == 0 else 1,
                    dilation=plan.first_dilation if b == 0 else plan.dilation,
                    padding=padding,
                    attn_layer=attn_layer,
                    drop_path=next(drop_paths),
                )
                if stage.expand == 1:
                    blocks.append(DepthwiseSeparable(in_chs, stage.out_chs, **kwargs))
                else:
                    blocks.append(InvertedResidual(in_chs, stage.out_chs, expand=stage.expand, **kwargs))
                in_chs = stage.out_chs
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.feature_info = [
            dict(num_chs=MOBILENETV2_STAGES[i].out_chs, reduction=plans[i].reduction, module=f"blocks.{i}")
            for i in FEATURE_STAGES
        ]
        self.num_features = in_chs
        init_trunk_weights(self)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the trunk and collect feature maps (timm's ``forward_intermediates`` contract).

        Args:
            x: [N, in_chans, H, W].
            indices: which of the 5 ``feature_info`` maps (``blocks.0, 1, 2, 4, 6``): None = all, an int
                n = the last n, a sequence = those indices.
            norm: accepted for timm compatibility; there is no final norm here.
            stop_early: stop after the deepest requested map.
            output_fmt: only ``"NCHW"``.
            intermediates_only: return only the list.

        Returns:
            ``intermediates`` (list of [N, feature_info[i]["num_chs"], H_i, W_i], in increasing depth) or
            ``(final, intermediates)`` with final = the last map computed ([N, 320, H', W'] unless
            ``stop_early`` stopped earlier).
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        check_image_input(x, self.in_chans, type(self).__name__)
        take, max_index = take_indices(len(self.feature_info), indices)
        take_stages = {FEATURE_STAGES[i] for i in take}
        last_stage = FEATURE_STAGES[max_index] if stop_early else len(self.blocks) - 1
        intermediates = []
        x = self.act1(self.bn1(self.conv_stem(x)))
        for i in range(last_stage + 1):
            x = self.blocks[i](x)
            if i in take_stages:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, in_chans, H, W] → final map [N, 320, H', W']."""
        return self.forward_intermediates(x, indices=[-1], intermediates_only=True)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features` (a backbone has no classifier)."""
        return self.forward_features(x)

    def filter_timm_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm ImageNet weights → this backbone's keys (see :func:`filter_timm_mobilenetv2`)."""
        return filter_timm_mobilenetv2(state_dict, self)


def filter_timm_mobilenetv2(state_dict: dict[str, torch.Tensor], model: MobileNetV2 | None = None) -> dict:
    """A timm ``mobilenetv2_100`` state dict → keys of :class:`MobileNetV2`.

    Drops ``conv_head.*``, the top-level ``bn2.*`` and ``classifier.*`` (the 1280-channel head and the
    ImageNet classifier); with ``model`` given and ``model.in_chans != 3``, adapts ``conv_stem.weight`` with
    timm's ``adapt_input_conv``. The result loads with ``strict=True`` into ``MobileNetV2(attn=None)``.
    Signature of timm's ``pretrained_filter_fn``.
    """
    if "conv_stem.weight" not in state_dict or "blocks.0.0.conv_dw.weight" not in state_dict:
        raise ValueError(
            "not a timm mobilenetv2 state dict: conv_stem.weight or blocks.0.0.conv_dw.weight missing"
        )
    dropped = ("conv_head.", "bn2.", "classifier.")
    out = {k: v for k, v in state_dict.items() if not k.startswith(dropped)}
    if model is not None and out["conv_stem.weight"].shape[1] != model.in_chans:
        out["conv_stem.weight"] = adapt_input_conv(model.in_chans, out["conv_stem.weight"])
    return out
