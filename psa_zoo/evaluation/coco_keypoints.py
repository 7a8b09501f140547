"""COCO keypoint evaluation: rescoring, OKS-NMS, pycocotools ``COCOeval`` and a per-keypoint report.

The protocol of the top-down papers (HRNet ``lib/dataset/coco.py``, mmpose ``CocoMetric``):

1. :func:`rescore` each person: box score × mean of its keypoint scores above 0.2;
2. per image, :func:`oks_nms` at OKS 0.9 (both steps in :func:`postprocess_predictions`);
3. :func:`evaluate_keypoints`: ``COCOeval(iouType="keypoints")`` and its ten stats (:data:`STAT_NAMES`).

The AP itself is pycocotools' (never recomputed here). What no tool offers is added on top: for each
joint, the pixel error and OKS term on the pairs COCOeval matched at OKS 0.5, and left/right swap counts.
Any keypoint category works (any id, any K) given its OKS sigmas; COCOeval's printing is captured, not
shown.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval, Params

__all__ = [
    "STAT_NAMES",
    "KeypointEvaluation",
    "evaluate_keypoints",
    "evaluate_results_file",
    "format_per_keypoint",
    "format_stats",
    "object_keypoint_similarity",
    "oks_nms",
    "postprocess_predictions",
    "rescore",
]

# The order of ``COCOeval.stats`` for iouType "keypoints" (pycocotools cocoeval.py _summarizeKps).
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# The padding of the person box in the top-down crop (HRNet / mmpose): the OKS area of a prediction.
BOX_PADDING = 1.25

_RESULT_KEYS = ("image_id", "category_id", "keypoints", "score")
_PREDICTION_KEYS = ("image_id", "category_id", "keypoints", "box_score")


# --------------------------------------------------------------------------- rescoring and OKS-NMS


def rescore(keypoint_scores: Any, box_scores: Any, threshold: float = 0.2) -> np.ndarray:
    """Instance scores: box score × mean of the keypoint scores strictly above ``threshold``.

    An instance with no keypoint score above the threshold scores 0 (mmpose ``score_mode='bbox_keypoint'``,
    HRNet ``lib/dataset/coco.py`` with ``IN_VIS_THRE``).

    Args:
        keypoint_scores: [N, K] per-keypoint confidences (heatmap maxima).
        box_scores: [N] detector scores.
        threshold: keypoint scores must exceed it to count.

    Returns:
        [N] float64 instance scores.
    """
    kpt = np.asarray(keypoint_scores, dtype=np.float64)
    box = np.asarray(box_scores, dtype=np.float64)
    if kpt.ndim != 2 or box.shape != (kpt.shape[0],):
        raise ValueError(
            f"rescore expects keypoint_scores [N, K] and box_scores [N], got shapes {kpt.shape} and "
            f"{box.shape}"
        )
    counted = kpt > threshold
    count = counted.sum(axis=1)
    total = np.where(counted, kpt, 0.0).sum(axis=1)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return box * mean


def object_keypoint_similarity(reference: Any, candidates: Any, area: float, sigmas: Any) -> np.ndarray:
    """OKS of each candidate to one reference instance, over all K joints.

    The formula of pycocotools ``COCOeval.computeOks``: per joint e = d² / (2σ)² / (area + eps) / 2 and
    OKS = mean of exp(−e), with the *reference* in the role of the ground truth (its ``area``). Unlike
    ``computeOks`` there are no visibility flags: every joint counts (predictions have scores, not flags).

    Args:
        reference: [K, 2] (or [K, 3], the third column ignored) keypoints.
        candidates: [M, K, 2] (or [M, K, 3]) keypoints.
        area: the reference's area in pixels² (> 0).
        sigmas: [K] OKS sigmas.

    Returns:
        [M] similarities in [0, 1].
    """
    ref = np.asarray(reference, dtype=np.float64)[..., :2]
    cand = np.asarray(candidates, dtype=np.float64)[..., :2]
    sig = np.asarray(sigmas, dtype=np.float64)
    if ref.shape != (sig.size, 2) or cand.ndim != 3 or cand.shape[1:] != ref.shape:
        raise ValueError(
            f"object_keypoint_similarity expects reference [K, 2], candidates [M, K, 2] and sigmas [K]; got "
            f"{ref.shape}, {cand.shape} and {sig.shape}"
        )
    squared = ((cand - ref) ** 2).sum(axis=-1)
    e = squared / (2 * sig) ** 2 / (float(area) + np.spacing(1)) / 2
    return np.exp(-e).mean(axis=-1)


def oks_nms(keypoints: Any, scores: Any, areas: Any, sigmas: Any, threshold: float = 0.9) -> list[int]:
    """Greedy OKS non-maximum suppression; the indices kept, highest score first.

    The highest-scoring instance left is kept and is the *reference*: every other instance whose
    :func:`object_keypoint_similarity` to it (with the reference's area, all joints) exceeds
    ``threshold`` is dropped; repeat. Equal scores keep their input order (a stable sort), so ties are
    decided by position, the same on every run. (HRNet ``lib/nms/nms.py`` ``oks_nms`` divides by the mean
    of the two areas and sorts unstably; for the near-duplicates NMS removes the areas are nearly equal.)

    Args:
        keypoints: [N, K, 3] (x, y, score) or [N, K, 2].
        scores: [N] instance scores.
        areas: [N] instance areas in pixels² (the padded box area), > 0.
        sigmas: [K] OKS sigmas.
        threshold: keep an instance when its OKS to every kept one is ≤ this.

    Returns:
        Kept indices into the inputs.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    score = np.asarray(scores, dtype=np.float64)
    area = np.asarray(areas, dtype=np.float64)
    sig = np.asarray(sigmas, dtype=np.float64)
    n = score.shape[0] if score.ndim == 1 else -1
    if kpts.ndim != 3 or kpts.shape[0] != n or kpts.shape[1] != sig.size or area.shape != (n,):
        raise ValueError(
            f"oks_nms expects keypoints [N, K, 2|3], scores [N], areas [N] and sigmas [K]; got {kpts.shape}, "
            f"{score.shape}, {area.shape} and {sig.shape}"
        )
    if not (np.isfinite(score).all() and np.isfinite(area).all() and (area > 0).all()):
        raise ValueError(
            "oks_nms needs finite scores and finite positive areas; check the inputs for NaN or 0"
        )
    order = np.argsort(-score, kind="stable")
    keep: list[int] = []
    while order.size:
        reference, rest = order[0], order[1:]
        keep.append(int(reference))
        similarity = object_keypoint_similarity(kpts[reference], kpts[rest], area[reference], sig)
        order = rest[similarity <= threshold]
    return keep


def postprocess_predictions(
    predictions: Sequence[Mapping[str, Any]],
    sigmas: Any,
    *,
    score_threshold: float = 0.2,
    nms_threshold: float = 0.9,
) -> list[dict[str, Any]]:
    """Raw top-down predictions → COCO keypoint results: rescoring, then OKS-NMS per image and category.

    Args:
        predictions: entries ``{"image_id", "category_id", "keypoints": [K, 3] or flat [x, y, s] × K,
            "box_score", "area"}``, with ``area`` the padded box area (product of the crop scale in
            pixels). An entry may give ``"bbox": [x, y, w, h]`` (the detector box) instead of ``"area"``:
            the area is then w·h·1.25², the box padded by the standard 1.25 but *without* the aspect-ratio
            fix of the crop (which only ever enlarges one side), so slightly smaller than the crop's.
        sigmas: [K] OKS sigmas.
        score_threshold: keypoint-score threshold of :func:`rescore`.
        nms_threshold: OKS threshold of :func:`oks_nms`.

    Returns:
        ``{"image_id", "category_id", "keypoints": flat list, "score"}`` entries, ordered by
        (image_id, category_id) (first-appearance order when the ids do not sort), then by score
        (ties in input order). The inputs are not modified.
    """
    sig = _as_sigmas(sigmas)
    k = sig.size
    if not isinstance(predictions, Sequence) or isinstance(predictions, str | bytes):
        raise ValueError(f"predictions must be a list of dicts, got {type(predictions).__name__}")
    groups: dict[tuple[Any, Any], list[tuple[np.ndarray, float, float]]] = {}
    for index, entry in enumerate(predictions):
        where = f"prediction {index}"
        _require_keys(entry, _PREDICTION_KEYS, where, "a raw prediction")
        keypoints = _keypoint_array(entry["keypoints"], k, where)
        box_score = _finite_number(entry["box_score"], f"{where}: box_score")
        area = _prediction_area(entry, where)
        key = (_plain(entry["image_id"]), _plain(entry["category_id"]))
        groups.setdefault(key, []).append((keypoints, box_score, area))
    results = []
    for image_id, category_id in _sorted_keys(groups):
        members = groups[image_id, category_id]
        keypoints = np.stack([m[0] for m in members])
        scores = rescore(keypoints[:, :, 2], [m[1] for m in members], score_threshold)
        keep = oks_nms(keypoints, scores, [m[2] for m in members], sig, nms_threshold)
        results.extend(
            {
                "image_id": image_id,
                "category_id": category_id,
                "keypoints": keypoints[i].reshape(-1).tolist(),
                "score": float(scores[i]),
            }
            for i in keep
        )
    return results


def _prediction_area(entry: Mapping[str, Any], where: str) -> float:
    if "area" in entry:
        area = _finite_number(entry["area"], f"{where}: area")
    elif "bbox" in entry:
        box = np.asarray(entry["bbox"], dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise ValueError(f"{where}: bbox must be [x, y, w, h], got {entry['bbox']!r}")
        area = float(box[2] * box[3]) * BOX_PADDING**2
    else:
        raise ValueError(
            f"{where} has neither 'area' nor 'bbox' (keys found: {sorted(entry)}); give the padded box "
            "area (crop scale product in pixels) or the detector bbox [x, y, w, h]"
        )
    if not area > 0:
        raise ValueError(
            f"{where}: the OKS area must be > 0, got {area} (from {entry.get('area', entry.get('bbox'))!r})"
        )
    return area


# --------------------------------------------------------------------------- COCOeval


@dataclass
class KeypointEvaluation:
    """What :func:`evaluate_keypoints` returns.

    Attributes:
        stats: the ten COCOeval stats by :data:`STAT_NAMES`; −1 where the area range holds no ground truth.
        per_keypoint: one row per joint (see :func:`evaluate_keypoints`), or None when not asked for.
        num_results: result entries evaluated (those of the evaluated category).
        num_ground_truth: ground-truth instances COCOeval counts (not crowd, ≥ 1 labelled keypoint).
        num_matched: (prediction, ground truth) pairs COCOeval matched at OKS 0.5 (area "all") — the
            pairs of the per-keypoint report; equals AR50 × num_ground_truth.
        num_swaps: left/right swaps over all flip pairs (each swapped pair of an instance counted once),
            or None when no flip pairs were given.
        category_id: the evaluated category.
        summary: COCOeval's printed summary (captured, not printed).
    """

    stats: dict[str, float]
    per_keypoint: list[dict[str, Any]] | None
    num_results: int
    num_ground_truth: int
    num_matched: int
    num_swaps: int | None
    category_id: Any
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the ten stats, then ``per_keypoint`` and the counts."""
        return {
            **self.stats,
            "per_keypoint": copy.deepcopy(self.per_keypoint),
            "num_results": self.num_results,
            "num_ground_truth": self.num_ground_truth,
            "num_matched": self.num_matched,
            "num_swaps": self.num_swaps,
            "category_id": self.category_id,
        }


def evaluate_keypoints(
    ground_truth: str | Path | Mapping[str, Any] | COCO,
    results: Sequence[Mapping[str, Any]],
    sigmas: Any = None,
    *,
    category_id: int | None = None,
    per_keypoint: bool = True,
    keypoint_names: Sequence[str] | None = None,
    flip_pairs: Sequence[Sequence[int]] = (),
    image_ids: Sequence[int] | None = None,
) -> KeypointEvaluation:
    """COCO keypoint AP/AR of ``results`` with pycocotools, plus a per-keypoint report.

    Runs ``COCOeval(gt, dt, "keypoints")`` with ``params.useSegm = None`` (as HRNet), ``kpt_oks_sigmas``
    and the one keypoint category evaluated. Inputs are deep-copied (COCOeval writes into annotations).

    Args:
        ground_truth: a COCO keypoint annotation file, its loaded dict, or a ``COCO`` object.
        results: ``{"image_id", "category_id", "keypoints": flat [x, y, s] × K, "score"}`` entries (other
            keys are dropped, so COCOeval derives each result's area from its keypoints, as for a results
            file). An empty list is allowed: COCOeval's convention for no detections then gives 0 for
            every stat whose area range has ground truth and −1 for the others.
        sigmas: [K] OKS sigmas; None means pycocotools' COCO sigmas, allowed only when K == 17.
        category_id: the category to evaluate; needed only when the ground truth has several keypoint
            categories. Results of other ground-truth categories are left out.
        per_keypoint: compute the per-keypoint report.
        keypoint_names: K joint names for the report (default: the category's ``keypoints``).
        flip_pairs: 0-based (left, right) index pairs; their swaps are counted (default: none counted).
        image_ids: evaluate these images only (COCOeval's ``params.imgIds``; default: every image of the
            ground truth). A subset evaluation must name its images, or the people of the others count as
            missed.

    The per-keypoint rows are ``{"name", "count", "mean_error_px", "mean_oks", "flip_partner", "swaps"}``
    over the pairs COCOeval matched at OKS 0.5 (its ``evalImgs`` ``dtMatches``, area "all", ignored ground
    truth left out): ``count`` = matched instances where the joint is labelled (v > 0); the means are over
    those (None when count is 0); ``mean_oks`` averages exp(−d² / (2σ)² / (area + eps) / 2) with the
    ground-truth area. ``swaps`` (None for joints in no pair) counts matched instances where both joints
    of the pair are labelled and each prediction lies closer to the other joint's ground truth than to its
    own.
    """
    coco_gt = _load_ground_truth(ground_truth)
    category = _keypoint_category(coco_gt, category_id)
    sig = _resolve_sigmas(sigmas, category)
    _check_ground_truth(coco_gt, category)
    entries = _clean_results(results, coco_gt, category)
    if image_ids is not None:
        unknown = sorted(set(image_ids) - set(coco_gt.getImgIds()))
        if unknown:
            raise ValueError(f"image_ids {unknown[:5]} are not in the ground truth; give ids of its images")
        entries = [e for e in entries if e["image_id"] in set(image_ids)]
    return _run_cocoeval(coco_gt, entries, category, sig, per_keypoint, keypoint_names, flip_pairs, image_ids)


def evaluate_results_file(
    ann_file: str | Path,
    results_file: str | Path,
    sigmas: Any = None,
    *,
    score_threshold: float = 0.2,
    nms_threshold: float = 0.9,
    **kwargs: Any,
) -> KeypointEvaluation:
    """Evaluate a results JSON file against a COCO keypoint annotation file.

    Entries with ``box_score`` (and ``bbox`` or ``area``) are raw predictions: they are rescored and
    OKS-NMSed first (:func:`postprocess_predictions` with ``score_threshold`` / ``nms_threshold``).
    Entries with only ``score`` are final COCO results, taken as they are. One file holds one kind.
    ``kwargs`` go to :func:`evaluate_keypoints` (``category_id``, ``keypoint_names``, ``flip_pairs``, ...).
    """
    coco_gt = _load_ground_truth(ann_file)
    path = Path(results_file)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} does not exist, expected a JSON list of COCO results")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"results file {path} is not valid JSON ({error}); expected a list of results"
        ) from None
    if not isinstance(entries, list):
        raise ValueError(
            f"results file {path} holds a JSON {type(entries).__name__}, expected a list of "
            "{image_id, category_id, keypoints, score} objects"
        )
    raw = [isinstance(e, Mapping) and "box_score" in e for e in entries]
    if any(raw) and not all(raw):
        raise ValueError(
            f"results file {path} mixes {sum(raw)} raw predictions (with 'box_score') and "
            f"{len(raw) - sum(raw)} final results (with only 'score'); write one kind per file"
        )
    if entries and all(raw):
        category = _keypoint_category(coco_gt, kwargs.get("category_id"))
        nms_sigmas = _resolve_sigmas(sigmas, category)
        entries = postprocess_predictions(
            entries, nms_sigmas, score_threshold=score_threshold, nms_threshold=nms_threshold
        )
    return evaluate_keypoints(coco_gt, entries, sigmas, **kwargs)


def format_stats(stats: Mapping[str, float]) -> str:
    """The ten stats as a two-line aligned table; −1 (no ground truth in that area range) shows as n/a."""
    missing = [name for name in STAT_NAMES if name not in stats]
    if missing:
        raise ValueError(f"format_stats needs the ten stats {list(STAT_NAMES)}; missing {missing}")
    cells = ["n/a" if stats[name] < 0 else f"{stats[name]:.3f}" for name in STAT_NAMES]
    width = max(len(c) for c in (*cells, *STAT_NAMES))
    header = " ".join(name.rjust(width) for name in STAT_NAMES)
    return header + "\n" + " ".join(cell.rjust(width) for cell in cells)


def format_per_keypoint(rows: Sequence[Mapping[str, Any]]) -> str:
    """The per-keypoint report as an aligned table (joint, count, mean px error, mean OKS, swaps)."""
    table = [("joint", "count", "error_px", "oks", "swaps")]
    for row in rows:
        error, oks, swaps = row["mean_error_px"], row["mean_oks"], row["swaps"]
        table.append(
            (
                str(row["name"]),
                str(row["count"]),
                "-" if error is None else f"{error:.2f}",
                "-" if oks is None else f"{oks:.3f}",
                "-" if swaps is None else str(swaps),
            )
        )
    widths = [max(len(r[c]) for r in table) for c in range(5)]
    lines = [" ".join([r[0].ljust(widths[0])] + [r[c].rjust(widths[c]) for c in range(1, 5)]) for r in table]
    return "\n".join(lines)


def _run_cocoeval(
    coco_gt: COCO,
    entries: list[dict[str, Any]],
    category: Mapping[str, Any],
    sigmas: np.ndarray,
    per_keypoint: bool,
    keypoint_names: Sequence[str] | None,
    flip_pairs: Sequence[Sequence[int]],
    image_ids: Sequence[int] | None = None,
) -> KeypointEvaluation:
    k = len(category["keypoints"])
    names = _keypoint_names(keypoint_names, category)
    pairs = _flip_pairs(flip_pairs, k)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco_dt = coco_gt.loadRes(entries) if entries else _empty_results(coco_gt)
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.useSegm = None
        evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.params.catIds = [category["id"]]
        if image_ids is not None:
            evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    stats = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats, strict=True)}
    num_gt = sum(not g["ignore"] for gts in evaluator._gts.values() for g in gts)
    pairs_matched = _matched_pairs(evaluator, coco_gt, coco_dt)
    rows, num_swaps = None, None
    if per_keypoint:
        rows, num_swaps = _per_keypoint_report(pairs_matched, sigmas, names, pairs)
    return KeypointEvaluation(
        stats=stats,
        per_keypoint=rows,
        num_results=len(entries),
        num_ground_truth=int(num_gt),
        num_matched=len(pairs_matched),
        num_swaps=num_swaps,
        category_id=category["id"],
        summary=summary.getvalue(),
    )


def _empty_results(coco_gt: COCO) -> COCO:
    # COCO.loadRes reads anns[0] and fails on an empty list; an empty results set is still well defined.
    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    empty.createIndex()
    return empty


def _matched_pairs(evaluator: COCOeval, coco_gt: COCO, coco_dt: COCO) -> list[tuple[dict, dict]]:
    """(ground truth, prediction) annotation pairs matched by COCOeval at OKS 0.5 over area "all"."""
    params = evaluator.params
    t = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    all_range = list(params.areaRng[params.areaRngLbl.index("all")])
    pairs = []
    for image_eval in evaluator.evalImgs:
        if image_eval is None or list(image_eval["aRng"]) != all_range:
            continue
        for index, dt_id in enumerate(image_eval["dtIds"]):
            gt_id = image_eval["dtMatches"][t, index]
            if gt_id > 0 and not image_eval["dtIgnore"][t, index]:  # 0: unmatched (pycocotools' sentinel)
                pairs.append((coco_gt.anns[int(gt_id)], coco_dt.anns[dt_id]))
    return pairs


def _per_keypoint_report(
    pairs: list[tuple[dict, dict]],
    sigmas: np.ndarray,
    names: tuple[str, ...],
    flip_pairs: list[tuple[int, int]],
) -> tuple[list[dict[str, Any]], int | None]:
    k = sigmas.size
    errors: list[list[float]] = [[] for _ in range(k)]
    terms: list[list[float]] = [[] for _ in range(k)]
    swaps = [0] * len(flip_pairs)
    for gt, dt in pairs:
        g = np.asarray(gt["keypoints"], dtype=np.float64).reshape(k, 3)
        d = np.asarray(dt["keypoints"], dtype=np.float64).reshape(k, 3)
        labelled = g[:, 2] > 0
        distance = np.hypot(d[:, 0] - g[:, 0], d[:, 1] - g[:, 1])
        # The per-joint term of COCOeval.computeOks, with the ground truth's area.
        term = np.exp(-(distance**2) / (2 * sigmas) ** 2 / (gt["area"] + np.spacing(1)) / 2)
        for j in np.flatnonzero(labelled):
            errors[j].append(float(distance[j]))
            terms[j].append(float(term[j]))
        for p, (a, b) in enumerate(flip_pairs):
            if labelled[a] and labelled[b]:
                a_to_b = math.dist(d[a, :2], g[b, :2])
                b_to_a = math.dist(d[b, :2], g[a, :2])
                swaps[p] += int(a_to_b < distance[a] and b_to_a < distance[b])
    partner: dict[int, tuple[int, int]] = {}
    for p, (a, b) in enumerate(flip_pairs):
        partner[a], partner[b] = (b, p), (a, p)
    rows = []
    for j in range(k):
        count = len(errors[j])
        rows.append(
            {
                "name": names[j],
                "count": count,
                "mean_error_px": float(np.mean(errors[j])) if count else None,
                "mean_oks": float(np.mean(terms[j])) if count else None,
                "flip_partner": names[partner[j][0]] if j in partner else None,
                "swaps": swaps[partner[j][1]] if j in partner else None,
            }
        )
    return rows, (sum(swaps) if flip_pairs else None)


# --------------------------------------------------------------------------- input checks


def _load_ground_truth(ground_truth: str | Path | Mapping[str, Any] | COCO) -> COCO:
    """A COCO object of our own (a deep copy: COCOeval writes ``ignore`` flags into annotations)."""
    if isinstance(ground_truth, COCO):
        dataset = copy.deepcopy(ground_truth.dataset)
    elif isinstance(ground_truth, Mapping):
        dataset = copy.deepcopy(dict(ground_truth))
    elif isinstance(ground_truth, str | Path):
        path = Path(ground_truth)
        if not path.is_file():
            raise FileNotFoundError(f"annotation file {path} does not exist, expected a COCO keypoints JSON")
        try:
            dataset = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"annotation file {path} is not valid JSON ({error})") from None
    else:
        raise ValueError(
            "ground_truth must be a path, a COCO dict or a pycocotools COCO, got "
            f"{type(ground_truth).__name__}"
        )
    if not isinstance(dataset, dict) or any(
        not isinstance(dataset.get(key), list) for key in ("images", "annotations", "categories")
    ):
        found = sorted(dataset) if isinstance(dataset, dict) else type(dataset).__name__
        raise ValueError(
            f"ground truth needs the lists 'images', 'annotations' and 'categories' (COCO format), found "
            f"{found}"
        )
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _keypoint_category(coco_gt: COCO, category_id: Any) -> dict[str, Any]:
    categories = coco_gt.dataset["categories"]
    with_keypoints = [c for c in categories if c.get("keypoints")]
    if category_id is not None:
        chosen = [c for c in categories if c.get("id") == category_id]
        if not chosen:
            raise ValueError(
                f"category_id {category_id!r} is not in the ground truth (its categories: "
                f"{[c.get('id') for c in categories]}); pick one of those"
            )
        if not chosen[0].get("keypoints"):
            raise ValueError(
                f"category {category_id!r} has no 'keypoints' names in the ground truth, so it is not a "
                f"keypoint category; keypoint categories: {[c['id'] for c in with_keypoints]}"
            )
        return chosen[0]
    if len(with_keypoints) == 1:
        return with_keypoints[0]
    if not with_keypoints:
        raise ValueError(
            "the ground truth has no keypoint category (no category lists 'keypoints' names); add the "
            "joint names to categories[].keypoints"
        )
    raise ValueError(
        f"the ground truth has {len(with_keypoints)} keypoint categories "
        f"{[c['id'] for c in with_keypoints]}; pass category_id= to pick one"
    )


def _resolve_sigmas(sigmas: Any, category: Mapping[str, Any]) -> np.ndarray:
    k = len(category["keypoints"])
    if sigmas is None:
        if k != 17:
            raise ValueError(
                f"category {category['id']!r} has {k} keypoints but no sigmas were given; pycocotools' "
                "default sigmas are for the 17 COCO keypoints: pass sigmas= with one OKS sigma per keypoint"
            )
        return Params(iouType="keypoints").kpt_oks_sigmas.astype(np.float64)
    sig = _as_sigmas(sigmas)
    if sig.size != k:
        raise ValueError(
            f"sigmas has {sig.size} entries but category {category['id']!r} has {k} keypoints; give one OKS "
            "sigma per keypoint"
        )
    return sig


def _as_sigmas(sigmas: Any) -> np.ndarray:
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.ndim != 1 or sig.size == 0 or not (np.isfinite(sig).all() and (sig > 0).all()):
        raise ValueError(
            f"sigmas must be a non-empty list of positive numbers (one per keypoint), got {sigmas!r}"
        )
    return sig


def _check_ground_truth(coco_gt: COCO, category: Mapping[str, Any]) -> None:
    """Say up front what would make COCOeval crash or silently score 0."""
    k = len(category["keypoints"])
    anns = [a for a in coco_gt.dataset["annotations"] if a.get("category_id") == category["id"]]
    for key in ("image_id", "keypoints", "num_keypoints", "area", "bbox", "iscrowd"):
        lacking = [a.get("id") for a in anns if key not in a]
        if lacking:
            raise ValueError(
                f"{len(lacking)} ground-truth annotations of category {category['id']!r} have no {key!r} "
                f"(ids {lacking[:5]}); COCO keypoint annotations need image_id, keypoints, num_keypoints, "
                "area, bbox and iscrowd"
            )
    wrong = [(a.get("id"), len(a["keypoints"])) for a in anns if len(a["keypoints"]) != 3 * k]
    if wrong:
        raise ValueError(
            f"ground-truth annotations (id, keypoint values) {wrong[:5]} do not hold 3 × {k} values for "
            f"category {category['id']!r} with {k} keypoints names"
        )
    no_area = [a.get("id") for a in anns if a["num_keypoints"] > 0 and not a["area"] > 0]
    if no_area:
        raise ValueError(
            f"{len(no_area)} labelled ground-truth annotations have area ≤ 0 (ids {no_area[:5]}); OKS "
            "divides by the area, so they could never match (AP 0): write the segment or box area"
        )


def _clean_results(results: Any, coco_gt: COCO, category: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Checked copies of the results of the evaluated category, with only the four COCO result keys."""
    if not isinstance(results, Sequence) or isinstance(results, str | bytes):
        raise ValueError(
            f"results must be a list of {{image_id, category_id, keypoints, score}} dicts, got "
            f"{type(results).__name__}"
        )
    k = len(category["keypoints"])
    image_ids = set(coco_gt.getImgIds())
    category_ids = {c["id"] for c in coco_gt.dataset["categories"]}
    unknown_images: dict = {}  # ordered sets: ids in order of first appearance
    unknown_categories: dict = {}
    cleaned = []
    for index, entry in enumerate(results):
        where = f"result {index}"
        _require_keys(entry, _RESULT_KEYS, where, "a COCO keypoint result")
        image_id, cat_id = _plain(entry["image_id"]), _plain(entry["category_id"])
        if image_id not in image_ids:
            unknown_images[image_id] = None
        if cat_id not in category_ids:
            unknown_categories[cat_id] = None
        if cat_id != category["id"]:
            continue
        keypoints = _keypoint_array(entry["keypoints"], k, where)
        score = _finite_number(entry["score"], f"{where}: score")
        cleaned.append(
            {
                "image_id": image_id,
                "category_id": cat_id,
                "keypoints": keypoints.reshape(-1).tolist(),
                "score": score,
            }
        )
    if unknown_images:
        shown = list(unknown_images)[:10]
        raise ValueError(
            f"{len(unknown_images)} result image ids are not in the ground truth: {shown}; image_id must be "
            "the ground truth's images[].id (not an annotation id or a file name)"
        )
    if unknown_categories:
        raise ValueError(
            f"result category ids {list(unknown_categories)} are not in the ground truth (its "
            f"categories: {sorted(category_ids, key=repr)}); write the ground truth's category id"
        )
    return cleaned


def _keypoint_names(names: Sequence[str] | None, category: Mapping[str, Any]) -> tuple[str, ...]:
    k = len(category["keypoints"])
    if names is None:
        return tuple(str(n) for n in category["keypoints"])
    names = tuple(str(n) for n in names)
    if len(names) != k:
        raise ValueError(
            f"keypoint_names has {len(names)} names but category {category['id']!r} has {k} keypoints"
        )
    return names


def _flip_pairs(flip_pairs: Sequence[Sequence[int]], k: int) -> list[tuple[int, int]]:
    pairs = []
    for pair in flip_pairs:
        if (
            not isinstance(pair, Sequence | np.ndarray)
            or len(pair) != 2
            or not all(isinstance(i, int | np.integer) and 0 <= i < k for i in pair)
        ):
            raise ValueError(
                f"flip_pairs must be 0-based index pairs (a, b) with 0 ≤ index < {k}, got {pair!r}"
            )
        pairs.append((int(pair[0]), int(pair[1])))
    flat = [i for pair in pairs for i in pair]
    if len(set(flat)) != len(flat):
        raise ValueError(f"each keypoint may appear in one flip pair at most, got {list(flip_pairs)!r}")
    return pairs


def _require_keys(entry: Any, keys: Sequence[str], where: str, what: str) -> None:
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"{where} is a {type(entry).__name__}, expected {what} (a dict with keys {list(keys)})"
        )
    missing = [key for key in keys if key not in entry]
    if missing:
        raise ValueError(
            f"{where} has no {missing} (keys found: {sorted(entry)}); {what} needs the keys {list(keys)}"
        )


def _keypoint_array(values: Any, k: int, where: str) -> np.ndarray:
    """[K, 3] float64 from a flat [x, y, s] × K list or a [K, 3] array."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: keypoints must be numbers, got {values!r:.80}") from None
    if array.size != 3 * k or array.ndim not in (1, 2) or (array.ndim == 2 and array.shape != (k, 3)):
        raise ValueError(
            f"{where}: keypoints has shape {array.shape} ({array.size} values), expected 3 × K = {3 * k} "
            f"values (flat [x, y, score] × {k} or [{k}, 3])"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: keypoints contain NaN or infinity")
    return array.reshape(k, 3)


def _finite_number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{where} must be finite, got {number}")
    return number


def _plain(value: Any) -> Any:
    """numpy scalars → Python scalars (JSON-serialisable, hashable like the ground truth's ids)."""
    return value.item() if isinstance(value, np.generic) else value


def _sorted_keys(groups: Mapping[tuple[Any, Any], Any]) -> list[tuple[Any, Any]]:
    try:
        return sorted(groups)
    except TypeError:  # ids of mixed types do not sort: keep first-appearance order
        return list(groups)
