"""torch.hub entry points of psa_zoo.

    >>> block = torch.hub.load("<repo or local dir>", "attention_block", name="psa_p", channels=64)

Model entry points (one per registered model) come with the model registry.
"""

dependencies = ["torch", "timm", "huggingface_hub", "safetensors"]


def attention_block(name: str = "psa_p", channels: int = 64, **kwargs):
    """An attention block of psa_zoo by name (see ``psa_zoo.layers.list_attn()``).

    Args:
        name: block name, e.g. ``"psa_p"`` (released PSA_p), ``"psa_s_paper"``, ``"nl"``, ``"cbam"``.
        channels: C of the [N, C, H, W] input.
        **kwargs: constructor options, e.g. ``init="hrnet"`` or ``impl="reference"`` for PSA.

    Returns: ``nn.Module`` mapping [N, C, H, W] → [N, C, H, W].
    """
    from psa_zoo.layers import create_attn

    return create_attn(name, channels, **kwargs)
