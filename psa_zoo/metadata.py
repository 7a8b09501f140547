"""Typed metadata records: what a dataset's labels are, and what a model expects and predicts.

A :class:`ModelMetadata` travels with a model's weights (``config.json``): the task, the input it was
trained for (size, mean/std, **channel order**), the stride of its output, and the label records — a
:class:`KeypointSet` for pose (names, skeleton, flip pairs, OKS sigmas, joint weights, half-body groups) or
a :class:`ClassSet` for segmentation (names, palette, ignore index). The datasets of the paper have their
records in :mod:`psa_zoo.labels`; a dataset of one's own builds its record from its files, and training
hands it to the model (``model.set_metadata``), so a saved model predicts with the right names.

Every record checks itself on construction: a wrong length or an index out of range is a ``ValueError``
saying what was found and what was expected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TASKS", "ClassSet", "KeypointSet", "ModelMetadata", "default_class_palette"]

TASKS = ("pose", "segmentation")
CHANNEL_ORDERS = ("RGB", "BGR")


def _pairs(values: Sequence[Sequence[int]], what: str) -> tuple[tuple[int, int], ...]:
    pairs = tuple(tuple(int(i) for i in p) for p in values)
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"{what} must be index pairs [a, b], got {list(values)!r}")
    return pairs  # type: ignore[return-value]


def _names(values: Sequence[str], what: str, singular: str, owner: str) -> tuple[str, ...]:
    """Non-empty, unique names as a tuple of str; ``ValueError`` naming ``owner`` otherwise."""
    names = tuple(str(n) for n in values)
    if not names:
        raise ValueError(f"{owner} has no {what}; give at least one name")
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}: {singular} names must be unique, got {list(names)}")
    return names


def _check_indices(indices: Sequence[int], count: int, what: str, owner: str) -> None:
    bad = sorted({i for i in indices if not 0 <= i < count})
    if bad:
        raise ValueError(
            f"{owner}: {what} refers to index {bad} but there are {count} entries (0..{count - 1}); "
            "indices are 0-based"
        )


@dataclass(frozen=True)
class KeypointSet:
    """The keypoints of a pose dataset, in heatmap-channel order.

    Args:
        name: dataset or skeleton name, e.g. ``"coco"``.
        keypoint_names: K names.
        skeleton: limbs as 0-based index pairs (COCO json ``skeleton`` is 1-based: subtract 1).
        flip_pairs: 0-based (left, right) pairs swapped by a horizontal flip; each index at most once.
        sigmas: K OKS sigmas (COCO evaluation); empty when unknown (OKS evaluation then refuses to run).
        joint_weights: K loss weights (default all 1).
        upper_body / lower_body: 0-based indices of the half-body augmentation groups (may be empty).
    """

    name: str
    keypoint_names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    flip_pairs: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()
    joint_weights: tuple[float, ...] = ()
    upper_body: tuple[int, ...] = ()
    lower_body: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        owner = f"keypoint set {self.name!r}"
        set_(self, "keypoint_names", _names(self.keypoint_names, "keypoints", "keypoint", owner))
        k = len(self.keypoint_names)
        set_(self, "skeleton", _pairs(self.skeleton, f"{owner}: skeleton"))
        set_(self, "flip_pairs", _pairs(self.flip_pairs, f"{owner}: flip_pairs"))
        set_(self, "sigmas", tuple(float(s) for s in self.sigmas))
        set_(self, "joint_weights", tuple(float(w) for w in self.joint_weights) or (1.0,) * k)
        set_(self, "upper_body", tuple(int(i) for i in self.upper_body))
        set_(self, "lower_body", tuple(int(i) for i in self.lower_body))
        for what, values in (("sigmas", self.sigmas), ("joint_weights", self.joint_weights)):
            if values and len(values) != k:
                raise ValueError(
                    f"{owner}: {what} has {len(values)} entries, expected one per keypoint ({k})"
                )
        if any(s <= 0 for s in self.sigmas):
            raise ValueError(f"{owner}: OKS sigmas must be positive, got {list(self.sigmas)}")
        if any(w < 0 for w in self.joint_weights):
            raise ValueError(f"{owner}: joint weights must be ≥ 0, got {list(self.joint_weights)}")
        _check_indices([i for p in self.skeleton for i in p], k, "skeleton", owner)
        flat = [i for p in self.flip_pairs for i in p]
        _check_indices(flat, k, "flip_pairs", owner)
        if len(set(flat)) != len(flat) or any(a == b for a, b in self.flip_pairs):
            raise ValueError(f"{owner}: each keypoint may appear in one flip pair at most, got {flat}")
        _check_indices(self.upper_body + self.lower_body, k, "upper_body/lower_body", owner)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def flip_permutation(self) -> list[int]:
        """Channel order after a horizontal flip: ``heatmaps_flipped[:, perm]`` swaps left and right."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @classmethod
    def generic(cls, num_keypoints: int) -> KeypointSet:
        """Names ``keypoint_0..`` and nothing else: a model whose keypoints are not known yet."""
        return cls("generic", tuple(f"keypoint_{i}" for i in range(num_keypoints)))

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeypointSet:
        return cls(**_known_fields(cls, data, "keypoint set"))


def default_class_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """The Pascal VOC colour map (bits of the class index spread over R, G, B), for any number of classes."""
    palette = []
    for index in range(num_classes):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return tuple(palette)


@dataclass(frozen=True)
class ClassSet:
    """The classes of a segmentation dataset, in logit-channel order.

    Args:
        name: dataset name, e.g. ``"voc"``.
        class_names: K names.
        palette: K RGB colours for label PNGs and overlays (default: the VOC colour map).
        ignore_index: label value that is not a class (void, borders); not in 0..K-1.
    """

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int = 255

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        owner = f"class set {self.name!r}"
        set_(self, "class_names", _names(self.class_names, "classes", "class", owner))
        k = len(self.class_names)
        palette = tuple(tuple(int(v) for v in colour) for colour in self.palette) or default_class_palette(k)
        if len(palette) != k or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in palette):
            raise ValueError(
                f"{owner}: palette must hold {k} RGB colours with values 0..255, got {list(self.palette)!r}"
            )
        set_(self, "palette", palette)
        set_(self, "ignore_index", int(self.ignore_index))
        if 0 <= self.ignore_index < k:
            raise ValueError(
                f"{owner}: ignore_index {self.ignore_index} is a class index (0..{k - 1}); use a value "
                "outside the classes, e.g. 255"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def generic(cls, num_classes: int, ignore_index: int = 255) -> ClassSet:
        """Names ``class_0..``, the VOC colour map: a model whose classes are not known yet."""
        return cls("generic", tuple(f"class_{i}" for i in range(num_classes)), ignore_index=ignore_index)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassSet:
        return cls(**_known_fields(cls, data, "class set"))


@dataclass(frozen=True)
class ModelMetadata:
    """What a model expects and what its outputs mean; saved in ``config.json`` with the weights.

    Args:
        task: ``"pose"`` (heatmaps, one per keypoint) or ``"segmentation"`` (logits, one per class).
        input_size: (C, H, W) the model was trained or is meant for (pose: the person crop).
        mean / std: per-channel normalisation of pixel values scaled to [0, 1], in ``channel_order``.
        channel_order: ``"RGB"`` or ``"BGR"`` — the order the first conv expects (the official
            SimpleBaseline configs feed BGR); a predictor converts images to it.
        output_stride: input pixels per output pixel (pose heatmaps: 4; segmentation logits: 1, as the
            models resize them to the input size).
        keypoints: the :class:`KeypointSet` of a pose model.
        classes: the :class:`ClassSet` of a segmentation model.
    """

    task: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    output_stride: int = 1
    keypoints: KeypointSet | None = None
    classes: ClassSet | None = None
    extra: dict = field(default_factory=dict)  # free-form facts a pipeline records (dataset path, codec)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        set_(self, "input_size", tuple(int(v) for v in self.input_size))
        set_(self, "mean", tuple(float(v) for v in self.mean))
        set_(self, "std", tuple(float(v) for v in self.std))
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be (C, H, W) of positive ints, got {self.input_size!r}")
        channels = self.input_size[0]
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ValueError(
                f"mean and std need {channels} entries (one per input channel) and std > 0, got "
                f"mean={self.mean}, std={self.std}"
            )
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if not isinstance(self.output_stride, int) or self.output_stride < 1:
            raise ValueError(f"output_stride must be a positive int, got {self.output_stride!r}")
        if self.task == "pose" and (self.keypoints is None or self.classes is not None):
            raise ValueError("pose metadata needs a KeypointSet (keypoints=...) and no ClassSet")
        if self.task == "segmentation" and (self.classes is None or self.keypoints is not None):
            raise ValueError("segmentation metadata needs a ClassSet (classes=...) and no KeypointSet")
        set_(self, "extra", dict(self.extra))

    @property
    def label_names(self) -> tuple[str, ...]:
        """Keypoint names (pose) or class names (segmentation), in output-channel order."""
        return self.keypoints.keypoint_names if self.keypoints else self.classes.class_names

    @property
    def num_outputs(self) -> int:
        return len(self.label_names)

    def replace(self, **changes) -> ModelMetadata:
        return dataclasses.replace(self, **changes)

    def with_labels(self, labels: KeypointSet | ClassSet) -> ModelMetadata:
        """The same metadata with another dataset's labels (the kind must fit the task)."""
        if isinstance(labels, KeypointSet) and self.task == "pose":
            return self.replace(keypoints=labels)
        if isinstance(labels, ClassSet) and self.task == "segmentation":
            return self.replace(classes=labels)
        raise ValueError(f"a {type(labels).__name__} does not fit a {self.task} model")

    def with_num_outputs(self, num_outputs: int) -> ModelMetadata:
        """Unchanged when the count fits, else generic labels for ``num_outputs`` (names must come later)."""
        if num_outputs == self.num_outputs:
            return self
        if self.task == "pose":
            return self.replace(keypoints=KeypointSet.generic(num_outputs))
        return self.replace(classes=ClassSet.generic(num_outputs, self.classes.ignore_index))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["keypoints"] = self.keypoints.to_dict() if self.keypoints else None
        data["classes"] = self.classes.to_dict() if self.classes else None
        return _to_plain(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMetadata:
        fields = _known_fields(cls, data, "model metadata")
        if fields.get("keypoints") is not None:
            fields["keypoints"] = KeypointSet.from_dict(fields["keypoints"])
        if fields.get("classes") is not None:
            fields["classes"] = ClassSet.from_dict(fields["classes"])
        return cls(**fields)


def _to_plain(value: Any) -> Any:
    """Tuples → lists, recursively (the JSON form)."""
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def _known_fields(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what} has unknown fields {unknown}; known fields: {sorted(known)}")
    return dict(data)
