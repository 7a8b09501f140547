"""transformers models wrapping psa_zoo architectures: semantic segmentation and heatmap pose estimation.

``PsaForSemanticSegmentation`` returns transformers' ``SemanticSegmenterOutput``; ``PsaForPoseEstimation``
returns :class:`PsaPoseEstimatorOutput` (modelled on ``VitPoseEstimatorOutput``). Both hold the psa_zoo
model as ``self.model``, so checkpoint keys are ``model.`` + psa_zoo's own keys.

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

from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.utils import ModelOutput

import psa_zoo
from psa_zoo.losses import keypoint_mse_loss, segmentation_loss

from .configuration_psa import PsaPoseConfig, PsaSegConfig

__all__ = [
    "PsaForPoseEstimation",
    "PsaForSemanticSegmentation",
    "PsaPoseEstimatorOutput",
    "PsaPreTrainedModel",
]


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
    """Base of the psa_zoo wrappers: builds ``self.model`` from the config, keeps psa_zoo's initialisation."""

    # the psa_zoo model is ``self.model``: a checkpoint of psa_zoo's own keys (no ``model.`` prefix) loads too
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: PsaSegConfig | PsaPoseConfig):
        super().__init__(config)
        self.model = psa_zoo.create_model(config.arch, **config.create_model_kwargs())
        # psa_zoo has initialised every tensor; the flag tells initialize_weights (run by post_init) so
        for tensor in chain(self.model.parameters(), self.model.buffers()):
            tensor._is_hf_initialized = True
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
            reference = psa_zoo.create_model(
                self.config.arch, **self.config.create_model_kwargs()
            ).state_dict()
        prefix = f"{self.base_model_prefix}."
        for name, tensor in pending.items():
            tensor.copy_(reference[name.removeprefix(prefix)])
            tensor._is_hf_initialized = True

    def _return_dict(self, return_dict: bool | None) -> bool:
        return return_dict if return_dict is not None else self.config.return_dict


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
