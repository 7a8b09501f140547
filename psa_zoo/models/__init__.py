"""Models of the PSA paper behind a timm-style registry.

>>> import psa_zoo
>>> model = psa_zoo.create_model("hrnet_w48_psa_p")          # [N, 3, 256, 192] → [N, 17, 64, 48]
>>> psa_zoo.list_models("deeplabv3plus_*")
"""

from . import zoo  # noqa: F401  (registers the named models)
from ._factory import create_model
from ._pretrained import PaperReference, PretrainedCfg
from ._registry import (
    get_pretrained_cfg,
    is_model,
    list_models,
    list_pretrained,
    list_tags,
    register_model,
    registered_in_timm,
)
from .deeplabv3plus import DeepLabV3Plus
from .hrnet_ocr import HRNetOCR
from .hrnet_pose import HRNetPose
from .outputs import SegmentationOutput
from .simplebaseline import SimpleBaseline

__all__ = [
    "DeepLabV3Plus",
    "HRNetOCR",
    "HRNetPose",
    "PaperReference",
    "PretrainedCfg",
    "SegmentationOutput",
    "SimpleBaseline",
    "create_model",
    "get_pretrained_cfg",
    "is_model",
    "list_models",
    "list_pretrained",
    "list_tags",
    "register_model",
    "registered_in_timm",
]
