"""Files: Hub downloads with errors that say what to do, checksums, and safetensors read only after checks.

Nothing here builds a model. Downloads go through ``huggingface_hub.hf_hub_download`` (its cache,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``cache_dir``, ``local_files_only``); only safetensors files are read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "file_sha256",
    "hub_download",
    "read_safetensors",
    "safetensors_header",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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

    from ..version import __version__

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


def safetensors_header(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{key: (dtype, shape)}`` of a safetensors file, read from its header only (no tensor data).

    Raises ``ValueError`` for a file that is not safetensors or whose header promises more bytes than the
    file holds (a truncated or forged file); safetensors' own reader checks both.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {
                key: (handle.get_slice(key).get_dtype(), tuple(handle.get_slice(key).get_shape()))
                for key in handle.keys()  # noqa: SIM118 (a safe_open handle is not a dict)
            }
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}); it was not used") from None


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
