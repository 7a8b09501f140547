"""``create_model``: build a registered model by name (optionally ``name.tag`` for pretrained weights)."""

from __future__ import annotations

from torch import nn

from ._registry import get_pretrained_cfg, model_entrypoint, split_model_name


def create_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build the registered model ``name``.

    Args:
        name: a name of :func:`psa_zoo.list_models`, optionally with a pretrained tag (``"name.tag"``).
        pretrained: load the tag's published weights (a tag is required when the model has several).
        **kwargs: ``num_classes`` (classes, or keypoints for pose models), ``labels`` (a
            :class:`~psa_zoo.metadata.KeypointSet` / :class:`~psa_zoo.metadata.ClassSet`) or ``label_names``
            (the metadata's names; ``num_classes`` follows from them), ``drop_rate``, ``attn`` (any name of
            ``psa_zoo.list_attn()``, a constructor, or ``None`` / ``"none"``), ``attn_kwargs``, ``in_chans``,
            ``output_stride`` (DeepLabV3+), ``pretrained_backbone`` (timm ImageNet weights), ``device``,
            ``dtype``; for weights: ``pretrained_cfg_overlay`` (timm's form: ``{"file": path}`` or
            ``{"hf_hub_id": ..., "hf_hub_revision": ..., "sha256": ...}``), ``cache_dir``,
            ``local_files_only``, ``force_download``.

    Unknown names raise ``ValueError`` with the closest registered names; unknown kwargs raise
    ``ValueError`` listing what the model takes.
    """
    architecture, tag = split_model_name(name)
    entrypoint = model_entrypoint(architecture)
    if tag is not None:
        get_pretrained_cfg(name)  # unknown tags fail here, with the available ones
        kwargs["pretrained_cfg"] = tag  # as timm.create_model passes it
    return entrypoint(pretrained=pretrained, **kwargs)
