"""Configuration records of the registered models: what an architecture expects, what the paper reports
for it, and (per pretrained tag) where its weights come from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..labels import IMAGENET_MEAN, IMAGENET_STD
from ..metadata import ClassSet, KeypointSet, ModelMetadata


@dataclass(frozen=True)
class PaperReference:
    """A figure from a paper table, with where it comes from."""

    params_m: float | None = None  # millions, as printed
    gmacs: float | None = None  # multiply-accumulates (papers call them GFLOPs), as printed
    source: str = ""  # e.g. "PSA paper (arXiv 2107.00782) Table 3"
    note: str = ""


@dataclass(frozen=True)
class Metric:
    """An evaluation result with its provenance.

    ``protocol`` says how it was measured (split, detector file, test-time augmentation);
    ``provenance`` is ``"reported by <source>"`` until psa_zoo reproduces it.
    """

    name: str  # e.g. "AP", "mIoU"
    value: float
    dataset: str  # e.g. "COCO val2017", "Cityscapes val"
    protocol: str
    provenance: str


@dataclass(frozen=True)
class PretrainedCfg:
    """What a model (optionally with a pretrained tag) expects and where its weights come from.

    ``input_size`` is (C, H, W) of the paper's setting (pose: the crop; segmentation: the evaluation size
    used for FLOPs); ``labels`` the dataset's keypoints or classes; ``channel_order`` what the weights
    were trained on (the official SimpleBaseline COCO models: BGR). ``status`` is one of ``"published"``,
    ``"convertible"`` (from an official release), ``"not released"`` (upstream published no weights) and
    ``"none"`` (architecture only, no weights).
    """

    architecture: str
    tag: str | None = None
    task: str = ""  # "pose" | "segmentation"
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 0
    labels: KeypointSet | ClassSet | None = None
    channel_order: str = "RGB"
    paper: PaperReference = field(default_factory=PaperReference)
    timm_backbone: str | None = None  # timm model whose ImageNet weights ``pretrained_backbone`` loads
    hf_hub_id: str | None = None  # "org/name"; a revision may be pinned with hf_hub_revision
    hf_hub_revision: str | None = None
    filename: str = "model.safetensors"
    file: str | None = None  # a local safetensors file instead of the Hub (override)
    sha256: str | None = None  # of the weights file; checked before it is used
    source: str = ""  # which official checkpoint or recipe produced the weights
    convert_format: str | None = None  # ``psa-zoo convert --format`` for the official checkpoint
    license: str | None = None
    metrics: tuple[Metric, ...] = ()
    status: str = "none"

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}" if self.tag else self.architecture

    @property
    def label_names(self) -> tuple[str, ...]:
        """Keypoint or class names of ``labels`` (empty without labels)."""
        if isinstance(self.labels, KeypointSet):
            return self.labels.keypoint_names
        return self.labels.class_names if self.labels is not None else ()

    def model_metadata(self, output_stride: int) -> ModelMetadata:
        """The :class:`ModelMetadata` a model built from this record starts with."""
        return ModelMetadata(
            task=self.task,
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            channel_order=self.channel_order,
            output_stride=output_stride,
            keypoints=self.labels if isinstance(self.labels, KeypointSet) else None,
            classes=self.labels if isinstance(self.labels, ClassSet) else None,
        )

    @property
    def has_weights(self) -> bool:
        """Weights can be loaded: published on the Hub, or a local file given as an override."""
        return self.file is not None or (self.status == "published" and self.hf_hub_id is not None)

    def with_tag(self, tag: str, **changes) -> PretrainedCfg:
        return replace(self, tag=tag, **changes)
