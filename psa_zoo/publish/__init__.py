"""Publishing: model cards (``psa_zoo.publish.cards``) and uploads of saved folders to the Hugging Face Hub.

Nothing here runs for loading or training; uploads need network access and a write token.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from ..models._download import CONFIG_NAME, WEIGHTS_NAME

__all__ = ["push_to_hub", "upload_folder"]


def upload_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    commit_message: str = "Upload psa_zoo model",
) -> str:
    """Upload a folder written by ``save_pretrained`` to ``repo_id`` (created if needed); returns the
    commit URL."""
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
    from ..models._serialization import save_pretrained

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model, Path(tmp) / "model", model_card=model_card)
        return upload_folder(folder, repo_id, **upload_kwargs)
