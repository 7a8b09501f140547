"""Official pose-HRNet checkpoints → :class:`psa_zoo.models.hrnet_pose.HRNetPose`.

Source layout: leoxiaobin/deep-high-resolution-net.pytorch ``lib/models/pose_hrnet.py``; its model-zoo
files and ``final_state.pth`` are plain state dicts of ``PoseHighResolutionNet``. ``HRNetPose`` keeps those
names, so the conversion is the identity on keys; it strips a ``module.`` (DataParallel) prefix, unwraps a
``{"state_dict": ...}`` checkpoint dict and rejects keys that belong to no part of the model.

The trunk helpers here (:data:`HRNET_TRUNK_KEY`, :func:`infer_trunk_config`, :func:`infer_attn`) are
shared with ``psa_nvidia`` and ``hrnet_ocr`` (same trunk key grammar). Pure functions: no file I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ._common import unwrap_state_dict

__all__ = [
    "HRNET_TRUNK_KEY",
    "convert_state_dict",
    "infer_attn",
    "infer_config",
    "infer_trunk_config",
    "unwrap_state_dict",
]

# Keys of the HRNet trunk (stem, layer1, transitions, stages), shared by every official HRNet code base.
HRNET_TRUNK_KEY = re.compile(r"^(conv[12]|bn[12]|layer1|transition[123]|stage[234])\.")
_POSE_HEAD_KEY = re.compile(r"^final_layer\.(weight|bias)$")


def _indices(keys: list[str], pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over ``keys``."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _stage_from_keys(sd: Mapping[str, torch.Tensor], keys: list[str], prefix: str) -> dict:
    """Spec of one stage from ``{prefix}{m}.branches.{b}.{k}.*`` keys (module 0 gives blocks/widths)."""
    esc = re.escape(prefix)
    modules = _indices(keys, rf"^{esc}(\d+)\.")
    if not modules:
        raise ValueError(f"no keys under {prefix!r}: not an HRNet trunk state dict")
    branches = _indices(keys, rf"^{esc}0\.branches\.(\d+)\.")
    num_blocks, widths = [], []
    block = "basic"
    for b in branches:
        blocks = _indices(keys, rf"^{esc}0\.branches\.{b}\.(\d+)\.")
        num_blocks.append(len(blocks))
        widths.append(int(sd[f"{prefix}0.branches.{b}.0.conv1.weight"].shape[0]))
        if f"{prefix}0.branches.{b}.0.conv3.weight" in sd:
            block = "bottleneck"
    return dict(num_modules=len(modules), num_blocks=num_blocks, widths=widths, block=block)


def infer_attn(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Attention flavour in the ``deattn`` slots: ``"psa_s"`` (``conv_up.0.weight``, the released
    bottleneck), ``"psa_p"`` (``conv_up.weight``) or None when there are no ``deattn`` keys."""
    attn_keys = [k for k in state_dict if ".deattn." in k]
    if not attn_keys:
        return None
    if any(k.endswith(".deattn.conv_up.0.weight") for k in attn_keys):
        return "psa_s"
    if any(k.endswith(".deattn.conv_up.weight") for k in attn_keys):
        return "psa_p"
    raise ValueError(f"unrecognised deattn keys (neither PSA_p nor PSA_s), e.g. {attn_keys[:3]}")


def infer_trunk_config(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> dict:
    """HRNet trunk config from keys and shapes: ``{"spec": <HRNetSpec dict>, "attn", "in_chans"}``.

    ``state_dict`` uses psa_zoo / official trunk names below ``prefix`` (e.g. ``"backbone."``). The spec
    dict (widths, blocks, modules per stage) feeds ``HRNetSpec.from_dict`` or any model's ``spec=``.
    """
    keys = [k[len(prefix) :] for k in state_dict if k.startswith(prefix)]
    sd = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    for required in ("conv1.weight", "layer1.0.conv1.weight"):
        if required not in sd:
            raise ValueError(f"missing {prefix}{required}: not an HRNet trunk state dict")
    layer1 = _indices(keys, r"^layer1\.(\d+)\.")
    stage1 = dict(
        num_modules=1,
        num_blocks=[len(layer1)],
        widths=[int(sd["layer1.0.conv1.weight"].shape[0])],
        block="bottleneck" if "layer1.0.conv3.weight" in sd else "basic",
    )
    spec = {"stage1": stage1, "stem_width": int(sd["conv1.weight"].shape[0])}
    for n in (2, 3, 4):
        spec[f"stage{n}"] = _stage_from_keys(sd, keys, f"stage{n}.")
    return {"spec": spec, "attn": infer_attn(sd), "in_chans": int(sd["conv1.weight"].shape[1])}


def convert_state_dict(official_state_dict: Mapping) -> dict[str, torch.Tensor]:
    """Official pose-HRNet state dict (or checkpoint dict) → ``HRNetPose`` state dict.

    Keys are kept (they are the same names); ``module.`` is stripped. Raises ``ValueError`` listing keys
    that belong neither to the trunk nor to ``final_layer``.
    """
    sd = unwrap_state_dict(official_state_dict)
    unused = [k for k in sd if not (HRNET_TRUNK_KEY.match(k) or _POSE_HEAD_KEY.match(k))]
    if unused:
        raise ValueError(f"keys not part of a pose HRNet (unused by the conversion): {unused}")
    if "final_layer.weight" not in sd:
        raise ValueError("final_layer.weight is missing: not a pose-HRNet state dict")
    return sd


def infer_config(official_state_dict: Mapping) -> dict:
    """``HRNetPose`` constructor arguments from an official state dict.

    Returns ``{"spec": <HRNetSpec dict>, "num_classes": K, "attn": None | "psa_p" | "psa_s",
    "in_chans": C}``, so ``HRNetPose(**infer_config(sd))`` builds the matching model.
    """
    sd = convert_state_dict(official_state_dict)
    head = sd["final_layer.weight"]
    if head.ndim != 4 or head.shape[-2:] != (1, 1):
        raise ValueError(f"final_layer.weight must be a 1×1 conv weight, got shape {tuple(head.shape)}")
    if any(k.startswith("stage4.") and ".fuse_layers.1." in k for k in _last_module_keys(sd)):
        raise ValueError("the last stage-4 module fuses all branches: a segmentation trunk, not a pose HRNet")
    return {**infer_trunk_config(sd), "num_classes": int(head.shape[0])}


def _last_module_keys(sd: Mapping[str, torch.Tensor]) -> list[str]:
    last = max(_indices(list(sd), r"^stage4\.(\d+)\."), default=0)
    return [k for k in sd if k.startswith(f"stage4.{last}.")]
