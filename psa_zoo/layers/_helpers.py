"""Small helpers shared by the attention blocks."""

from __future__ import annotations

import torch


def check_input(x: torch.Tensor, channels: int, block: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``[N, channels, H, W]``."""
    if x.ndim != 4:
        raise ValueError(
            f"{block} expects a 4-D input [N, {channels}, H, W], got {x.ndim}-D shape {tuple(x.shape)}"
        )
    if x.shape[1] != channels:
        raise ValueError(
            f"{block} was built for {channels} channels and expects [N, {channels}, H, W], "
            f"got shape {tuple(x.shape)}"
        )


def check_impl(impl: str) -> str:
    """Validate the ``impl`` switch of blocks that have a fast and a reference forward."""
    if impl not in ("fast", "reference"):
        raise ValueError(f"impl must be 'fast' or 'reference', got {impl!r}")
    return impl


def apply_parallel_gates(
    x: torch.Tensor, channel_gate: torch.Tensor, spatial_gate: torch.Tensor
) -> torch.Tensor:
    """``x ⊙ channel_gate + x ⊙ spatial_gate`` as one product ``x ⊙ (channel_gate + spatial_gate)``.

    Args:
        x: [N, C, H, W]; channel_gate: [N, C, 1, 1]; spatial_gate: [N, 1, H, W].
    Returns: [N, C, H, W] in the dtype and memory format of ``x``. Without autograd the gate buffer is
    reused for the product (one allocation instead of two).
    """
    channel_gate, spatial_gate = channel_gate.to(x.dtype), spatial_gate.to(x.dtype)
    if torch.is_grad_enabled():
        return x * (channel_gate + spatial_gate)
    out = torch.empty_like(x)
    torch.add(channel_gate, spatial_gate, out=out)
    return out.mul_(x)


def apply_sequential_gates(
    x: torch.Tensor, channel_gate: torch.Tensor, spatial_gate: torch.Tensor
) -> torch.Tensor:
    """``(x ⊙ channel_gate) ⊙ spatial_gate`` with the same shapes and buffer reuse as
    :func:`apply_parallel_gates`."""
    channel_gate, spatial_gate = channel_gate.to(x.dtype), spatial_gate.to(x.dtype)
    if torch.is_grad_enabled():
        return x * (channel_gate * spatial_gate)
    out = torch.empty_like(x)
    torch.mul(channel_gate, spatial_gate, out=out)
    return out.mul_(x)


def init_psa_convs(convs: list[torch.nn.Conv2d], all_convs: list[torch.nn.Conv2d], init: str) -> None:
    """Initialise PSA convolutions.

    ``init="official"``: kaiming-normal (fan_in, relu gain, zero bias) on ``convs`` — what
    ``PSA_p.reset_parameters`` / ``PSA_s.reset_parameters`` do (DeLightCMU/PSA ``network/PSA.py``); the
    others keep PyTorch's default. ``init="hrnet"``: every weight of ``all_convs`` ~ N(0, 0.001), biases left
    as they are — what ``HighResolutionNet.init_weights()`` of the official training applies afterwards.
    """
    if init == "official":
        for conv in convs:
            torch.nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            if conv.bias is not None:
                torch.nn.init.zeros_(conv.bias)
    elif init == "hrnet":
        for conv in all_convs:
            torch.nn.init.normal_(conv.weight, std=0.001)
    else:
        raise ValueError(f"init must be 'official' or 'hrnet', got {init!r}")


def check_psa_channels(channels: int, block: str, min_channels: int = 2) -> None:
    """PSA halves the channels (C/2 inner width), so C must be even (and at least ``min_channels``)."""
    if channels % 2 or channels < min_channels:
        raise ValueError(
            f"{block} needs an even channel count of at least {min_channels} (inner width C/2), "
            f"got {channels}"
        )
