"""transformers models wrapping psa_zoo architectures: semantic segmentation and heatmap pose estimation.

``PsaForSemanticSegmentation`` returns transformers' ``SemanticSegmenterOutput``; ``PsaForPoseEstimation``
returns :class:`PsaPoseEstimatorOutput` (modelled on ``VitPoseEstimatorOutput``). Both hold the psa_zoo
model as ``self.model``, built from the configuration's psa_zoo record exactly as
``psa_zoo.from_pretrained`` builds it.

Saved format: ``save_pretrained`` is psa_zoo's (an atomic folder, ``model.safetensors`` with psa_zoo's own
keys, i.e. without the ``model.`` prefix, and ``config.json`` holding psa_zoo's record with the weights'
sha256), with transformers' fields added to the same ``config.json``. So ``psa_zoo.from_pretrained(dir)``
and ``AutoModelFor*.from_pretrained(dir)`` read the same folder, and ``from_pretrained`` here checks the
recorded sha256 as psa_zoo does.

Weight initialisation: psa_zoo's constructors already initialise every tensor as the official code does
(Kaiming convolutions, N(0, 0.001) pose heads, PSA's own scheme), and transformers' generic initialisation
(N(0, 0.02) convolutions) would undo that. So nothing is re-initialised after construction; the only tensors
ever initialised here are those ``from_pretrained`` found missing from (or, with
``ignore_mismatched_sizes=True``, mismatched with) a checkpoint, which get the values of a freshly built
psa_zoo model of the same configuration.

This file is also copied next to the weights by the remote-code route (``psa_zoo.hf.prepare_remote_code``):
it imports only ``psa_zoo``, torch, transformers and its sibling ``configuration_psa``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.utils import ModelOutput, cached_file

from psa_zoo.losses import keypoint_mse_loss, segmentation_loss
from psa_zoo.models._download import CONFIG_NAME, WEIGHTS_NAME
from psa_zoo.models._loading import build_saved, check_weights_sha256
from psa_zoo.models._serialization import save_pretrained as save_psa_folder

from .configuration_psa import PsaPoseConfig, PsaSegConfig, labelled_metadata

__all__ = [
    "PsaForPoseEstimation",
    "PsaForSemanticSegmentation",
    "PsaPoseEstimatorOutput",
    "PsaPreTrainedModel",
]

# transformers' config fields that psa_zoo's record already holds (torch_dtype for dtype), or that only
# describe how a new configuration was made
_NOT_ADDED = ("dtype", "torch_dtype", "arch", "attn", "model_kwargs", "_name_or_path")
# from_pretrained arguments that say where the files are (passed to transformers' cached_file as they are)
_DOWNLOAD_KWARGS = (
    "cache_dir",
    "force_download",
    "local_files_only",
    "token",
    "revision",
    "subfolder",
    "proxies",
)


@dataclass
class PsaPoseEstimatorOutput(ModelOutput):
    """Outputs of :class:`PsaForPoseEstimation`.

    Attributes:
        loss: scalar heatmap MSE (HRNet ``JointsMSELoss``), only when ``labels`` are given.
        heatmaps: [N, K, H/4, W/4] raw keypoint heatmaps (no flip test, no decoding).
    """

    loss: torch.Tensor | None = None
    heatmaps: torch.Tensor | None = None


class PsaPreTrainedModel(PreTrainedModel):
    """Base of the psa_zoo wrappers: builds ``self.model`` from the config's psa_zoo record, keeps psa_zoo's
    initialisation, saves and loads psa_zoo's folder format."""

    # the psa_zoo model is ``self.model``: a checkpoint of psa_zoo's own keys (no ``model.`` prefix) loads
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: PsaSegConfig | PsaPoseConfig):
        super().__init__(config)
        self.model = _build(config)
        # psa_zoo has initialised every tensor; the flag tells initialize_weights (run by post_init) so
        for tensor in chain(self.model.parameters(), self.model.buffers()):
            tensor._is_hf_initialized = True
        config.label2id = {name: i for i, name in enumerate(config.label_names)}
        self._synced_labels = tuple(config.label_names)  # what config.id2label and the metadata agreed on
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """No-op: transformers' generic per-module initialisation would overwrite psa_zoo's (see the module
        docstring); :meth:`initialize_weights` handles the tensors that need values."""

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """Give values to the tensors not initialised yet, i.e. those ``from_pretrained`` left unloaded.

        transformers builds the model on the meta device and, for keys missing from a checkpoint (or
        mismatched, with ``ignore_mismatched_sizes=True``), allocates uninitialised memory; those tensors get
        the values of a freshly built psa_zoo model of this configuration, i.e. psa_zoo's (official)
        initialisation. Tensors psa_zoo initialised at construction, or that were loaded, carry
        ``_is_hf_initialized`` and stay as they are.
        """
        pending = {
            name: tensor
            for name, tensor in chain(self.named_parameters(), self.named_buffers())
            if not getattr(tensor, "_is_hf_initialized", False)
        }
        if not pending:
            return
        with torch.device("cpu"):  # never the meta device of a from_pretrained in progress
            reference = _build(self.config).state_dict()
        prefix = f"{self.base_model_prefix}."
        for name, tensor in pending.items():
            tensor.copy_(reference[name.removeprefix(prefix)])
            tensor._is_hf_initialized = True

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` that also takes psa_zoo's own keys (a saved ``model.safetensors``,
        as ``Trainer`` reloads checkpoints with): keys of which none starts with ``model.`` get the prefix."""
        prefix = f"{self.base_model_prefix}."
        if state_dict and not any(key.startswith(prefix) for key in state_dict):
            state_dict = {prefix + key: value for key, value in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # --- psa_zoo's folder format ------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, **kwargs):
        """transformers' ``from_pretrained``, after checking the weights against the sha256 that psa_zoo's
        ``config.json`` records (as ``psa_zoo.from_pretrained`` does): a damaged file or a weights file of
        another save raises ``ValueError`` before anything is loaded. Local folders and Hub repositories
        (downloaded through transformers' cache first) alike; see ``PreTrainedModel.from_pretrained`` for
        the arguments (``id2label``, ``ignore_mismatched_sizes``, ``dtype``, ``device_map``, ...)."""
        if pretrained_model_name_or_path is not None:
            _verify_weights(pretrained_model_name_or_path, kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        push_to_hub: bool = False,
        max_shard_size: int | str = "50GB",
        variant: str | None = None,
        token: str | bool | None = None,
        overwrite: bool = False,
        **kwargs,
    ) -> None:
        """Save as psa_zoo does (``psa_zoo.models.save_pretrained``), with transformers' fields added.

        The folder is written whole or not at all; ``model.safetensors`` holds psa_zoo's keys (no ``model.``
        prefix), ``config.json`` psa_zoo's record (with the weights' sha256) and transformers' fields
        (``model_type``, ``architectures``, ``id2label`` / ``label2id``, ``ignore_index``, ...). After
        :func:`~psa_zoo.hf.prepare_remote_code`, ``configuration_psa.py`` / ``modeling_psa.py`` and an
        ``auto_map`` are added too. ``psa_zoo.from_pretrained(save_directory)`` and ``from_pretrained`` here
        read the folder.

        As psa_zoo's saves (and unlike transformers' own), a folder that already holds a model is only
        replaced with ``overwrite=True``, and one holding other files never. Labels: ``config.id2label``
        and the psa_zoo metadata are made to agree first (the one changed since the last agreement wins).

        Args:
            save_directory: the folder to write.
            is_main_process: False writes nothing (the other processes of a distributed run).
            state_dict: tensors to save instead of the model's (keys with or without ``model.``; all of
                them), as ``Trainer`` passes them.
            push_to_hub: upload the folder afterwards to ``repo_id`` (keyword; default the folder's name).
            max_shard_size: accepted for transformers' callers; psa_zoo writes one ``model.safetensors``.
            variant: not supported (one weights file name): must be None.
            token: Hub token for ``push_to_hub``.
            overwrite: replace a folder that holds a saved model.
            **kwargs: ``repo_id``, ``commit_message``, ``create_pr``, ``private`` for ``push_to_hub``; further
                transformers options (``safe_serialization``, ``save_peft_format``, ...) are accepted and
                have no effect (always safetensors, no adapters).
        """
        if variant is not None:
            raise ValueError(
                f"variant={variant!r}: a psa_zoo folder holds one model.safetensors; save the variant to "
                "another folder instead"
            )
        if kwargs.get("distributed_checkpoint"):
            raise ValueError("distributed_checkpoint=True is not supported: gather the model and save it")
        if not is_main_process:
            return
        self._sync_labels()
        if state_dict is not None:
            prefix = f"{self.base_model_prefix}."
            state_dict = {key.removeprefix(prefix): value for key, value in state_dict.items()}
        save_psa_folder(
            self.model, save_directory, overwrite=overwrite, state_dict=state_dict, add_files=self._add_files
        )
        if push_to_hub:
            self._push_folder(save_directory, token=token, **kwargs)

    def _add_files(self, folder: Path, record: Mapping[str, Any]) -> dict[str, Any]:
        """transformers' part of a save: remote code (when registered) and the config fields psa_zoo's
        ``record`` does not hold."""
        self.config.architectures = [type(self).__name__]
        if self.is_remote_code():
            custom_object_save(self, folder, config=self.config)
        if self.config._auto_class is not None:
            custom_object_save(self.config, folder, config=self.config)
        return {
            key: value
            for key, value in self.config.to_diff_dict().items()
            if key not in record and key not in _NOT_ADDED
        }

    def _push_folder(self, folder: str | os.PathLike, token: str | bool | None, **kwargs) -> None:
        """Upload a folder just saved, as transformers' ``save_pretrained(push_to_hub=True)`` does."""
        from transformers.utils.hub import create_and_tag_model_card, hf_api

        repo_id = kwargs.pop("repo_id", os.fspath(folder).rstrip(os.sep).split(os.sep)[-1])
        repo_id = (
            hf_api().create_repo(repo_id, exist_ok=True, private=kwargs.get("private"), token=token).repo_id
        )
        model_card = create_and_tag_model_card(repo_id, self.model_tags, token=token)
        model_card.save(os.path.join(folder, "README.md"))
        self._upload_modified_files(
            folder,
            repo_id,
            files_timestamps={},
            commit_message=kwargs.get("commit_message"),
            token=token,
            create_pr=kwargs.get("create_pr", False),
        )

    def _sync_labels(self) -> None:
        """Make ``config.id2label`` and the psa_zoo metadata's label names agree: the side that changed
        since they last agreed gives its names to the other; ``ValueError`` when both changed, or when
        ``config.id2label`` names another number of labels than the model has outputs."""
        config_names, model_names = tuple(self.config.label_names), tuple(self.model.metadata.label_names)
        if config_names != model_names:
            if model_names == self._synced_labels:  # config.id2label was changed
                self._labels_to_metadata(config_names)
            elif config_names == self._synced_labels:  # the metadata was (set_metadata, reset_classifier)
                self.config.id2label = dict(enumerate(model_names))
            else:
                raise ValueError(
                    f"config.id2label names {list(config_names)} and model.model.metadata "
                    f"{list(model_names)}; both changed since they last agreed: make them agree"
                )
        self._synced_labels = tuple(self.model.metadata.label_names)
        self.config.label2id = {name: i for i, name in enumerate(self._synced_labels)}

    def _labels_to_metadata(self, names: tuple[str, ...]) -> None:
        outputs = self.model.num_classes
        if len(names) != outputs:
            raise ValueError(
                f"config.id2label names {len(names)} labels but the model has {outputs} outputs; call "
                f"model.model.reset_classifier({len(names)}) first (a new head), or give {outputs} labels"
            )
        self.model.set_metadata(labelled_metadata(self.model.metadata, names))

    def _return_dict(self, return_dict: bool | None) -> bool:
        return return_dict if return_dict is not None else self.config.return_dict


def _build(config: PsaSegConfig | PsaPoseConfig) -> nn.Module:
    """The psa_zoo model of ``config``, built from its record as ``psa_zoo.from_pretrained`` does (labels:
    ``config.id2label``), on the current default device, with fresh weights."""
    return build_saved(config.psa_record(), f"{type(config).__name__} record")


def _verify_weights(name_or_path: str | os.PathLike, kwargs: Mapping[str, Any]) -> None:
    """psa_zoo's sha256 check of a saved folder (local or Hub), before transformers loads it; a folder
    without psa_zoo's record is left to transformers (and to the config's own error)."""
    download = {k: kwargs[k] for k in _DOWNLOAD_KWARGS if k in kwargs}
    found = {
        name: cached_file(
            name_or_path,
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **download,
        )
        for name in (CONFIG_NAME, WEIGHTS_NAME)
    }
    if found[CONFIG_NAME] is None or found[WEIGHTS_NAME] is None:
        return
    try:
        config = json.loads(Path(found[CONFIG_NAME]).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return  # transformers' config reader says what is wrong
    if isinstance(config, dict) and "model_class" in config:
        check_weights_sha256(config, Path(found[WEIGHTS_NAME]), str(name_or_path))


class PsaForSemanticSegmentation(PsaPreTrainedModel):
    """A psa_zoo segmentation architecture (DeepLabV3+, HRNetV2-OCR) as a transformers model.

    Unlike transformers' segmentation models (logits at H/4 × W/4, resized by the caller), psa_zoo models
    already return logits at the input size, so ``logits`` is [N, num_labels, H, W] for pixel_values
    [N, 3, H, W]; post-processing needs no resize unless the labels have another size.

    Loss (when ``labels`` are given): the cross-entropy over the pixels whose label is not
    ``config.ignore_index``, averaged over those pixels; 0 (still differentiable) when every pixel is ignored.
    Logits are resized (bilinear) to the label size first if the sizes differ. In training mode, models with
    an auxiliary head (HRNetV2-OCR: soft object regions) add ``config.aux_loss_weight`` × the same
    cross-entropy of the auxiliary logits, as NVIDIA's OCR training (``LOSS.OCR_ALPHA`` = 0.4).
    """

    config_class = PsaSegConfig

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> SemanticSegmenterOutput | tuple[torch.Tensor, ...]:
        """Segment a batch of images.

        Args:
            pixel_values: [N, C, H, W] normalised images (any H, W).
            labels: [N, H', W'] integer class ids (``config.ignore_index`` for pixels to leave out), or None.
            return_dict: return a ``SemanticSegmenterOutput`` (default ``config.return_dict``) or a tuple
                ``(loss, logits)`` / ``(logits,)``.
        Returns:
            ``SemanticSegmenterOutput(loss, logits [N, num_labels, H, W])``.
        """
        aux_weight = self.config.aux_loss_weight if self.training else 0.0
        if labels is not None and aux_weight > 0:
            out = self.model(pixel_values, return_dict=True)  # aux_logits None for models without the head
            logits = out.logits
            loss = segmentation_loss(out, labels, self.config.ignore_index, aux_weight)
        else:
            logits = self.model(pixel_values)
            loss = None if labels is None else segmentation_loss(logits, labels, self.config.ignore_index)

        if not self._return_dict(return_dict):
            return (logits,) if loss is None else (loss, logits)
        return SemanticSegmenterOutput(loss=loss, logits=logits)


class PsaForPoseEstimation(PsaPreTrainedModel):
    """A psa_zoo pose architecture (SimpleBaseline, HRNet) as a transformers model: crops → keypoint heatmaps.

    Loss (when ``labels``, the target heatmaps, are given): HRNet's ``JointsMSELoss``,
    0.5 · mean over batch, joints and pixels of (w · (heatmaps − labels))², with w the ``target_weight`` of
    each joint (1 when not given; 0 leaves an unlabelled joint out).
    """

    config_class = PsaPoseConfig

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        target_weight: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> PsaPoseEstimatorOutput | tuple[torch.Tensor, ...]:
        """Predict keypoint heatmaps for person crops.

        Args:
            pixel_values: [N, C, H, W] normalised crops (the paper's: 256×192).
            labels: [N, K, H/4, W/4] target heatmaps (the model's output size), or None.
            target_weight: [N, K] or [N, K, 1] (the official layout) per-joint loss weights, or None.
            return_dict: return a :class:`PsaPoseEstimatorOutput` (default ``config.return_dict``) or a tuple
                ``(loss, heatmaps)`` / ``(heatmaps,)``.
        Returns:
            ``PsaPoseEstimatorOutput(loss, heatmaps [N, K, ⌈H/4⌉, ⌈W/4⌉])``.
        """
        heatmaps = self.model(pixel_values)
        loss = None if labels is None else keypoint_mse_loss(heatmaps, labels, target_weight)

        if not self._return_dict(return_dict):
            return (heatmaps,) if loss is None else (loss, heatmaps)
        return PsaPoseEstimatorOutput(loss=loss, heatmaps=heatmaps)
