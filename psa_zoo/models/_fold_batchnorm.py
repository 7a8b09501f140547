"""Fold eval-mode BatchNorm into the convolution before it: the usual inference fusion.

In eval mode ``bn(conv(x))`` is one convolution with scaled weights and a shifted bias:
``w' = w · γ / √(σ² + ε)`` per output channel, ``b' = (b − μ) · γ / √(σ² + ε) + β``. Folding removes one
pass over every normalised activation; on 2 CPU cores it makes psa_zoo's models 8–11% faster in
inference (docs/benchmarks.md). The arithmetic is :func:`torch.nn.utils.fusion.fuse_conv_bn_weights`;
this module finds the pairs.

A pair is found in the model's ``torch.fx`` graph (psa_zoo's models trace with plain
``torch.fx.symbolic_trace``): a ``Conv2d`` / ``ConvTranspose2d`` whose output goes to one BatchNorm only, both
called once per forward, the BatchNorm with running statistics (a grouped transposed convolution, and a
pair with a forward hook on either layer, are left alone). The result keeps the model's class, its
methods and its submodule names: the convolution gets the folded weight and bias and the BatchNorm
becomes ``nn.Identity``. It is for inference only (training it would train without the normalisation).
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["fold_batchnorm", "fold_pairs", "foldable_pairs"]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_BATCHNORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)


def foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(convolution name, BatchNorm name)`` of each BatchNorm ``model`` can fold into its convolution.

    Raises:
        ValueError: ``model`` does not trace with ``torch.fx.symbolic_trace`` (the error says why).
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as error:
        raise ValueError(
            f"cannot find the BatchNorm layers to fold: {type(model).__name__} does not trace with "
            f"torch.fx.symbolic_trace ({type(error).__name__}: {error}); run it unfolded "
            "(fold_batchnorm=False)"
        ) from error
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if not _is_call(node, modules, _BATCHNORMS) or not _has_running_stats(modules[node.target]):
            continue
        source = node.args[0] if node.args else None
        if (
            _is_call(source, modules, _CONVS)
            and _foldable_conv(modules[source.target])
            and not _has_hooks(modules[source.target])
            and not _has_hooks(modules[node.target])
            and len(source.users) == 1
            and calls[source.target] == 1
            and calls[node.target] == 1
        ):
            pairs.append((source.target, node.target))
    return pairs


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """``model`` in eval mode with each BatchNorm that follows a convolution folded into it.

    Args:
        model: any module that traces with ``torch.fx.symbolic_trace`` (every psa_zoo model does).
        inplace: fold ``model`` itself; by default a deep copy is folded and ``model`` is left as it was.

    Returns:
        The folded module in eval mode (``model`` itself when ``inplace``). Its outputs equal the
        unfolded model's in eval mode to float rounding; do not train it.

    Raises:
        ValueError: ``model`` does not trace (nothing is changed).
    """
    return fold_pairs(model, foldable_pairs(model), inplace=inplace)


def fold_pairs(model: nn.Module, pairs: list[tuple[str, str]], *, inplace: bool = False) -> nn.Module:
    """:func:`fold_batchnorm` with the pairs already found (:func:`foldable_pairs`)."""
    folded = model if inplace else copy.deepcopy(model)
    folded.eval()
    for conv_name, bn_name in pairs:
        _fold_pair(folded.get_submodule(conv_name), folded.get_submodule(bn_name))
        parent_name, _, child = bn_name.rpartition(".")
        setattr(folded.get_submodule(parent_name), child, nn.Identity())
    return folded


def _is_call(node, modules: dict[str, nn.Module], kinds: tuple[type, ...]) -> bool:
    return (
        isinstance(node, torch.fx.Node)
        and node.op == "call_module"
        and isinstance(modules.get(node.target), kinds)
    )


def _has_hooks(module: nn.Module) -> bool:
    # a hook would see the folded output (conv) or vanish with the layer (BatchNorm): left alone
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _foldable_conv(conv: nn.Module) -> bool:
    # a grouped transposed convolution keeps its output channels in groups of dim 1: not folded
    return not (isinstance(conv, nn.ConvTranspose2d) and conv.groups != 1)


def _has_running_stats(bn: nn.Module) -> bool:
    return bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None


@torch.no_grad()
def _fold_pair(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.Module) -> None:
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias,
        transpose=isinstance(conv, nn.ConvTranspose2d),
    )  # fmt: skip
    # element-wise from the weight, the folded weight keeps its memory format
    conv.weight, conv.bias = weight.requires_grad_(False), bias.requires_grad_(False)
