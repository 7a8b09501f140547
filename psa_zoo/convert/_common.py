"""What every converter shares: unwrapping official checkpoints and checked key renaming."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

# Where official training checkpoints keep the model's state dict (HRNet / NVIDIA: "state_dict";
# VainF/DeepLabV3Plus-Pytorch: "model_state").
STATE_DICT_ENTRIES = ("state_dict", "model_state")


def unwrap_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """A state dict, or a training checkpoint holding one (see ``STATE_DICT_ENTRIES``) → ``{key: tensor}``.

    A ``module.`` prefix shared by every key (DataParallel / DistributedDataParallel) is removed.
    """
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"expected a state dict (mapping of key → tensor), got {type(checkpoint).__name__}")
    for entry in STATE_DICT_ENTRIES:
        if isinstance(checkpoint.get(entry), Mapping):
            checkpoint = checkpoint[entry]
            break
    not_tensors = [k for k, v in checkpoint.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"state dict entries must be tensors; these are not: {not_tensors[:10]}")
    sd = dict(checkpoint)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def rename_checked(
    sd: Mapping[str, torch.Tensor],
    rename: Callable[[str], str | None],
    expected: Mapping[str, torch.Size],
    target: str,
) -> dict[str, torch.Tensor]:
    """Rename every key of ``sd`` with ``rename`` (None: no counterpart) and check the result against the
    ``expected`` key → shape map of the target model. Raises ``ValueError`` naming unused source keys,
    missing target keys and shape mismatches; nothing is dropped silently."""
    out, unused = {}, []
    for key, value in sd.items():
        new = rename(key)
        if new is None or new not in expected:
            unused.append(key)
        else:
            out[new] = value
    missing = [k for k in expected if k not in out]
    wrong_shape = [
        f"{k}: {tuple(out[k].shape)} vs {tuple(shape)}"
        for k, shape in expected.items()
        if k in out and out[k].shape != shape
    ]
    if unused or missing or wrong_shape:
        raise ValueError(
            f"state dict does not map onto {target}: {len(unused)} unused keys {unused[:10]}, "
            f"{len(missing)} missing keys {missing[:10]}, "
            f"{len(wrong_shape)} shape mismatches {wrong_shape[:10]}"
        )
    return out
