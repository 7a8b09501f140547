"""The named models of the PSA paper: configurations (what each expects, what the paper reports) and the
registered entrypoints. The entrypoints at the bottom are the table of contents.

Paper figures: parameters from the PSA paper's pose and Pascal VOC tables (Liu et al., arXiv 2107.00782);
GMACs of the pose baselines from the HRNet paper (Sun et al., arXiv 1902.09212, Table 1, COCO 256×192).
"""

from __future__ import annotations

from torch import nn

from ..labels import CITYSCAPES_CLASS_SET, COCO_KEYPOINT_SET, VOC_CLASS_SET
from ._builder import build_model
from ._pretrained import Metric, PaperReference, PretrainedCfg
from ._registry import register_model
from .deeplabv3plus import DeepLabV3Plus
from .hrnet_ocr import HRNetOCR
from .hrnet_pose import HRNetPose
from .simplebaseline import SimpleBaseline

_PSA_POSE = "PSA paper, COCO pose table"
_PSA_VOC = "PSA paper, Pascal VOC table"
_HRNET_T1 = "HRNet paper Table 1"


def _pose_cfg(name: str, timm_backbone: str, params_m=None, gmacs=None, source="", note="") -> PretrainedCfg:
    return PretrainedCfg(
        architecture=name,
        task="pose",
        input_size=(3, 256, 192),
        num_classes=17,
        labels=COCO_KEYPOINT_SET,
        paper=PaperReference(params_m, gmacs, source, note),
        timm_backbone=timm_backbone,
    )


def _voc_cfg(name: str, timm_backbone: str, params_m=None, note="") -> PretrainedCfg:
    return PretrainedCfg(
        architecture=name,
        task="segmentation",
        input_size=(3, 513, 513),
        num_classes=21,
        labels=VOC_CLASS_SET,
        paper=PaperReference(params_m, None, _PSA_VOC if params_m else "", note),
        timm_backbone=timm_backbone,
    )


def _cityscapes_cfg(name: str, note: str = "") -> PretrainedCfg:
    return PretrainedCfg(
        architecture=name,
        task="segmentation",
        input_size=(3, 1024, 2048),
        num_classes=19,
        labels=CITYSCAPES_CLASS_SET,
        paper=PaperReference(None, None, "", note),
        timm_backbone="hrnet_w48",
    )


_R50_PSA_NOTE = (
    "paper lists 36.1M; PSA_p after the 3×3 conv of all 16 Bottlenecks adds 2.52M, which reproduces "
    "every other row of the table"
)
_MBV2_PSA_NOTE = (
    "paper lists 5.22M with and without PSA and does not say where PSA goes in MobileNetV2; ours follows "
    "the rule of the other models (after the depthwise 3×3 of every block with an identity shortcut)"
)
_MSCALE_NOTE = "with the hierarchical multi-scale attention head of the released PSA checkpoints"


# --- pretrained tags ----------------------------------------------------------------------------------
# Official releases psa_zoo can convert (``psa-zoo convert``) and the paper's results that were never
# released. No tag is published on the Hub yet: ``status`` says which is which. Metrics are "reported by"
# their source until psa_zoo reproduces them.
_HRNET_REPO = "leoxiaobin/deep-high-resolution-net.pytorch"
_COCO_PROTOCOL = (
    "COCO val2017, person detector AP_H 56.4 (COCO_val2017_detections_AP_H_56_person.json), flip test"
)
_UDP_PROTOCOL = (
    "COCO (split unverified; most likely test-dev with the UDP-Pose detector, human AP 65.1), UDP-Pose recipe"
)
_PSA_CITY_PROTOCOL = "Cityscapes val, multi-scale 0.5/1.0/2.0 with the scale-attention head (NVIDIA eval)"
_VOC_PROTOCOL = "Pascal VOC 2012 val, resize 513 + center crop 513 (VainF --crop_val), single scale"


def _coco_tag(
    cfg: PretrainedCfg, size: tuple[int, int], ap: float, checkpoint: str, fmt: str
) -> PretrainedCfg:
    h, w = size
    return cfg.with_tag(
        f"coco_{h}x{w}",
        input_size=(3, h, w),
        source=f"{_HRNET_REPO} model zoo: {checkpoint}",
        convert_format=fmt,
        # the official ResNet configs read images with OpenCV and keep BGR (COLOR_RGB false); HRNet's: RGB
        channel_order="BGR" if fmt == "simplebaseline" else "RGB",
        license="MIT (code of the source repository)",
        metrics=(Metric("AP", ap, "COCO val2017", _COCO_PROTOCOL, f"reported by {_HRNET_REPO} README"),),
        status="convertible",
    )


def _udp_psa_tag(cfg: PretrainedCfg, size: tuple[int, int], ap: float) -> PretrainedCfg:
    h, w = size
    return cfg.with_tag(
        f"udp_coco_{h}x{w}",
        input_size=(3, h, w),
        source="DeLightCMU/PSA README: UDP-Pose-PSA weights 'to be uploaded', never released",
        metrics=(
            Metric("AP", ap, "COCO", _UDP_PROTOCOL, "reported by the PSA paper / DeLightCMU/PSA README"),
        ),
        status="not released",
    )


def _voc_tag(cfg: PretrainedCfg, miou: float, checkpoint: str) -> PretrainedCfg:
    return cfg.with_tag(
        "voc_aug",
        source=f"VainF/DeepLabV3Plus-Pytorch release: {checkpoint} (output stride 16)",
        convert_format="vainf-deeplab",
        license="MIT (code of the source repository)",
        metrics=(Metric("mIoU", miou, "Pascal VOC 2012 val", _VOC_PROTOCOL, "reported by VainF README"),),
        status="convertible",
    )


def _psa_city_tag(cfg: PretrainedCfg, miou: float, box: str) -> PretrainedCfg:
    return cfg.with_tag(
        "cityscapes",
        input_size=(3, 1024, 2048),
        source=f"DeLightCMU/PSA release (Box: {box})",
        convert_format="psa-nvidia",
        license="Apache-2.0 (DeLightCMU/PSA repository)",
        metrics=(
            Metric(
                "mIoU", miou, "Cityscapes val", _PSA_CITY_PROTOCOL, "reported by the DeLightCMU/PSA README"
            ),
        ),
        status="convertible",
    )


# --- SimpleBaseline (Xiao et al., 2018) -------------------------------------------------------------------
def _simplebaseline(name: str, depth: int, pretrained: bool, kwargs: dict, attn=None) -> nn.Module:
    return build_model(name, SimpleBaseline, pretrained, kwargs, depth=depth, num_classes=17, attn=attn)


_SIMPLEBASELINE_R50_CFG = _pose_cfg("simplebaseline_r50", "resnet50.tv_in1k", 34.0, 8.9, _HRNET_T1)


@register_model(
    _SIMPLEBASELINE_R50_CFG,
    tags=(
        _coco_tag(_SIMPLEBASELINE_R50_CFG, (256, 192), 70.4, "pose_resnet_50_256x192.pth", "simplebaseline"),
        _coco_tag(_SIMPLEBASELINE_R50_CFG, (384, 288), 72.2, "pose_resnet_50_384x288.pth", "simplebaseline"),
    ),
)
def simplebaseline_r50(pretrained: bool = False, **kwargs) -> nn.Module:
    """SimpleBaseline ResNet-50 (3 deconvolutions, heatmaps at 1/4), 17 COCO keypoints."""
    return _simplebaseline("simplebaseline_r50", 50, pretrained, kwargs)


_SIMPLEBASELINE_R101_CFG = _pose_cfg("simplebaseline_r101", "resnet101.tv_in1k", 53.0, 12.4, _HRNET_T1)


@register_model(
    _SIMPLEBASELINE_R101_CFG,
    tags=(
        _coco_tag(
            _SIMPLEBASELINE_R101_CFG, (256, 192), 71.4, "pose_resnet_101_256x192.pth", "simplebaseline"
        ),
        _coco_tag(
            _SIMPLEBASELINE_R101_CFG, (384, 288), 73.6, "pose_resnet_101_384x288.pth", "simplebaseline"
        ),
    ),
)
def simplebaseline_r101(pretrained: bool = False, **kwargs) -> nn.Module:
    """SimpleBaseline ResNet-101, 17 COCO keypoints."""
    return _simplebaseline("simplebaseline_r101", 101, pretrained, kwargs)


_SIMPLEBASELINE_R152_CFG = _pose_cfg("simplebaseline_r152", "resnet152.tv_in1k", 68.6, 15.7, _HRNET_T1)


@register_model(
    _SIMPLEBASELINE_R152_CFG,
    tags=(
        _coco_tag(
            _SIMPLEBASELINE_R152_CFG, (256, 192), 72.0, "pose_resnet_152_256x192.pth", "simplebaseline"
        ),
        _coco_tag(
            _SIMPLEBASELINE_R152_CFG, (384, 288), 74.3, "pose_resnet_152_384x288.pth", "simplebaseline"
        ),
    ),
)
def simplebaseline_r152(pretrained: bool = False, **kwargs) -> nn.Module:
    """SimpleBaseline ResNet-152, 17 COCO keypoints."""
    return _simplebaseline("simplebaseline_r152", 152, pretrained, kwargs)


@register_model(
    _pose_cfg("simplebaseline_r50_psa_p", "resnet50.tv_in1k", 36.1, None, _PSA_POSE, _R50_PSA_NOTE)
)
def simplebaseline_r50_psa_p(pretrained: bool = False, **kwargs) -> nn.Module:
    """SimpleBaseline ResNet-50 with PSA_p after the 3×3 conv of every Bottleneck."""
    return _simplebaseline("simplebaseline_r50_psa_p", 50, pretrained, kwargs, attn="psa_p")


@register_model(_pose_cfg("simplebaseline_r152_psa_p", "resnet152.tv_in1k", 75.2, None, _PSA_POSE))
def simplebaseline_r152_psa_p(pretrained: bool = False, **kwargs) -> nn.Module:
    """SimpleBaseline ResNet-152 with PSA_p after the 3×3 conv of every Bottleneck."""
    return _simplebaseline("simplebaseline_r152_psa_p", 152, pretrained, kwargs, attn="psa_p")


# --- HRNet pose (Sun et al., 2019) ------------------------------------------------------------------------
def _hrnet_pose(name: str, width: str, pretrained: bool, kwargs: dict, attn=None) -> nn.Module:
    return build_model(name, HRNetPose, pretrained, kwargs, spec=width, num_classes=17, attn=attn)


@register_model(_pose_cfg("hrnet_w18_small", "hrnet_w18_small.ms_in1k"))
def hrnet_w18_small(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNet-W18-Small (v1) pose model: widths 16/32/64/128, two blocks per branch, one module per stage.
    Small enough to fine-tune on a CPU (``psa-zoo demo``)."""
    return _hrnet_pose("hrnet_w18_small", "w18_small", pretrained, kwargs)


@register_model(_pose_cfg("hrnet_w18_small_psa_p", "hrnet_w18_small.ms_in1k"))
def hrnet_w18_small_psa_p(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNet-W18-Small (v1) pose model with PSA_p in every BasicBlock of stages 2–4 (18 blocks)."""
    return _hrnet_pose("hrnet_w18_small_psa_p", "w18_small", pretrained, kwargs, attn="psa_p")


@register_model(_pose_cfg("hrnet_w18", "hrnet_w18.ms_in1k"))
def hrnet_w18(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNet-W18 pose model (heatmaps from the highest-resolution branch). Only in psa_zoo's registry:
    timm's ``hrnet_w18`` is the ImageNet classifier."""
    return _hrnet_pose("hrnet_w18", "w18", pretrained, kwargs)


_HRNET_W32_CFG = _pose_cfg("hrnet_w32", "hrnet_w32.ms_in1k", 28.5, 7.1, _HRNET_T1)


@register_model(
    _HRNET_W32_CFG,
    tags=(
        _coco_tag(_HRNET_W32_CFG, (256, 192), 74.4, "pose_hrnet_w32_256x192.pth", "hrnet-pose"),
        _coco_tag(_HRNET_W32_CFG, (384, 288), 75.8, "pose_hrnet_w32_384x288.pth", "hrnet-pose"),
    ),
)
def hrnet_w32(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNet-W32 pose model. Only in psa_zoo's registry (timm's ``hrnet_w32`` is the classifier)."""
    return _hrnet_pose("hrnet_w32", "w32", pretrained, kwargs)


_HRNET_W48_CFG = _pose_cfg("hrnet_w48", "hrnet_w48.ms_in1k", 63.6, 14.6, _HRNET_T1)


@register_model(
    _HRNET_W48_CFG,
    tags=(
        _coco_tag(_HRNET_W48_CFG, (256, 192), 75.1, "pose_hrnet_w48_256x192.pth", "hrnet-pose"),
        _coco_tag(_HRNET_W48_CFG, (384, 288), 76.3, "pose_hrnet_w48_384x288.pth", "hrnet-pose"),
    ),
)
def hrnet_w48(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNet-W48 pose model. Only in psa_zoo's registry (timm's ``hrnet_w48`` is the classifier)."""
    return _hrnet_pose("hrnet_w48", "w48", pretrained, kwargs)


@register_model(_pose_cfg("hrnet_w18_psa_p", "hrnet_w18.ms_in1k"))
def hrnet_w18_psa_p(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNet-W18 pose model with PSA_p (``deattn``) in every BasicBlock of stages 2–4."""
    return _hrnet_pose("hrnet_w18_psa_p", "w18", pretrained, kwargs, attn="psa_p")


@register_model(_pose_cfg("hrnet_w32_psa_p", "hrnet_w32.ms_in1k", 31.4, None, _PSA_POSE))
def hrnet_w32_psa_p(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNet-W32 pose model with PSA_p in every BasicBlock of stages 2–4."""
    return _hrnet_pose("hrnet_w32_psa_p", "w32", pretrained, kwargs, attn="psa_p")


_HRNET_W48_PSA_P_CFG = _pose_cfg("hrnet_w48_psa_p", "hrnet_w48.ms_in1k", 70.0, None, _PSA_POSE)


@register_model(
    _HRNET_W48_PSA_P_CFG,
    tags=(
        _udp_psa_tag(_HRNET_W48_PSA_P_CFG, (256, 192), 78.9),
        _udp_psa_tag(_HRNET_W48_PSA_P_CFG, (384, 288), 79.5),
    ),
)
def hrnet_w48_psa_p(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNet-W48 pose model with PSA_p in every BasicBlock of stages 2–4 (104 blocks)."""
    return _hrnet_pose("hrnet_w48_psa_p", "w48", pretrained, kwargs, attn="psa_p")


_HRNET_W48_PSA_S_CFG = _pose_cfg("hrnet_w48_psa_s", "hrnet_w48.ms_in1k", 69.1, None, _PSA_POSE)


@register_model(_HRNET_W48_PSA_S_CFG, tags=(_udp_psa_tag(_HRNET_W48_PSA_S_CFG, (384, 288), 79.4),))
def hrnet_w48_psa_s(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNet-W48 pose model with PSA_s in every BasicBlock of stages 2–4."""
    return _hrnet_pose("hrnet_w48_psa_s", "w48", pretrained, kwargs, attn="psa_s")


# --- DeepLabV3+ (Chen et al., 2018), as VainF/DeepLabV3Plus-Pytorch ---------------------------------------
def _deeplab(name: str, encoder: str, pretrained: bool, kwargs: dict, attn=None) -> nn.Module:
    return build_model(name, DeepLabV3Plus, pretrained, kwargs, encoder=encoder, num_classes=21, attn=attn)


_DEEPLABV3PLUS_MBV2_CFG = _voc_cfg("deeplabv3plus_mbv2", "mobilenetv2_100.ra_in1k", 5.22)


@register_model(
    _DEEPLABV3PLUS_MBV2_CFG,
    tags=(_voc_tag(_DEEPLABV3PLUS_MBV2_CFG, 71.1, "best_deeplabv3plus_mobilenet_voc_os16.pth"),),
)
def deeplabv3plus_mbv2(pretrained: bool = False, **kwargs) -> nn.Module:
    """DeepLabV3+ MobileNetV2 (output stride 16 by default), 21 VOC classes."""
    return _deeplab("deeplabv3plus_mbv2", "mobilenetv2", pretrained, kwargs)


_DEEPLABV3PLUS_R50_CFG = _voc_cfg("deeplabv3plus_r50", "resnet50.tv_in1k", 39.8)


@register_model(
    _DEEPLABV3PLUS_R50_CFG,
    tags=(_voc_tag(_DEEPLABV3PLUS_R50_CFG, 77.2, "best_deeplabv3plus_resnet50_voc_os16.pth"),),
)
def deeplabv3plus_r50(pretrained: bool = False, **kwargs) -> nn.Module:
    """DeepLabV3+ ResNet-50 (output stride 16 by default), 21 VOC classes."""
    return _deeplab("deeplabv3plus_r50", "resnet50", pretrained, kwargs)


_DEEPLABV3PLUS_R101_CFG = _voc_cfg("deeplabv3plus_r101", "resnet101.tv_in1k", 58.8)


@register_model(
    _DEEPLABV3PLUS_R101_CFG,
    tags=(_voc_tag(_DEEPLABV3PLUS_R101_CFG, 78.3, "best_deeplabv3plus_resnet101_voc_os16.pth"),),
)
def deeplabv3plus_r101(pretrained: bool = False, **kwargs) -> nn.Module:
    """DeepLabV3+ ResNet-101 (output stride 16 by default), 21 VOC classes."""
    return _deeplab("deeplabv3plus_r101", "resnet101", pretrained, kwargs)


@register_model(_voc_cfg("deeplabv3plus_mbv2_psa", "mobilenetv2_100.ra_in1k", None, _MBV2_PSA_NOTE))
def deeplabv3plus_mbv2_psa(pretrained: bool = False, **kwargs) -> nn.Module:
    """DeepLabV3+ MobileNetV2 with PSA_p after the depthwise 3×3 of every block with an identity shortcut."""
    return _deeplab("deeplabv3plus_mbv2_psa", "mobilenetv2", pretrained, kwargs, attn="psa_p")


@register_model(_voc_cfg("deeplabv3plus_r50_psa", "resnet50.tv_in1k", 42.3))
def deeplabv3plus_r50_psa(pretrained: bool = False, **kwargs) -> nn.Module:
    """DeepLabV3+ ResNet-50 with PSA_p after the 3×3 conv of every Bottleneck."""
    return _deeplab("deeplabv3plus_r50_psa", "resnet50", pretrained, kwargs, attn="psa_p")


@register_model(_voc_cfg("deeplabv3plus_r101_psa", "resnet101.tv_in1k", 63.5))
def deeplabv3plus_r101_psa(pretrained: bool = False, **kwargs) -> nn.Module:
    """DeepLabV3+ ResNet-101 with PSA_p after the 3×3 conv of every Bottleneck."""
    return _deeplab("deeplabv3plus_r101_psa", "resnet101", pretrained, kwargs, attn="psa_p")


# --- HRNetV2-W48 + OCR (Yuan et al., 2020): NVIDIA's with multi-scale attention, and the plain one ----------
def _hrnet_ocr(name: str, pretrained: bool, kwargs: dict, attn=None, **arch_kwargs) -> nn.Module:
    return build_model(
        name, HRNetOCR, pretrained, kwargs, spec="w48", num_classes=19, attn=attn, **arch_kwargs
    )


_HRNETV2_W48_OCR_CFG = _cityscapes_cfg("hrnetv2_w48_ocr", _MSCALE_NOTE)


@register_model(
    _HRNETV2_W48_OCR_CFG,
    tags=(
        _HRNETV2_W48_OCR_CFG.with_tag(
            "cityscapes_nvidia",
            source="NVIDIA/semantic-segmentation release: "
            "cityscapes_ocrnet.HRNet_Mscale_outstanding-turtle.pth (the same MscaleOCR model without PSA)",
            convert_format="psa-nvidia",
            license="BSD-3-Clause (NVIDIA/semantic-segmentation)",
            status="convertible",
        ),
    ),
)
def hrnetv2_w48_ocr(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNetV2-W48 + OCR with the scale-attention head, 19 Cityscapes classes."""
    return _hrnet_ocr("hrnetv2_w48_ocr", pretrained, kwargs)


_HRSEG_REPO = "HRNet/HRNet-Semantic-Segmentation"
_HRSEG_RELEASES = "github.com/hsfzxjy/models.storage/releases/download/HRNet-OCR"
_HRNETV2_W48_OCR_PLAIN_CFG = _cityscapes_cfg(
    "hrnetv2_w48_ocr_plain",
    f"plain OCR as in {_HRSEG_REPO} (branch HRNet-OCR): no scale-attention head, align_corners=True",
)


def _hrseg_tag(tag: str, checkpoint: str, miou: float, dataset: str, protocol: str) -> PretrainedCfg:
    return _HRNETV2_W48_OCR_PLAIN_CFG.with_tag(
        tag,
        source=f"{_HRSEG_REPO} README (branch HRNet-OCR): {_HRSEG_RELEASES}/{checkpoint}",
        convert_format="hrnet-ocr",
        license="MIT (code of the source repository)",
        metrics=(Metric("mIoU", miou, dataset, protocol, f"reported by {_HRSEG_REPO} README"),),
        status="convertible",
    )


@register_model(
    _HRNETV2_W48_OCR_PLAIN_CFG,
    tags=(
        _hrseg_tag(
            "cityscapes",
            "hrnet_ocr_cs_8162_torch11.pth",
            81.6,
            "Cityscapes val",
            "trained on train (512×1024 crops); evaluated on full 1024×2048 images, single scale, no flip",
        ),
        _hrseg_tag(
            "cityscapes_trainval",
            "hrnet_ocr_cs_trainval_8227_torch11.pth",
            82.3,
            "Cityscapes test",
            "trained on train+val; multi-scale 0.5–1.75 (step 0.25) + flip, 1024×2048 sliding windows",
        ),
    ),
)
def hrnetv2_w48_ocr_plain(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNetV2-W48 + OCR as released by HRNet/HRNet-Semantic-Segmentation: no scale-attention head, every
    bilinear resize with ``align_corners=True``, 19 Cityscapes classes."""
    return _hrnet_ocr(
        "hrnetv2_w48_ocr_plain", pretrained, kwargs, scale_attn_channels=None, align_corners=True
    )


_HRNETV2_W48_OCR_PSA_P_CFG = _cityscapes_cfg("hrnetv2_w48_ocr_psa_p", _MSCALE_NOTE)


@register_model(
    _HRNETV2_W48_OCR_PSA_P_CFG,
    tags=(
        _psa_city_tag(_HRNETV2_W48_OCR_PSA_P_CFG, 86.95, "cmu.box.com/s/if90kw6r66q2y6c5xparflhnbwi6c2yi"),
    ),
)
def hrnetv2_w48_ocr_psa_p(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNetV2-W48 + OCR with PSA_p in every BasicBlock of stages 2–4 (released PSA(p) Cityscapes model)."""
    return _hrnet_ocr("hrnetv2_w48_ocr_psa_p", pretrained, kwargs, attn="psa_p")


_HRNETV2_W48_OCR_PSA_S_CFG = _cityscapes_cfg("hrnetv2_w48_ocr_psa_s", _MSCALE_NOTE)


@register_model(
    _HRNETV2_W48_OCR_PSA_S_CFG,
    tags=(
        _psa_city_tag(_HRNETV2_W48_OCR_PSA_S_CFG, 86.72, "cmu.box.com/s/uyzzfmkx8p2ipcznpzdtf14ng63s65sq"),
    ),
)
def hrnetv2_w48_ocr_psa_s(pretrained: bool = False, **kwargs) -> nn.Module:
    """HRNetV2-W48 + OCR with PSA_s in every BasicBlock of stages 2–4 (released PSA(s) Cityscapes model)."""
    return _hrnet_ocr("hrnetv2_w48_ocr_psa_s", pretrained, kwargs, attn="psa_s")
