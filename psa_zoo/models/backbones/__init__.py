"""Backbones with attention slots. Each exposes ``feature_info``, ``forward_features`` and
``forward_intermediates`` in timm's manner."""

from .hrnet import HRNET_PRESETS, HRNet, HRNetSpec, StageSpec, filter_timm_state_dict, hrnet_spec
from .mobilenetv2 import MOBILENETV2_STAGES, MobileNetV2, filter_timm_mobilenetv2
from .resnet import RESNET_PRESETS, ResNet, filter_timm_resnet

__all__ = [
    "HRNET_PRESETS",
    "MOBILENETV2_STAGES",
    "RESNET_PRESETS",
    "HRNet",
    "HRNetSpec",
    "MobileNetV2",
    "ResNet",
    "StageSpec",
    "filter_timm_mobilenetv2",
    "filter_timm_resnet",
    "filter_timm_state_dict",
    "hrnet_spec",
]
