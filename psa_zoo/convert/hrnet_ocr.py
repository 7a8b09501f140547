"""HRNet/HRNet-Semantic-Segmentation HRNetV2-OCR checkpoints → plain :class:`HRNetOCR`.

Source layout: HRNet/HRNet-Semantic-Segmentation, branch HRNet-OCR, ``lib/models/seg_hrnet_ocr.py``
(``HighResolutionNet``). Training wraps it in ``utils.FullModel(model, loss)`` and saves
``FullModel.state_dict()`` (``tools/train.py``), so the released files (e.g.
``hrnet_ocr_cs_8162_torch11.pth``) hold ``model.*`` keys plus the criterion's buffers
(``loss.criterion.weight``: the Cityscapes class weights of the training loss). ``tools/test.py`` loads
them by cutting the first 6 characters (``model.``).

Key map (trunk and OCR attention keep their names; the rest differ in indices, because the official
``conv3x3_ocr`` and ``aux_head`` put BatchNorm and ReLU straight into the Sequential instead of a
``BNReLU`` pair):

    model.{conv1,bn1,conv2,bn2,layer1,transition*,stage*}.* → backbone.*
    model.conv3x3_ocr.0.*      → ocr.conv3x3_ocr.0.*        (3×3 conv, with bias)
    model.conv3x3_ocr.1.*      → ocr.conv3x3_ocr.1.0.*      (BN)
    model.aux_head.0.*         → ocr.aux_head.0.*           (1×1 conv, with bias)
    model.aux_head.1.*         → ocr.aux_head.1.0.*         (BN)
    model.aux_head.3.*         → ocr.aux_head.2.*           (1×1 conv → K)
    model.ocr_distri_head.*    → ocr.ocr_distri_head.*      (same inner names)
    model.cls_head.*           → ocr.cls_head.*
    loss.*                     → (not model weights: left out, and said so in the log)

The model has no scale-attention head and resizes with ``align_corners=True`` (``MODEL.ALIGN_CORNERS``
defaults to True and the OCR configs keep it), which :func:`infer_config` sets. Pure functions: no file I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from ..models.hrnet_ocr import HRNetOCR
from ._common import rename_checked, unwrap_state_dict
from .hrnet_pose import HRNET_TRUNK_KEY, infer_trunk_config

__all__ = ["convert_state_dict", "infer_config"]

_logger = logging.getLogger(__name__)

_HEAD_RENAMES = (  # official prefix → psa_zoo prefix, first match wins
    ("conv3x3_ocr.0.", "ocr.conv3x3_ocr.0."),
    ("conv3x3_ocr.1.", "ocr.conv3x3_ocr.1.0."),
    ("aux_head.0.", "ocr.aux_head.0."),
    ("aux_head.1.", "ocr.aux_head.1.0."),
    ("aux_head.3.", "ocr.aux_head.2."),
    ("ocr_distri_head.", "ocr.ocr_distri_head."),
    ("cls_head.", "ocr.cls_head."),
)
_CRITERION_PREFIX = "loss."


def _rename(key: str) -> str | None:
    if HRNET_TRUNK_KEY.match(key):
        return f"backbone.{key}"
    for old, new in _HEAD_RENAMES:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def _model_keys(official_state_dict: Mapping) -> dict[str, torch.Tensor]:
    """Unwrapped state dict without the ``FullModel`` parts: ``model.`` removed, ``loss.*`` left out."""
    sd = unwrap_state_dict(official_state_dict)  # also drops a DataParallel ``module.`` prefix
    criterion = sorted(k for k in sd if k.startswith(_CRITERION_PREFIX))
    if criterion:
        _logger.info("leaving out the training criterion's buffers (not model weights): %s", criterion)
    sd = {k: v for k, v in sd.items() if not k.startswith(_CRITERION_PREFIX)}
    if sd and all(k.startswith("model.") for k in sd):
        sd = {k[len("model.") :]: v for k, v in sd.items()}
    return sd


def _checked_model_keys(official_state_dict: Mapping) -> dict[str, torch.Tensor]:
    """:func:`_model_keys`, refusing other layouts with a hint at the right one."""
    sd = _model_keys(official_state_dict)
    foreign = [k for k in sd if _rename(k) is None]
    if foreign:
        hint = ""
        if any(k.startswith("last_layer.") for k in foreign):
            hint = " (last_layer.* belongs to HRNetV2 without OCR, which psa_zoo does not provide)"
        elif any(k.startswith(("backbone.", "ocr.", "scale_attn.")) for k in foreign):
            hint = " (an NVIDIA / PSA MscaleOCR checkpoint: use --format psa-nvidia)"
        raise ValueError(f"keys not part of an HRNetV2-OCR model (unused by the conversion){hint}: {foreign}")
    if "cls_head.weight" not in sd or "conv1.weight" not in sd:
        raise ValueError(
            "cls_head.weight or conv1.weight is missing: not an HRNet-Semantic-Segmentation OCR state dict"
        )
    return sd


def convert_state_dict(official_state_dict: Mapping) -> dict[str, torch.Tensor]:
    """Official ``seg_hrnet_ocr`` state dict (``FullModel`` or bare, or a ``{"state_dict": ...}`` dict)
    → state dict of ``HRNetOCR(**infer_config(sd))``.

    Raises ``ValueError`` listing keys that belong to no part of the model (``last_layer.*`` of the
    HRNetV2 model without OCR, the NVIDIA ``scale_attn.*`` head, anything else), and target keys that
    stay unfilled or get another shape.
    """
    sd = _checked_model_keys(official_state_dict)
    config = infer_config(sd)
    with torch.device("meta"):
        expected = {k: v.shape for k, v in HRNetOCR(**config).state_dict().items()}
    return rename_checked(sd, _rename, expected, "plain HRNetOCR of the inferred configuration")


def infer_config(official_state_dict: Mapping) -> dict:
    """``HRNetOCR`` constructor arguments from an official state dict (or checkpoint dict).

    Returns ``{"spec", "attn", "in_chans", "num_classes", "ocr_mid_channels", "ocr_key_channels",
    "scale_attn_channels": None, "align_corners": True}``: trunk widths / blocks / modules from the trunk
    keys (official names, top level), OCR widths and classes from the head shapes.
    """
    sd = _checked_model_keys(official_state_dict)
    config = infer_trunk_config(sd)
    config.update(
        num_classes=int(sd["cls_head.weight"].shape[0]),
        ocr_mid_channels=int(sd["conv3x3_ocr.0.weight"].shape[0]),
        ocr_key_channels=int(sd["ocr_distri_head.object_context_block.f_pixel.0.weight"].shape[0]),
        scale_attn_channels=None,
        align_corners=True,
    )
    return config
