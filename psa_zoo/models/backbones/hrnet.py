"""HRNet trunk (stem, ``layer1``, stages 2–4) with an attention slot in every BasicBlock.

Papers: "Deep High-Resolution Representation Learning for Human Pose Estimation" (Sun et al., 2019,
arXiv 1902.09212) and "Deep High-Resolution Representation Learning for Visual Recognition" (Wang et al.,
2019, arXiv 1908.07919). Attention placement from "Polarized Self-Attention" (Liu et al., 2021,
arXiv 2107.00782) as released in DeLightCMU/PSA ``semantic-segmentation/network/hrnetv2.py``: the block
sits in every BasicBlock of stages 2–4 between ``relu(bn1(conv1(x)))`` and ``conv2``, under the released
name ``deattn``; the Bottlenecks of ``layer1`` carry none.

Module names follow the official HRNet code (leoxiaobin/deep-high-resolution-net.pytorch
``lib/models/pose_hrnet.py``, HRNet/HRNet-Semantic-Segmentation ``seg_hrnet.py``), which timm's
``timm/models/hrnet.py`` also keeps, so their trunk state dicts load without renaming. Two switches cover
the differences between the official code bases:

* ``fuse_upsample``: the pose code upsamples lower-resolution branches in the fuse layers with
  ``nn.Upsample(mode="nearest")``; the segmentation code with bilinear ``F.interpolate``, with
  ``align_corners=False`` in NVIDIA's code (``"bilinear"``) and ``align_corners=True`` in
  HRNet/HRNet-Semantic-Segmentation's (``MODEL.ALIGN_CORNERS`` defaults to True there:
  ``"bilinear_align_corners"``). All are done here with ``F.interpolate`` to the exact size of the target
  branch, so any input size works (odd sizes included); for sizes divisible by 32 "nearest" equals the
  official scale-factor upsampling.
* ``multi_scale_output``: the pose code's last stage-4 module only fuses into the highest-resolution
  branch (it has ``fuse_layers.0.*`` only); the segmentation / classification trunks keep all four.

The architecture comes from a :class:`HRNetSpec` (data, not code); ``HRNET_PRESETS`` holds W18/W32/W48.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from psa_zoo.layers import attn_factory

from ._common import check_image_input, check_in_chans, take_indices
from ._drop_path import drop_path_module, drop_path_rates
from ._inplace import residual_add

__all__ = [
    "HRNET_PRESETS",
    "HRNet",
    "HRNetModule",
    "HRNetSpec",
    "StageSpec",
    "filter_timm_state_dict",
    "hrnet_spec",
    "resolve_hrnet_spec",
]

_BN_MOMENTUM = 0.1  # official HRNet code (BN_MOMENTUM = 0.1, i.e. PyTorch's default)
_BLOCKS = ("basic", "bottleneck")
_FUSE_UPSAMPLE = ("nearest", "bilinear", "bilinear_align_corners")


# --------------------------------------------------------------------------------------------------
# Architecture spec (data)
# --------------------------------------------------------------------------------------------------


def _positive_ints(values: Sequence[int], what: str) -> tuple[int, ...]:
    values = tuple(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{what} must be a non-empty sequence of positive ints, got {values!r}")
    return values


# Upper bounds of a spec's counts (the released HRNets: ≤ 4 modules, ≤ 4 blocks, ≤ 4 branches per stage).
# Shapes are checked against the weights' header before anything is allocated, but module counts cost
# Python objects even on the meta device: an untrusted config.json must not ask for millions of blocks.
MAX_MODULES = MAX_BLOCKS = 64
MAX_BRANCHES = 8


def _check_bounded(num_modules: int, num_blocks: tuple[int, ...], widths: tuple[int, ...]) -> None:
    for what, value, limit in (
        ("num_modules", num_modules, MAX_MODULES),
        ("num_blocks entries", max(num_blocks), MAX_BLOCKS),
        ("branches (entries of widths)", len(widths), MAX_BRANCHES),
    ):
        if value > limit:
            raise ValueError(
                f"HRNet stage: {what} is {value}, at most {limit} is supported (the released HRNets use "
                "at most 4); check the spec or the config.json it came from"
            )


@dataclass(frozen=True)
class StageSpec:
    """One HRNet stage: ``num_modules`` multi-resolution modules with one branch per entry of ``widths``.

    Args:
        num_modules: modules stacked in the stage (stage 1 must have 1: it is the plain ``layer1``).
        num_blocks: residual blocks per branch, one entry per branch.
        widths: block width per branch (the "planes"; a Bottleneck outputs 4× this).
        block: ``"basic"`` or ``"bottleneck"``.
    """

    num_modules: int
    num_blocks: tuple[int, ...]
    widths: tuple[int, ...]
    block: str = "basic"

    def __post_init__(self) -> None:
        if not isinstance(self.num_modules, int) or self.num_modules < 1:
            raise ValueError(f"num_modules must be a positive int, got {self.num_modules!r}")
        object.__setattr__(self, "num_blocks", _positive_ints(self.num_blocks, "num_blocks"))
        object.__setattr__(self, "widths", _positive_ints(self.widths, "widths"))
        _check_bounded(self.num_modules, self.num_blocks, self.widths)
        if len(self.num_blocks) != len(self.widths):
            raise ValueError(
                f"num_blocks {self.num_blocks} and widths {self.widths} must have one entry per branch"
            )
        if self.block not in _BLOCKS:
            raise ValueError(f"block must be one of {_BLOCKS}, got {self.block!r}")

    @property
    def num_branches(self) -> int:
        return len(self.widths)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of each branch output (Bottleneck expands by 4)."""
        expansion = 4 if self.block == "bottleneck" else 1
        return tuple(w * expansion for w in self.widths)


@dataclass(frozen=True)
class HRNetSpec:
    """Whole-trunk spec: the stem width and the four stages (stage n has n branches)."""

    stage1: StageSpec
    stage2: StageSpec
    stage3: StageSpec
    stage4: StageSpec
    stem_width: int = 64

    def __post_init__(self) -> None:
        for n, stage in enumerate(self.stages, start=1):
            if not isinstance(stage, StageSpec):
                raise ValueError(f"stage{n} must be a StageSpec, got {type(stage).__name__}")
            if stage.num_branches != n:
                raise ValueError(f"stage{n} must have {n} branches, got widths {stage.widths}")
        if self.stage1.num_modules != 1:
            raise ValueError(f"stage1 is a single layer (num_modules=1), got {self.stage1.num_modules}")
        if not isinstance(self.stem_width, int) or self.stem_width < 1:
            raise ValueError(f"stem_width must be a positive int, got {self.stem_width!r}")

    @property
    def stages(self) -> tuple[StageSpec, StageSpec, StageSpec, StageSpec]:
        return (self.stage1, self.stage2, self.stage3, self.stage4)

    def to_dict(self) -> dict:
        """Plain nested dict of ints, strings and lists (JSON-serialisable)."""
        return asdict(
            self, dict_factory=lambda items: {k: list(v) if isinstance(v, tuple) else v for k, v in items}
        )

    @classmethod
    def from_dict(cls, d: Mapping) -> HRNetSpec:
        """Inverse of :meth:`to_dict`. A ``num_branches`` entry in a stage is accepted and checked."""
        stages = {}
        for n in range(1, 5):
            key = f"stage{n}"
            if key not in d:
                raise ValueError(f"HRNet spec dict needs keys stage1..stage4, missing {key!r}")
            stage = dict(d[key])
            branches = stage.pop("num_branches", None)
            stages[key] = StageSpec(**stage)
            if branches is not None and branches != stages[key].num_branches:
                raise ValueError(
                    f"{key}: num_branches={branches} but {stages[key].num_branches} widths given"
                )
        return cls(**stages, stem_width=d.get("stem_width", 64))


def hrnet_spec(
    widths: Sequence[int],
    num_blocks: int = 4,
    num_modules: Sequence[int] = (1, 4, 3),
    stage1_blocks: int = 4,
    stage1_width: int = 64,
) -> HRNetSpec:
    """The standard HRNet layout for branch ``widths`` (C, 2C, 4C, 8C), BasicBlocks in stages 2–4.

    Args:
        widths: four branch widths; stage n uses the first n.
        num_blocks: BasicBlocks per branch in stages 2–4.
        num_modules: modules in stages 2, 3, 4.
        stage1_blocks / stage1_width: Bottlenecks of ``layer1`` and their width (output 4× width).
    """
    widths = _positive_ints(widths, "widths")
    if len(widths) != 4 or len(tuple(num_modules)) != 3:
        raise ValueError(f"need 4 widths and 3 num_modules, got {widths} and {tuple(num_modules)}")
    stage1 = StageSpec(1, (stage1_blocks,), (stage1_width,), "bottleneck")
    stages = [
        StageSpec(m, (num_blocks,) * n, widths[:n]) for n, m in zip((2, 3, 4), num_modules, strict=True)
    ]
    return HRNetSpec(stage1, *stages)


# Released sizes (HRNet-W18/W32/W48, official configs; timm hrnet_w18/w32/w48 have the same trunk).
# "w18_small" is HRNet-W18-Small v1 of the HRNet ImageNet release (timm ``hrnet_w18_small``): one
# Bottleneck of width 32 in stage 1, two BasicBlocks per branch and one module in stages 2–4.
HRNET_PRESETS: dict[str, HRNetSpec] = {
    "w18_small": hrnet_spec(
        (16, 32, 64, 128), num_blocks=2, num_modules=(1, 1, 1), stage1_blocks=1, stage1_width=32
    ),
    "w18": hrnet_spec((18, 36, 72, 144)),
    "w32": hrnet_spec((32, 64, 128, 256)),
    "w48": hrnet_spec((48, 96, 192, 384)),
}


def resolve_hrnet_spec(spec: str | HRNetSpec | Mapping) -> HRNetSpec:
    """A preset name (``"w18"``, ``"w32"``, ``"w48"``), an :class:`HRNetSpec` or its dict form → spec."""
    if isinstance(spec, HRNetSpec):
        return spec
    if isinstance(spec, str):
        if spec not in HRNET_PRESETS:
            raise ValueError(f"unknown HRNet preset {spec!r}; available: {', '.join(HRNET_PRESETS)}")
        return HRNET_PRESETS[spec]
    if isinstance(spec, Mapping):
        return HRNetSpec.from_dict(spec)
    raise ValueError(f"spec must be a preset name, HRNetSpec or dict, got {type(spec).__name__}")


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


def _conv_bn(
    in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, relu: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_chs, momentum=_BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """3×3 → BN → ReLU → [attention ``deattn``] → 3×3 → BN, plus the (projected) input, then ReLU.

    ``deattn`` is the released PSA name (DeLightCMU/PSA ``hrnetv2.py``), kept for key compatibility; it is
    absent (``None``, no module) when ``attn_layer`` is None. ``drop_path``: probability of dropping a
    sample's residual branch in training (stochastic depth). Shapes: [N, in_chs, H, W] → [N, planes, H, W].
    """

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        attn_layer: Callable[[int], nn.Module] | None = None,
        downsample: nn.Module | None = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, planes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.act1 = nn.ReLU(inplace=True)
        self.deattn = attn_layer(planes) if attn_layer is not None else None
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = drop_path_module(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        if self.deattn is not None:
            out = self.deattn(out)
        out = self.bn2(self.conv2(out))
        return self.act2(residual_add(out, shortcut, self.drop_path))  # into the BN output (see _inplace.py)


class Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1 (×4 expansion) residual block of ``layer1``; no attention slot (as released).

    ``drop_path`` as in :class:`BasicBlock`. Shapes: [N, in_chs, H, W] → [N, 4·planes, H, W].
    """

    expansion = 4

    def __init__(self, in_chs: int, planes: int, downsample: nn.Module | None = None, drop_path: float = 0.0):
        super().__init__()
        out_chs = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chs, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs, momentum=_BN_MOMENTUM)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = drop_path_module(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(residual_add(out, shortcut, self.drop_path))  # into the BN output (see _inplace.py)


def _make_blocks(
    block: str,
    in_chs: int,
    planes: int,
    num_blocks: int,
    attn_layer: Callable[[int], nn.Module] | None,
    drop_paths: Sequence[float] = (),
) -> nn.Sequential:
    """``num_blocks`` residual blocks; the first projects the input (1×1 conv + BN) when widths differ.
    Block i drops its residual branch with probability ``drop_paths[i]`` (none when not given)."""
    expansion = 4 if block == "bottleneck" else 1
    out_chs = planes * expansion
    drop_paths = list(drop_paths) or [0.0] * num_blocks
    layers = []
    for i in range(num_blocks):
        downsample = _conv_bn(in_chs, out_chs, 1) if i == 0 and in_chs != out_chs else None
        if block == "bottleneck":
            layers.append(Bottleneck(in_chs, planes, downsample, drop_paths[i]))
        else:
            layers.append(BasicBlock(in_chs, planes, attn_layer, downsample, drop_paths[i]))
        in_chs = out_chs
    return nn.Sequential(*layers)


class HRNetModule(nn.Module):
    """One multi-resolution module: parallel branches, then every output sums all (resampled) branches.

    ``fuse_layers[i][j]`` brings branch j to branch i: identity for j == i, 1×1 conv + BN followed by
    upsampling for j > i (lower resolution), a chain of stride-2 3×3 conv + BN (ReLU between) for j < i.
    With ``multi_scale_output=False`` only output 0 is built (official pose HRNet, last stage-4 module).
    ``drop_paths``: stochastic-depth probability of the i-th block of every branch (blocks at one depth
    share it).

    Forward: list of B maps [N, C_b, H_b, W_b] → list of B (or 1) maps of the same shapes.
    """

    def __init__(
        self,
        in_chs: Sequence[int],
        stage: StageSpec,
        attn_layer: Callable[[int], nn.Module] | None,
        multi_scale_output: bool = True,
        fuse_upsample: str = "nearest",
        drop_paths: Sequence[float] = (),
    ):
        super().__init__()
        self.fuse_upsample = fuse_upsample
        self.branches = nn.ModuleList(
            _make_blocks(stage.block, c, w, n, attn_layer, list(drop_paths)[:n])
            for c, w, n in zip(in_chs, stage.widths, stage.num_blocks, strict=True)
        )
        chs = stage.out_channels
        num_out = stage.num_branches if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_path(chs, j, i) for j in range(stage.num_branches))
            for i in range(num_out)
        )
        # in place: the sum it applies to is always a tensor of the fuse's own (see forward)
        self.fuse_act = nn.ReLU(inplace=True)
        self.out_channels = chs[:num_out]

    @staticmethod
    def _fuse_path(chs: Sequence[int], j: int, i: int) -> nn.Module:
        if j == i:
            return nn.Identity()
        if j > i:  # upsampling happens in forward, after the conv (as in the official code)
            return _conv_bn(chs[j], chs[i], 1)
        steps = [_conv_bn(chs[j], chs[j], 3, stride=2, relu=True) for _ in range(i - j - 1)]
        steps.append(_conv_bn(chs[j], chs[i], 3, stride=2))
        return nn.Sequential(*steps)

    def forward(
        self, xs: list[torch.Tensor], return_branches: bool = False
    ) -> list[torch.Tensor] | tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Branch maps → fused maps; with ``return_branches`` also the branch maps before the fuse."""
        branches = self.forward_branches(xs)
        fused = self.fuse(branches)
        return (fused, branches) if return_branches else fused

    def forward_branches(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each branch's residual blocks on its own map (the maps before the fuse)."""
        return [branch(x) for branch, x in zip(self.branches, xs, strict=True)]

    def fuse(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Branch maps → every output the sum of all branches resampled to its resolution, then ReLU."""
        out = []
        for i, paths in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            total, owned = None, False
            for j, path in enumerate(paths):  # summed in branch order, as the official code does
                y = path(xs[j])
                if j > i:
                    y = _resize(y, size, self.fuse_upsample)
                if total is None:
                    # a path's fresh output (conv + BN: nothing saved it) may take the sum; the identity
                    # path's is the branch map itself, which the other outputs still read
                    total, owned = y, y is not xs[j]
                elif owned:
                    total = residual_add(total, y)
                else:
                    total, owned = total + y, True
            out.append(self.fuse_act(total if owned else total.clone()))
        return out


def _resize(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    # ``size`` goes in as given (no ``tuple(size)``): under torch.fx it is a proxy that cannot be iterated
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=mode == "bilinear_align_corners")


def _make_transition(prev_chs: Sequence[int], cur_chs: Sequence[int]) -> nn.ModuleList:
    """Adapt the previous stage's outputs to the next stage's branches.

    Existing branches: identity, or 3×3 conv + BN + ReLU when the width changes. New branches: stride-2
    3×3 conv + BN + ReLU steps from the lowest-resolution previous branch (indices as in the official code).
    """
    layers: list[nn.Module] = []
    for i, c in enumerate(cur_chs):
        if i < len(prev_chs):
            layers.append(nn.Identity() if c == prev_chs[i] else _conv_bn(prev_chs[i], c, 3, relu=True))
            continue
        steps = []
        extra = i + 1 - len(prev_chs)
        for k in range(extra):
            out = c if k == extra - 1 else prev_chs[-1]
            steps.append(_conv_bn(prev_chs[-1], out, 3, stride=2, relu=True))
        layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


# --------------------------------------------------------------------------------------------------
# Trunk
# --------------------------------------------------------------------------------------------------


class HRNet(nn.Module):
    """HRNet trunk: stem (two stride-2 3×3 convs) → ``layer1`` → stages 2–4; attention in BasicBlocks.

    Args:
        spec: preset name (``"w18"``, ``"w32"``, ``"w48"``), :class:`HRNetSpec` or its dict form.
        attn: attention block for the ``deattn`` slots: a name from ``psa_zoo.layers.list_attn()``, a
            constructor taking ``channels`` first, or None (no slot, no attention parameters).
        attn_kwargs: keyword arguments bound to ``attn`` (e.g. ``{"init": "hrnet"}`` for PSA).
        in_chans: input channels; a forward with another channel count raises ``ValueError``.
        fuse_upsample: ``"nearest"`` (official pose HRNet, timm), ``"bilinear"`` (NVIDIA / PSA segmentation,
            ``align_corners=False``) or ``"bilinear_align_corners"`` (HRNet/HRNet-Semantic-Segmentation).
        multi_scale_output: keep all four outputs of the last module (True) or only the highest-resolution
            one (False, official pose HRNet).
        drop_path_rate: stochastic depth of the residual blocks, rising linearly with depth from 0
            (``layer1``'s first block) to this (the last module's last blocks); the parallel branches of a
            module share the rate of their depth. timm's ``drop_path_rate``; 0 in the official recipes.

    Forward / ``forward_features``: [N, in_chans, H, W] → list of branch maps, branch b being
    [N, C_b, ⌈H/2^(b+2)⌉, ⌈W/2^(b+2)⌉] (one map with ``multi_scale_output=False``).

    Weights: trunk convs N(0, 0.001), BN weight 1 / bias 0 — the ``init_weights`` of both official code
    bases (``pose_hrnet.py``, ``seg_hrnet.py``), which keeps a fresh model's eval-mode outputs small (a
    Kaiming init compounds through the many fuse sums to outputs of 1e6 and more); the attention blocks keep
    their own initialisation (see their ``init`` argument).
    """

    def __init__(
        self,
        spec: str | HRNetSpec | Mapping = "w32",
        attn: str | Callable[..., nn.Module] | None = None,
        attn_kwargs: dict | None = None,
        in_chans: int = 3,
        fuse_upsample: str = "nearest",
        multi_scale_output: bool = True,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.spec = spec = resolve_hrnet_spec(spec)
        if fuse_upsample not in _FUSE_UPSAMPLE:
            raise ValueError(f"fuse_upsample must be one of {_FUSE_UPSAMPLE}, got {fuse_upsample!r}")
        check_in_chans(in_chans)
        attn_layer = attn_factory(attn, attn_kwargs)
        if attn_layer is not None:
            for n, stage in enumerate(spec.stages[1:], start=2):
                if stage.block != "basic":
                    raise ValueError(
                        f"attention slots exist only in BasicBlocks; stage{n} uses {stage.block!r}"
                    )
        self.in_chans = in_chans
        self.fuse_upsample = fuse_upsample
        self.multi_scale_output = multi_scale_output
        module_depths = [spec.stage1.num_blocks[0]] + [
            max(s.num_blocks) for s in spec.stages[1:] for _ in range(s.num_modules)
        ]
        rates = iter(drop_path_rates(drop_path_rate, sum(module_depths)))
        module_rates = iter([[next(rates) for _ in range(d)] for d in module_depths])
        self.drop_path_rate = float(drop_path_rate)

        stem = spec.stem_width
        self.conv1 = nn.Conv2d(in_chans, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, momentum=_BN_MOMENTUM)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(stem, stem, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem, momentum=_BN_MOMENTUM)
        self.act2 = nn.ReLU(inplace=True)
        s1 = spec.stage1
        self.layer1 = _make_blocks(s1.block, stem, s1.widths[0], s1.num_blocks[0], None, next(module_rates))

        prev = s1.out_channels
        for n, stage in enumerate(spec.stages[1:], start=2):
            cur = stage.out_channels
            setattr(self, f"transition{n - 1}", _make_transition(prev, cur))
            modules = []
            in_chs = cur
            for m in range(stage.num_modules):
                last = n == 4 and m == stage.num_modules - 1
                module = HRNetModule(
                    in_chs,
                    stage,
                    attn_layer,
                    multi_scale_output or not last,
                    fuse_upsample,
                    next(module_rates),
                )
                modules.append(module)
                in_chs = module.out_channels
            setattr(self, f"stage{n}", nn.Sequential(*modules))
            prev = cur

        # timm convention: index 0 is the stem (stride 2), then one map per branch (stride 4, 8, 16, 32). The
        # fused branch maps all come out of the last module of ``stage4`` together, so that is the module
        # named for each of them. Without ``multi_scale_output`` that module fuses into branch 0 only; the
        # coarser levels are then its branch maps before the fuse.
        last = f"stage4.{spec.stage4.num_modules - 1}"
        self.feature_info = [dict(num_chs=stem, reduction=2, module="act1")] + [
            dict(
                num_chs=c,
                reduction=2 ** (b + 2),
                module="stage4" if multi_scale_output or b == 0 else f"{last}.branches.{b}",
            )
            for b, c in enumerate(spec.stage4.out_channels)
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        attn_modules = set()
        for block in self.modules():
            if isinstance(block, BasicBlock) and block.deattn is not None:
                attn_modules.update(id(m) for m in block.deattn.modules())
        for m in self.modules():
            if id(m) in attn_modules:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """[N, in_chans, H, W] → stem output after ``act1`` [N, stem_width, ⌈H/2⌉, ⌈W/2⌉]."""
        check_image_input(x, self.in_chans, type(self).__name__)
        return self.act1(self.bn1(self.conv1(x)))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stem output after ``act1`` → trunk outputs (see class docstring)."""
        return self._run_stages(x, last_branches=False)[0]

    def _run_stages(
        self, x: torch.Tensor, last_branches: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Stem output → (trunk outputs, and with ``last_branches`` the last module's branch maps before
        its fuse). Every stage and module runs as a module call (hooks and wrappers see them)."""
        x = self.layer1(self.act2(self.bn2(self.conv2(x))))
        ys = [t(x) for t in self.transition1]
        for n in (2, 3, 4):
            if n > 2:
                transition = getattr(self, f"transition{n - 1}")
                # existing branches come from their own map, new ones from the lowest resolution (official
                # segmentation code; the pose code feeds y[-1] to every non-empty transition, which differs
                # only if an existing branch changed width, never the case in released configs)
                ys = [t(ys[i] if i < len(ys) else ys[-1]) for i, t in enumerate(transition)]
            if n < 4 or not last_branches:
                ys = getattr(self, f"stage{n}")(ys)
        if not last_branches:
            return ys, None
        for module in self.stage4[:-1]:
            ys = module(ys)
        return self.stage4[-1](ys, return_branches=True)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[N, in_chans, H, W] → list of trunk branch maps [N, C_b, H/2^(b+2), W/2^(b+2)] (rounded up)."""
        return self.forward_stages(self.forward_stem(x))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Same as :meth:`forward_features` (the trunk has no head)."""
        return self.forward_features(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[list[torch.Tensor], list[torch.Tensor]]:
        """timm-style intermediate features.

        The taps are the entries of ``feature_info``: index 0 the stem after ``act1`` ([N, 64, H/2, W/2]),
        indices 1.. the trunk branch maps (stride 4, 8, 16, 32); with ``multi_scale_output=False`` index 1
        is the trunk output and indices 2.. the last module's coarser branch maps before its fuse.

        Args:
            indices: None for all taps, an int n for the last n, or a sequence of indices (negative ok).
            norm: accepted for timm compatibility; there is no final norm, it has no effect.
            stop_early: stop after the stem when only index 0 is requested.
            output_fmt: only ``"NCHW"``.
            intermediates_only: return only the list of selected maps.

        Returns:
            ``intermediates`` (list of [N, C, H', W'] in index order) when ``intermediates_only``, else
            ``(features, intermediates)`` with ``features`` the list returned by :meth:`forward_features`
            (``[]`` when stopped early after the stem).
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take, max_index = take_indices(len(self.feature_info), indices)
        stem = self.forward_stem(x)
        intermediates = [stem] if 0 in take else []
        if stop_early and max_index == 0:
            return intermediates if intermediates_only else ([], intermediates)
        coarse_levels = not self.multi_scale_output and max_index >= 2  # the last module's branch maps
        feats, branches = self._run_stages(stem, last_branches=coarse_levels)
        levels = feats + branches[1:] if coarse_levels else feats
        intermediates += [f for b, f in enumerate(levels, start=1) if b in take]
        return intermediates if intermediates_only else (feats, intermediates)

    def filter_timm_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm ImageNet weights → this trunk's keys (see the module function of the same name). Without
        ``multi_scale_output`` the last module only fuses into branch 0, so timm's other fuse outputs of
        that module are dropped too."""
        trunk = filter_timm_state_dict(state_dict)
        if self.multi_scale_output:
            return trunk
        last = f"stage4.{self.spec.stage4.num_modules - 1}.fuse_layers."
        return {k: v for k, v in trunk.items() if not k.startswith(last) or k.startswith(f"{last}0.")}


# timm's HRNet classification head; everything else in a timm ``hrnet_w*`` state dict is the trunk.
_TIMM_HEAD_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")


def filter_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the classification-head keys of a timm ``hrnet_w*`` state dict, keeping the trunk.

    The result loads into :class:`HRNet` with ``attn=None`` under ``strict=True`` (with attention, only
    the ``deattn`` keys are then missing). For :class:`~psa_zoo.models.hrnet_pose.HRNetPose`, whose head is
    also named ``final_layer``, load it with ``strict=False``.
    """
    return {k: v for k, v in state_dict.items() if not k.startswith(_TIMM_HEAD_PREFIXES)}
