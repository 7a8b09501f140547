"""COCO-format keypoint loading: the real COCO mini-set, a dataset of one's own, and each broken variant."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from psa_zoo.data import (
    DatasetError,
    find_coco_split,
    keypoint_set_from_category,
    load_keypoint_annotations,
    load_keypoint_meta,
)
from psa_zoo.data.keypoint_meta import KeypointMetaError, infer_flip_pairs
from psa_zoo.labels import COCO_KEYPOINT_SET, COCO_KEYPOINTS


def hrnet_box(bbox, width, height):
    """HRNet lib/dataset/coco.py sanitising, written out: clip to the image, w − 1, h − 1."""
    x, y, w, h = bbox
    x1, y1 = max(0, x), max(0, y)
    x2, y2 = min(width - 1, x1 + max(0, w - 1)), min(height - 1, y1 + max(0, h - 1))
    return [x1, y1, x2 - x1, y2 - y1]


# --- the real COCO mini-set ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_mini(shared_dir):
    return shared_dir / "data" / "coco_mini"


def test_coco_mini_loads_quietly_with_the_coco_keypoint_set(coco_mini, capsys):
    ann_file = coco_mini / "test_coco.json"
    before = ann_file.read_bytes()
    dataset = load_keypoint_annotations(ann_file, coco_mini)
    assert capsys.readouterr().out == ""  # no pycocotools "loading annotations" chatter
    raw = json.loads(before)
    assert dataset.keypoint_set == COCO_KEYPOINT_SET
    assert dataset.category_id == 1 and len(dataset) == len(raw["images"]) == 4
    assert list(dataset.images) == sorted(im["id"] for im in raw["images"])
    reference = COCO(str(ann_file))
    assert sorted(dataset.coco.getAnnIds()) == sorted(reference.getAnnIds())
    assert sorted(dataset.coco.getImgIds()) == sorted(reference.getImgIds())
    assert ann_file.read_bytes() == before


def test_coco_mini_train_instances_match_the_json(coco_mini):
    raw = json.loads((coco_mini / "test_coco.json").read_text())
    images = {im["id"]: im for im in raw["images"]}
    expected = sorted(
        (a for a in raw["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0),
        key=lambda a: (a["image_id"], a["id"]),
    )
    assert len(expected) == 12  # reference 3.3: 14 person instances, 12 with keypoints
    dataset = load_keypoint_annotations(coco_mini / "test_coco.json", coco_mini)
    instances = dataset.instances("train")
    assert [i.annotation_id for i in instances] == [a["id"] for a in expected]
    for inst, ann in zip(instances, expected, strict=True):
        image = images[ann["image_id"]]
        assert inst.image_id == ann["image_id"] and inst.category_id == 1 and inst.score == 1.0
        assert inst.image_file == coco_mini / image["file_name"] and inst.image_file.is_file()
        assert inst.image_size == (image["width"], image["height"])
        np.testing.assert_allclose(
            inst.box, hrnet_box(ann["bbox"], image["width"], image["height"]), atol=1e-9
        )
        joints = np.array(ann["keypoints"], dtype=np.float32).reshape(17, 3)
        assert inst.keypoints.dtype == np.float32 and inst.keypoints.shape == (17, 2)
        np.testing.assert_array_equal(inst.keypoints, joints[:, :2])
        np.testing.assert_array_equal(inst.visibility, joints[:, 2])
        assert inst.area == ann["area"]
    # HRNet's USE_GT_BBOX evaluation loads GT boxes with the training kernel: the same instances
    assert [i.annotation_id for i in dataset.instances("eval")] == [a["id"] for a in expected]
    with pytest.raises(ValueError, match="split must be one of"):
        dataset.instances("val")


def test_coco_mini_detections(coco_mini):
    dataset = load_keypoint_annotations(coco_mini / "test_coco.json", coco_mini)
    raw = json.loads((coco_mini / "test_coco_det_AP_H_56.json").read_text())
    expected = sorted((d for d in raw if d["category_id"] == 1), key=lambda d: d["image_id"])  # stable
    assert len(raw) == 118
    boxes = dataset.detections(coco_mini / "test_coco_det_AP_H_56.json")
    assert len(boxes) == len(expected)
    assert [b.image_id for b in boxes] == [d["image_id"] for d in expected]
    np.testing.assert_array_equal([b.score for b in boxes], [d["score"] for d in expected])
    np.testing.assert_array_equal(
        np.stack([b.box for b in boxes]), [d["bbox"] for d in expected]
    )  # unclipped
    assert all(b.annotation_id is None and not b.keypoints.any() and not b.visibility.any() for b in boxes)
    assert boxes[0].keypoints.shape == (17, 2)
    confident = dataset.detections(coco_mini / "test_coco_det_AP_H_56.json", score_threshold=0.5)
    assert len(confident) == sum(d["score"] >= 0.5 for d in raw) == 18  # reference 3.3: 18 above 0.5


def test_coco_mini_coco_object_evaluates_gt_as_predictions_to_one(coco_mini, capsys):
    dataset = load_keypoint_annotations(coco_mini / "test_coco.json", coco_mini)
    gt = [a for a in dataset.coco.dataset["annotations"] if a["num_keypoints"] > 0]
    predictions = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in gt
    ]
    evaluator = COCOeval(dataset.coco, dataset.coco.loadRes(predictions), "keypoints")
    evaluator.params.useSegm = None
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    capsys.readouterr()
    np.testing.assert_allclose(evaluator.stats, 1.0)  # reference 1.7: 1.0 on all ten stats


def test_coco_mini_detection_file_of_other_images_is_an_error(coco_mini, tmp_path):
    dataset = load_keypoint_annotations(coco_mini / "test_coco.json", coco_mini)
    det = tmp_path / "det.json"
    det.write_text(json.dumps([{"image_id": 123456, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}]))
    with pytest.raises(DatasetError, match=r"image ids \[123456\] that are not in .*test_coco.json"):
        dataset.detections(det)


# --- standard layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_subdir", ["val2017", "images/val2017"])
def test_find_coco_split_accepts_both_layouts(tmp_path, image_subdir):
    (tmp_path / "annotations").mkdir()
    ann = tmp_path / "annotations" / "person_keypoints_val2017.json"
    ann.write_text("{}")
    (tmp_path / image_subdir).mkdir(parents=True)
    assert find_coco_split(tmp_path, "val") == (ann, tmp_path / image_subdir)


def test_find_coco_split_lists_what_it_looked_for(tmp_path):
    with pytest.raises(DatasetError) as info:
        find_coco_split(tmp_path, "train")
    message = str(info.value)
    for expected in ("person_keypoints_train2017.json", f"{tmp_path}/train2017/", "images/train2017/"):
        assert expected in message
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        find_coco_split(tmp_path, "test")


# --- a dataset of one's own: K = 5, category id 3 -----------------------------------------------------------

NAMES = ["nose", "left_ear", "right_ear", "paw_left", "paw_right"]
SIGMAS = [0.03, 0.04, 0.04, 0.05, 0.05]


def own_data() -> dict:
    def kpts(*triples):
        return [v for t in triples for v in t]

    return {
        "images": [
            {"id": 20, "file_name": "img_b.png", "width": 80, "height": 60},
            {"id": 10, "file_name": "img_a.png", "width": 64, "height": 48},
        ],
        "categories": [
            {"id": 7, "name": "cage"},
            {
                "id": 3,
                "name": "mouse",
                "keypoints": NAMES,
                "skeleton": [[1, 2], [1, 3], [2, 4], [3, 5]],
            },
        ],
        "annotations": [
            {"id": 201, "image_id": 20, "category_id": 3, "iscrowd": 0, "area": 300.0,
             "bbox": [60.0, 30.0, 25.0, 20.0],  # overshoots the 80-wide image by 5 px: clipped
             "keypoints": kpts((70, 40, 2), (65, 35, 1), (0, 0, 0), (0, 0, 0), (75, 45, 2)),
             "num_keypoints": 3},
            {"id": 100, "image_id": 10, "category_id": 3, "iscrowd": 0, "area": 150.5,
             "bbox": [5.5, 4.0, 20.0, 16.0],
             "keypoints": kpts((10, 8, 2), (8, 6, 2), (12, 6, 1), (0, 0, 0), (0, 0, 0)), "num_keypoints": 3},
            {"id": 101, "image_id": 10, "category_id": 3, "iscrowd": 1, "area": 0,
             "bbox": [30.0, 20.0, 10.0, 10.0], "keypoints": [0] * 15, "num_keypoints": 0},
            {"id": 200, "image_id": 20, "category_id": 3, "iscrowd": 0, "area": 40.0,
             "bbox": [2.0, 2.0, 8.0, 5.0], "keypoints": [0] * 15, "num_keypoints": 0},
            {"id": 202, "image_id": 20, "category_id": 7, "iscrowd": 0, "area": 400.0,
             "bbox": [0, 0, 20, 20]},
        ],
    }  # fmt: skip


def write_own(folder: Path, data: dict, meta: dict | None = None) -> Path:
    """The json, keypoint_meta.json and the two images (a PNG of each listed size) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for size, name in (((64, 48), "img_a.png"), ((80, 60), "img_b.png")):
        Image.new("RGB", size, (40, 80, 120)).save(folder / name)
    (folder / "keypoint_meta.json").write_text(json.dumps({"sigmas": SIGMAS} if meta is None else meta))
    ann_file = folder / "mouse_train.json"
    ann_file.write_text(json.dumps(data))
    return ann_file


def test_own_dataset_keypoint_set_from_files(tmp_path):
    ann_file = write_own(tmp_path, own_data())
    dataset = load_keypoint_annotations(ann_file, tmp_path)
    kset = dataset.keypoint_set
    assert dataset.category_id == 3 and len(dataset) == 2 and list(dataset.images) == [10, 20]
    assert kset.keypoint_names == tuple(NAMES) and kset.name == "mouse"
    assert kset.skeleton == ((0, 1), (0, 2), (1, 3), (2, 4))  # 1-based in the file
    assert kset.flip_pairs == ((1, 2), (3, 4))  # left_/right_ and _left/_right inferred
    assert kset.sigmas == tuple(SIGMAS) and kset.joint_weights == (1.0,) * 5
    assert kset.upper_body == () and kset.lower_body == ()


def test_own_dataset_instances_and_detections(tmp_path):
    ann_file = write_own(tmp_path, own_data())
    dataset = load_keypoint_annotations(ann_file, tmp_path)
    instances = dataset.instances()
    # non-crowd with a labelled keypoint, sorted by image id: 100 (image 10), 201 (image 20)
    assert [(i.image_id, i.annotation_id) for i in instances] == [(10, 100), (20, 201)]
    np.testing.assert_allclose(instances[0].box, [5.5, 4.0, 19.0, 15.0])
    np.testing.assert_allclose(instances[1].box, hrnet_box([60.0, 30.0, 25.0, 20.0], 80, 60))
    np.testing.assert_allclose(
        instances[1].box, [60.0, 30.0, 19.0, 19.0]
    )  # x2 = min(79, 84), y2 = min(59, 49)
    assert instances[1].keypoints.shape == (5, 2) and list(instances[1].visibility) == [2, 1, 0, 0, 2]
    assert instances[1].image_file == tmp_path / "img_b.png" and instances[1].image_size == (80, 60)

    det = tmp_path / "det.json"
    entries = [
        {"image_id": 20, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.8},
        {"image_id": 10, "category_id": 7, "bbox": [0, 0, 9, 9], "score": 0.99},  # another category
        {"image_id": 10, "category_id": 3, "bbox": [5, 6, 7, 8], "score": 0.3},
        {"image_id": 20, "category_id": 3, "bbox": [9, 9, 2, 2], "score": 0.6},
    ]
    det.write_text(json.dumps(entries))
    boxes = dataset.detections(det)
    assert [(b.image_id, b.score) for b in boxes] == [(10, 0.3), (20, 0.8), (20, 0.6)]
    assert boxes[1].area == 12.0 and boxes[0].keypoints.shape == (5, 2) and boxes[0].category_id == 3
    assert [b.score for b in dataset.detections(det, score_threshold=0.6)] == [0.8, 0.6]
    det.write_text(json.dumps([entries[1]]))
    with pytest.raises(DatasetError, match=r"category ids \[7\] only, none of this dataset's category 3"):
        dataset.detections(det)
    det.write_text(json.dumps([{"image_id": 10, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    with pytest.raises(DatasetError, match=r"entries at positions \[0\] are not"):
        dataset.detections(det)


def test_own_dataset_coco_object_evaluates_with_its_sigmas(tmp_path, capsys):
    dataset = load_keypoint_annotations(write_own(tmp_path, own_data()), tmp_path)
    gt = dataset.coco.loadAnns(dataset.coco.getAnnIds(catIds=[3], iscrowd=False))
    predictions = [
        {"image_id": a["image_id"], "category_id": 3, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt
        if a["num_keypoints"] > 0
    ]
    evaluator = COCOeval(dataset.coco, dataset.coco.loadRes(predictions), "keypoints")
    evaluator.params.kpt_oks_sigmas = np.array(dataset.keypoint_set.sigmas)
    evaluator.params.catIds = [dataset.category_id]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    capsys.readouterr()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_num_keypoints_is_recomputed_with_one_warning(tmp_path):
    data = own_data()
    data["annotations"][0]["num_keypoints"] = 5  # ann 201 has 3 labelled
    del data["annotations"][1]["num_keypoints"]  # ann 100
    ann_file = write_own(tmp_path, data)
    before = ann_file.read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_keypoint_annotations(ann_file, tmp_path)
    assert len(caught) == 1
    assert "num_keypoints" in str(caught[0].message) and "[201, 100]" in str(caught[0].message)
    assert {a["id"]: a["num_keypoints"] for a in dataset.coco.loadAnns([100, 201])} == {100: 3, 201: 3}
    assert ann_file.read_bytes() == before


def test_category_id_chooses_among_several_keypoint_categories(tmp_path):
    data = own_data()
    data["categories"][0]["keypoints"] = ["a", "b"]
    ann_file = write_own(tmp_path, data)
    with pytest.raises(DatasetError, match=r"several keypoint categories .*\(7, 'cage'\).*category_id="):
        load_keypoint_annotations(ann_file, tmp_path)
    assert load_keypoint_annotations(ann_file, tmp_path, category_id=3).keypoint_set.name == "mouse"
    with pytest.raises(DatasetError, match=r"category_id=42 is not in .*mouse_train.json"):
        load_keypoint_annotations(ann_file, tmp_path, category_id=42)
    data["categories"][0].pop("keypoints")
    write_own(tmp_path, data)
    with pytest.raises(DatasetError, match=r"category 7 \('cage'\) .* has no \"keypoints\" list"):
        load_keypoint_annotations(ann_file, tmp_path, category_id=7)


def _set(path, value):
    """A breaker setting data[path...] = value."""

    def apply(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _delete(path):
    def apply(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return apply


def _append_copy(section, index, **changes):
    def apply(data):
        data[section].append({**copy.deepcopy(data[section][index]), **changes})

    return apply


# Annotation list positions: 0 = id 201, 1 = id 100, 2 = id 101 (crowd), 3 = id 200, 4 = id 202 (cage).
BROKEN = {
    "area missing": (_delete(["annotations", 1, "area"]), ["[100]", '"area"', "AP would be 0"]),
    "area zero": (_set(["annotations", 0, "area"], 0), ["[201]", "missing or zero", "COCOeval"]),
    "image_id unknown": (_set(["annotations", 1, "image_id"], 999), ["[100]", "image_id [999]", "no entry"]),
    "image_id is an annotation id": (
        _set(["annotations", 1, "image_id"], 201),
        ["image_id [201]", "equals an annotation id", "image_id/id mix-up"],
    ),
    "duplicate image id": (_set(["images", 0, "id"], 10), ["image ids [10]", "more than once"]),
    "duplicate annotation id": (
        _set(["annotations", 3, "id"], 100),
        ["annotation ids [100]", "more than once"],
    ),
    "keypoints too short": (
        _set(["annotations", 1, "keypoints"], [1, 1, 2] * 4),
        ["[100]", "length 12", "3·K = 15", "K=5"],
    ),
    "visibility flag 3": (
        _set(["annotations", 1, "keypoints"], [1, 1, 3] * 5),
        ["[100]", "visibility flags other than 0, 1, 2"],
    ),
    "box fully outside": (
        _set(["annotations", 1, "bbox"], [70.0, 4.0, 5.0, 5.0]),
        ["[100]", "outside their image", "64×48", "[x1, y1, x2, y2]"],
    ),
    "box written as x1 y1 x2 y2": (
        _set(["annotations", 0, "bbox"], [60.0, 30.0, 78.0, 58.0]),
        ["[201]", "outside their image", "80×60", "COCO xywh"],
    ),
    "negative box size": (
        _set(["annotations", 1, "bbox"], [5.0, 4.0, -3.0, 6.0]),
        ["[100]", "width, height ≥ 0"],
    ),
    "unknown category": (
        _set(["annotations", 3, "category_id"], 9),
        ["[200]", "category_id 9", "not among the file's categories [3, 7]"],
    ),
    "no keypoint category": (
        _delete(["categories", 1, "keypoints"]),
        ["no keypoint category", "(3, 'mouse')"],
    ),
    "no annotations": (_set(["annotations"], []), ['empty "annotations" list']),
    "no annotations of the keypoint category": (
        _set(["annotations"], [own_data()["annotations"][4]]),
        ["no annotations of keypoint category 3", "category ids [7]"],
    ),
    "skeleton 0-based": (
        _set(["categories", 1, "skeleton"], [[0, 1], [1, 2]]),
        ["skeleton pairs [[0, 1]]", "1-based", "1..5"],
    ),
    "image without size": (_delete(["images", 0, "width"]), ["images [20]", '"width"/"height"']),
    "annotations not a list": (_delete(["annotations"]), ["no list ['annotations']"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_own_dataset_is_one_clear_error_and_the_file_is_unchanged(tmp_path, case):
    breaker, phrases = BROKEN[case]
    data = copy.deepcopy(own_data())
    breaker(data)
    ann_file = write_own(tmp_path, data)
    before = ann_file.read_bytes()
    with pytest.raises(DatasetError) as info:
        load_keypoint_annotations(ann_file, tmp_path)
    message = str(info.value)
    assert str(ann_file) in message
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    assert ann_file.read_bytes() == before


BROKEN_META = {
    "no sigmas": (
        {"name": "mouse"},
        ['K=5 keypoints and no OKS sigmas: add "sigmas": [...] (5 values) to', "0.025–0.107"],
    ),
    "sigmas of the wrong length": (
        {"sigmas": SIGMAS[:4]},
        ['"sigmas" must be a list of 5 numbers', "found 4 values"],
    ),
    "unknown field": ({"sigma": SIGMAS}, ["unknown fields ['sigma']", "'sigmas'"]),
    "unknown flip name": (
        {"sigmas": SIGMAS, "flip_pairs": [["left_ear", "right_eye"]]},
        ["'right_eye'", "not one of the annotation file's keypoints"],
    ),
    "flip index out of range": ({"sigmas": SIGMAS, "flip_pairs": [[1, 5]]}, ["0-based index 0..4"]),
    "keypoint in two flip pairs": (
        {"sigmas": SIGMAS, "flip_pairs": [[1, 2], [2, 3]]},
        ["one flip pair at most"],
    ),
    "not an object": ([0.1, 0.2], ["must hold a JSON object"]),
}


@pytest.mark.parametrize("case", list(BROKEN_META))
def test_broken_keypoint_meta_is_a_clear_error_naming_it(tmp_path, case):
    meta, phrases = BROKEN_META[case]
    ann_file = write_own(tmp_path, own_data(), meta=meta)
    before = (ann_file.read_bytes(), (tmp_path / "keypoint_meta.json").read_bytes())
    with pytest.raises(DatasetError) as info:
        load_keypoint_annotations(ann_file, tmp_path)
    message = str(info.value)
    assert str(tmp_path / "keypoint_meta.json") in message
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    assert (ann_file.read_bytes(), (tmp_path / "keypoint_meta.json").read_bytes()) == before


def test_meta_without_file_and_invalid_json(tmp_path):
    assert load_keypoint_meta(tmp_path) is None
    (tmp_path / "keypoint_meta.json").write_text("{'sigmas': [0.1]}")
    with pytest.raises(KeypointMetaError, match=r"keypoint_meta\.json is not valid JSON"):
        load_keypoint_meta(tmp_path)


def test_missing_images_are_listed(tmp_path):
    ann_file = write_own(tmp_path, own_data())
    (tmp_path / "img_b.png").unlink()
    with pytest.raises(
        DatasetError, match=r"1 of the 2 images listed in .* are missing from .*\[img_b.png\]"
    ):
        load_keypoint_annotations(ann_file, tmp_path)
    assert len(load_keypoint_annotations(ann_file, tmp_path, check_images=False)) == 2
    with pytest.raises(DatasetError, match="None of them is there: is image_dir the right folder"):
        load_keypoint_annotations(ann_file, tmp_path / "..")
    with pytest.raises(DatasetError, match=r"image folder .*nowhere .*does not exist"):
        load_keypoint_annotations(ann_file, tmp_path / "nowhere")


def test_missing_and_invalid_annotation_files(tmp_path):
    with pytest.raises(DatasetError, match=r"annotation file .*none\.json does not exist"):
        load_keypoint_annotations(tmp_path / "none.json", tmp_path)
    (tmp_path / "bad.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"bad\.json is not valid JSON"):
        load_keypoint_annotations(tmp_path / "bad.json", tmp_path)


# --- keypoint_meta on its own ----------------------------------------------------------------------------


def test_flip_pairs_inferred_by_the_documented_patterns():
    names = [
        "left_eye", "right_eye",  # left_X / right_X
        "l_hand", "r_hand",  # l_X / r_X
        "knee_left", "knee_right",  # X_left / X_right
        "Left-Ear", "Right-Ear",  # capitalised marker, "-" separator
        "L hip", "R hip",  # upper-case short marker, space separator
        "tail_l", "tail_r",  # X_l / X_r: not a pattern
        "left_tail",  # partner missing
        "l_foot_left", "r_foot_left",  # two patterns each: ambiguous
        "leftwing", "rightwing",  # no separator
        "nose",
    ]  # fmt: skip
    assert infer_flip_pairs(names) == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def test_coco_names_get_the_coco_defaults_and_meta_overrides():
    category = {"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINTS)}  # no skeleton: COCO's
    assert keypoint_set_from_category(category, None, "/data/ann.json") == COCO_KEYPOINT_SET
    weights = [2.0] * 17
    kset = keypoint_set_from_category(
        category, {"joint_weights": weights, "name": "people"}, "/data/ann.json"
    )
    assert kset.joint_weights == tuple(weights) and kset.name == "people"
    assert kset.sigmas == COCO_KEYPOINT_SET.sigmas and kset.flip_pairs == COCO_KEYPOINT_SET.flip_pairs


def test_meta_fields_by_name_or_index():
    category = {"id": 3, "name": "mouse", "keypoints": NAMES}
    meta = {
        "sigmas": SIGMAS,
        "flip_pairs": [["left_ear", "right_ear"], [3, 4]],
        "upper_body": ["nose", 1, "right_ear"],
        "lower_body": ["paw_left", 4],
    }
    kset = keypoint_set_from_category(category, meta, "/data/ann.json")
    assert kset.flip_pairs == ((1, 2), (3, 4))
    assert kset.upper_body == (0, 1, 2) and kset.lower_body == (3, 4)
    assert keypoint_set_from_category(category, {**meta, "flip_pairs": []}, "/data/ann.json").flip_pairs == ()
    with pytest.raises(
        KeypointMetaError, match=r"/data/keypoint_meta.json: \"upper_body\" names keypoint 'tail'"
    ):
        keypoint_set_from_category(category, {**meta, "upper_body": ["tail"]}, "/data/ann.json")


def test_seventeen_custom_keypoints_still_need_sigmas():
    category = {"id": 1, "name": "bird", "keypoints": [f"point_{i}" for i in range(17)]}
    with pytest.raises(
        KeypointMetaError, match=r"K=17 keypoints and no OKS sigmas.*/data/keypoint_meta.json"
    ):
        keypoint_set_from_category(category, None, "/data/ann.json")
