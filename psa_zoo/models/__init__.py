"""Models of the PSA paper behind a timm-style registry.

>>> import psa_zoo
>>> model = psa_zoo.create_model("hrnet_w48_psa_p")          # [N, 3, 256, 192] → [N, 17, 64, 48]
>>> psa_zoo.list_models("deeplabv3plus_*")
"""

from . import zoo  # noqa: F401  (registers the named models)
from ._factory import create_model
from ._loading import from_pretrained
from ._pretrained import Metric, PaperReference, PretrainedCfg
from ._registry import (
    get_pretrained_cfg,
    is_model,
    list_models,
    list_pretrained,
    list_tags,
    model_entrypoint,
    register_model,
    registered_in_timm,
)
from ._serialization import save_pretrained
from .base import PsaModel
from .deeplabv3plus import DeepLabV3Plus
from .hrnet_ocr import HRNetOCR
from .hrnet_pose import HRNetPose
from .outputs import PoseOutput, SegmentationOutput
from .simplebaseline import SimpleBaseline

# Classes that psa_zoo.from_pretrained rebuilds from a saved config.json ("model_class").
MODEL_CLASSES = {cls.__name__: cls for cls in (DeepLabV3Plus, HRNetOCR, HRNetPose, SimpleBaseline)}

__all__ = [
    "MODEL_CLASSES",
    "DeepLabV3Plus",
    "HRNetOCR",
    "HRNetPose",
    "Metric",
    "PaperReference",
    "PoseOutput",
    "PretrainedCfg",
    "PsaModel",
    "SegmentationOutput",
    "SimpleBaseline",
    "create_model",
    "from_pretrained",
    "get_pretrained_cfg",
    "is_model",
    "list_models",
    "list_pretrained",
    "list_tags",
    "model_entrypoint",
    "register_model",
    "registered_in_timm",
    "save_pretrained",
]
