"""Weights for psa_zoo models: published checkpoints, saved folders, timm ImageNet backbones.

Nothing here runs at import time. Downloads go through ``huggingface_hub.hf_hub_download`` (its cache,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``cache_dir``, ``local_files_only``); only safetensors files are read,
and a file whose sha256 differs from the recorded one is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ._pretrained import PretrainedCfg

_logger = logging.getLogger("psa_zoo")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ATTENTION_MODULE_NAMES = ("attn", "deattn")


def is_attention_key(key: str) -> bool:
    """True for state-dict keys inside an attention slot (``....attn.*`` or ``....deattn.*``)."""
    return any(f".{name}." in f".{key}" for name in ATTENTION_MODULE_NAMES)


# --- files ---------------------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hub_download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """``hf_hub_download`` with errors that say what to do."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from .. import __version__

    where = f"{repo_id}@{revision or 'main'}/{filename}"
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                force_download=force_download,
                library_name="psa_zoo",
                library_version=__version__,
            )
        )
    except LocalEntryNotFoundError as error:  # before EntryNotFoundError: it is a subclass
        raise FileNotFoundError(
            f"{where} is not in the Hugging Face cache and the Hub cannot be reached (offline mode, "
            "local_files_only, or no network). Download it once with network access, point cache_dir / "
            "HF_HUB_CACHE at a cache that holds it, or load a local file with "
            "pretrained_cfg_overlay={'file': '/path/to/model.safetensors'}."
        ) from error
    except EntryNotFoundError as error:
        raise FileNotFoundError(
            f"{repo_id} has no file {filename} at revision {revision or 'main'}"
        ) from error
    except RevisionNotFoundError as error:
        raise ValueError(f"{repo_id} has no revision {revision!r}") from error
    except RepositoryNotFoundError as error:
        raise ValueError(
            f"no Hub repository {repo_id!r} (or it is private: log in with `hf auth login`)"
        ) from error


def read_safetensors(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, after checking its sha256 when one is expected.

    Raises ``ValueError`` for a checksum mismatch or an unreadable file; the file is then not used.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual != expected_sha256.lower():
            raise ValueError(
                f"checksum mismatch for {path}: sha256 {actual}, expected {expected_sha256}. "
                "The file was not used; delete it (or pass force_download=True) and load again."
            )
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}); it was not used") from error


# --- loading into a model ------------------------------------------------------------------------------
def load_state_dict_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly; ``ValueError`` names every key that does not fit.

    The one tolerated difference: a model built with another number of outputs (``num_classes``) than the
    checkpoint. The head tensors sized by that number then keep their fresh initialisation, and a warning
    on the ``psa_zoo`` logger names them.
    """
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    heads = _output_sized(model, own, state, mismatched)
    if heads:
        _logger.warning(
            "%s: the model has %s outputs, the checkpoint %s; not loaded (fresh initialisation): %s",
            source,
            model.num_classes,
            state[heads[0]].shape[0],
            ", ".join(heads),
        )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched if k not in heads]
    if missing or unexpected or wrong:
        raise ValueError(
            f"weights from {source} do not fit {type(model).__name__}: "
            f"{len(missing)} missing {missing[:10]}, {len(unexpected)} unexpected {unexpected[:10]}, "
            f"{len(wrong)} shape mismatches {wrong[:10]}"
        )
    model.load_state_dict({**state, **{k: own[k] for k in heads}}, strict=True)


def _output_sized(
    model: nn.Module,
    own: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    mismatched: list[str],
) -> list[str]:
    """The mismatched keys when all of them differ only in their first dimension, which is the model's
    ``num_classes`` on one side and one common size on the other (a head built for other outputs)."""
    outputs = getattr(model, "num_classes", None)
    if not mismatched or outputs is None:
        return []
    sizes = {state[k].shape[0] for k in mismatched}
    fits = all(own[k].shape[0] == outputs and own[k].shape[1:] == state[k].shape[1:] for k in mismatched)
    return mismatched if fits and len(sizes) == 1 else []


def load_pretrained(
    model: nn.Module,
    cfg: PretrainedCfg,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> None:
    """Load the weights ``cfg`` points to: ``cfg.file`` (a local file) or ``cfg.hf_hub_id`` on the Hub."""
    if cfg.file is not None:
        path = Path(cfg.file)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained file {path} does not exist")
    elif cfg.hf_hub_id is not None and cfg.status == "published":
        path = hub_download(
            cfg.hf_hub_id,
            cfg.filename,
            revision=cfg.hf_hub_revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
        )
    elif cfg.tag is None:
        raise ValueError(
            f"{cfg.architecture} has no default pretrained weights; name a tag, e.g. "
            f"create_model('{cfg.architecture}.<tag>', pretrained=True) (tags: psa_zoo.models.list_tags), or "
            "pass pretrained_cfg_overlay={'file': ...} or {'hf_hub_id': ...}"
        )
    elif cfg.status == "convertible":
        raise ValueError(
            f"{cfg.name} is not published on the Hub; convert the official checkpoint ({cfg.source}) with "
            f"`psa-zoo convert CHECKPOINT --format {cfg.convert_format} --out DIR` and load DIR with "
            "psa_zoo.from_pretrained(DIR)"
        )
    else:
        raise ValueError(f"no weights exist for {cfg.name} ({cfg.status}): {cfg.source}")
    state = read_safetensors(path, cfg.sha256)
    load_state_dict_checked(model, state, str(path))


# --- timm ImageNet backbones ---------------------------------------------------------------------------
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


# --- saving and sharing --------------------------------------------------------------------------------
def _check_no_shared_storage(state: Mapping[str, torch.Tensor]) -> None:
    seen: dict[int, str] = {}
    for key, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr()
        if ptr and ptr in seen:
            raise ValueError(f"{key} shares storage with {seen[ptr]}: tied weights cannot be published as is")
        seen[ptr] = key


def model_config(model: nn.Module) -> dict:
    """What ``config.json`` records: the class and its constructor arguments, the registry name, the
    expected input and the labels."""
    init_args = getattr(model, "init_args", None)
    if init_args is None:
        raise ValueError(f"{type(model).__name__} does not record its constructor arguments: cannot be saved")
    from ._mixin import to_json_value

    init_args = {k: to_json_value(v, k) for k, v in init_args.items()}
    cfg = getattr(model, "pretrained_cfg", None)
    from .. import __version__

    config = {
        "architecture": getattr(model, "model_name", None),
        "model_class": type(model).__name__,
        "model_args": init_args,
        "psa_zoo_version": __version__,
    }
    if cfg is not None:
        config.update(
            task=cfg.task,
            input_size=list(cfg.input_size),
            mean=list(cfg.mean),
            std=list(cfg.std),
            label_names=list(cfg.label_names) if len(cfg.label_names) == model.num_classes else None,
            source_tag=cfg.name,
        )
    json.dumps(config)  # fails early with a TypeError naming the object that cannot be written
    return config


def save_pretrained(model: nn.Module, save_directory: str | Path, model_card: str | None = None) -> Path:
    """Write ``model.safetensors`` (with metadata), ``config.json`` and, when given, ``README.md``.

    Returns the directory. ``psa_zoo.from_pretrained(directory)`` rebuilds the model from it.
    """
    from safetensors.torch import save_file

    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model_config(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _check_no_shared_storage(state)
    metadata = {
        "format": "pt",
        "model_class": config["model_class"],
        "architecture": str(config["architecture"]),
        "psa_zoo_version": config["psa_zoo_version"],
    }
    save_file(state, directory / WEIGHTS_NAME, metadata=metadata)
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if model_card is not None:
        (directory / "README.md").write_text(model_card)
    return directory


def from_pretrained(
    repo_id_or_dir: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    **model_kwargs,
) -> nn.Module:
    """Rebuild a model saved by :func:`save_pretrained` from a local folder or a Hub repository id.

    ``model_kwargs`` override the saved constructor arguments (e.g. ``num_classes`` for fine-tuning: the
    head is then freshly initialised and the rest loaded). Loading is strict otherwise. Returns the model
    in eval mode.
    """
    from . import MODEL_CLASSES
    from ._registry import get_pretrained_cfg, is_model

    local = Path(repo_id_or_dir)
    if local.is_dir():
        config_path, weights_path = local / CONFIG_NAME, local / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: not a folder written by save_pretrained")
    else:
        download = {
            "revision": revision,
            "cache_dir": cache_dir,
            "local_files_only": local_files_only,
            "force_download": force_download,
        }
        config_path = hub_download(str(repo_id_or_dir), CONFIG_NAME, **download)
        weights_path = hub_download(str(repo_id_or_dir), WEIGHTS_NAME, **download)
    try:
        config = json.loads(Path(config_path).read_text())
        cls = MODEL_CLASSES[config["model_class"]]
        args = {**config["model_args"], **model_kwargs}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{config_path} is not a psa_zoo config.json ({error!r})") from error
    model = cls(**args)
    architecture = config.get("architecture")
    model.model_name = architecture
    if architecture and is_model(architecture):
        tagged = config.get("source_tag") or architecture
        try:
            model.pretrained_cfg = get_pretrained_cfg(tagged)
        except ValueError:  # a tag this version of psa_zoo does not know
            model.pretrained_cfg = get_pretrained_cfg(architecture)
    load_state_dict_checked(model, read_safetensors(weights_path), str(weights_path))
    return model.eval()


def upload_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    commit_message: str = "Upload psa_zoo model",
) -> str:
    """Upload a folder written by :func:`save_pretrained` to ``repo_id`` (created if needed); returns the
    commit URL. Needs network access and a write token."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} is missing: write the folder with save_pretrained first"
            )
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, folder_path=folder, revision=branch, commit_message=commit_message
    )
    return str(commit)


def push_to_hub(model: nn.Module, repo_id: str, *, model_card: str | None = None, **upload_kwargs) -> str:
    """Save the model to a temporary folder and upload it with :func:`upload_folder`."""
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, model_card=model_card)
        return upload_folder(tmp, repo_id, **upload_kwargs)
