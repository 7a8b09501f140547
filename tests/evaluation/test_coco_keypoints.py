"""COCO keypoint evaluation: expected values from the OKS formula written out, from plain pycocotools, and
from the real coco_mini ground truth and detector boxes."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from psa_zoo.evaluation import (
    STAT_NAMES,
    evaluate_keypoints,
    evaluate_results_file,
    format_per_keypoint,
    format_stats,
    object_keypoint_similarity,
    oks_nms,
    postprocess_predictions,
    rescore,
)
from psa_zoo.labels import COCO_KEYPOINT_SET

# COCO sigmas as published (reference §1.7), written out rather than read from our code.
COCO_SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062]
COCO_SIGMAS += [0.107, 0.107, 0.087, 0.087, 0.089, 0.089]
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)

# A hand-made ground truth: one image, category 7 with three custom keypoints, one instance of area A.
AREA = 10000.0
SIGMAS = np.array([0.05, 0.1, 0.1])
GT_POINTS = np.array([[100.0, 60.0], [95.0, 120.0], [105.0, 120.0]])  # head, left_hand, right_hand


def tiny_ground_truth() -> dict:
    keypoints = np.concatenate([GT_POINTS, np.full((3, 1), 2.0)], axis=1).reshape(-1).tolist()
    return {
        "images": [{"id": 3, "width": 200, "height": 200, "file_name": "robot.jpg"}],
        "categories": [{"id": 7, "name": "robot", "keypoints": ["head", "left_hand", "right_hand"]}],
        "annotations": [
            {
                "id": 11,
                "image_id": 3,
                "category_id": 7,
                "keypoints": keypoints,
                "num_keypoints": 3,
                "area": AREA,
                "bbox": [50.0, 40.0, 100.0, 100.0],
                "iscrowd": 0,
            }
        ],
    }


def tiny_result(points: np.ndarray, score: float = 0.9) -> dict:
    keypoints = np.concatenate([points, np.ones((3, 1))], axis=1).reshape(-1).tolist()
    return {"image_id": 3, "category_id": 7, "keypoints": keypoints, "score": score}


def hand_oks(shifts: np.ndarray) -> float:
    """COCO OKS written out: mean over joints of exp(−d² / (2·A·(2σ)²))."""
    d2 = (np.asarray(shifts, dtype=np.float64) ** 2).sum(axis=1)
    return float(np.mean(np.exp(-d2 / (2 * AREA * (2 * SIGMAS) ** 2))))


def expected_ap_single(oks: float) -> float:
    """One GT, one prediction: matched (precision 1 at recall 1) at every threshold ≤ OKS, else AP 0."""
    return float(np.mean(oks >= OKS_THRESHOLDS))


# --------------------------------------------------------------------------- rescoring and OKS-NMS


def test_rescore_is_box_score_times_mean_of_scores_strictly_above_threshold():
    keypoint_scores = [[0.9, 0.1, 0.5], [0.2, 0.1, 0.0], [0.3, 0.3, 0.3]]
    # row 0: (0.9 + 0.5) / 2 = 0.7 → 0.8 · 0.7; row 1: 0.2 is not strictly above 0.2 → 0; row 2: 1.0 · 0.3
    expected = [0.8 * 0.7, 0.0, 0.3]
    np.testing.assert_allclose(rescore(keypoint_scores, [0.8, 0.9, 1.0]), expected, rtol=1e-12)
    np.testing.assert_allclose(
        rescore(keypoint_scores, [0.8, 0.9, 1.0], threshold=0.0), [0.8 * 1.5 / 3, 0.9 * 0.3 / 2, 0.3]
    )


def test_oks_of_a_two_joint_example_matches_hand_computation():
    reference = [[0.0, 0.0], [10.0, 0.0]]
    candidate = [[[3.0, 4.0], [10.0, 0.0]]]
    # joint 0: d² = 25, e = 25 / (2·0.1)² / 100 / 2 = 3.125; joint 1: d = 0 → exp(0) = 1
    expected = (math.exp(-3.125) + 1.0) / 2
    assert object_keypoint_similarity(reference, candidate, 100.0, [0.1, 0.2])[0] == pytest.approx(
        expected, abs=1e-12
    )


def test_oks_nms_uses_the_higher_scoring_instance_as_reference():
    keypoints = np.array([[[0.0, 0.0, 1.0], [10.0, 0.0, 1.0]], [[3.0, 4.0, 1.0], [10.0, 0.0, 1.0]]])
    sigmas = [0.1, 0.2]
    oks_small = (math.exp(-3.125) + 1) / 2  # reference area 100: 0.522
    oks_large = (math.exp(-25 / 0.04 / 400 / 2) + 1) / 2  # reference area 400: 0.729
    # threshold just above / below the hand-computed OKS: both kept / the lower one dropped
    assert oks_nms(keypoints, [0.9, 0.8], [100.0, 400.0], sigmas, threshold=oks_small + 1e-6) == [0, 1]
    assert oks_nms(keypoints, [0.9, 0.8], [100.0, 400.0], sigmas, threshold=oks_small - 1e-6) == [0]
    # between the two values, which instance is the reference decides: its area is the one used
    assert oks_nms(keypoints, [0.9, 0.8], [100.0, 400.0], sigmas, threshold=0.6) == [0, 1]
    assert oks_nms(keypoints, [0.8, 0.9], [100.0, 400.0], sigmas, threshold=0.6) == [1]
    assert oks_small < 0.6 < oks_large


def test_oks_nms_on_duplicates_far_instances_and_ties():
    person = np.array([[50.0, 50.0, 0.9], [60.0, 80.0, 0.8], [40.0, 80.0, 0.7]])
    near = person + np.array([0.5, -0.5, 0.0])
    far = person + np.array([300.0, 0.0, 0.0])
    sigmas, areas = [0.05, 0.08, 0.08], [2000.0, 2000.0]
    # half a pixel apart on a 2000 px² person: OKS ≈ 0.99 > 0.9 → the lower score is dropped
    assert oks_nms(np.stack([person, near]), [0.7, 0.8], areas, sigmas) == [1]
    assert oks_nms(np.stack([person, far]), [0.7, 0.8], areas, sigmas) == [1, 0]
    # equal scores: the stable sort keeps input order, so the first one is kept
    assert oks_nms(np.stack([person, near]), [0.5, 0.5], areas, sigmas) == [0]
    assert oks_nms(np.stack([near, person]), [0.5, 0.5], areas, sigmas) == [0]
    assert oks_nms(np.zeros((0, 3, 3)), [], [], sigmas) == []


def test_postprocess_pads_bbox_area_rescores_and_orders():
    base = {"category_id": 1, "box_score": 1.0, "bbox": [0.0, 0.0, 10.0, 10.0]}
    predictions = [
        {**base, "image_id": np.int64(5), "keypoints": [[0.0, 0.0, 0.9]]},
        {**base, "image_id": 5, "keypoints": [3.0, 4.0, 0.5]},
        {**base, "image_id": 2, "keypoints": [7.0, 7.0, 0.1], "box_score": 0.5},
    ]
    snapshot = copy.deepcopy(predictions)
    # padded area 10·10·1.25² = 156.25: e = 25 / 0.04 / 156.25 / 2 = 2 → OKS exp(−2) = 0.135 > 0.1
    # (the unpadded area 100 would give exp(−3.125) = 0.044 < 0.1 and keep both)
    results = postprocess_predictions(predictions, [0.1], nms_threshold=0.1)
    assert results == [
        {"image_id": 2, "category_id": 1, "keypoints": [7.0, 7.0, 0.1], "score": 0.0},
        {"image_id": 5, "category_id": 1, "keypoints": [0.0, 0.0, 0.9], "score": 0.9},
    ]
    assert type(results[1]["image_id"]) is int
    json.dumps(results)
    assert postprocess_predictions(predictions, [0.1], nms_threshold=0.14) == [
        results[0],
        results[1],
        {"image_id": 5, "category_id": 1, "keypoints": [3.0, 4.0, 0.5], "score": 0.5},
    ]
    assert predictions == snapshot


def test_postprocess_errors():
    entry = {"image_id": 1, "category_id": 1, "keypoints": [1.0, 2.0, 0.5], "box_score": 0.9}
    with pytest.raises(ValueError, match=r"prediction 0 has neither 'area' nor 'bbox'"):
        postprocess_predictions([entry], [0.1])
    with pytest.raises(ValueError, match=r"prediction 0 has no \['box_score'\]"):
        postprocess_predictions([{"image_id": 1, "category_id": 1, "keypoints": [1, 2, 3], "area": 4}], [0.1])
    with pytest.raises(ValueError, match=r"shape \(3,\) \(3 values\), expected 3 × K = 6"):
        postprocess_predictions([{**entry, "area": 100.0}], [0.1, 0.1])


# --------------------------------------------------------------------------- hand-made ground truth


def test_perfect_prediction_on_custom_category():
    result = evaluate_keypoints(tiny_ground_truth(), [tiny_result(GT_POINTS)], SIGMAS)
    # area 10000 > 96² = 9216: the only instance is "large", so the medium range has no ground truth (−1)
    expected = {name: 1.0 for name in STAT_NAMES} | {"APm": -1.0, "ARm": -1.0}
    assert result.stats == pytest.approx(expected, abs=1e-12)  # COCOeval: tp / (tp + fp + eps)
    assert result.category_id == 7 and result.num_ground_truth == 1 and result.num_matched == 1
    assert [row["name"] for row in result.per_keypoint] == ["head", "left_hand", "right_hand"]
    assert all(row["mean_error_px"] == 0.0 and row["mean_oks"] == 1.0 for row in result.per_keypoint)
    assert result.summary.count("Average Precision") == 5 and "maxDets= 20" in result.summary


def _shift_at_oks(target: float) -> float:
    """The x-shift d (all joints) whose hand OKS equals ``target``, by bisection (OKS falls with d)."""
    low, high = 0.0, 100.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if hand_oks([[mid, 0.0]] * 3) > target else (low, mid)
    return low


@pytest.mark.parametrize("threshold, stat", [(0.75, "AP75"), (0.5, "AP50")])
def test_shift_flips_ap_around_the_oks_threshold(threshold, stat, capsys):
    d_star = _shift_at_oks(threshold)
    for d, matched in ((d_star * 0.99, True), (d_star * 1.01, False)):
        oks = hand_oks([[d, 0.0]] * 3)
        assert (oks >= threshold) == matched
        result = evaluate_keypoints(
            tiny_ground_truth(), [tiny_result(GT_POINTS + np.array([d, 0.0]))], SIGMAS
        )
        assert result.stats[stat] == pytest.approx(1.0 if matched else 0.0, abs=1e-12)
        assert result.stats["AP"] == pytest.approx(expected_ap_single(oks), abs=1e-12)
        assert result.stats["AR"] == pytest.approx(expected_ap_single(oks), abs=1e-12)
        assert result.num_matched == int(oks >= 0.5)
    assert capsys.readouterr().out == ""  # COCOeval's printing is captured


def test_per_keypoint_errors_equal_the_shifts():
    shifts = np.array([[3.0, 4.0], [0.0, 2.0], [-1.0, 0.0]])
    result = evaluate_keypoints(tiny_ground_truth(), [tiny_result(GT_POINTS + shifts)], SIGMAS)
    rows = result.per_keypoint
    assert [row["count"] for row in rows] == [1, 1, 1]
    assert [row["mean_error_px"] for row in rows] == pytest.approx([5.0, 2.0, 1.0], abs=1e-12)
    terms = [
        math.exp(-(d**2) / (2 * AREA * (2 * s) ** 2)) for d, s in zip([5.0, 2.0, 1.0], SIGMAS, strict=True)
    ]
    assert [row["mean_oks"] for row in rows] == pytest.approx(terms, abs=1e-12)
    assert result.num_swaps is None and all(row["swaps"] is None for row in rows)
    assert result.stats["AP"] == pytest.approx(expected_ap_single(hand_oks(shifts)), abs=1e-12)


def test_left_right_swap_counted_once():
    swapped = GT_POINTS[[0, 2, 1]]
    # hands 10 px apart: each swapped hand is 10 px off, OKS (1 + 2·exp(−100/800)) / 3 = 0.92 → matched
    result = evaluate_keypoints(tiny_ground_truth(), [tiny_result(swapped)], SIGMAS, flip_pairs=[(1, 2)])
    rows = result.per_keypoint
    assert result.num_matched == 1 and result.num_swaps == 1
    assert [row["swaps"] for row in rows] == [None, 1, 1]
    assert [row["flip_partner"] for row in rows] == [None, "right_hand", "left_hand"]
    assert [row["mean_error_px"] for row in rows] == pytest.approx([0.0, 10.0, 10.0])
    # a shift of both hands by 3 px, and one hand on top of the other, are not swaps (both must cross)
    both_shifted = GT_POINTS + np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    one_crossed = GT_POINTS[[0, 2, 2]]
    for points in (both_shifted, one_crossed):
        result = evaluate_keypoints(tiny_ground_truth(), [tiny_result(points)], SIGMAS, flip_pairs=[(1, 2)])
        assert result.num_matched == 1 and result.num_swaps == 0


def test_empty_results_follow_cocoeval_convention():
    result = evaluate_keypoints(tiny_ground_truth(), [], SIGMAS)
    # COCOeval with no detections: recall 0 and precision 0 where there is ground truth, −1 where none
    assert result.stats == {name: 0.0 for name in STAT_NAMES} | {"APm": -1.0, "ARm": -1.0}
    assert result.num_results == 0 and result.num_matched == 0
    assert all(row["count"] == 0 and row["mean_error_px"] is None for row in result.per_keypoint)
    json.dumps(result.to_dict())


def test_inputs_are_not_mutated_and_to_dict_is_json():
    ground_truth, results = tiny_ground_truth(), [tiny_result(GT_POINTS)]
    snapshot = copy.deepcopy((ground_truth, results))
    coco = COCO()
    coco.dataset = tiny_ground_truth()
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    evaluate_keypoints(ground_truth, results, SIGMAS)
    evaluate_keypoints(coco, results, SIGMAS)
    assert (ground_truth, results) == snapshot
    assert "ignore" not in coco.anns[11] and "id" not in results[0]
    data = json.loads(json.dumps(evaluate_keypoints(coco, results, SIGMAS, per_keypoint=False).to_dict()))
    expected = [1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0]
    assert [data[name] for name in STAT_NAMES] == pytest.approx(expected, abs=1e-12)
    assert data["per_keypoint"] is None


def test_category_selection_among_several_keypoint_categories():
    ground_truth = tiny_ground_truth()
    ground_truth["categories"].append({"id": 8, "name": "other", "keypoints": ["a", "b"]})
    with pytest.raises(ValueError, match=r"2 keypoint categories \[7, 8\]; pass category_id="):
        evaluate_keypoints(ground_truth, [tiny_result(GT_POINTS)], SIGMAS)
    with pytest.raises(ValueError, match=r"category_id 9 is not in the ground truth .*\[7, 8\]"):
        evaluate_keypoints(ground_truth, [tiny_result(GT_POINTS)], SIGMAS, category_id=9)
    other = {"image_id": 3, "category_id": 8, "keypoints": [0.0] * 6, "score": 1.0}  # another category's K
    result = evaluate_keypoints(ground_truth, [tiny_result(GT_POINTS), other], SIGMAS, category_id=7)
    assert result.stats["AP"] == pytest.approx(1.0, abs=1e-12) and result.num_results == 1


def test_errors_on_sigmas_ids_and_ground_truth():
    gt, good = tiny_ground_truth(), [tiny_result(GT_POINTS)]
    with pytest.raises(ValueError, match=r"sigmas has 2 entries but category 7 has 3 keypoints"):
        evaluate_keypoints(gt, good, [0.1, 0.1])
    with pytest.raises(
        ValueError, match=r"category 7 has 3 keypoints but no sigmas were given.*pass sigmas="
    ):
        evaluate_keypoints(gt, good)
    with pytest.raises(ValueError, match=r"2 result image ids are not in the ground truth: \[999, '3'\]"):
        evaluate_keypoints(gt, [*good, {**good[0], "image_id": 999}, {**good[0], "image_id": "3"}], SIGMAS)
    with pytest.raises(ValueError, match=r"result category ids \[1\] are not in the ground truth"):
        evaluate_keypoints(gt, [{**good[0], "category_id": 1}], SIGMAS)
    with pytest.raises(ValueError, match=r"result 0 has no \['score'\]"):
        evaluate_keypoints(gt, [{k: v for k, v in good[0].items() if k != "score"}], SIGMAS)
    no_area = tiny_ground_truth()
    del no_area["annotations"][0]["area"]
    with pytest.raises(
        ValueError, match=r"1 ground-truth annotations of category 7 have no 'area' \(ids \[11\]\)"
    ):
        evaluate_keypoints(no_area, good, SIGMAS)
    zero_area = tiny_ground_truth()
    zero_area["annotations"][0]["area"] = 0
    with pytest.raises(ValueError, match=r"area ≤ 0 \(ids \[11\]\).*could never match"):
        evaluate_keypoints(zero_area, good, SIGMAS)


def test_results_file_errors(tmp_path):
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps(tiny_ground_truth()))
    final = tiny_result(GT_POINTS)
    raw = {**final, "box_score": 0.9, "bbox": [50, 40, 100, 100]}
    cases = [
        ({"annotations": []}, r"holds a JSON dict, expected a list"),
        (
            [{"image_id": 3, "keypoints": final["keypoints"], "score": 1.0}],
            r"result 0 has no \['category_id'\]",
        ),
        (
            [{**final, "keypoints": final["keypoints"][:6]}],
            r"result 0: keypoints has shape \(6,\) \(6 values\), expected 3 × K = 9",
        ),
        ([final, raw], r"mixes 1 raw predictions \(with 'box_score'\) and 1 final results"),
    ]
    for content, message in cases:
        path = tmp_path / "results.json"
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            evaluate_results_file(ann, path, SIGMAS)
    path.write_text(json.dumps([raw]))
    assert evaluate_results_file(ann, path, SIGMAS).stats["AP"] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_results_file(tmp_path / "missing.json", path, SIGMAS)


def test_format_stats_table():
    stats = {name: 0.5 for name in STAT_NAMES} | {"APm": -1.0}
    header, values = format_stats(stats).splitlines()
    assert header.split() == list(STAT_NAMES)
    assert values.split() == ["0.500"] * 3 + ["n/a"] + ["0.500"] * 6
    assert header.index("APm") == values.index("n/a")  # right-aligned columns of equal width
    with pytest.raises(ValueError, match=r"missing \['ARl'\]"):
        format_stats({name: 0.0 for name in STAT_NAMES[:-1]})
    result = evaluate_keypoints(tiny_ground_truth(), [tiny_result(GT_POINTS)], SIGMAS, flip_pairs=[(1, 2)])
    lines = format_per_keypoint(result.per_keypoint).splitlines()
    assert lines[0].split() == ["joint", "count", "error_px", "oks", "swaps"]
    assert lines[1].split() == ["head", "1", "0.00", "1.000", "-"]


# --------------------------------------------------------------------------- real coco_mini data


def _coco_mini(shared_dir):
    folder = shared_dir / "data" / "coco_mini"
    ground_truth = json.loads((folder / "test_coco.json").read_text())
    detections = json.loads((folder / "test_coco_det_AP_H_56.json").read_text())
    return folder / "test_coco.json", ground_truth, detections


def _labelled(ground_truth):
    # Instances with num_keypoints == 0 are "ignore" for COCOeval; they have nothing to predict (a
    # prediction with their all-zero keypoints would be an unmatched false positive).
    return [a for a in ground_truth["annotations"] if a["num_keypoints"] > 0]


def test_ground_truth_as_predictions_scores_one(shared_dir):
    ann_file, ground_truth, _ = _coco_mini(shared_dir)
    labelled = _labelled(ground_truth)
    # The data has instances in both ranges (medium 32²–96², large > 96²), so APm/APl are 1, not −1.
    assert any(32**2 <= a["area"] <= 96**2 for a in labelled) and any(a["area"] > 96**2 for a in labelled)
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in labelled
    ]
    result = evaluate_keypoints(ann_file, results, flip_pairs=COCO_KEYPOINT_SET.flip_pairs)
    assert result.stats == pytest.approx({name: 1.0 for name in STAT_NAMES}, abs=1e-12)
    assert (
        result.num_ground_truth == len(labelled) == 12 and result.num_matched == 12 and result.num_swaps == 0
    )
    visible = (np.array([a["keypoints"] for a in labelled]).reshape(-1, 17, 3)[:, :, 2] > 0).sum(axis=0)
    assert [row["count"] for row in result.per_keypoint] == visible.tolist()
    assert [row["name"] for row in result.per_keypoint] == ground_truth["categories"][0]["keypoints"]
    assert all(row["mean_error_px"] == 0.0 for row in result.per_keypoint)


def _raw_predictions_on_detector_boxes(ground_truth, detections):
    """Each labelled GT's keypoints (scores 1) on its best-IoU detector box; the other boxes get keypoints
    5000 px away with scores 0.1."""
    predictions, used = [], set()
    for ann in _labelled(ground_truth):
        candidates = [i for i, d in enumerate(detections) if d["image_id"] == ann["image_id"]]
        ious = mask_utils.iou([detections[i]["bbox"] for i in candidates], [ann["bbox"]], [0])[:, 0]
        best = candidates[int(np.argmax(ious))]
        used.add(best)
        keypoints = np.array(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        keypoints[:, 2] = 1.0
        box = detections[best]
        predictions.append(
            {
                "image_id": ann["image_id"],
                "category_id": 1,
                "keypoints": keypoints.tolist(),
                "box_score": box["score"],
                "bbox": box["bbox"],
            }
        )
    for index, box in enumerate(detections):
        if index not in used:
            x, y, w, h = box["bbox"]
            keypoints = np.tile([x + w / 2 + 5000, y + h / 2 + 5000, 0.1], (17, 1))
            predictions.append(
                {
                    "image_id": box["image_id"],
                    "category_id": 1,
                    "keypoints": keypoints.tolist(),
                    "box_score": box["score"],
                    "bbox": box["bbox"],
                }
            )
    return predictions


def test_rescoring_and_oks_nms_on_real_detector_boxes(shared_dir, tmp_path):
    ann_file, ground_truth, detections = _coco_mini(shared_dir)
    predictions = _raw_predictions_on_detector_boxes(ground_truth, detections)
    assert len(predictions) == len(detections)  # so the 12 instances took 12 distinct boxes
    results = postprocess_predictions(predictions, COCO_SIGMAS)
    # Rescoring: the GT-keypoint ones keep their box score (all keypoint scores 1 > 0.2); the far ones
    # score 0 (every keypoint score 0.1 ≤ 0.2). So every true positive outranks every false positive:
    # precision is 1 up to recall 1 and the false positives after it do not lower AP. Distinct people are
    # far apart in OKS, so NMS keeps all 12; the far ones are never within OKS 0.9 of a true one.
    positives = [r for r in results if r["score"] > 0]
    assert len(positives) == 12 and all(r["score"] == 0.0 for r in results if r not in positives)
    assert sorted(r["score"] for r in positives) == sorted(p["box_score"] for p in predictions[:12])
    result = evaluate_keypoints(ann_file, results)
    assert result.stats == pytest.approx({name: 1.0 for name in STAT_NAMES}, abs=1e-12)
    # Without rescoring (box score as the final score) many background boxes outrank true people.
    plain = [
        {
            "image_id": p["image_id"],
            "category_id": 1,
            "keypoints": np.ravel(p["keypoints"]).tolist(),
            "score": p["box_score"],
        }
        for p in predictions
    ]
    assert evaluate_keypoints(ann_file, plain).stats["AP"] < 0.9
    # The same raw predictions through a results file take the postprocess path.
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(predictions))
    assert evaluate_results_file(ann_file, path).stats == pytest.approx(
        dict.fromkeys(STAT_NAMES, 1.0), abs=1e-12
    )


def test_stats_agree_with_plain_pycocotools_on_jittered_predictions(shared_dir):
    ann_file, ground_truth, _ = _coco_mini(shared_dir)
    rng = np.random.default_rng(0)
    results = []
    for ann in _labelled(ground_truth):
        keypoints = np.array(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        keypoints[:, :2] += rng.normal(0.0, 3.0, (17, 2))
        keypoints[:, 2] = 1.0
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": 1,
                "keypoints": keypoints.ravel().tolist(),
                "score": float(rng.uniform(0.5, 1.0)),
            }
        )
    with contextlib.redirect_stdout(io.StringIO()):  # the plain recipe (HRNet lib/dataset/coco.py)
        coco_gt = COCO(str(ann_file))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "keypoints")
        evaluator.params.useSegm = None
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    result = evaluate_keypoints(ann_file, results, COCO_SIGMAS)
    assert list(result.stats.values()) == pytest.approx(list(evaluator.stats), abs=1e-12)
    assert 0.0 < result.stats["AP"] < 1.0
    # the per-keypoint report's pairs are COCOeval's matches at OKS 0.5: their count is AR50 × #GT
    assert result.num_matched == round(result.stats["AR50"] * result.num_ground_truth)
    assert sum(row["count"] for row in result.per_keypoint) > 0


def test_a_subset_of_images_is_evaluated_on_those_images_only(tmp_path):
    from psa_zoo.data.synthetic import make_pose_dataset

    data = make_pose_dataset(tmp_path / "d", num_train=1, num_val=6, seed=2, image_size=(96, 80))
    gt = json.loads((data / "annotations" / "person_keypoints_val2017.json").read_text())
    chosen = sorted(image["id"] for image in gt["images"])[:2]
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in gt["annotations"] if a["image_id"] in chosen and a["num_keypoints"] > 0]  # fmt: skip
    whole = evaluate_keypoints(gt, perfect)
    subset = evaluate_keypoints(gt, perfect, image_ids=chosen)
    assert subset.stats["AP"] == 1.0 and subset.stats["AR"] == 1.0
    assert whole.stats["AR"] < 1.0  # the other images' people count as missed
    with pytest.raises(ValueError, match=r"image_ids \[999\] are not in the ground truth"):
        evaluate_keypoints(gt, perfect, image_ids=[999])
