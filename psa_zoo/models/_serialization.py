"""Saving a model as a folder (``model.safetensors`` + ``config.json`` [+ ``README.md``]) that cannot
half-happen, and reading such a config back.

A save writes everything into a hidden temporary folder beside the target, then puts it in place in one
step: ``rename`` when the target does not exist, an atomic exchange of the two folders on Linux
(``renameat2(RENAME_EXCHANGE)``) when it does. A kill at any moment leaves the old folder or the new one;
a hidden ``.NAME.psa-tmp-*`` folder it may leave behind is removed by the next save into that place.
The config records the weights' sha256, so a config and a weights file of two different saves (or a
flipped byte) are refused at load.

The same ``config.json`` is the transformers config of the model (psa_zoo.hf): it records the
``model_type`` of the task (``"psa_pose"`` / ``"psa_seg"``) and ``id2label`` / ``label2id`` from the
metadata's label names, so ``AutoModelForPoseEstimation`` / ``AutoModelForSemanticSegmentation`` read a
folder written here, and ``psa_zoo.from_pretrained`` reads one written by the transformers wrappers
(which add their own fields through ``add_files``).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import fsync_dir
from ._download import CONFIG_NAME, WEIGHTS_NAME, file_sha256

__all__ = [
    "CONFIG_FORMAT_VERSION",
    "MODEL_FILES",
    "TRANSFORMERS_MODEL_TYPES",
    "check_record",
    "model_config",
    "read_config",
    "save_pretrained",
]

CONFIG_FORMAT_VERSION = 1
README_NAME = "README.md"
# the code files the transformers remote-code route (psa_zoo.hf.prepare_remote_code) copies beside the weights
REMOTE_CODE_FILES = ("configuration_psa.py", "modeling_psa.py")
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, README_NAME, *REMOTE_CODE_FILES)  # what a saved folder may hold
# transformers' model_type of each task: the key AutoConfig picks psa_zoo.hf's config class by
TRANSFORMERS_MODEL_TYPES = {"pose": "psa_pose", "segmentation": "psa_seg"}
_TMP_MARK = ".psa-tmp-"
_RENAME_EXCHANGE = 2  # linux/fs.h


def model_config(model: nn.Module) -> dict[str, Any]:
    """What ``config.json`` records, read from the live model: class, constructor arguments, registry name
    and tag, metadata, dtype, timm's pretrained-cfg view (``timm.create_model("local-dir:DIR")``), and
    transformers' ``model_type`` and ``id2label`` / ``label2id`` (the metadata's label names)."""
    from ..version import __version__
    from .base import PsaModel

    if not isinstance(model, PsaModel):
        raise ValueError(f"{type(model).__name__} is not a psa_zoo model: it cannot be saved with its config")
    cfg = model.psa_cfg
    timm_cfg = {k: v for k, v in model.pretrained_cfg.items() if k not in ("architecture", "hf_hub_id")}
    dtypes = {p.dtype for p in model.parameters()} or {torch.float32}
    if len(dtypes) != 1:
        raise ValueError(f"the model mixes parameter dtypes {sorted(map(str, dtypes))}; cast it to one first")
    config = {
        "format_version": CONFIG_FORMAT_VERSION,
        "psa_zoo_version": __version__,
        "architecture": model.model_name,
        "source_tag": cfg.name if cfg is not None and cfg.tag else None,
        "model_class": type(model).__name__,
        "model_args": model.get_config(),
        "num_classes": model.num_classes,
        "metadata": model.metadata.to_dict(),
        "torch_dtype": str(dtypes.pop()).removeprefix("torch."),
        "pretrained_cfg": timm_cfg,
        "model_type": TRANSFORMERS_MODEL_TYPES[model.task],
        "id2label": dict(enumerate(model.metadata.label_names)),
        "label2id": {name: i for i, name in enumerate(model.metadata.label_names)},
    }
    return json.loads(json.dumps(config))  # tuples → lists; fails early naming what cannot be written


def read_config(path: str | Path) -> dict[str, Any]:
    """A psa_zoo ``config.json``; ``ValueError`` when it is not one (what is missing, what to do)."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it is not a psa_zoo config.json") from None
    check_record(config, str(path))
    return config


def check_record(config: Any, where: str) -> None:
    """``ValueError`` unless ``config`` holds psa_zoo's record (``model_class``, a ``model_args`` object)."""
    required = ("model_class", "model_args")
    missing = [k for k in required if not isinstance(config, Mapping) or k not in config]
    if missing:
        raise ValueError(
            f"{where} has no {', '.join(missing)}: not a config.json written by psa_zoo's save_pretrained"
        )
    if not isinstance(config["model_args"], dict):
        raise ValueError(
            f"{where}: model_args must be a JSON object, got {type(config['model_args']).__name__}"
        )


def _check_no_shared_storage(state: Mapping[str, torch.Tensor]) -> None:
    seen: dict[int, str] = {}
    for key, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr()
        if ptr and ptr in seen:
            raise ValueError(f"{key} shares storage with {seen[ptr]}: tied weights cannot be saved as is")
        seen[ptr] = key


def check_save_target(directory: Path, overwrite: bool) -> None:
    """Raise before any work when ``directory`` cannot take a saved model.

    A file there, or a folder with entries, is refused without ``overwrite``; with it, a folder holding
    anything but a saved model's files is still refused (its files would be deleted).
    """
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} is a file, not a folder; choose a folder to save the model in")
    if not directory.is_dir():
        return
    entries = sorted(p.name for p in directory.iterdir())
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(
            f"{directory} already holds {', '.join(entries[:5])}{' ...' if len(entries) > 5 else ''}; "
            "pass overwrite=True (CLI: --overwrite) to replace that model, or choose another folder"
        )
    foreign = [e for e in entries if e not in MODEL_FILES]
    if foreign:
        raise FileExistsError(
            f"{directory} holds files that are not part of a saved model ({', '.join(foreign[:5])}); "
            "overwrite=True replaces the whole folder and would delete them: choose another folder"
        )


def save_pretrained(
    model: nn.Module,
    save_directory: str | Path,
    model_card: str | None = None,
    overwrite: bool = False,
    *,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    add_files: Callable[[Path, Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and, when given, ``README.md`` into ``save_directory``.

    The folder appears whole or not at all (see the module docstring). A folder that already has entries
    is only replaced with ``overwrite=True``, and only when all it holds is a saved model. Files are
    written with mode 0644. Returns the directory; ``psa_zoo.from_pretrained(directory)`` rebuilds the model.

    ``state_dict`` (the keys of ``model.state_dict()``, all of them) is saved instead of the model's own
    tensors. ``add_files(folder, record)`` is called with the temporary folder and psa_zoo's record (the
    ``config.json`` fields so far) before ``config.json`` is written: it may write further files of
    :data:`MODEL_FILES` there and returns fields to add to ``config.json`` (not psa_zoo's own fields); the
    transformers wrappers add theirs this way.
    """
    from safetensors.torch import save_file

    directory = Path(save_directory)
    check_save_target(directory, overwrite)
    config = model_config(model)
    state = {k: v.detach().cpu().contiguous() for k, v in _state_to_save(model, state_dict).items()}
    _check_no_shared_storage(state)
    parent = directory.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(parent, directory.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}{_TMP_MARK}", dir=parent))
    try:
        weights = tmp / WEIGHTS_NAME
        metadata = {k: str(config[k]) for k in ("format_version", "model_class", "architecture")}
        save_file(state, weights, metadata={"format": "pt", **metadata})
        config["weights_sha256"] = file_sha256(weights)
        if add_files is not None:
            config = {**_added_fields(add_files(tmp, config), config), **config}
            _check_added_files(tmp)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if model_card is not None:
            (tmp / README_NAME).write_text(model_card)
        _finish_files(tmp)
        _put_in_place(tmp, directory.absolute())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _state_to_save(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor] | None
) -> Mapping[str, torch.Tensor]:
    own = model.state_dict()
    if state_dict is None:
        return own
    missing, unexpected = sorted(own.keys() - state_dict.keys()), sorted(state_dict.keys() - own.keys())
    if missing or unexpected:
        raise ValueError(
            f"state_dict does not fit {type(model).__name__}: {len(missing)} missing {missing[:5]}, "
            f"{len(unexpected)} unexpected {unexpected[:5]}; a saved folder holds every tensor of the model"
        )
    return state_dict


def _added_fields(fields: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields ``add_files`` returned, refused when they would replace psa_zoo's record."""
    fields = json.loads(json.dumps(dict(fields)))  # the JSON form, as the record (e.g. id2label's keys)
    clash = sorted(k for k in fields if k in record and fields[k] != record[k])
    if clash:
        raise ValueError(f"added config fields {clash} differ from psa_zoo's record of the model")
    return fields


def _check_added_files(folder: Path) -> None:
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in MODEL_FILES)
    if foreign:
        raise ValueError(f"a saved folder holds only {', '.join(MODEL_FILES)}; add_files wrote {foreign}")


def _finish_files(folder: Path) -> None:
    """Mode 0644 / 0755 whatever the umask, and data on disk before the folder is put in place."""
    for path in folder.iterdir():
        path.chmod(0o644)
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    folder.chmod(0o755)
    fsync_dir(folder)


def _put_in_place(tmp: Path, target: Path) -> None:
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        os.replace(tmp, target)  # atomic; an empty folder is replaced too (POSIX)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp)  # now holds the old model
    else:  # no atomic exchange here: two renames, the old folder kept until the new one is in place
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_MARK}old-", dir=target.parent))
        os.replace(target, old / "model")
        os.replace(tmp, target)
        shutil.rmtree(old)
    fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _remove_stale_temporaries(parent: Path, name: str) -> None:
    """Hidden folders an interrupted save into ``parent / name`` left behind."""
    for stale in parent.glob(f".{name}{_TMP_MARK}*"):
        shutil.rmtree(stale, ignore_errors=True)
