"""Official PSA segmentation checkpoints (DeLightCMU/PSA, NVIDIA ``MscaleOCR``) → ``HRNetOCR``.

Source layout: DeLightCMU/PSA ``semantic-segmentation/network/ocrnet.py`` (``MscaleOCR``, arch
``ocrnet.HRNet_Mscale``). Its training saves ``{"epoch", "arch", "num_classes", "state_dict", ...}`` with
every state-dict key prefixed ``module.`` (DistributedDataParallel). ``HRNetOCR`` keeps the official
sub-module names, so the map is prefix renames only:

    module.backbone.*   → backbone.*    (HRNetV2 trunk, PSA in ``deattn``)
    module.ocr.*        → ocr.*         (OCR block)
    module.scale_attn.* → scale_attn.*  (multi-scale attention head)

Pure functions: no file I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ._common import unwrap_state_dict
from .hrnet_pose import infer_trunk_config

__all__ = ["convert_state_dict", "infer_config"]

_PARTS = ("backbone.", "ocr.", "scale_attn.")


def convert_state_dict(official_state_dict: Mapping) -> dict[str, torch.Tensor]:
    """Official ``MscaleOCR`` state dict, or the whole training checkpoint dict → ``HRNetOCR`` state dict.

    Raises ``ValueError`` listing keys outside ``backbone`` / ``ocr`` / ``scale_attn`` (unused).
    """
    sd = unwrap_state_dict(official_state_dict)  # also drops the ``module.`` prefix
    unused = [k for k in sd if not k.startswith(_PARTS)]
    if unused:
        raise ValueError(f"keys not part of an HRNet-OCR Mscale model (unused by the conversion): {unused}")
    for part in _PARTS:
        if not any(k.startswith(part) for k in sd):
            raise ValueError(f"no {part}* keys: not an official MscaleOCR (ocrnet.HRNet_Mscale) state dict")
    return sd


def infer_config(official_state_dict: Mapping) -> dict:
    """``HRNetOCR`` constructor arguments from an official state dict (or checkpoint dict).

    Returns ``{"spec", "attn", "in_chans", "num_classes", "ocr_mid_channels", "ocr_key_channels",
    "scale_attn_channels"}``: trunk widths / blocks / modules from the ``backbone`` keys, PSA flavour from
    ``deattn.conv_up.weight`` (PSA_p) vs ``deattn.conv_up.0.weight`` (PSA_s), the rest from head shapes.
    """
    sd = convert_state_dict(official_state_dict)
    if "scale_attn.conv1.weight" not in sd:
        raise ValueError(
            "scale_attn.conv1 is missing: only the MSCALE_INNER_3x3 head (the released default) is supported"
        )
    config = infer_trunk_config(sd, prefix="backbone.")
    config.update(
        num_classes=int(sd["ocr.cls_head.weight"].shape[0]),
        ocr_mid_channels=int(sd["ocr.conv3x3_ocr.0.weight"].shape[0]),
        ocr_key_channels=int(sd["ocr.ocr_distri_head.object_context_block.f_pixel.0.weight"].shape[0]),
        scale_attn_channels=int(sd["scale_attn.conv0.weight"].shape[0]),
    )
    return config
