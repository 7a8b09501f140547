"""torch.hub entry points of psa_zoo: one per registered model, plus ``attention_block``.

    >>> model = torch.hub.load("<owner>/psa_zoo", "hrnet_w48_psa_p", pretrained=False)
    >>> model = torch.hub.load("<local checkout>", "deeplabv3plus_r101", source="local", num_classes=19)
    >>> block = torch.hub.load("<checkout>", "attention_block", source="local", name="psa_p", channels=64)

Every model entry point is ``name(pretrained=False, **kwargs)`` and takes the keyword arguments of
``psa_zoo.create_model`` (``num_classes``, ``attn``,
``pretrained_cfg`` (a tag), ``pretrained_cfg_overlay``, ...).
"""

import psa_zoo as _psa_zoo

dependencies = ["torch", "torchvision", "timm", "huggingface_hub", "safetensors"]


def _entrypoint(name: str):
    def entrypoint(pretrained: bool = False, **kwargs):
        return _psa_zoo.create_model(name, pretrained=pretrained, **kwargs)

    cfg = _psa_zoo.get_pretrained_cfg(name)
    tags = ", ".join(_psa_zoo.models.list_tags(name)) or "none"
    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = (
        f"{_psa_zoo.models.model_entrypoint(name).__doc__}\n\n"
        f"Task: {cfg.task}; input {cfg.input_size[1]}×{cfg.input_size[2]}; "
        f"{cfg.num_classes} outputs by default.\n"
        f"Pretrained tags (``pretrained_cfg=...``): {tags}.\n\n"
        "Args:\n"
        "    pretrained: load the weights of the tag ``pretrained_cfg`` names (see psa_zoo.create_model).\n"
        "    **kwargs: keyword arguments of psa_zoo.create_model.\n"
        "Returns: nn.Module."
    )
    return entrypoint


for _name in _psa_zoo.list_models():
    globals()[_name] = _entrypoint(_name)


def attention_block(name: str = "psa_p", channels: int = 64, **kwargs):
    """An attention block of psa_zoo by name (see ``psa_zoo.layers.list_attn()``).

    Args:
        name: block name, e.g. ``"psa_p"`` (released PSA_p), ``"psa_s_paper"``, ``"nl"``, ``"cbam"``.
        channels: C of the [N, C, H, W] input.
        **kwargs: constructor options, e.g. ``init="hrnet"`` or ``impl="reference"`` for PSA.

    Returns: ``nn.Module`` mapping [N, C, H, W] → [N, C, H, W].
    """
    return _psa_zoo.create_attn(name, channels, **kwargs)
