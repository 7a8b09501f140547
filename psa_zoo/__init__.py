"""psa_zoo: Polarized Self-Attention (Liu et al., 2021, arXiv 2107.00782) and its comparison blocks."""

from . import layers, models
from ._cpu_memory import keep_cpu_memory
from .layers import create_attn, list_attn
from .metadata import ClassSet, KeypointSet, ModelMetadata
from .models import (
    DeepLabV3Plus,
    HRNetOCR,
    HRNetPose,
    PoseOutput,
    PsaModel,
    SegmentationOutput,
    SimpleBaseline,
    create_model,
    from_pretrained,
    get_pretrained_cfg,
    list_models,
    list_pretrained,
    registered_in_timm,
)
from .version import __version__

__all__ = [
    "ClassSet",
    "DeepLabV3Plus",
    "HRNetOCR",
    "HRNetPose",
    "KeypointSet",
    "ModelMetadata",
    "PoseOutput",
    "PsaModel",
    "SegmentationOutput",
    "SimpleBaseline",
    "__version__",
    "create_attn",
    "create_model",
    "from_pretrained",
    "get_pretrained_cfg",
    "keep_cpu_memory",
    "layers",
    "list_attn",
    "list_models",
    "list_pretrained",
    "models",
    "registered_in_timm",
]
