"""ResNet-18/34/50/101/152 backbone with an attention slot in every residual block.

"Deep Residual Learning for Image Recognition", He et al., 2015, arXiv 1512.03385.

* Parameter names are torchvision's / timm's (``conv1, bn1, layer{1..4}.{i}.{conv1, bn1, conv2, bn2,
  conv3, bn3, downsample.0, downsample.1}``), so an ImageNet state dict of either loads with
  ``strict=True`` after :func:`filter_timm_resnet` has dropped the classifier ``fc.*``. The stride sits on
  the 3×3 conv (ResNet v1.5, as torchvision, timm, VainF/DeepLabV3Plus-Pytorch and
  leoxiaobin/deep-high-resolution-net.pytorch ``pose_resnet.py``).
* Attention: the PSA paper adds its block "after the first 3×3 conv of every residual block". In a
  Bottleneck that is conv2 (the only 3×3): ``conv2 → bn2 → ReLU → attn → conv3``; in a BasicBlock it is
  conv1: ``conv1 → bn1 → ReLU → attn → conv2`` (where the released PSA code puts ``deattn`` in HRNet's
  BasicBlock). The sub-module is named ``attn``; with ``attn=None`` it does not exist.
* ``output_stride`` 16 / 8 replaces the stride of layer4 / layer3+layer4 by dilation exactly as
  torchvision's ``replace_stride_with_dilation`` (which VainF's DeepLabV3+ uses): the first block of a
  dilated layer keeps the previous dilation in its 3×3 conv at stride 1, the others use the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from timm.models import adapt_input_conv
from torch import nn

from psa_zoo.layers import attn_factory

from ._common import check_image_input, check_in_chans, init_trunk_weights, plan_stages, take_indices
from ._drop_path import drop_path_module, drop_path_rates
from ._inplace import residual_add

__all__ = ["RESNET_PRESETS", "BasicBlock", "Bottleneck", "ResNet", "ResNetPreset", "filter_timm_resnet"]


@dataclass(frozen=True)
class ResNetPreset:
    """Block type (``"basic"`` or ``"bottleneck"``) and the number of blocks in layer1..layer4."""

    block: str
    layers: tuple[int, int, int, int]


RESNET_PRESETS: dict[int, ResNetPreset] = {
    18: ResNetPreset("basic", (2, 2, 2, 2)),
    34: ResNetPreset("basic", (3, 4, 6, 3)),
    50: ResNetPreset("bottleneck", (3, 4, 6, 3)),
    101: ResNetPreset("bottleneck", (3, 4, 23, 3)),
    152: ResNetPreset("bottleneck", (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # inner width of the blocks of layer1..layer4
STAGE_STRIDES = (1, 2, 2, 2)
STEM_STRIDE = 4  # conv1 (stride 2) + maxpool (stride 2)

AttnLayer = Callable[[int], nn.Module] | None


def _downsample(in_chs: int, out_chs: int, stride: int) -> nn.Sequential | None:
    """1×1 conv + BN on the shortcut when the block changes width or stride (``downsample.{0,1}``)."""
    if stride == 1 and in_chs == out_chs:
        return None
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs))


class BasicBlock(nn.Module):
    """conv3×3 → BN → ReLU → [attn] → conv3×3 → BN → (+ shortcut) → ReLU.

    Args:
        in_chs: input channels.
        planes: width of both 3×3 convs (= output channels).
        stride: stride of conv1.
        first_dilation: dilation (and padding) of conv1; dilation: of conv2.
        attn_layer: ``f(channels) -> nn.Module`` for the slot after conv1, or None.
        drop_path: probability of dropping the residual branch of a sample in training (stochastic depth).

    Shapes: [N, in_chs, H, W] → [N, planes, H/stride, W/stride].
    """

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        first_dilation: int = 1,
        dilation: int = 1,
        attn_layer: AttnLayer = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_chs, planes, 3, stride, padding=first_dilation, dilation=first_dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.attn = attn_layer(planes) if attn_layer is not None else None
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_chs, planes, stride)
        self.drop_path = drop_path_module(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        if self.attn is not None:
            out = self.attn(out)
        out = self.bn2(self.conv2(out))
        return self.act2(residual_add(out, shortcut, self.drop_path))  # into the BN output (see _inplace.py)


class Bottleneck(nn.Module):
    """conv1×1 → BN → ReLU → conv3×3 → BN → ReLU → [attn] → conv1×1 → BN → (+ shortcut) → ReLU.

    Args:
        in_chs: input channels.
        planes: inner width; the block outputs ``4 · planes`` channels.
        stride: stride of the 3×3 conv (conv2).
        first_dilation: dilation (and padding) of conv2; ``dilation`` is unused (kept for one signature).
        attn_layer: ``f(channels) -> nn.Module`` for the slot after conv2, or None.
        drop_path: probability of dropping the residual branch of a sample in training (stochastic depth).

    Shapes: [N, in_chs, H, W] → [N, 4·planes, H/stride, W/stride].
    """

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        first_dilation: int = 1,
        dilation: int = 1,
        attn_layer: AttnLayer = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        out_chs = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chs, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride, padding=first_dilation, dilation=first_dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.attn = attn_layer(planes) if attn_layer is not None else None
        self.conv3 = nn.Conv2d(planes, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_chs, out_chs, stride)
        self.drop_path = drop_path_module(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        if self.attn is not None:
            out = self.attn(out)
        out = self.bn3(self.conv3(out))
        return self.act3(residual_add(out, shortcut, self.drop_path))  # into the BN output (see _inplace.py)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """ResNet trunk (no classifier) with an optional attention block in every residual block.

    Args:
        depth: 18, 34, 50, 101 or 152 (see ``RESNET_PRESETS``).
        in_chans: input channels.
        output_stride: 32 (plain), 16 (layer4 dilated) or 8 (layer3 and layer4 dilated).
        attn: attention block name from ``psa_zoo.layers.list_attn()``, a constructor ``f(channels, **kw)``
            or None (no attention, no ``attn`` sub-modules).
        attn_kwargs: keyword arguments for the attention constructor.
        drop_path_rate: stochastic depth of the residual blocks, rising linearly from 0 at the first block
            to this at the last (timm's ``drop_path_rate``; 0 in the official recipes).

    Shapes: ``forward(x)`` = ``forward_features(x)``: [N, in_chans, H, W] → [N, num_features, H', W'] with
    H' = ⌈H / output_stride⌉ (every stride-2 conv or pool rounds up).

    Attributes:
        feature_info: timm-style list of ``dict(num_chs, reduction, module)`` for the stem (``act1``,
            64 ch, stride 2) and layer1..layer4; ``reduction`` reflects ``output_stride``.
        num_features: channels of layer4 (512 · expansion).
    """

    def __init__(
        self,
        depth: int = 50,
        in_chans: int = 3,
        output_stride: int = 32,
        attn: str | Callable[..., nn.Module] | None = None,
        attn_kwargs: dict | None = None,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if depth not in RESNET_PRESETS:
            raise ValueError(f"depth must be one of {sorted(RESNET_PRESETS)}, got {depth!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        self.depth = depth
        self.in_chans = check_in_chans(in_chans)
        self.output_stride = output_stride
        preset = RESNET_PRESETS[depth]
        block_cls = _BLOCKS[preset.block]
        attn_layer = attn_factory(attn, attn_kwargs)
        drop_paths = iter(drop_path_rates(drop_path_rate, sum(preset.layers)))
        self.drop_path_rate = float(drop_path_rate)

        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        self.feature_info = [dict(num_chs=64, reduction=2, module="act1")]
        in_chs = 64
        plans = plan_stages(STAGE_STRIDES, STEM_STRIDE, output_stride)
        for i, (width, num_blocks, plan) in enumerate(
            zip(STAGE_WIDTHS, preset.layers, plans, strict=True), start=1
        ):
            blocks = []
            for b in range(num_blocks):
                first = b == 0
                blocks.append(
                    block_cls(
                        in_chs,
                        width,
                        stride=plan.stride if first else 1,
                        first_dilation=plan.first_dilation if first else plan.dilation,
                        dilation=plan.dilation,
                        attn_layer=attn_layer,
                        drop_path=next(drop_paths),
                    )
                )
                in_chs = width * block_cls.expansion
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_chs, reduction=plan.reduction, module=f"layer{i}"))
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
            indices: which of the 5 ``feature_info`` maps (0 stem, 1..4 layer1..4): None = all, an int n =
                the last n, a sequence = those indices.
            norm: accepted for timm compatibility; a ResNet has no final norm, so it changes nothing.
            stop_early: stop after the deepest requested map (the final output is then that map).
            output_fmt: only ``"NCHW"``.
            intermediates_only: return only the list.

        Returns:
            ``intermediates`` — list of [N, feature_info[i]["num_chs"], H_i, W_i], in increasing depth — or
            ``(final, intermediates)`` with final = the last map computed ([N, num_features, H', W'] unless
            ``stop_early`` stopped before layer4).
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        check_image_input(x, self.in_chans, type(self).__name__)
        take, max_index = take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in take:
            intermediates.append(x)
        x = self.maxpool(x)
        last = max_index if stop_early else 4
        for i in range(1, last + 1):
            x = getattr(self, f"layer{i}")(x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, in_chans, H, W] → layer4 map [N, num_features, H / output_stride, W / output_stride]."""
        return self.forward_intermediates(x, indices=[4], intermediates_only=True)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features` (a backbone has no classifier)."""
        return self.forward_features(x)

    def filter_timm_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm ImageNet weights → this backbone's keys (see :func:`filter_timm_resnet`)."""
        return filter_timm_resnet(state_dict, self)


def filter_timm_resnet(state_dict: dict[str, torch.Tensor], model: ResNet | None = None) -> dict:
    """A timm or torchvision ImageNet ResNet state dict → keys of :class:`ResNet`.

    Drops the classifier (``fc.weight``, ``fc.bias``); with ``model`` given and ``model.in_chans != 3``,
    adapts ``conv1.weight`` with timm's ``adapt_input_conv`` (repeat and rescale the RGB filters). The
    result loads with ``strict=True`` into a ``ResNet`` of the same depth built with ``attn=None``; with
    attention only the ``attn`` keys are missing. Signature of timm's ``pretrained_filter_fn``.
    """
    if "conv1.weight" not in state_dict or "layer1.0.conv1.weight" not in state_dict:
        raise ValueError(
            "not a timm/torchvision ResNet state dict: conv1.weight or layer1.0.conv1.weight missing"
        )
    out = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    if model is not None and out["conv1.weight"].shape[1] != model.in_chans:
        out["conv1.weight"] = adapt_input_conv(model.in_chans, out["conv1.weight"])
    return out
