"""Loading weights into models: published tags, saved folders (local or Hub), timm ImageNet backbones.

Every load is checked before memory is spent: the model is first built on the meta device and its shapes
compared with the safetensors header, so a config that asks for a huge network fails with a clear error
instead of allocating it. Trained weights are never dropped silently: a head whose size differs from the
checkpoint's is an error unless the caller asked for another ``num_classes`` (then a warning names the
keys that keep their fresh initialisation).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..metadata import ModelMetadata
from ._download import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    file_sha256,
    hub_download,
    read_safetensors,
    safetensors_header,
)
from ._pretrained import PretrainedCfg
from ._serialization import read_config

__all__ = [
    "ATTENTION_MODULE_NAMES",
    "build_saved",
    "check_weights_sha256",
    "from_pretrained",
    "is_attention_key",
    "load_backbone_from_timm",
    "load_pretrained",
    "load_state_dict_checked",
    "restore_saved",
]

_logger = logging.getLogger("psa_zoo")

ATTENTION_MODULE_NAMES = ("attn", "deattn")


def is_attention_key(key: str) -> bool:
    """True for state-dict keys inside an attention slot (``....attn.*`` or ``....deattn.*``)."""
    return any(f".{name}." in f".{key}" for name in ATTENTION_MODULE_NAMES)


# --- shape comparison (tensors or header entries) ------------------------------------------------------
def _compare_shapes(
    model: nn.Module,
    own: Mapping[str, tuple[int, ...]],
    theirs: Mapping[str, tuple[int, ...]],
    source: str,
    allow_head_resize: bool,
) -> list[str]:
    """The head keys to leave at their fresh values; ``ValueError`` for every other difference."""
    mismatched = [k for k in theirs if k in own and tuple(own[k]) != tuple(theirs[k])]
    heads = _output_sized(model, own, theirs, mismatched)
    if heads and not allow_head_resize:
        raise ValueError(
            f"{source} has a head for {theirs[heads[0]][0]} outputs but the model was built for "
            f"num_classes={model.num_classes} ({', '.join(heads)}); loading would drop the trained head. "
            f"Build it with num_classes={theirs[heads[0]][0]} to keep it, or pass num_classes explicitly to "
            "replace the head on purpose"
        )
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    wrong = [f"{k}: {tuple(theirs[k])} vs {tuple(own[k])}" for k in mismatched if k not in heads]
    if missing or unexpected or wrong:
        raise ValueError(
            f"weights from {source} do not fit {type(model).__name__}: "
            f"{len(missing)} missing {missing[:10]}, {len(unexpected)} unexpected {unexpected[:10]}, "
            f"{len(wrong)} shape mismatches {wrong[:10]}"
        )
    return heads


def _output_sized(
    model: nn.Module,
    own: Mapping[str, tuple[int, ...]],
    theirs: Mapping[str, tuple[int, ...]],
    mismatched: list[str],
) -> list[str]:
    """The mismatched keys when all of them differ only in their first dimension, which is the model's
    ``num_classes`` on one side and one common size on the other (a head built for other outputs)."""
    outputs = getattr(model, "num_classes", None)
    if not mismatched or outputs is None:
        return []
    sizes = {theirs[k][0] for k in mismatched}
    fits = all(own[k][0] == outputs and tuple(own[k][1:]) == tuple(theirs[k][1:]) for k in mismatched)
    return mismatched if fits and len(sizes) == 1 else []


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def load_state_dict_checked(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, allow_head_resize: bool = False
) -> None:
    """Load ``state`` into ``model`` strictly; ``ValueError`` names every key that does not fit.

    With ``allow_head_resize`` (the caller chose ``num_classes``), head tensors sized by another number of
    outputs keep their fresh initialisation, and a warning on the ``psa_zoo`` logger names them.
    """
    own = model.state_dict()
    heads = _compare_shapes(model, _shapes(own), _shapes(state), source, allow_head_resize)
    if heads:
        _logger.warning(
            "%s: the model has %s outputs, the checkpoint %s; not loaded (fresh initialisation): %s",
            source,
            model.num_classes,
            state[heads[0]].shape[0],
            ", ".join(heads),
        )
    model.load_state_dict({**state, **{k: own[k] for k in heads}}, strict=True)


# --- registered tags -----------------------------------------------------------------------------------
def load_pretrained(
    model: nn.Module,
    cfg: PretrainedCfg,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    allow_head_resize: bool = False,
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
    _compare_shapes(model, _shapes(model.state_dict()), _header_shapes(path), str(path), allow_head_resize)
    load_state_dict_checked(model, read_safetensors(path, cfg.sha256), str(path), allow_head_resize)


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    return {k: shape for k, (_, shape) in safetensors_header(path).items()}


# --- saved folders -------------------------------------------------------------------------------------
def _is_hub_id(name: str) -> bool:
    """psa_zoo Hub repositories are always ``owner/name``; anything else is meant as a local path."""
    parts = name.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not name.startswith((".", "~"))
        and os.sep not in name.replace("/", "")
    )


def _saved_files(repo_id_or_dir: str | Path, download: dict[str, Any]) -> tuple[Path, Path, str]:
    """(config path, weights path, description) of a local folder or a Hub repository."""
    local = Path(repo_id_or_dir).expanduser()
    if local.is_dir():
        config_path, weights_path = local / CONFIG_NAME, local / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: {local} is not a folder written by save_pretrained"
                )
        return config_path, weights_path, str(local)
    if local.exists():
        raise FileNotFoundError(f"{local} is a file; from_pretrained takes the folder save_pretrained wrote")
    if isinstance(repo_id_or_dir, Path) or not _is_hub_id(str(repo_id_or_dir)):
        raise FileNotFoundError(
            f"no folder {local} (absolute: {local.absolute()}); give the folder save_pretrained wrote, or a "
            "Hub repository id of the form 'owner/name'"
        )
    repo = str(repo_id_or_dir)
    config_path = hub_download(repo, CONFIG_NAME, **download)
    weights_path = hub_download(repo, WEIGHTS_NAME, **download)
    return config_path, weights_path, f"Hub repository {repo}"


def _model_class(config: Mapping[str, Any], where: str | Path) -> type[nn.Module]:
    from . import MODEL_CLASSES

    name = config["model_class"]
    if name not in MODEL_CLASSES:
        raise ValueError(
            f"{where} names model_class {name!r}; this psa_zoo knows {sorted(MODEL_CLASSES)} "
            "(a newer psa_zoo may have written it: upgrade psa_zoo)"
        )
    return MODEL_CLASSES[name]


def _construct(config: Mapping[str, Any], source: str, model_kwargs: Mapping[str, Any]) -> nn.Module:
    cls = _model_class(config, source)
    try:
        return cls(**{**config["model_args"], **model_kwargs})
    except TypeError as error:
        raise ValueError(f"{source}: config.json model_args do not fit {cls.__name__}: {error}") from None


def build_saved(config: Mapping[str, Any], source: str, **model_kwargs) -> nn.Module:
    """The model a saved config describes, with fresh weights (none are loaded): ``model_class`` built with
    ``model_args`` (``model_kwargs`` override them) on the current default device, then its metadata,
    registry name and registry record restored. ``from_pretrained`` and the transformers wrappers
    (psa_zoo.hf) build through this."""
    model = _construct(config, source, model_kwargs)
    restore_metadata(model, config)
    _restore_identity(model, config)
    return model


def _restore_identity(model: nn.Module, config: Mapping[str, Any]) -> None:
    """The registry name (``model_name``) and record (``psa_cfg``, with its tag) the saved model came from."""
    from ._registry import get_pretrained_cfg, is_model

    architecture = config.get("architecture")
    model.model_name = architecture
    if architecture and is_model(architecture):
        try:
            model.psa_cfg = get_pretrained_cfg(config.get("source_tag") or architecture)
        except ValueError:  # a tag this version of psa_zoo does not know
            model.psa_cfg = get_pretrained_cfg(architecture)


def from_pretrained(
    repo_id_or_dir: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    **model_kwargs,
) -> nn.Module:
    """Rebuild a model saved by :func:`save_pretrained` from a local folder or a Hub repository
    (``"owner/name"``; any other string is a local path, and a missing one fails at once).

    ``model_kwargs`` override the saved constructor arguments; ``num_classes`` that differs from the saved
    one replaces the head (fresh initialisation, a warning names the keys, generic labels). The weights'
    sha256 recorded in the config is checked, the model keeps the saved dtype and metadata. Returns the
    model in eval mode.
    """
    download = {
        "revision": revision,
        "cache_dir": cache_dir,
        "local_files_only": local_files_only,
        "force_download": force_download,
    }
    config_path, weights_path, source = _saved_files(repo_id_or_dir, download)
    config = read_config(config_path)
    resized = "num_classes" in model_kwargs and model_kwargs["num_classes"] != config["model_args"].get(
        "num_classes"
    )
    with torch.device("meta"):  # every shape compared with the safetensors header before any allocation
        meta_model = _construct(config, source, model_kwargs)
    _compare_shapes(
        meta_model, _shapes(meta_model.state_dict()), _header_shapes(Path(weights_path)), source, resized
    )
    model = build_saved(config, source, **model_kwargs)
    if config.get("torch_dtype"):
        model.to(dtype=_dtype(config["torch_dtype"], config_path))
    restore_saved(model, config, Path(weights_path), source, allow_head_resize=resized)
    return model.eval()


def check_weights_sha256(config: Mapping[str, Any], weights_path: Path, source: str) -> None:
    """``ValueError`` when the weights file is not the one the saved config records (``weights_sha256``);
    a config that records none (an older psa_zoo, or a config saved without weights) gets a warning on the
    ``psa_zoo`` logger."""
    expected = config.get("weights_sha256")
    if expected is None:
        _logger.warning(
            "%s: config.json records no weights_sha256 (an older psa_zoo, or a config saved without its "
            "weights); the weights are not verified",
            source,
        )
        return
    actual = file_sha256(weights_path)
    if actual != str(expected).lower():
        raise ValueError(
            f"checksum mismatch for {weights_path}: sha256 {actual}, but {source}'s config.json records "
            f"{expected}. The file was not used; it is damaged or from another save: save the model again "
            "(Hub: pass force_download=True)."
        )


def restore_saved(
    model: nn.Module, config: Mapping[str, Any], weights_path: Path, source: str, allow_head_resize: bool
) -> None:
    """Load a saved folder's weights (sha256 of its config verified) and metadata into ``model``."""
    check_weights_sha256(config, weights_path, source)
    state = read_safetensors(weights_path)
    load_state_dict_checked(model, state, source, allow_head_resize=allow_head_resize)
    restore_metadata(model, config)


def restore_metadata(model: nn.Module, config: Mapping[str, Any]) -> None:
    """The saved metadata (labels, input, normalisation), generic labels when the head size changed."""
    if config.get("metadata"):
        metadata = ModelMetadata.from_dict(config["metadata"])
        model.set_metadata(metadata.with_num_outputs(model.num_classes))


def _dtype(name: str, where: Path) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{where}: torch_dtype {name!r} is not a floating-point torch dtype")
    return dtype


# --- timm ImageNet backbones ---------------------------------------------------------------------------
def _backbone_and_head(model: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    """The module that holds the backbone weights, and the key prefixes of that module that are not
    backbone (HRNetPose *is* its trunk plus ``final_layer``)."""
    if hasattr(model, "backbone"):
        return model.backbone, ()
    return model, ("final_layer.", "head_drop.")


# The timeout of the one metadata request (no retries) that pretrained_backbone=True makes before timm's
# loader when the weights are not cached; an unreachable Hub is reported after a few times this (the HTTP
# client's connect / read phases), not after the Hub client's minute of retries
HUB_PROBE_TIMEOUT_S = 5.0


def _check_timm_weights_reachable(timm_name: str, cache_dir: str | Path | None) -> None:
    """Not cached: our error at once when offline (``HF_HUB_OFFLINE=1``), and after one metadata request
    (timeout :data:`HUB_PROBE_TIMEOUT_S`) when the Hub does not answer (instead of the Hub client's
    retries and error, about a minute later). A Hub that answers, even with an HTTP error, is left to
    timm's loader."""
    import huggingface_hub.constants as hub_constants
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        return
    filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    cached = (try_to_load_from_cache(hub_id, f, cache_dir=cache_dir) for f in filenames)
    if any(isinstance(path, str) for path in cached):
        return
    needs = (
        f"pretrained_backbone=True needs timm's ImageNet weights of {timm_name} ({hub_id} on the Hugging "
        "Face Hub), which are not in the local cache"
    )
    if hub_constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(
            f"{needs}, and HF_HUB_OFFLINE=1 forbids downloading them. Download them once with network "
            f"access (timm.create_model({timm_name!r}, pretrained=True)), or build the model with "
            "pretrained_backbone=False"
        )
    url = hf_hub_url(hub_id, filenames[0], endpoint=hub_constants.ENDPOINT)
    try:
        get_hf_file_metadata(url, timeout=HUB_PROBE_TIMEOUT_S, retry_on_errors=False)
    except HfHubHTTPError:
        return  # the Hub answered: timm's loader reports what it says
    except Exception as error:  # connection refused, DNS, timeout: the Hub is not reachable from here
        raise FileNotFoundError(
            f"{needs}, and {hub_constants.ENDPOINT} did not answer (one request, timeout "
            f"{HUB_PROBE_TIMEOUT_S:g} s: {type(error).__name__}). Connect to the network (or set "
            "HF_ENDPOINT to a reachable mirror), or build the model with pretrained_backbone=False"
        ) from None


def load_backbone_from_timm(model: nn.Module, cfg: PretrainedCfg, cache_dir: str | None = None) -> None:
    """Load timm's ImageNet weights of ``cfg.timm_backbone`` into the model's backbone.

    The weights come through timm's own loader (Hugging Face Hub cache, ``HF_HUB_OFFLINE``, ``cache_dir``).
    Every backbone key must be filled except those of attention slots (new modules); the ImageNet
    classifier keys of the timm model are dropped by the backbone's ``filter_timm_state_dict``.
    """
    if cfg.timm_backbone is None:
        raise ValueError(f"{cfg.architecture} names no timm backbone to take ImageNet weights from")
    import timm

    _check_timm_weights_reachable(cfg.timm_backbone, cache_dir)
    backbone, head_prefixes = _backbone_and_head(model)
    try:
        source = timm.create_model(
            cfg.timm_backbone, pretrained=True, cache_dir=cache_dir, in_chans=getattr(backbone, "in_chans", 3)
        )
    except (OSError, RuntimeError) as error:  # huggingface_hub's network and cache errors are OSErrors
        raise FileNotFoundError(
            f"pretrained_backbone=True could not get timm's ImageNet weights of {cfg.timm_backbone} "
            f"({type(error).__name__}: {error}). Check the network or the Hugging Face cache, or build the "
            "model with pretrained_backbone=False"
        ) from error
    state = backbone.filter_timm_state_dict(source.state_dict())
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    missing = [k for k in missing if not is_attention_key(k) and not k.startswith(head_prefixes)]
    if missing or unexpected:
        raise ValueError(
            f"timm weights of {cfg.timm_backbone} do not fit the {cfg.architecture} backbone: "
            f"missing {missing[:10]}, unexpected {unexpected[:10]}"
        )
