"""Weights for registered models: published checkpoints and timm ImageNet backbones.

Nothing here runs at import time; downloads go through ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE``,
``cache_dir``) and timm's own loader.
"""

from __future__ import annotations

from torch import nn

from ._pretrained import PretrainedCfg

ATTENTION_MODULE_NAMES = ("attn", "deattn")


def is_attention_key(key: str) -> bool:
    """True for state-dict keys inside an attention slot (``....attn.*`` or ``....deattn.*``)."""
    return any(f".{name}." in f".{key}" for name in ATTENTION_MODULE_NAMES)


def load_pretrained(model: nn.Module, cfg: PretrainedCfg, cache_dir: str | None = None) -> None:
    """Load the published weights of ``cfg`` into ``model`` (see issue: weights pipeline)."""
    if cfg.tag is None:
        raise ValueError(
            f"{cfg.architecture} has no default pretrained tag; pick one of "
            f"psa_zoo.list_pretrained('{cfg.architecture}*') as create_model('{cfg.architecture}.<tag>')"
        )
    if cfg.status == "convertible":
        raise ValueError(
            f"{cfg.name} is not published on the Hub yet; convert the official checkpoint ({cfg.source}) "
            "with `psa-zoo convert` and load the folder with psa_zoo.from_pretrained"
        )
    if cfg.status != "published":
        raise ValueError(
            f"no weights exist for {cfg.name} (status: {cfg.status}; {cfg.source or 'no source'})"
        )
    raise NotImplementedError("published-weight loading is not implemented in this version")


def _backbone_and_head(model: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    """The module that holds the backbone weights, and the key prefixes of that module that are not
    backbone (HRNetPose *is* its trunk plus ``final_layer``)."""
    if hasattr(model, "backbone"):
        return model.backbone, ()
    return model, ("final_layer.",)


def load_backbone_from_timm(model: nn.Module, cfg: PretrainedCfg, cache_dir: str | None = None) -> None:
    """Load timm's ImageNet weights of ``cfg.timm_backbone`` into the model's backbone.

    The weights come through timm's own loader (Hugging Face Hub cache, ``HF_HUB_OFFLINE``, ``cache_dir``).
    Every backbone key must be filled except those of attention slots (new modules); the ImageNet
    classifier keys of the timm model are dropped by the backbone's ``filter_timm_state_dict``.
    """
    if cfg.timm_backbone is None:
        raise ValueError(f"{cfg.architecture} names no timm backbone to take ImageNet weights from")
    import timm

    backbone, head_prefixes = _backbone_and_head(model)
    source = timm.create_model(
        cfg.timm_backbone, pretrained=True, cache_dir=cache_dir, in_chans=getattr(backbone, "in_chans", 3)
    )
    state = backbone.filter_timm_state_dict(source.state_dict())
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    missing = [k for k in missing if not is_attention_key(k) and not k.startswith(head_prefixes)]
    if missing or unexpected:
        raise ValueError(
            f"timm weights of {cfg.timm_backbone} do not fit the {cfg.architecture} backbone: "
            f"missing {missing[:10]}, unexpected {unexpected[:10]}"
        )
