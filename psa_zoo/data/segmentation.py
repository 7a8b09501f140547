"""Semantic-segmentation datasets (Pascal VOC 2012 + SBD, Cityscapes, or one's own folder), checked up front.

Each builder lists the image / label pairs of a split, checks them and returns a
:class:`SegmentationDataset` (a plain record; a torch dataset wraps it): the :class:`SegSample` pairs, the
:class:`~psa_zoo.metadata.ClassSet`, and :meth:`SegmentationDataset.read`, which gives
``image [H, W, 3] uint8 RGB`` and ``mask [H, W]`` class indices with the ignore index (255) for void.

* :func:`load_voc` — ``VOCdevkit/VOC2012`` with ``SegmentationClass`` and, for ``train_aug``, the SBD labels
  ``SegmentationClassAug`` (DrSleep's index PNGs, as VainF/DeepLabV3Plus-Pytorch reads them).
* :func:`load_cityscapes` — ``leftImg8bit`` + ``gtFine``: ``*_gtFine_labelTrainIds.png`` when it exists, else
  ``*_gtFine_labelIds.png`` mapped to the 19 train ids while reading (:data:`CITYSCAPES_ID_TO_TRAIN_ID`),
  so ``csCreateTrainIdLabelImgs`` need not be run.
* :func:`load_folder` — one's own data: ``images/<split>/``, ``masks/<split>/`` and ``classes.json``.

Label PNGs are read as stored, never through ``convert("RGB")``: a palette PNG's indices are the labels. The
checks catch what makes segmentation runs train on the wrong labels without saying so (mmseg issues #1609,
#2471, #2556): binary masks saved as 0/255 (255 is the ignore index: the foreground is never trained),
colour masks read as three channels, values beyond the classes, masks of another size than their image,
JPEG masks (compression noise turns edges into other classes), unpaired files. Each problem is one
:class:`SegDatasetError` naming a few files, what was found, what was expected and what to do.

``check_masks=True`` (the default of :func:`load_folder`) opens every mask when the dataset is built: its
mode, its size against the image's header (EXIF rotation included) and its values, through PIL's
``getcolors`` (a C histogram of the decoded indices). Measured on one CPU core, palette PNGs with their JPEG
images: ≈0.7 ms per 500×375 mask (VOC ``train_aug``: ≈7 s for 10582 masks), ≈6.5 ms per 2048×1024 mask
(Cityscapes train: ≈19 s). The official sets default to ``check_masks=False``: their files are checked to
exist up front, and :meth:`SegmentationDataset.read` checks each mask's mode, size and values when it is
read (a bad mask stops training at that sample, with the same message). The binary 0/255 check needs the
values of all masks and is made only with ``check_masks=True``.

No file is ever written or modified. Samples are sorted by name.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..labels import CITYSCAPES_CLASS_SET, VOC_CLASS_SET
from ..metadata import ClassSet
from .images import read_image

__all__ = [
    "CITYSCAPES_ID_TO_TRAIN_ID",
    "CITYSCAPES_SPLITS",
    "VOC_SPLITS",
    "CityscapesMaskDecoder",
    "ColourMaskDecoder",
    "IndexMaskDecoder",
    "SegDatasetError",
    "SegSample",
    "SegmentationDataset",
    "cityscapes_label_map",
    "load_cityscapes",
    "load_folder",
    "load_voc",
]

VOC_SPLITS = ("train_aug", "train", "val", "trainval")
CITYSCAPES_SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_SHOWN = 3  # files (or values) quoted in an error message
_MAX_COLOURS = 1 << 16  # more distinct colours than this in a mask: a photo, not a label image

# Cityscapes label id → train id, the ``trainId`` column of cityscapesScripts
# ``cityscapesscripts/helpers/labels.py`` (mcordts/cityscapesScripts). Ids absent here (34..255) are void.
# ``license plate`` (id −1) is never drawn into ``labelIds`` PNGs (json2labelImg skips negative ids).
_CITYSCAPES_LABELS = (
    (0, "unlabeled", 255), (1, "ego vehicle", 255), (2, "rectification border", 255), (3, "out of roi", 255),
    (4, "static", 255), (5, "dynamic", 255), (6, "ground", 255), (7, "road", 0), (8, "sidewalk", 1),
    (9, "parking", 255), (10, "rail track", 255), (11, "building", 2), (12, "wall", 3), (13, "fence", 4),
    (14, "guard rail", 255), (15, "bridge", 255), (16, "tunnel", 255), (17, "pole", 5),
    (18, "polegroup", 255), (19, "traffic light", 6), (20, "traffic sign", 7), (21, "vegetation", 8),
    (22, "terrain", 9), (23, "sky", 10), (24, "person", 11), (25, "rider", 12), (26, "car", 13),
    (27, "truck", 14), (28, "bus", 15), (29, "caravan", 255), (30, "trailer", 255), (31, "train", 16),
    (32, "motorcycle", 17), (33, "bicycle", 18),
)  # fmt: skip
CITYSCAPES_ID_TO_TRAIN_ID: dict[int, int] = {
    label_id: train_id for label_id, _, train_id in _CITYSCAPES_LABELS
}


class SegDatasetError(ValueError):
    """Image or label files that do not make a usable segmentation dataset."""


@dataclass
class SegSample:
    """One image and its label file.

    Attributes:
        image_file: the RGB image.
        mask_file: the label PNG (class indices); ``None`` for an image without labels (prediction only).
        name: the sample's id (VOC id, Cityscapes ``<city>_<seq>_<frame>``, or the file stem).
    """

    image_file: Path
    mask_file: Path | None
    name: str


class _MaskProblem(Exception):
    """Raised by a mask decoder; the caller turns it into one SegDatasetError (per file or per dataset)."""

    def __init__(self, kind: str, detail: str, values: Sequence[Any] = ()) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.values = tuple(values)


# ---------------------------------------------------------------------------------------------------------
# Mask decoders: a label file → class indices. Module-level classes so that loader workers can pickle them.


class IndexMaskDecoder:
    """Index PNGs: mode ``P`` (palette indices, VOC) or ``L`` 8-bit, ``I;16`` / ``I`` for more classes.

    ``label_map`` (256 entries), when given, maps 8-bit stored values to class indices (Cityscapes
    ``labelIds``). A colour (RGB) mask is refused: its colours are not class indices; ``colour_hint`` says
    what to do instead, for this dataset.
    """

    def __init__(
        self, label_map: np.ndarray | None = None, colour_hint: str = "convert them to index PNGs"
    ) -> None:
        self.label_map = None if label_map is None else np.asarray(label_map, dtype=np.uint8)
        self.colour_hint = colour_hint

    def _index_image(self, image: Image.Image) -> Image.Image:
        if image.mode in ("P", "L", "I;16", "I;16L", "I;16B", "I"):
            return image
        if image.mode == "1":
            return image.convert("L").point(lambda v: 1 if v else 0)
        if image.mode in ("LA", "PA"):
            return image.getchannel(0)  # the index band; the alpha band is no label
        if image.mode in ("RGB", "RGBA"):
            rgb = np.asarray(image.convert("RGB"))
            grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
            raise _MaskProblem("colour", self.colour_hint, ("grey",) if grey else ())
        raise _MaskProblem("mode", image.mode)

    def values(self, image: Image.Image, path: Path) -> np.ndarray:
        """The class values present (sorted), from PIL's histogram where the mode allows it."""
        index = self._index_image(image)
        if index.mode in ("P", "L"):
            present = np.array(sorted(v for _, v in index.getcolors(256)), dtype=np.int64)
        else:
            present = np.unique(np.asarray(index)).astype(np.int64)
        if self.label_map is not None:
            present = np.unique(self.label_map[present])
        return present

    def decode(self, image: Image.Image, path: Path) -> np.ndarray:
        """``[H, W]`` class indices: uint8 for 8-bit PNGs, int64 for 16/32-bit ones."""
        array = np.asarray(self._index_image(image))
        if array.dtype != np.uint8:
            return array.astype(np.int64)
        return self.label_map[array] if self.label_map is not None else array.copy()


class ColourMaskDecoder(IndexMaskDecoder):
    """Index PNGs as :class:`IndexMaskDecoder`; RGB masks mapped through a palette by exact colour.

    Args:
        palette: K colours, colour k is class k.
        ignore_colour: a colour that means "ignore" (e.g. VOC's void (224, 224, 192)), or ``None``.
        ignore_index: the value it becomes.
    """

    def __init__(
        self,
        palette: Sequence[Sequence[int]],
        ignore_colour: Sequence[int] | None,
        ignore_index: int,
    ) -> None:
        super().__init__()
        table: dict[int, list[int]] = {}
        for index, colour in enumerate(palette):
            table.setdefault(_pack(colour), []).append(index)
        if ignore_colour is not None:
            table.setdefault(_pack(ignore_colour), []).append(ignore_index)
        self.ambiguous = {key: owners for key, owners in table.items() if len(owners) > 1}
        self.keys = np.array(sorted(table), dtype=np.int64)
        self.indices = np.array([table[k][0] for k in self.keys], dtype=np.int64)

    def _colour_values(self, colours: np.ndarray) -> np.ndarray:
        """Packed colours present → class values; unknown or ambiguous colours raise."""
        unknown = colours[~np.isin(colours, self.keys)]
        if unknown.size:
            raise _MaskProblem("unknown colours", "", [_unpack(c) for c in unknown])
        ambiguous = [c for c in colours.tolist() if c in self.ambiguous]
        if ambiguous:
            raise _MaskProblem(
                "ambiguous colours", "", [f"{_unpack(c)} → classes {self.ambiguous[c]}" for c in ambiguous]
            )
        return self.indices[np.searchsorted(self.keys, colours)]

    def values(self, image: Image.Image, path: Path) -> np.ndarray:
        if image.mode not in ("RGB", "RGBA"):
            return super().values(image, path)
        colours = image.convert("RGB").getcolors(_MAX_COLOURS)
        if colours is None:
            raise _MaskProblem("unknown colours", "", [f"more than {_MAX_COLOURS} colours"])
        packed = np.array(sorted(_pack(c) for _, c in colours), dtype=np.int64)
        return np.unique(self._colour_values(packed))

    def decode(self, image: Image.Image, path: Path) -> np.ndarray:
        if image.mode not in ("RGB", "RGBA"):
            return super().decode(image, path)
        rgb = np.asarray(image.convert("RGB")).astype(np.int64)
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        self._colour_values(np.unique(packed))  # raises on unknown / ambiguous colours
        labels = self.indices[np.searchsorted(self.keys, packed)]
        return labels.astype(np.uint8) if labels.max(initial=0) <= 255 else labels


class CityscapesMaskDecoder(IndexMaskDecoder):
    """``*_labelTrainIds.png`` as stored, ``*_labelIds.png`` through :func:`cityscapes_label_map`."""

    def __init__(self) -> None:
        hint = (
            "use *_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png), not the *_gtFine_color.png previews"
        )
        super().__init__(colour_hint=hint)
        self._train_ids = IndexMaskDecoder(colour_hint=hint)
        self._label_ids = IndexMaskDecoder(cityscapes_label_map(), colour_hint=hint)

    def _pick(self, path: Path) -> IndexMaskDecoder:
        return self._label_ids if path.name.endswith("_gtFine_labelIds.png") else self._train_ids

    def values(self, image: Image.Image, path: Path) -> np.ndarray:
        return self._pick(path).values(image, path)

    def decode(self, image: Image.Image, path: Path) -> np.ndarray:
        return self._pick(path).decode(image, path)


def cityscapes_label_map() -> np.ndarray:
    """``[256]`` uint8: Cityscapes label id → train id (255 for every id that is not trained)."""
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


def _pack(colour: Sequence[int]) -> int:
    r, g, b = (int(v) for v in colour)
    return (r << 16) | (g << 8) | b


def _unpack(key: int) -> tuple[int, int, int]:
    key = int(key)
    return (key >> 16) & 255, (key >> 8) & 255, key & 255


# ---------------------------------------------------------------------------------------------------------


class SegmentationDataset:
    """Checked image / label pairs of one split (a plain record; a torch dataset wraps it).

    Build it with :func:`load_voc`, :func:`load_cityscapes` or :func:`load_folder`.

    Attributes:
        samples: the pairs, sorted by name.
        class_set: the classes (names, palette, ignore index) the mask values refer to.
        root: the dataset folder; split: the split's name.
    """

    def __init__(
        self,
        samples: list[SegSample],
        class_set: ClassSet,
        *,
        root: Path | None = None,
        split: str | None = None,
        decoder: IndexMaskDecoder | None = None,
    ) -> None:
        self.samples = samples
        self.class_set = class_set
        self.root = root
        self.split = split
        self.decoder = decoder or IndexMaskDecoder()

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (
            f"SegmentationDataset({str(self.root)!r}, split={self.split!r}, {len(self)} samples, "
            f"{self.class_set.num_classes} classes of {self.class_set.name!r})"
        )

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The image and its labels.

        Returns:
            image: ``[H, W, 3]`` uint8 RGB (EXIF orientation applied, see :func:`~psa_zoo.data.read_image`).
            mask: ``[H, W]`` class indices 0..K−1 or ``class_set.ignore_index``; uint8 (int64 for 16-bit
                label PNGs); ``None`` when the sample has no label file.

        Raises:
            SegDatasetError: the mask cannot be read, is a colour image, has another size than the image or
                values that are neither a class nor the ignore index.
        """
        sample = self.samples[index]
        image = read_image(sample.image_file)
        if sample.mask_file is None:
            return image, None
        with _open_mask(sample.mask_file) as mask_image:
            try:
                mask = self.decoder.decode(mask_image, sample.mask_file)
            except _MaskProblem as problem:
                raise _problem_error(problem, [sample.mask_file], self.class_set) from None
            except OSError as err:  # PIL reports truncated or corrupt data as OSError
                raise _corrupt_error(sample.mask_file, err) from None
        if mask.shape != image.shape[:2]:
            raise SegDatasetError(
                f"mask {sample.mask_file} is {mask.shape[1]}×{mask.shape[0]} (W×H) but its image "
                f"{sample.image_file} is {image.shape[1]}×{image.shape[0]}; a mask must have its image's "
                "size: re-export the mask at the image's resolution"
            )
        bad = _bad_values(np.unique(mask), self.class_set)
        if bad:
            raise _values_error({sample.mask_file: bad}, self.class_set)
        return image, mask

    def check_masks(self) -> None:
        """Open every mask and check mode, size and values (see the module docstring for the cost).

        Raises:
            SegDatasetError: the first kind of problem found, with a few of the files that have it.
        """
        problems: dict[str, dict[Path, Any]] = {}
        sizes: dict[Path, tuple[tuple[int, int], tuple[int, int], int | None]] = {}
        all_values: set[int] = set()
        bad_values: dict[Path, list[int]] = {}
        for sample in self.samples:
            if sample.mask_file is None:
                continue
            with _open_mask(sample.mask_file) as mask_image:
                image_size, _, orientation = _image_size(sample.image_file)
                if mask_image.size != image_size:
                    sizes[sample.mask_file] = (mask_image.size, image_size, orientation)
                    continue
                try:
                    present = self.decoder.values(mask_image, sample.mask_file)
                except _MaskProblem as problem:
                    problems.setdefault(problem.kind, {})[sample.mask_file] = problem
                    continue
                except OSError as err:
                    raise _corrupt_error(sample.mask_file, err) from None
            all_values.update(int(v) for v in present)
            bad = _bad_values(present, self.class_set)
            if bad:
                bad_values[sample.mask_file] = bad
        for kind in ("mode", "colour", "unknown colours", "ambiguous colours"):
            if kind in problems:
                files = list(problems[kind])
                raise _problem_error(problems[kind][files[0]], files, self.class_set, problems[kind])
        if sizes:
            raise _size_error(sizes, self.samples)
        if self.class_set.num_classes == 2 and 255 in all_values and all_values <= {0, 255}:
            raise _binary_error(
                [s.mask_file for s in self.samples if s.mask_file is not None], self.class_set
            )
        if bad_values:
            raise _values_error(bad_values, self.class_set)


def _open_mask(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise SegDatasetError(f"mask {path} does not exist; check the dataset folder") from None
    except (UnidentifiedImageError, OSError) as err:
        raise SegDatasetError(f"mask {path} is not an image PIL can read ({err}); re-export it") from None


def _corrupt_error(path: Path, err: OSError) -> SegDatasetError:
    return SegDatasetError(
        f"mask {path} could not be decoded (PIL: {err}); the file is probably truncated or corrupt: "
        "re-export or remove it"
    )


def _image_size(path: Path) -> tuple[tuple[int, int], tuple[int, int], int | None]:
    """(upright W, H as read_image returns it, stored W, H, EXIF orientation) from the file header."""
    try:
        with Image.open(path) as image:
            size = image.size
            orientation = image.getexif().get(0x0112)
    except (UnidentifiedImageError, OSError) as err:
        raise SegDatasetError(f"image {path} is not an image PIL can read ({err}); re-download it") from None
    upright = size[::-1] if orientation in (5, 6, 7, 8) else size  # EXIF 5–8 turn the image by 90°
    return upright, size, orientation


def _bad_values(present: Iterable[int], class_set: ClassSet) -> list[int]:
    k, ignore = class_set.num_classes, class_set.ignore_index
    return sorted(int(v) for v in present if not (0 <= v < k or v == ignore))


def _few(items: Sequence[Any], limit: int = _SHOWN) -> str:
    """``a, b, c`` or ``a, b, c, … (12 in all)``."""
    items = [str(v) for v in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", … ({len(items)} in all)"


def _problem_error(
    problem: _MaskProblem,
    files: Sequence[Path],
    class_set: ClassSet,
    per_file: dict[Path, _MaskProblem] | None = None,
) -> SegDatasetError:
    where = f"mask {files[0]}" if len(files) == 1 else f"{len(files)} masks ({_few(files)})"
    if problem.kind == "mode":
        return SegDatasetError(
            f"{where}: PIL mode {problem.detail!r}, expected a label PNG with one class index per pixel "
            "(mode 'P' with a palette, 'L', or 'I;16'); re-export the masks as index PNGs"
        )
    if problem.kind == "colour":
        if "grey" in problem.values:
            return SegDatasetError(
                f"{where}: an RGB image whose three channels are equal (class indices saved as RGB), "
                "expected a single-channel label PNG; save the masks with one channel, e.g. "
                "Image.fromarray(mask.astype(np.uint8)).save(path)"
            )
        return SegDatasetError(
            f"{where}: an RGB colour image, expected class indices (a colour mask read as three channels "
            f"trains on the wrong labels); {problem.detail}"
        )
    values: list[Any] = []
    for item in (per_file or {files[0]: problem}).values():
        values.extend(v for v in item.values if v not in values)
    if problem.kind == "unknown colours":
        return SegDatasetError(
            f"{where}: colours {_few(values, 6)} are not in the palette of classes.json "
            f"({class_set.num_classes} colours, colour k = class k); add them to 'palette' (or give the void "
            "colour as 'ignore_color'), or fix the masks"
        )
    return SegDatasetError(
        f"{where}: colours {_few(values, 6)} belong to several classes in the palette of classes.json; each "
        "class needs its own colour to map colour masks: make the palette colours distinct"
    )


def _values_error(bad: dict[Path, list[int]], class_set: ClassSet) -> SegDatasetError:
    values = sorted({v for vs in bad.values() for v in vs})
    k, ignore = class_set.num_classes, class_set.ignore_index
    files = list(bad)
    where = f"mask {files[0]}" if len(files) == 1 else f"{len(files)} masks ({_few(files)})"
    return SegDatasetError(
        f"{where}: values {_few(values, 8)} are neither a class (0..{k - 1}, {k} classes of "
        f"{class_set.name!r}) nor the ignore index {ignore}; fix the masks, or the class list (a mask value "
        "is the 0-based class index)"
    )


def _size_error(
    sizes: dict[Path, tuple[tuple[int, int], tuple[int, int], int | None]], samples: Sequence[SegSample]
) -> SegDatasetError:
    image_of = {s.mask_file: s.image_file for s in samples}
    shown = [
        f"{path.name} {m[0]}×{m[1]} vs image {image_of[path].name} {i[0]}×{i[1]}"
        for path, (m, i, _) in list(sizes.items())[:_SHOWN]
    ]
    more = f" (and {len(sizes) - _SHOWN} more)" if len(sizes) > _SHOWN else ""
    rotated = [p for p, (m, i, orientation) in sizes.items() if orientation in (5, 6, 7, 8) and m == i[::-1]]
    hint = (
        f"; {len(rotated)} of them match the image as stored before its EXIF rotation: the image is read "
        "upright (as viewers show it), so label the upright image or save the image without the EXIF "
        "orientation"
        if rotated
        else ""
    )
    folder = next(iter(sizes)).parent
    return SegDatasetError(
        f"{len(sizes)} masks in {folder} have another size (W×H) than their images: {'; '.join(shown)}{more}"
        f"{hint}; a mask must have its image's size: re-export the masks at the images' resolution"
    )


def _binary_error(files: Sequence[Path], class_set: ClassSet) -> SegDatasetError:
    ignore = class_set.ignore_index
    why = (
        "255 is the ignore index: a binary mask must use 1 for the foreground"
        if ignore == 255
        else f"with 2 classes a mask holds 0, 1 (and the ignore index {ignore}), not 255"
    )
    folder = files[0].parent if files else ""
    return SegDatasetError(
        f"the masks in {folder} hold only the values 0 and 255 but there are 2 classes "
        f"({', '.join(class_set.class_names)}): {why}, else the foreground is never trained and its IoU is "
        "0; convert the masks with mask // 255 (if some 255 pixels are really void, the masks need 0, 1 and "
        "255)"
    )


# ---------------------------------------------------------------------------------------------------------
# Builders


def _check_split(split: str, splits: Sequence[str], what: str) -> None:
    if split not in splits:
        raise SegDatasetError(f"{what} split must be one of {list(splits)}, got {split!r}")


def _missing_error(kind: str, missing: Sequence[Path], *, expected: str, fix: str) -> SegDatasetError:
    return SegDatasetError(f"{len(missing)} {kind} missing: {_few(missing)}; expected {expected}; {fix}")


def _finish(dataset: SegmentationDataset, check_masks: bool) -> SegmentationDataset:
    if check_masks:
        dataset.check_masks()
    return dataset


def load_voc(root: str | Path, split: str = "train_aug", *, check_masks: bool = False) -> SegmentationDataset:
    """Pascal VOC 2012 segmentation, with the SBD labels for ``train_aug``.

    Layout (``root`` is ``VOCdevkit/VOC2012``; the ``VOCdevkit`` folder above it is accepted too)::

        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png             palette PNGs, 0..20, 255 = void
        SegmentationClassAug/<id>.png          SBD labels (DrSleep's index PNGs), for train_aug
        ImageSets/Segmentation/{train,val,trainval}.txt
        train_aug.txt                          (or ImageSets/Segmentation/train_aug.txt), 10582 ids

    ``train_aug`` takes every mask from ``SegmentationClassAug`` (as VainF/DeepLabV3Plus-Pytorch does;
    DrSleep's archive holds 12031 masks: the 10582 ``train_aug`` ids and the 1449 val ids). An id
    missing there is taken from ``SegmentationClass/<id>.png`` — the official VOC label of that image —
    with one warning giving the count; an id in neither is an error. The ``train_aug`` list must not share
    ids with ``val.txt`` (when present): a list with val ids trains on the evaluation images.

    List lines may be bare ids or DrSleep's ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` (the id
    is the stem of the first path).

    Args:
        root: ``VOCdevkit/VOC2012`` or ``VOCdevkit``.
        split: one of ``train_aug``, ``train``, ``val``, ``trainval``.
        check_masks: open every mask now (≈0.7 ms each) instead of checking each when read.

    Returns:
        a dataset with :data:`~psa_zoo.labels.VOC_CLASS_SET` (21 classes, ignore 255).
    """
    _check_split(split, VOC_SPLITS, "VOC")
    root = Path(root)
    if not (root / "JPEGImages").is_dir() and (root / "VOC2012" / "JPEGImages").is_dir():
        root = root / "VOC2012"
    if not (root / "JPEGImages").is_dir():
        raise SegDatasetError(
            f"{root} has no JPEGImages/ folder (nor VOC2012/JPEGImages/); pass the VOCdevkit/VOC2012 folder "
            "of the extracted VOCtrainval_11-May-2012.tar"
        )
    if split == "train_aug":
        candidates = [root / "train_aug.txt", root / "ImageSets" / "Segmentation" / "train_aug.txt"]
    else:
        candidates = [root / "ImageSets" / "Segmentation" / f"{split}.txt"]
    list_file = next((c for c in candidates if c.is_file()), None)
    if list_file is None:
        where = " or ".join(str(c) for c in candidates)
        hint = (
            "copy VainF/DeepLabV3Plus-Pytorch's datasets/data/train_aug.txt (10582 ids) there"
            if split == "train_aug"
            else "extract the VOC 2012 trainval archive completely"
        )
        raise SegDatasetError(f"no {split} list: {where} does not exist; {hint}")
    ids = _read_id_list(list_file)
    if split == "train_aug":
        val_file = root / "ImageSets" / "Segmentation" / "val.txt"
        if val_file.is_file():
            leaked = sorted(set(ids) & set(_read_id_list(val_file)))
            if leaked:
                raise SegDatasetError(
                    f"{list_file} shares {len(leaked)} ids with {val_file} ({_few(leaked)}); train_aug is "
                    "SBD train+val ∪ VOC train − VOC val: training on them inflates the val mIoU. Use the "
                    "10582-id list of VainF/DeepLabV3Plus-Pytorch (datasets/data/train_aug.txt)"
                )
    images = [root / "JPEGImages" / f"{i}.jpg" for i in ids]
    missing_images = [p for p in images if not p.is_file()]
    if missing_images:
        raise _missing_error(
            "images",
            missing_images,
            expected=f"JPEGImages/<id>.jpg for every id of {list_file}",
            fix="extract the VOC 2012 trainval archive completely, or fix the list",
        )
    masks = []
    if split == "train_aug":
        aug, plain = root / "SegmentationClassAug", root / "SegmentationClass"
        fallback = []
        for i in ids:
            path = aug / f"{i}.png"
            if not path.is_file() and (plain / f"{i}.png").is_file():
                path = plain / f"{i}.png"
                fallback.append(i)
            masks.append(path)
        missing = [aug / f"{i}.png" for i, p in zip(ids, masks, strict=True) if not p.is_file()]
        if missing:
            raise _missing_error(
                "train_aug masks",
                missing,
                expected=f"{aug}/<id>.png (or {plain}/<id>.png) for every id of {list_file}",
                fix="extract DrSleep's SegmentationClassAug.zip into VOC2012/ (its PNGs directly in "
                "SegmentationClassAug/)",
            )
        if fallback:
            warnings.warn(
                f"{len(fallback)} of the {len(ids)} train_aug masks are not in {aug} ({_few(fallback)}); "
                f"their VOC labels in {plain} are used",
                stacklevel=2,
            )
    else:
        masks = [root / "SegmentationClass" / f"{i}.png" for i in ids]
        missing = [p for p in masks if not p.is_file()]
        if missing:
            raise _missing_error(
                "masks",
                missing,
                expected=f"SegmentationClass/<id>.png for every id of {list_file}",
                fix="extract the VOC 2012 trainval archive completely",
            )
    samples = [SegSample(image, mask, i) for i, image, mask in zip(ids, images, masks, strict=True)]
    samples.sort(key=lambda s: s.name)
    decoder = IndexMaskDecoder(colour_hint=_VOC_COLOUR_HINT)
    dataset = SegmentationDataset(samples, VOC_CLASS_SET, root=root, split=split, decoder=decoder)
    return _finish(dataset, check_masks)


_VOC_COLOUR_HINT = (
    "VOC labels are palette PNGs whose indices are the classes: use SegmentationClass / SegmentationClassAug "
    "as distributed, not images converted to RGB"
)


def _read_id_list(path: Path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields:
            first = fields[0]
            ids.append(Path(first).stem if "/" in first or first.endswith(".jpg") else first)
    duplicates = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if duplicates:
        raise SegDatasetError(
            f"{path} lists {len(duplicates)} ids more than once ({_few(duplicates)}); each id once, please "
            "(a repeated id is trained on more often)"
        )
    if not ids:
        raise SegDatasetError(f"{path} lists no ids; expected one image id per line")
    return ids


def load_cityscapes(
    root: str | Path, split: str = "train", *, check_masks: bool = False
) -> SegmentationDataset:
    """Cityscapes fine annotations, 19 train ids.

    Layout (``root`` holds both folders)::

        leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
        gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (csCreateTrainIdLabelImgs)
        gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png        (shipped)

    Per image, ``labelTrainIds`` is read as is when it exists; otherwise ``labelIds`` is mapped to the train
    ids while reading (:data:`CITYSCAPES_ID_TO_TRAIN_ID`, every other id → 255). The test split's labels
    are not public (its gtFine files are placeholders), so only ``train`` and ``val`` are offered.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train`` (2975 images) or ``val`` (500).
        check_masks: open every mask now (≈6.5 ms each) instead of checking each when read.

    Returns:
        a dataset with :data:`~psa_zoo.labels.CITYSCAPES_CLASS_SET`.
    """
    if split == "test":
        raise SegDatasetError(
            "Cityscapes test labels are not public (the gtFine test files are placeholders); evaluate on "
            "split='val', or predict the test images without labels"
        )
    _check_split(split, CITYSCAPES_SPLITS, "Cityscapes")
    root = Path(root)
    image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder, archive in (
        (image_dir, "leftImg8bit_trainvaltest.zip"),
        (label_dir, "gtFine_trainvaltest.zip"),
    ):
        if not folder.is_dir():
            raise SegDatasetError(
                f"{folder} does not exist; pass the Cityscapes root holding leftImg8bit/ and gtFine/ "
                f"(extract {archive} there)"
            )
    images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise SegDatasetError(
            f"no <city>/*_leftImg8bit.png under {image_dir}; expected the leftImg8bit_trainvaltest.zip "
            "layout (one folder per city)"
        )
    samples, missing, colour_only = [], [], []
    for image in images:
        name = image.name[: -len("_leftImg8bit.png")]
        city = label_dir / image.parent.name
        train_ids, label_ids = city / f"{name}_gtFine_labelTrainIds.png", city / f"{name}_gtFine_labelIds.png"
        mask = train_ids if train_ids.is_file() else label_ids if label_ids.is_file() else None
        if mask is None:
            missing.append(label_ids)
            if (city / f"{name}_gtFine_color.png").is_file():
                colour_only.append(name)
            continue
        samples.append(SegSample(image, mask, name))
    if missing:
        colour = (
            f" ({len(colour_only)} have only *_gtFine_color.png, a preview, not labels)"
            if colour_only
            else ""
        )
        raise _missing_error(
            "label files",
            missing,
            expected=f"*_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png) for each image, in "
            f"{label_dir}/<city>/{colour}",
            fix="extract gtFine_trainvaltest.zip into the same root",
        )
    decoder = CityscapesMaskDecoder()
    dataset = SegmentationDataset(samples, CITYSCAPES_CLASS_SET, root=root, split=split, decoder=decoder)
    return _finish(dataset, check_masks)


_CLASSES_KEYS = ("name", "class_names", "palette", "ignore_index", "ignore_color")
_CLASSES_EXAMPLE = '{"class_names": ["background", "crack"], "palette": [[0, 0, 0], [255, 0, 0]]}'


def load_folder(
    root: str | Path, split: str, *, masks: bool = True, check_masks: bool = True
) -> SegmentationDataset:
    """One's own data::

        root/classes.json            {"class_names": [...], "palette": [[r, g, b], ...], "ignore_index": 255}
        root/images/<split>/*.jpg|*.jpeg|*.png
        root/masks/<split>/*.png     same stems as the images; class index per pixel, ignore_index = void

    ``classes.json`` needs ``class_names``; ``palette`` (colour k = class k; default the VOC colour map),
    ``ignore_index`` (default 255), ``ignore_color`` (a colour meaning void in colour masks) and ``name``
    (default the folder's name) are optional. Masks are index PNGs (mode ``P``, ``L`` or ``I;16``); RGB
    colour masks are mapped to classes by exact colour when ``classes.json`` gives a ``palette``.

    Args:
        root: the dataset folder.
        split: the sub-folder of ``images/`` and ``masks/``, e.g. ``"train"``.
        masks: ``False`` for images without labels (prediction): ``masks/`` is not read.
        check_masks: open every mask now (mode, size, values; ≈0.7 ms per 500×375 mask); else each mask is
            checked when read, and 0/255 binary masks are not detected.

    Returns:
        a dataset with the :class:`ClassSet` of ``classes.json``.
    """
    root = Path(root)
    class_set, colour_given, ignore_colour = _read_classes_json(root / "classes.json", root.name)
    image_dir = root / "images" / split
    if not image_dir.is_dir():
        present = (
            sorted(p.name for p in (root / "images").iterdir() if p.is_dir())
            if (root / "images").is_dir()
            else []
        )
        raise SegDatasetError(
            f"{image_dir} does not exist (splits found under {root / 'images'}: {present or 'none'}); "
            "expected root/images/<split>/ with the images and root/masks/<split>/ with their label PNGs"
        )
    images = _list_files(image_dir, IMAGE_SUFFIXES, "images")
    if not masks:
        samples = [SegSample(path, None, stem) for stem, path in sorted(images.items())]
        return SegmentationDataset(samples, class_set, root=root, split=split)
    mask_dir = root / "masks" / split
    if not mask_dir.is_dir():
        raise SegDatasetError(
            f"{mask_dir} does not exist; put each image's label PNG there under the image's name (e.g. "
            f"{next(iter(sorted(images)))}.png), or pass masks=False for images without labels"
        )
    mask_files = _list_files(mask_dir, (".png",), "masks")
    no_mask = sorted(set(images) - set(mask_files))
    no_image = sorted(set(mask_files) - set(images))
    if no_mask or no_image:
        parts = []
        if no_mask:
            names = _few([images[s].name for s in no_mask])
            parts.append(f"{len(no_mask)} images in {image_dir} have no mask ({names})")
        if no_image:
            names = _few([mask_files[s].name for s in no_image])
            parts.append(f"{len(no_image)} masks in {mask_dir} have no image ({names})")
        raise SegDatasetError(
            f"unpaired files: {'; '.join(parts)}; each image needs a mask with the same name stem "
            "(a.jpg ↔ a.png): add the missing files or remove the extra ones"
        )
    samples = [SegSample(images[stem], mask_files[stem], stem) for stem in sorted(images)]
    decoder = (
        ColourMaskDecoder(class_set.palette, ignore_colour, class_set.ignore_index)
        if colour_given
        else IndexMaskDecoder(
            colour_hint="give the colours as 'palette' in classes.json (colour k = class k) to map them, or "
            "convert the masks to index PNGs"
        )
    )
    dataset = SegmentationDataset(samples, class_set, root=root, split=split, decoder=decoder)
    return _finish(dataset, check_masks)


def _list_files(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    """Stem → file of the visible files in ``folder`` (not recursive); wrong types and clashes raise."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if what == "masks":
        jpeg = [p.name for p in files if p.suffix.lower() in (".jpg", ".jpeg")]
        if jpeg:
            raise SegDatasetError(
                f"{len(jpeg)} masks in {folder} are JPEG ({_few(jpeg)}); JPEG compression changes label "
                "values at every edge (new, wrong classes): save masks as PNG from the original label arrays"
            )
    wrong = [p.name for p in files if p.suffix.lower() not in suffixes]
    if wrong:
        raise SegDatasetError(
            f"{len(wrong)} files in {folder} are not {'/'.join(s[1:] for s in suffixes)} ({_few(wrong)}); "
            f"expected only {what} there: convert or move them"
        )
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        by_stem.setdefault(path.stem, []).append(path)
    clashes = [" and ".join(p.name for p in paths) for paths in by_stem.values() if len(paths) > 1]
    if clashes:
        raise SegDatasetError(
            f"{folder} has several files with the same name stem ({_few(clashes)}); masks pair with images "
            "by stem: keep one file per name"
        )
    if not by_stem:
        sub = [p.name for p in folder.iterdir() if p.is_dir()]
        hint = f" (it has sub-folders {_few(sub)}: files must be directly in it)" if sub else ""
        raise SegDatasetError(f"{folder} holds no {what}{hint}; expected {'/'.join(suffixes)} files")
    return {stem: paths[0] for stem, paths in by_stem.items()}


def _read_classes_json(path: Path, default_name: str) -> tuple[ClassSet, bool, tuple[int, int, int] | None]:
    """The ClassSet, whether a palette was given, and the ignore colour."""
    if not path.is_file():
        raise SegDatasetError(
            f"{path} does not exist; write the class names there (index k = mask value k), e.g. "
            f"{_CLASSES_EXAMPLE}"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SegDatasetError(f"{path} is not valid JSON ({err}); expected e.g. {_CLASSES_EXAMPLE}") from None
    if not isinstance(data, dict) or "class_names" not in data:
        raise SegDatasetError(
            f"{path} must be a JSON object with a 'class_names' list, got "
            f"{sorted(data) if isinstance(data, dict) else type(data).__name__}; e.g. {_CLASSES_EXAMPLE}"
        )
    unknown = sorted(set(data) - set(_CLASSES_KEYS))
    if unknown:
        raise SegDatasetError(f"{path} has unknown keys {unknown}; known keys: {list(_CLASSES_KEYS)}")
    names, palette = data["class_names"], data.get("palette")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SegDatasetError(f"{path}: 'class_names' must be a list of strings, got {names!r}")
    ignore_colour = data.get("ignore_color")
    if ignore_colour is not None and not (
        isinstance(ignore_colour, list)
        and len(ignore_colour) == 3
        and all(isinstance(v, int) and 0 <= v <= 255 for v in ignore_colour)
    ):
        raise SegDatasetError(
            f"{path}: 'ignore_color' must be [r, g, b] with integers 0..255, got {ignore_colour!r}"
        )
    try:
        class_set = ClassSet(
            name=str(data.get("name", default_name)),
            class_names=tuple(names),
            palette=tuple(tuple(c) for c in palette) if palette else (),
            ignore_index=int(data.get("ignore_index", 255)),
        )
    except (ValueError, TypeError) as err:
        raise SegDatasetError(f"{path}: {err}") from None
    return class_set, bool(palette), tuple(ignore_colour) if ignore_colour is not None else None
