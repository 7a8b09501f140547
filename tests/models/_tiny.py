"""Tiny members of every model family (a few thousand parameters each), built through the registry so that
names, tags and metadata are those of the real models."""

from __future__ import annotations

import psa_zoo
from psa_zoo.models.backbones.hrnet import hrnet_spec

TINY_HRNET = hrnet_spec((8, 16, 32, 64), num_blocks=1, num_modules=(1, 1, 1), stage1_blocks=1, stage1_width=8)

# registered name → reduced-size keyword arguments
TINY_FAMILIES: dict[str, dict] = {
    "hrnet_w18_psa_p": {"spec": TINY_HRNET},
    "simplebaseline_r50_psa_p": {"depth": 18, "deconv_channels": (16, 16, 16)},
    "deeplabv3plus_mbv2_psa": {},
    "hrnetv2_w48_ocr_psa_s": {"spec": TINY_HRNET, "ocr_mid_channels": 16, "ocr_key_channels": 8,
                              "scale_attn_channels": 8},
}  # fmt: skip


def tiny_model(name: str, **kwargs):
    return psa_zoo.create_model(name, **{**TINY_FAMILIES[name], **kwargs})
