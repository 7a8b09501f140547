"""HRNetV2 + OCR, with or without hierarchical multi-scale attention: the released PSA segmentation model.

Papers: "Object-Contextual Representations for Semantic Segmentation" (Yuan et al., arXiv 1909.11065),
"Hierarchical Multi-Scale Attention for Semantic Segmentation" (Tao et al., arXiv 2005.10821), PSA
(Liu et al., arXiv 2107.00782). Released code: DeLightCMU/PSA ``semantic-segmentation/`` (a copy of
NVIDIA/semantic-segmentation): ``network/ocrnet.py`` (``MscaleOCR``, arch ``ocrnet.HRNet_Mscale``),
``network/ocr_utils.py`` (OCR gather / object attention, from HRNet/HRNet-Semantic-Segmentation),
``network/utils.py`` (``make_attn_head``, ``BNReLU``), ``network/hrnetv2.py`` (trunk with PSA).

Parts (official widths for W48 in brackets):

* ``backbone``: HRNetV2 trunk, bilinear fuse upsampling, all four branches kept; the branches are resized
  (bilinear, ``align_corners=False``) to stride 4 and concatenated [720 channels].
* ``ocr``: ``conv3x3_ocr`` (3×3 conv + BN + ReLU → mid [512]); ``aux_head`` (soft object regions:
  1×1 + BN + ReLU + 1×1 → K); ``ocr_gather_head`` (region features: softmax of the aux logits over
  positions); ``ocr_distri_head`` (pixel–region attention with key width [256], concat with the pixel
  features, 1×1 + BN + ReLU + Dropout2d(0.05)); ``cls_head`` (1×1 → K).
* ``scale_attn``: 3×3 conv + BN + ReLU [256], 3×3 conv + BN + ReLU, 1×1 conv → 1, sigmoid, applied to the
  OCR features: how much a scale's prediction is trusted in the multi-scale combination.

The plain HRNetV2-OCR of HRNet/HRNet-Semantic-Segmentation (branch HRNet-OCR, ``lib/models/seg_hrnet_ocr.py``)
is the same network without ``scale_attn`` (``scale_attn_channels=None``) and with every bilinear resize
(trunk fuse layers, branch concatenation, logits) at ``align_corners=True`` (that code's
``MODEL.ALIGN_CORNERS`` defaults to True and its OCR configs keep it).

Sub-module names are the official NVIDIA ones, so an NVIDIA/PSA checkpoint maps by prefix renames only
(``psa_zoo.convert.psa_nvidia``); the HRNet-Semantic-Segmentation layout differs in a few indices
(``psa_zoo.convert.hrnet_ocr``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import CITYSCAPES_CLASS_SET
from ..layers._helpers import check_positive_int
from .backbones.hrnet import HRNet, HRNetSpec
from .base import PsaModel, check_drop_rate, to_json_value, wants_dict
from .hrnet_pose import hrnet_spec_value
from .outputs import SegmentationOutput

__all__ = ["HRNetOCR", "ObjectAttention", "OcrHead", "ScaleAttentionHead", "SpatialGather", "SpatialOcr"]


def _resize(x: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    # every resize of both official codes is bilinear: MODEL.ALIGN_CORNERS False (NVIDIA) or True (HRNet)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)  # size: fx-traceable


def _bn_relu(channels: int) -> nn.Sequential:
    """``BNReLU`` of the official code: Sequential(BN, ReLU), hence the ``.1.0.*`` keys."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())


def _conv1x1_bn_relu(in_chs: int, out_chs: int) -> list[nn.Module]:
    return [nn.Conv2d(in_chs, out_chs, 1, bias=False), _bn_relu(out_chs)]


class SpatialGather(nn.Module):
    """Object-region features: per class, the pixel features averaged with softmax-over-positions weights.

    Forward: feats [N, C, H, W], region logits [N, K, H, W] → region features [N, C, K, 1].
    """

    def forward(self, feats: torch.Tensor, region_logits: torch.Tensor) -> torch.Tensor:
        weights = region_logits.flatten(2).softmax(dim=2)  # [N, K, HW]; flatten: N = 0 works too
        regions = torch.bmm(weights, feats.flatten(2).transpose(1, 2))  # [N, K, C]
        return regions.transpose(1, 2).unsqueeze(3)


class ObjectAttention(nn.Module):
    """Pixel–region attention (``ObjectAttentionBlock`` with scale 1): every pixel attends over the K regions.

    query = f_pixel(pixels), key = f_object(regions), value = f_down(regions), softmax(q·k / √key_channels)
    over regions, context = f_up(attention · value).

    Forward: pixels [N, C, H, W], regions [N, C, K, 1] → context [N, C, H, W].
    """

    def __init__(self, channels: int, key_channels: int):
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(
            *_conv1x1_bn_relu(channels, key_channels), *_conv1x1_bn_relu(key_channels, key_channels)
        )
        self.f_object = nn.Sequential(
            *_conv1x1_bn_relu(channels, key_channels), *_conv1x1_bn_relu(key_channels, key_channels)
        )
        self.f_down = nn.Sequential(*_conv1x1_bn_relu(channels, key_channels))
        self.f_up = nn.Sequential(*_conv1x1_bn_relu(key_channels, channels))

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        n, _, h, w = pixels.shape
        query = self.f_pixel(pixels).flatten(2).transpose(1, 2)  # [N, HW, Ck]
        key = self.f_object(regions).flatten(2)  # [N, Ck, K]
        value = self.f_down(regions).flatten(2).transpose(1, 2)  # [N, K, Ck]
        sim = (torch.bmm(query, key) * self.key_channels**-0.5).softmax(dim=-1)  # [N, HW, K]
        context = torch.bmm(sim, value).transpose(1, 2).reshape(n, self.key_channels, h, w)
        return self.f_up(context)


class SpatialOcr(nn.Module):
    """``SpatialOCR_Module``: object context concatenated with the pixel features, 1×1 + BN + ReLU + dropout.

    Forward: pixels [N, C, H, W], regions [N, C, K, 1] → [N, C, H, W].
    """

    def __init__(self, channels: int, key_channels: int, dropout: float = 0.05):
        super().__init__()
        self.object_context_block = ObjectAttention(channels, key_channels)
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1, bias=False), _bn_relu(channels), nn.Dropout2d(dropout)
        )

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        context = self.object_context_block(pixels, regions)
        return self.conv_bn_dropout(torch.cat([context, pixels], dim=1))  # order as released


class OcrHead(nn.Module):
    """``OCR_block``: trunk features → (class logits, soft-region logits, OCR features), all at trunk size.

    Args:
        in_channels: trunk channels (720 for W48). num_classes: K.
        mid_channels / key_channels: OCR widths (512 / 256 released). dropout: after the OCR fusion conv.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        mid_channels: int = 512,
        key_channels: int = 256,
        dropout: float = 0.05,
    ):
        super().__init__()
        self.conv3x3_ocr = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1), _bn_relu(mid_channels)
        )
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOcr(mid_channels, key_channels, dropout)
        self.cls_head = nn.Conv2d(mid_channels, num_classes, 1)
        self.aux_head = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1),
            _bn_relu(in_channels),
            nn.Conv2d(in_channels, num_classes, 1),
        )

    def forward_features(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [N, C_in, h, w] → aux [N, K, h, w] (soft object regions), OCR features [N, mid, h, w]."""
        pixels = self.conv3x3_ocr(feats)
        aux = self.aux_head(feats)
        return aux, self.ocr_distri_head(pixels, self.ocr_gather_head(pixels, aux))

    def forward(
        self, feats: torch.Tensor, head_drop: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """feats [N, C_in, h, w] → cls [N, K, h, w], aux [N, K, h, w], OCR features [N, mid, h, w];
        ``head_drop`` (the model's ``drop_rate``) runs before ``cls_head``."""
        aux, ocr_feats = self.forward_features(feats)
        cls_in = head_drop(ocr_feats) if head_drop is not None else ocr_feats
        return self.cls_head(cls_in), aux, ocr_feats


class ScaleAttentionHead(nn.Module):
    """Hierarchical multi-scale attention head (``make_attn_head`` with ``MSCALE_INNER_3x3``, no dropout).

    Forward: OCR features [N, C, h, w] → attention [N, 1, h, w] in (0, 1).
    """

    def __init__(self, in_channels: int = 512, channels: int = 256):
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.conv0(x)))
        x = F.relu(self.bn1(self.conv1(x)))
        return torch.sigmoid(self.conv2(x))


class HRNetOCR(PsaModel):
    """HRNetV2 + OCR + scale attention (NVIDIA ``MscaleOCR``, used by DeLightCMU/PSA), or plain HRNetV2 + OCR.

    Args:
        spec: ``"w48"`` (released), another preset, an ``HRNetSpec`` or its dict form.
        num_classes: K (19 for Cityscapes).
        attn / attn_kwargs: attention block for the trunk's BasicBlock ``deattn`` slots (``"psa_s"`` is the
            released model, ``"psa_p"`` the parallel variant; None for plain HRNetV2-OCR).
        in_chans: input channels.
        ocr_mid_channels / ocr_key_channels: OCR widths (official ``MODEL.OCR.MID_CHANNELS`` /
            ``KEY_CHANNELS``).
        scale_attn_channels: width of the scale-attention head (official ``MODEL.SEGATTN_BOT_CH``); None
            builds no head (plain HRNetV2-OCR: no ``scale_attn`` output, no :meth:`forward_multiscale`).
        dropout: Dropout2d rate after the OCR fusion conv.
        align_corners: ``align_corners`` of every bilinear resize (trunk fuse layers, branch concatenation,
            logits to the input size): False in NVIDIA's code, True in HRNet/HRNet-Semantic-Segmentation's.
        drop_rate: dropout before the class head (timm's ``drop_rate``; 0 in the official code).
        drop_path_rate: stochastic depth of the trunk's residual blocks, linear in depth from 0 to this
            (timm's ``drop_path_rate``; 0 in the official recipes).

    ``forward(x)`` → logits [N, K, H, W] at the input size (one scale; a plain tensor, export-friendly).
    ``forward(x, return_dict=True)`` → :class:`SegmentationOutput` with ``logits``, ``aux_logits`` (soft
    object regions) and ``scale_attn`` ([N, 1, H, W]; None without the head), all resized to the input size.
    A single-scale ``forward`` leaves the scale-attention head out of the loss, so DDP must be told
    (``ddp_find_unused_parameters`` is True for such a model; the training engine reads it).
    ``forward_multiscale(x, scales)`` → the hierarchical multi-scale combination of the official evaluation.
    """

    task = "segmentation"
    default_labels = CITYSCAPES_CLASS_SET
    default_input_size = (1024, 2048)
    classifier_name = "ocr.cls_head"
    first_conv_name = "backbone.conv1"

    def __init__(
        self,
        spec: str | HRNetSpec | Mapping = "w48",
        num_classes: int = 19,
        attn: str | Callable[..., nn.Module] | None = None,
        attn_kwargs: dict | None = None,
        in_chans: int = 3,
        ocr_mid_channels: int = 512,
        ocr_key_channels: int = 256,
        scale_attn_channels: int | None = 256,
        dropout: float = 0.05,
        align_corners: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        check_positive_int(num_classes, "num_classes", type(self).__name__)
        self.num_classes = num_classes
        self.attn, self.attn_kwargs = attn, attn_kwargs
        self.ocr_mid_channels, self.ocr_key_channels = ocr_mid_channels, ocr_key_channels
        self.scale_attn_channels, self.dropout = scale_attn_channels, dropout
        self.drop_rate = check_drop_rate(drop_rate)
        self.head_drop = nn.Dropout(self.drop_rate) if self.drop_rate else nn.Identity()
        self.align_corners = bool(align_corners)
        fuse_upsample = "bilinear_align_corners" if self.align_corners else "bilinear"
        self.backbone = HRNet(
            spec,
            attn,
            attn_kwargs,
            in_chans=in_chans,
            fuse_upsample=fuse_upsample,
            multi_scale_output=True,
            drop_path_rate=drop_path_rate,
        )
        self.drop_path_rate = self.backbone.drop_path_rate
        self.in_chans = in_chans
        self.num_features = sum(self.backbone.spec.stage4.out_channels)
        self.ocr = OcrHead(self.num_features, num_classes, ocr_mid_channels, ocr_key_channels, dropout)
        self.scale_attn = (
            None if scale_attn_channels is None else ScaleAttentionHead(ocr_mid_channels, scale_attn_channels)
        )

    @property
    def ddp_find_unused_parameters(self) -> bool:
        """True with a scale-attention head: a single-scale training step does not use it."""
        return self.scale_attn is not None

    def _reset_head(self, num_classes: int) -> None:
        """Fresh class head (``ocr.cls_head``) and last auxiliary conv (``ocr.aux_head.2``), PyTorch's
        default conv init as the released code builds them."""
        old_cls, old_aux = self.ocr.cls_head, self.ocr.aux_head[2]
        kw = {"device": old_cls.weight.device, "dtype": old_cls.weight.dtype}
        self.ocr.cls_head = nn.Conv2d(old_cls.in_channels, num_classes, 1, **kw)
        self.ocr.aux_head[2] = nn.Conv2d(old_aux.in_channels, num_classes, 1, **kw)

    def get_config(self) -> dict[str, Any]:
        return {
            "spec": hrnet_spec_value(self.backbone.spec),
            "num_classes": self.num_classes,
            "attn": to_json_value(self.attn, "attn"),
            "attn_kwargs": to_json_value(self.attn_kwargs, "attn_kwargs"),
            "in_chans": self.in_chans,
            "ocr_mid_channels": self.ocr_mid_channels,
            "ocr_key_channels": self.ocr_key_channels,
            "scale_attn_channels": self.scale_attn_channels,
            "dropout": self.dropout,
            "align_corners": self.align_corners,
            "drop_rate": self.drop_rate,
            "drop_path_rate": self.drop_path_rate,
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, in_chans, H, W] → all trunk branches resized to stride 4 and concatenated
        [N, sum(widths), ⌈H/4⌉, ⌈W/4⌉] (the official backbone's third return value)."""
        branches = self.backbone.forward_features(x)
        size = branches[0].shape[-2:]
        return torch.cat([branches[0]] + [_resize(b, size, self.align_corners) for b in branches[1:]], dim=1)

    @property
    def head_hidden_size(self) -> int:
        """Channels of the OCR features that ``ocr.cls_head`` reads (``ocr_mid_channels``)."""
        return self.ocr_mid_channels

    def feature_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """Stride 4: the trunk's two stride-2 stem convs, each rounding up."""
        return tuple(math.ceil(math.ceil(v / 2) / 2) for v in input_size)  # type: ignore[return-value]

    def forward_head(
        self,
        features: torch.Tensor,
        output_size: tuple[int, int] | None = None,
        return_dict: bool = False,
        pre_logits: bool = False,
    ) -> torch.Tensor | SegmentationOutput:
        """Trunk features [N, C, h, w] → logits [N, K, H, W] resized to ``output_size`` (no resize when
        None), or :class:`SegmentationOutput` with the auxiliary logits and the scale attention;
        ``pre_logits``: the input of ``ocr.cls_head`` [N, ocr_mid_channels, h, w] (after ``drop_rate``'s
        dropout, not resized)."""
        if pre_logits:
            return self.head_drop(self.ocr.forward_features(features)[1])
        cls, aux, ocr_feats = self.ocr(features, self.head_drop)
        size = output_size if output_size is not None else cls.shape[-2:]
        logits = _resize(cls, size, self.align_corners)
        if not wants_dict(return_dict):
            return logits
        scale_attn = None
        if self.scale_attn is not None:
            scale_attn = _resize(self.scale_attn(ocr_feats), size, self.align_corners)
        return SegmentationOutput(
            logits=logits, aux_logits=_resize(aux, size, self.align_corners), scale_attn=scale_attn
        )

    def forward(self, x: torch.Tensor, return_dict: bool = False) -> torch.Tensor | SegmentationOutput:
        """Single-scale pass (official ``MscaleOCR._fwd``).

        Args:
            x: [N, in_chans, H, W].
            return_dict: also return the auxiliary logits and the scale-attention map.
        Returns:
            logits [N, K, H, W], or ``SegmentationOutput(logits, aux_logits [N, K, H, W],
            scale_attn [N, 1, H, W] or None)`` with ``return_dict``.
        """
        return self.forward_head(self.forward_features(x), x.shape[-2:], return_dict=return_dict)

    def forward_scale(self, x: torch.Tensor, scale: float) -> SegmentationOutput:
        """One pass on ``x`` resized by ``scale`` (bilinear, ``align_corners=False``, output size
        ⌊H·scale⌋ × ⌊W·scale⌋ as the official ``ResizeX``); outputs at that resized size."""
        if scale != 1.0:
            x = F.interpolate(
                x, scale_factor=scale, mode="bilinear", align_corners=False, recompute_scale_factor=True
            )
        return self.forward(x, return_dict=True)

    def forward_multiscale(
        self, x: torch.Tensor, scales: Iterable[float] = (0.5, 1.0, 2.0), return_dict: bool = False
    ) -> torch.Tensor | SegmentationOutput:
        """Hierarchical multi-scale inference, as NVIDIA's ``MscaleOCR.nscale_forward``.

        Scales are visited from the largest to the smallest; the first gives the running prediction p.
        A further scale s ≥ 1 with logits c_s and attention a_s: p = a_s·c_s + (1 − a_s)·resize(p) at the
        size of scale s. A scale s < 1: p = resize(a_s·c_s) + (1 − resize(a_s))·p at the size of p. The
        auxiliary logits are combined the same way. All resizes are bilinear (``align_corners=False``).

        Args:
            x: [N, in_chans, H, W].
            scales: positive scales including 1.0 (the output size); official evaluation (0.5, 1.0, 2.0).
            return_dict: return ``SegmentationOutput(logits, aux_logits)`` instead of the logits.
        Returns:
            combined logits [N, K, H, W] (``scale_attn`` of the output is None: there is one map per scale,
            see :meth:`forward_scale`).
        """
        if self.scale_attn is None:
            raise ValueError(
                "this HRNetV2-OCR has no scale-attention head (scale_attn_channels=None), so there is no "
                "hierarchical multi-scale combination; run forward() per scale (or forward_scale) instead"
            )
        scales = self._check_scales(scales)
        pred = aux = None
        for s in scales:
            out = self.forward_scale(x, s)
            cls, aux_s, attn = out.logits, out.aux_logits, out.scale_attn
            if pred is None:
                pred, aux = cls, aux_s
            elif s >= 1.0:
                size = cls.shape[-2:]
                pred = attn * cls + (1 - attn) * _resize(pred, size)
                aux = attn * aux_s + (1 - attn) * _resize(aux, size)
            else:
                size = pred.shape[-2:]
                up_attn = _resize(attn, size)
                pred = _resize(attn * cls, size) + (1 - up_attn) * pred
                aux = _resize(attn * aux_s, size) + (1 - up_attn) * aux
        return SegmentationOutput(logits=pred, aux_logits=aux) if return_dict else pred

    @staticmethod
    def _check_scales(scales: Iterable[float]) -> list[float]:
        scales = [float(s) for s in scales]
        if not scales or any(s <= 0 for s in scales) or 1.0 not in scales or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct positive numbers including 1.0, got {scales}")
        return sorted(scales, reverse=True)
