"""COCO-format keypoint datasets (COCO person keypoints or one's own), checked up front.

:func:`load_keypoint_annotations` reads an annotation json, checks it, and returns a
:class:`KeypointDataset`: the :class:`~psa_zoo.metadata.KeypointSet` of its keypoint category (see
:mod:`psa_zoo.data.keypoint_meta`), its images, a pycocotools ``COCO`` object for evaluation, and the
person instances to crop (:meth:`KeypointDataset.instances`, :meth:`KeypointDataset.detections`).

The checks catch what makes COCO-style pipelines train on nothing or report AP = 0 without saying why
(mmpose issues #1795, #2713, #306, #1524, #715): ``area`` missing or zero (COCOeval's OKS divides by it),
``image_id`` pointing at no image (often an annotation ``id`` written instead), duplicate ids, keypoint
lists of the wrong length, boxes outside the image (``[x1, y1, x2, y2]`` written as ``[x, y, w, h]``),
unknown or ambiguous categories (a person category hard-coded as id 1), missing sigmas for K ≠ 17, and
image files missing on disk. Each problem is one :class:`DatasetError` naming the file, a few offending ids,
what was expected and what to do. ``num_keypoints`` that disagrees with the visibility flags is the one thing
fixed instead (recomputed as the count of ``v > 0``, with one warning): pycocotools' COCOeval ignores GT
with ``num_keypoints == 0`` and HRNet's loader drops them, so a stale count changes results silently.

The json on disk is never modified; fixes apply to the in-memory copy only. Everything is ordered
deterministically: images by id, annotations by id within an image, detections by image id then file order.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from ..metadata import KeypointSet
from .keypoint_meta import keypoint_set_from_category, load_keypoint_meta

__all__ = [
    "DatasetError",
    "KeypointDataset",
    "PersonInstance",
    "find_coco_split",
    "load_keypoint_annotations",
    "sanitize_box",
]

SPLITS = ("train", "eval")
# A GT box may overshoot the image by this fraction of its side (at least _BOX_OVERSHOOT_PX) before it is
# an error; smaller overshoot is clipped by the HRNet sanitising. More means a wrong box format or image size.
_BOX_OVERSHOOT = 0.1
_BOX_OVERSHOOT_PX = 2.0


class DatasetError(ValueError):
    """An annotation, detection or image file that does not make a usable keypoint dataset."""


@dataclass(kw_only=True, eq=False)
class PersonInstance:
    """One person (or other keypoint object) to crop: a GT annotation or a detector box.

    Attributes:
        image_id: the COCO image id.
        image_file: path of the image file.
        image_size: (width, height) from the annotation file.
        box: ``[4]`` float64 xywh; GT boxes sanitised as HRNet does (:func:`sanitize_box`), detector boxes
            as the detector gave them (HRNet and mmpose crop them unclipped).
        keypoints: ``[K, 2]`` float32 x, y in image pixels (zeros for detections).
        visibility: ``[K]`` float32 COCO flags: 0 unlabelled, 1 labelled but occluded, 2 visible (zeros for
            detections).
        area: the annotation's ``area`` (segment area, what COCOeval's OKS uses); ``w·h`` for detections.
        score: the detector's box score; 1 for GT.
        annotation_id: the annotation ``id``; ``None`` for detections.
        category_id: the COCO category id.
    """

    image_id: int
    image_file: Path
    image_size: tuple[int, int]
    box: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray
    area: float
    score: float = 1.0
    annotation_id: int | None
    category_id: int


def sanitize_box(bbox: Sequence[float], width: int, height: int) -> np.ndarray | None:
    """A GT box clipped to the image as HRNet does; ``None`` when nothing is left.

    As HRNet ``lib/dataset/coco.py`` ``_load_coco_keypoint_annotation_kernal``: ``x1 = max(0, x)``,
    ``y1 = max(0, y)``, ``x2 = min(W − 1, x1 + max(0, w − 1))``, ``y2 = min(H − 1, y1 + max(0, h − 1))``;
    kept when ``x2 ≥ x1`` and ``y2 ≥ y1``, as ``[x1, y1, x2 − x1, y2 − y1]``.

    Args:
        bbox: ``[x, y, w, h]`` in pixels.
        width, height: the image size.

    Returns:
        ``[4]`` float64 xywh, or ``None``.
    """
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)


class KeypointDataset:
    """A checked COCO-format keypoint annotation file (a plain record; a torch dataset wraps it).

    Build it with :func:`load_keypoint_annotations`.

    Attributes:
        ann_file: the annotation json.
        image_dir: the folder the images' ``file_name`` are relative to.
        keypoint_set: the :class:`KeypointSet` of the keypoint category.
        category_id: the id of that category (not necessarily 1).
        images: image id → the ``images`` entry, sorted by id.
        coco: a pycocotools ``COCO`` over the whole checked file (all categories; evaluate with
            ``params.catIds = [category_id]`` when there are several), for ``COCOeval``.
    """

    def __init__(
        self,
        ann_file: Path,
        image_dir: Path,
        keypoint_set: KeypointSet,
        category_id: int,
        images: dict[int, dict],
        annotations: dict[int, list[dict]],
        coco: COCO,
    ) -> None:
        self.ann_file = ann_file
        self.image_dir = image_dir
        self.keypoint_set = keypoint_set
        self.category_id = category_id
        self.images = images
        self.coco = coco
        self._annotations = annotations  # image id → the category's annotations, sorted by id

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        count = sum(len(a) for a in self._annotations.values())
        return (
            f"KeypointDataset({str(self.ann_file)!r}, {len(self)} images, {count} annotations of category "
            f"{self.category_id}, K={self.keypoint_set.num_keypoints})"
        )

    def image_file(self, image_id: int) -> Path:
        """The path of an image: ``image_dir / file_name``."""
        return self.image_dir / self.images[image_id]["file_name"]

    def instances(self, split: str = "train") -> list[PersonInstance]:
        """The GT instances to crop, sorted by image id then annotation id.

        Kept: non-crowd annotations of the category with at least one labelled keypoint (``v > 0``),
        ``area > 0``, and a box left after :func:`sanitize_box` that is not 0×0 (no crop can be made of
        that; HRNet would keep it and divide by zero later).

        ``split="eval"`` gives the same list: HRNet's ``_get_db`` loads GT boxes with the same kernel for
        training and for ``USE_GT_BBOX`` evaluation, which drops crowd persons and persons without
        keypoints (COCOeval ignores those GT anyway). The argument says what the list is for.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        k = self.keypoint_set.num_keypoints
        result = []
        for image_id, image_anns in self._annotations.items():
            image = self.images[image_id]
            width, height = image["width"], image["height"]
            for ann in image_anns:
                if ann.get("iscrowd"):
                    continue
                joints = np.asarray(ann["keypoints"], dtype=np.float32).reshape(k, 3)
                if not (joints[:, 2] > 0).any() or not ann["area"] > 0:
                    continue
                box = sanitize_box(ann["bbox"], width, height)
                if box is None or (box[2] == 0 and box[3] == 0):
                    continue
                result.append(
                    PersonInstance(
                        image_id=image_id,
                        image_file=self.image_dir / image["file_name"],
                        image_size=(width, height),
                        box=box,
                        keypoints=joints[:, :2].copy(),
                        visibility=joints[:, 2].copy(),
                        area=float(ann["area"]),
                        annotation_id=ann["id"],
                        category_id=self.category_id,
                    )
                )
        return result

    def detections(self, det_file: str | Path, score_threshold: float = 0.0) -> list[PersonInstance]:
        """Detector boxes of this dataset's category with ``score ≥ score_threshold``, for evaluation.

        ``det_file`` is a COCO detection results json (e.g. ``COCO_val2017_detections_AP_H_56_person.json``):
        a list of ``{image_id, category_id, bbox: [x, y, w, h], score}``. Boxes of other categories are
        skipped; boxes are kept unclipped and keypoints/visibility are zeros. HRNet keeps every box
        (``IMAGE_THRE 0.0``). Sorted by image id, then file order.

        Raises:
            DatasetError: not a list of such entries, empty, image ids not in the annotation file, or no
                box of this dataset's category.
        """
        det_file = Path(det_file)
        entries = _read_json(det_file, "detection results file")
        if not isinstance(entries, list) or not entries:
            raise DatasetError(
                f"{det_file} should hold a non-empty JSON list of {{image_id, category_id, bbox, score}} "
                f"(COCO detection results), got {_describe(entries)}"
            )
        bad = [i for i, e in enumerate(entries) if not _is_detection(e)]
        if bad:
            raise DatasetError(
                f'{det_file}: entries at positions {_few(bad)} are not {{"image_id": int, "category_id": '
                f'int, "bbox": [x, y, w, h], "score": number}} (e.g. {entries[bad[0]]!r}); fix the file'
            )
        unknown = sorted({e["image_id"] for e in entries} - set(self.images))
        if unknown:
            raise DatasetError(
                f"{det_file} has boxes for image ids {_few(unknown)} that are not in {self.ann_file}; "
                "use the detection file made for this annotation file's images (e.g. val2017 detections "
                "with person_keypoints_val2017.json)"
            )
        ours = [e for e in entries if e["category_id"] == self.category_id]
        if not ours:
            found = sorted({e["category_id"] for e in entries})
            raise DatasetError(
                f"{det_file} has boxes of category ids {found} only, none of this dataset's category "
                f"{self.category_id} ({self.keypoint_set.name}); use detections of that category"
            )
        k = self.keypoint_set.num_keypoints
        result = []
        for entry in sorted(ours, key=lambda e: e["image_id"]):  # stable: file order within an image
            if entry["score"] < score_threshold:
                continue
            image = self.images[entry["image_id"]]
            box = np.array(entry["bbox"], dtype=np.float64)
            result.append(
                PersonInstance(
                    image_id=entry["image_id"],
                    image_file=self.image_dir / image["file_name"],
                    image_size=(image["width"], image["height"]),
                    box=box,
                    keypoints=np.zeros((k, 2), dtype=np.float32),
                    visibility=np.zeros(k, dtype=np.float32),
                    area=float(box[2] * box[3]),
                    score=float(entry["score"]),
                    annotation_id=None,
                    category_id=self.category_id,
                )
            )
        return result


def load_keypoint_annotations(
    ann_file: str | Path,
    image_dir: str | Path,
    *,
    category_id: int | None = None,
    check_images: bool = True,
) -> KeypointDataset:
    """Read and check a COCO-format keypoint annotation file.

    Args:
        ann_file: the annotation json (``images``, ``annotations``, ``categories``). A
            ``keypoint_meta.json`` beside it completes the keypoint record (:mod:`.keypoint_meta`).
        image_dir: the folder the images' ``file_name`` are relative to.
        category_id: the keypoint category to use; needed only when the file has several.
        check_images: check that every listed image file exists in ``image_dir``.

    Raises:
        DatasetError: the first problem found, naming the file and a few offending ids.
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    data = _read_json(ann_file, "annotation file")
    _check_top_level(data, ann_file)
    category = _pick_category(data["categories"], category_id, ann_file)
    try:
        keypoint_set = keypoint_set_from_category(
            category, load_keypoint_meta(ann_file.parent), str(ann_file)
        )
    except ValueError as err:  # keypoint_meta's own error class: one error type for the loader's callers
        raise DatasetError(str(err)) from None
    images = _check_images(data["images"], ann_file)
    annotations = _check_annotations(data, images, category, keypoint_set.num_keypoints, ann_file)
    if check_images:
        _check_image_files(images, image_dir, ann_file)
    coco = COCO()  # without a file name it prints nothing; createIndex prints, hence the redirect
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return KeypointDataset(ann_file, image_dir, keypoint_set, category["id"], images, annotations, coco)


def find_coco_split(data_dir: str | Path, split: str) -> tuple[Path, Path]:
    """``(ann_file, image_dir)`` of a COCO keypoint split in the standard layout.

    Looks for ``annotations/person_keypoints_{split}2017.json`` and for the images in ``{split}2017/``
    (mmpose's layout) or ``images/{split}2017/`` (HRNet's).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    data_dir = Path(data_dir)
    ann_file = data_dir / "annotations" / f"person_keypoints_{split}2017.json"
    image_dirs = [data_dir / f"{split}2017", data_dir / "images" / f"{split}2017"]
    image_dir = next((d for d in image_dirs if d.is_dir()), None)
    if ann_file.is_file() and image_dir is not None:
        return ann_file, image_dir
    missing = ([str(ann_file)] if not ann_file.is_file() else []) + (
        [" or ".join(f"{d}/" for d in image_dirs)] if image_dir is None else []
    )
    raise DatasetError(
        f"no COCO {split}2017 keypoint split in {data_dir}: looked for {ann_file} and for the images in "
        f"{image_dirs[0]}/ or {image_dirs[1]}/; missing: {'; '.join(missing)}. Unpack the COCO "
        "annotations and images there, or pass ann_file and image_dir yourself"
    )


# --- checks -------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist; check the path")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{what} {path} is not valid JSON ({err}); re-download or re-export it") from None


def _check_top_level(data: Any, ann_file: Path) -> None:
    if not isinstance(data, dict):
        raise DatasetError(
            f'{ann_file} should hold a JSON object with "images", "annotations" and "categories" '
            f"(COCO format), got {_describe(data)}"
        )
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise DatasetError(
            f"{ann_file} has no list {missing} (found keys {sorted(data)}); a COCO keypoint file has "
            '"images", "annotations" and "categories" lists'
        )
    if not data["annotations"]:
        raise DatasetError(
            f'{ann_file} has an empty "annotations" list: there is nothing to train on or evaluate; '
            "export the annotations into it (image-info files such as image_info_test-dev2017.json have none)"
        )


def _pick_category(categories: list, category_id: int | None, ann_file: Path) -> dict:
    bad = [c for c in categories if not isinstance(c, dict) or not _is_int(c.get("id"))]
    if bad:
        raise DatasetError(f'{ann_file}: categories {bad[:3]!r} have no integer "id"; give each one')
    ids = [c["id"] for c in categories]
    dupes = _duplicates(ids)
    if dupes:
        raise DatasetError(f"{ann_file}: category ids {_few(dupes)} appear more than once; make them unique")
    listed = [(c["id"], c.get("name")) for c in categories]
    with_keypoints = [c for c in categories if isinstance(c.get("keypoints"), list) and c["keypoints"]]
    if category_id is not None:
        chosen = next((c for c in categories if c["id"] == category_id), None)
        if chosen is None:
            raise DatasetError(
                f"category_id={category_id} is not in {ann_file}; its categories (id, name) are {listed}"
            )
        if chosen not in with_keypoints:
            raise DatasetError(
                f'category {category_id} ({chosen.get("name")!r}) in {ann_file} has no "keypoints" list; '
                f"keypoint categories: {[(c['id'], c.get('name')) for c in with_keypoints] or 'none'}"
            )
        return chosen
    if not with_keypoints:
        raise DatasetError(
            f'{ann_file} has no keypoint category: none of its categories {listed} has a "keypoints" list. '
            'A COCO keypoint file\'s category names its keypoints, e.g. {"id": 1, "name": "person", '
            '"keypoints": ["nose", ...], "skeleton": [[16, 14], ...]} (is this a detection-only file?)'
        )
    if len(with_keypoints) > 1:
        raise DatasetError(
            f"{ann_file} has several keypoint categories (id, name) "
            f"{[(c['id'], c.get('name')) for c in with_keypoints]}; pass category_id=... to choose one"
        )
    return with_keypoints[0]


def _check_images(entries: list, ann_file: Path) -> dict[int, dict]:
    bad = [
        e
        for e in entries
        if not isinstance(e, dict)
        or not _is_int(e.get("id"))
        or not isinstance(e.get("file_name"), str)
        or not all(
            _is_number(e.get(key)) and e[key] > 0 and e[key] == int(e[key]) for key in ("width", "height")
        )
    ]
    if bad:
        ids = [e.get("id") if isinstance(e, dict) else e for e in bad]
        raise DatasetError(
            f'{ann_file}: images {_few(ids)} lack an integer "id", a "file_name" or positive integer '
            f'"width"/"height" (e.g. {_short(bad[0])}); each image entry needs all four'
        )
    dupes = _duplicates(e["id"] for e in entries)
    if dupes:
        raise DatasetError(
            f'{ann_file}: image ids {_few(dupes)} appear more than once in "images"; '
            "give each image its own id"
        )
    for entry in entries:  # ints from here on (a json may write 640.0)
        entry["width"], entry["height"] = int(entry["width"]), int(entry["height"])
    return {e["id"]: e for e in sorted(entries, key=lambda e: e["id"])}


def _check_annotations(
    data: dict, images: Mapping[int, dict], category: dict, k: int, ann_file: Path
) -> dict[int, list[dict]]:
    """Check all annotations, fix ``num_keypoints``; the category's annotations grouped by image id."""
    anns = data["annotations"]
    bad = [a for a in anns if not isinstance(a, dict) or not _is_int(a.get("id"))]
    if bad:
        raise DatasetError(
            f'{ann_file}: annotations without an integer "id" (e.g. {_short(bad[0])}); pycocotools and '
            "the evaluation need one per annotation"
        )
    dupes = _duplicates(a["id"] for a in anns)
    if dupes:
        raise DatasetError(
            f"{ann_file}: annotation ids {_few(dupes)} appear more than once; give each annotation its own id"
        )
    category_ids = {c["id"] for c in data["categories"]}
    unknown = [a for a in anns if a.get("category_id") not in category_ids]
    if unknown:
        found = ", ".join(repr(v) for v in _sorted_values(a.get("category_id") for a in unknown))
        raise DatasetError(
            f"{ann_file}: annotations {_few([a['id'] for a in unknown])} have category_id {found}, which is "
            f"not among the file's categories {sorted(category_ids)}; fix the category_id or add the category"
        )
    _check_image_ids(anns, images, ann_file)
    ours = [a for a in anns if a["category_id"] == category["id"]]
    if not ours:
        used = sorted({a["category_id"] for a in anns})
        raise DatasetError(
            f"{ann_file} has no annotations of keypoint category {category['id']} "
            f"({category.get('name')!r}); its annotations use category ids {used}: fix their category_id"
        )
    _check_keypoint_lists(ours, k, category, ann_file)
    _check_boxes(ours, images, ann_file)
    _check_areas(ours, ann_file)
    _fix_num_keypoints(ours, ann_file)
    grouped: dict[int, list[dict]] = {}
    for ann in sorted(ours, key=lambda a: (a["image_id"], a["id"])):
        ann.setdefault("iscrowd", 0)
        grouped.setdefault(ann["image_id"], []).append(ann)
    return grouped


def _check_image_ids(anns: list[dict], images: Mapping[int, dict], ann_file: Path) -> None:
    bad = [a for a in anns if not _is_int(a.get("image_id")) or a["image_id"] not in images]
    if not bad:
        return
    values = _sorted_values(a.get("image_id") for a in bad)
    annotation_ids = {a["id"] for a in anns}
    mixed = [a["id"] for a in bad if a.get("image_id") in annotation_ids]
    hint = (
        f" The image_id of annotations {_few(mixed)} equals an annotation id: the converter probably "
        'wrote the annotation\'s own "id" as "image_id" (the image_id/id mix-up).'
        if mixed
        else ""
    )
    raise DatasetError(
        f"{ann_file}: annotations {_few([a['id'] for a in bad])} have image_id {_few(values)}, which is the "
        f'"id" of no entry in "images" (image ids there: {_few(list(images))}).{hint} Each annotation\'s '
        "image_id must be the id of the image it is on"
    )


def _check_keypoint_lists(anns: list[dict], k: int, category: dict, ann_file: Path) -> None:
    lengths: dict[int, int | None] = {}
    for ann in anns:
        values = ann.get("keypoints")
        lengths[ann["id"]] = len(values) if _is_number_list(values) else None
    bad = [i for i, n in lengths.items() if n != 3 * k]
    if bad:
        found = sorted({"not a list of numbers" if lengths[i] is None else str(lengths[i]) for i in bad})
        raise DatasetError(
            f'{ann_file}: annotations {_few(bad)} have "keypoints" of length {", ".join(found)}, expected '
            f"3·K = {3 * k} ([x, y, v] for each of the K={k} keypoints of category {category['id']} "
            f"{category.get('name')!r}); write all K keypoints, unlabelled ones as 0, 0, 0"
        )
    bad = [a["id"] for a in anns if not set(a["keypoints"][2::3]) <= {0, 1, 2}]
    if bad:
        raise DatasetError(
            f"{ann_file}: annotations {_few(bad)} have visibility flags other than 0, 1, 2 "
            '(every third value of "keypoints"); COCO uses 0 unlabelled, 1 labelled but occluded, 2 visible'
        )


def _check_boxes(anns: list[dict], images: Mapping[int, dict], ann_file: Path) -> None:
    bad = [
        a["id"]
        for a in anns
        if not (_is_number_list(a.get("bbox")) and len(a["bbox"]) == 4) or min(a["bbox"][2:]) < 0
    ]
    if bad:
        example = next(a for a in anns if a["id"] == bad[0])
        raise DatasetError(
            f'{ann_file}: annotations {_few(bad)} have no valid "bbox" (e.g. {example.get("bbox")!r}); '
            "expected [x, y, width, height] with width, height ≥ 0"
        )
    outside = [a for a in anns if _box_outside(a["bbox"], images[a["image_id"]])]
    if outside:
        first = outside[0]
        image = images[first["image_id"]]
        raise DatasetError(
            f"{ann_file}: annotations {_few([a['id'] for a in outside])} have boxes outside their image "
            f"(e.g. id {first['id']}: bbox {first['bbox']} on image {image['id']} of "
            f"{image['width']}×{image['height']}); expected [x, y, width, height] in pixels inside the image "
            f"(an overshoot of up to {_BOX_OVERSHOOT:.0%} is clipped): check the converter writes COCO xywh, "
            "not [x1, y1, x2, y2], and the images' width and height"
        )


def _box_outside(bbox: Sequence[float], image: Mapping[str, Any]) -> bool:
    """Fully outside the image, or overshooting it by more than the tolerance on some side."""
    x, y, w, h = bbox
    width, height = image["width"], image["height"]
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return True
    slack_x = max(_BOX_OVERSHOOT_PX, _BOX_OVERSHOOT * width)
    slack_y = max(_BOX_OVERSHOOT_PX, _BOX_OVERSHOOT * height)
    return x < -slack_x or y < -slack_y or x + w > width + slack_x or y + h > height + slack_y


def _check_areas(anns: list[dict], ann_file: Path) -> None:
    bad = [
        a["id"]
        for a in anns
        if not a.get("iscrowd") and _labelled(a) > 0 and not (_is_number(a.get("area")) and a["area"] > 0)
    ]
    if bad:
        raise DatasetError(
            f'{ann_file}: annotations {_few(bad)} have keypoints but a missing or zero "area"; COCOeval '
            "divides the OKS distance by it, so AP would be 0: write the object's area in pixels (the "
            "segmentation area, or bbox width × height when there is no mask)"
        )


def _fix_num_keypoints(anns: list[dict], ann_file: Path) -> None:
    fixed = []
    for ann in anns:
        labelled = _labelled(ann)
        if ann.get("num_keypoints") != labelled:
            ann["num_keypoints"] = labelled
            fixed.append(ann["id"])
    if fixed:
        warnings.warn(
            f'{ann_file}: "num_keypoints" is missing or differs from the number of keypoints with v > 0 in '
            f"annotations {_few(fixed)}; using the count of v > 0 (COCOeval ignores GT with "
            "num_keypoints == 0). "
            "The file on disk is unchanged; fix the converter to silence this",
            stacklevel=4,
        )


def _check_image_files(images: Mapping[int, dict], image_dir: Path, ann_file: Path) -> None:
    if not image_dir.is_dir():
        raise DatasetError(
            f"image folder {image_dir} (for {ann_file}) does not exist; pass the folder the images' "
            "file_name are relative to (COCO: val2017/ or images/val2017/)"
        )
    missing = [e["file_name"] for e in images.values() if not (image_dir / e["file_name"]).is_file()]
    if missing:
        hint = (
            " None of them is there: is image_dir the right folder?"
            if len(missing) == len(images)
            else " Re-download or copy them, or remove their entries (and annotations) from the file."
        )
        raise DatasetError(
            f"{len(missing)} of the {len(images)} images listed in {ann_file} are missing from {image_dir}: "
            f"{_few(missing)}.{hint} (check_images=False skips this check)"
        )


# --- small helpers ------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_number_list(values: Any) -> bool:
    """A list of finite JSON numbers (fast: one pass in C for the types, ``sum`` propagates inf and nan)."""
    return isinstance(values, list) and set(map(type, values)) <= {int, float} and math.isfinite(sum(values))


def _labelled(ann: Mapping[str, Any]) -> int:
    """Keypoints with v > 0 (the flags are checked to be 0, 1 or 2)."""
    flags = ann["keypoints"][2::3]
    return len(flags) - flags.count(0)


def _is_detection(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and _is_int(entry.get("image_id"))
        and _is_int(entry.get("category_id"))
        and _is_number(entry.get("score"))
        and _is_number_list(entry.get("bbox"))
        and len(entry["bbox"]) == 4
    )


def _duplicates(values: Iterable[Any]) -> list[Any]:
    seen, dupes = set(), set()
    for value in values:
        (dupes if value in seen else seen).add(value)
    return _sorted_values(dupes)


def _sorted_values(values: Iterable[Any]) -> list[Any]:
    """Distinct values, integers in numeric order first, anything else after them by repr."""
    return sorted(set(values), key=lambda v: (not _is_int(v), v if _is_int(v) else 0, repr(v)))


def _few(values: Sequence[Any], limit: int = 5) -> str:
    """``[a, b, c]`` or ``[a, b, c, d, e, …] (12 in all)``."""
    values = list(values)
    if len(values) <= limit:
        return "[" + ", ".join(str(v) for v in values) + "]"
    return "[" + ", ".join(str(v) for v in values[:limit]) + f", …] ({len(values)} in all)"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "an empty list" if not value else f"a list of {len(value)}"
    return "a JSON object" if isinstance(value, dict) else f"a JSON {type(value).__name__}"
