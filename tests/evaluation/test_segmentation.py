"""Segmentation metrics against a numpy confusion matrix written out here and against torchmetrics."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from psa_zoo.evaluation import segmentation
from psa_zoo.evaluation.segmentation import ConfusionMatrix, evaluate_prediction_folders
from tests.train._pose_run import REPO, cli_env

K = 5
IGNORE = 255


def random_batch(rng: np.random.Generator, shape=(3, 17, 23), classes=K, ignore_share=0.2):
    """Predictions and labels where class K-1 never occurs in either (its IoU and Acc must be NaN) and
    class K-2 only in the predictions (IoU 0, Acc NaN)."""
    target = rng.integers(0, classes - 2, size=shape)
    target[rng.random(shape) < ignore_share] = IGNORE
    pred = rng.integers(0, classes - 1, size=shape)
    return pred, target


def numpy_confusion(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """The textbook count: one increment per labelled pixel at [label, prediction]."""
    hist = np.zeros((k, k), dtype=np.int64)
    keep = target != IGNORE
    np.add.at(hist, (target[keep], pred[keep]), 1)
    return hist


def test_matrix_equals_numpy_count():
    rng = np.random.default_rng(0)
    pred, target = random_batch(rng)
    cm = ConfusionMatrix(K, IGNORE)
    cm.update(pred, target)
    expected = numpy_confusion(pred, target, K)
    assert cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, expected)
    assert cm.matrix.sum() == (target != IGNORE).sum()


def test_metrics_equal_numpy_formulas_and_torchmetrics():
    rng = np.random.default_rng(1)
    pred, target = random_batch(rng)
    cm = ConfusionMatrix(K, IGNORE)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    metrics = cm.compute()

    hist = numpy_confusion(pred, target, K).astype(np.float64)
    tp = np.diag(hist)
    keep = target != IGNORE
    for c in range(K):
        union = hist[c].sum() + hist[:, c].sum() - tp[c]
        if union == 0:
            assert np.isnan(metrics.iou[c])
        else:
            assert metrics.iou[c] == pytest.approx(tp[c] / union, abs=1e-12)
    assert np.isnan(metrics.iou[K - 1]) and metrics.iou[K - 2] == 0.0
    assert np.isnan(metrics.acc[K - 1]) and np.isnan(metrics.acc[K - 2])
    present = ~np.isnan(metrics.iou)
    assert metrics.miou == pytest.approx(metrics.iou[present].mean(), abs=1e-12)
    assert metrics.aacc == pytest.approx((pred[keep] == target[keep]).mean(), abs=1e-12)

    preds_t, target_t = torch.from_numpy(pred), torch.from_numpy(target)
    jaccard = MulticlassJaccardIndex(num_classes=K, ignore_index=IGNORE, average=None)
    tm_iou = jaccard(preds_t, target_t).double().numpy()
    np.testing.assert_allclose(metrics.iou[present], tm_iou[present], atol=1e-6)
    assert tm_iou[K - 1] == 0.0  # torchmetrics' zero_division for an absent class; ours is NaN
    macro = MulticlassJaccardIndex(num_classes=K, ignore_index=IGNORE, average="macro")
    assert metrics.miou == pytest.approx(macro(preds_t, target_t).item(), abs=1e-6)

    recall = MulticlassAccuracy(num_classes=K, ignore_index=IGNORE, average=None)(preds_t, target_t).numpy()
    has_gt = ~np.isnan(metrics.acc)
    np.testing.assert_allclose(metrics.acc[has_gt], recall[has_gt], atol=1e-6)
    assert metrics.macc == pytest.approx(recall[has_gt].mean(), abs=1e-6)
    micro = MulticlassAccuracy(num_classes=K, ignore_index=IGNORE, average="micro")(preds_t, target_t).item()
    assert metrics.aacc == pytest.approx(micro, abs=1e-6)


def test_accumulation_and_merge_equal_one_update():
    rng = np.random.default_rng(2)
    batches = [random_batch(rng, shape=(2, 9, 11)) for _ in range(4)]
    whole = ConfusionMatrix(K)
    whole.update(np.concatenate([p for p, _ in batches]), np.concatenate([t for _, t in batches]))

    stepwise = ConfusionMatrix(K)
    for pred, target in batches:
        stepwise.update(pred[0], target[0])  # [H, W] form
        stepwise.update(pred[1:], target[1:])
    np.testing.assert_array_equal(stepwise.matrix, whole.matrix)

    first, second = ConfusionMatrix(K), ConfusionMatrix(K)
    for pred, target in batches[:1]:
        first.update(pred, target)
    for pred, target in batches[1:]:
        second.update(pred, target)
    assert first.merge(second) is first
    np.testing.assert_array_equal(first.matrix, whole.matrix)
    # dataset-level mIoU, not the mean of per-batch mIoUs
    assert first.compute().miou == pytest.approx(whole.compute().miou, abs=1e-15)


def test_uint8_masks_and_all_ignored_batch():
    target = np.full((4, 4), IGNORE, dtype=np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((4, 4), dtype=np.uint8), target)
    assert cm.matrix.sum() == 0
    with pytest.raises(ValueError, match="no labelled pixel"):
        cm.compute()
    target[0, :2] = [1, 2]
    cm.update(np.array([[1, 1, 9, 9]] + [[9] * 4] * 3, dtype=np.uint8), target)  # 9 only where ignored
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[1, 1] = expected[2, 1] = 1
    np.testing.assert_array_equal(cm.matrix, expected)


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        ([[0, 1]], [[0, 7]], r"target holds label values \[7\].*neither a class \(0\.\.4\)"),
        ([[0, 1]], [[0, -1]], r"target holds label values \[-1\]"),
        ([[0, 5]], [[0, 1]], r"pred holds class indices \[5\] outside 0\.\.4"),
        ([[0, 1]], [[0, 1, 2]], r"one shape"),
        (np.zeros((1, 2, 2)), np.zeros((1, 2), dtype=int), r"integer class indices, got dtype float64"),
        (
            torch.zeros(1, K, 2, 2, dtype=torch.long),
            torch.zeros(1, K, 2, 2, dtype=torch.long),
            r"argmax\(1\)",
        ),
    ],
)
def test_bad_labels_are_clear_errors(pred, target, message):
    with pytest.raises(ValueError, match=message):
        ConfusionMatrix(K).update(pred, target)


def test_construction_and_merge_errors():
    with pytest.raises(ValueError, match="ignore_index 2 is a class index"):
        ConfusionMatrix(3, ignore_index=2)
    with pytest.raises(ValueError, match="positive int"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="same classes"):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))


def test_all_reduce_only_once():
    from accelerate import Accelerator

    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1, 2]]), np.array([[0, 2, 2]]))
    before = cm.matrix
    cm.all_reduce(Accelerator(cpu=True))
    np.testing.assert_array_equal(cm.matrix, before)  # one process: the sum is the matrix itself
    with pytest.raises(RuntimeError, match="once"):
        cm.all_reduce(Accelerator(cpu=True))
    with pytest.raises(RuntimeError, match="already summed"):
        cm.update(np.array([[0]]), np.array([[0]]))
    cm.reset()
    cm.update(np.array([[1]]), np.array([[1]]))
    assert cm.matrix.sum() == 1


_TWO_PROCESS_SCRIPT = """
import importlib.util, json, sys
import numpy as np
from accelerate import Accelerator

# the module file alone (numpy, torch, PIL): importing all of psa_zoo would double the test's time
spec = importlib.util.spec_from_file_location("segmentation", sys.argv[2])
segmentation = sys.modules["segmentation"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(segmentation)
ConfusionMatrix = segmentation.ConfusionMatrix

accelerator = Accelerator(cpu=True)
rank = accelerator.process_index
cm = ConfusionMatrix(3)
if rank == 0:  # rank 1 has no images: it must still take part in the reduction
    cm.update(np.array([[0, 1, 2, 2]]), np.array([[0, 1, 1, 255]]))
    cm.update(np.array([[2]]), np.array([[2]]))
cm.all_reduce(accelerator)
other = ConfusionMatrix(3)
other.update(np.array([[rank]]), np.array([[1]]))  # each process: one pixel, label 1, predicted = rank
other.all_reduce(accelerator)
with open(sys.argv[1] + f"/{rank}.json", "w") as file:
    json.dump({"first": cm.matrix.tolist(), "second": other.matrix.tolist()}, file)
accelerator.wait_for_everyone()
accelerator.end_training()  # destroys the process group (one left to the interpreter exit can abort)
"""


def test_all_reduce_sums_over_two_processes(tmp_path):
    script = tmp_path / "reduce.py"
    script.write_text(textwrap.dedent(_TWO_PROCESS_SCRIPT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(script), str(tmp_path), segmentation.__file__]  # fmt: skip
    done = subprocess.run(command, env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    first = np.zeros((3, 3), dtype=np.int64)
    first[0, 0] = first[1, 1] = first[1, 2] = first[2, 2] = 1
    second = np.zeros((3, 3), dtype=np.int64)
    second[1, 0] = second[1, 1] = 1
    for rank in (0, 1):  # every process holds the sum, counted once
        result = json.loads((tmp_path / f"{rank}.json").read_text())
        np.testing.assert_array_equal(result["first"], first)
        np.testing.assert_array_equal(result["second"], second)


def test_json_form_and_table():
    cm = ConfusionMatrix(3)
    # class 0: 2 TP; class 1: 1 TP, 1 predicted as 0; class 2: absent everywhere
    cm.update(np.array([[0, 0, 1, 0]]), np.array([[0, 0, 1, 1]]))
    metrics = cm.compute()
    data = metrics.to_dict(["road", "car", "bus"])
    assert json.loads(json.dumps(data)) == data  # plain JSON, no NaN
    assert data["IoU"] == {"road": pytest.approx(2 / 3), "car": pytest.approx(1 / 2), "bus": None}
    assert data["Acc"] == {"road": pytest.approx(1.0), "car": pytest.approx(1 / 2), "bus": None}
    assert data["mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert data["aAcc"] == pytest.approx(3 / 4)
    assert data["mAcc"] == pytest.approx(3 / 4)
    assert list(metrics.to_dict()["IoU"]) == ["class_0", "class_1", "class_2"]
    with pytest.raises(ValueError, match="2 class names for metrics of 3 classes"):
        metrics.to_dict(["road", "car"])
    table = metrics.format_table(["road", "car", "bus"]).splitlines()
    assert table[1].split() == ["road", "66.67", "100.00"]
    assert table[3].split() == ["bus", "-", "-"]
    assert table[-1] == "mIoU 58.33  aAcc 75.00  mAcc 75.00"


# --------------------------------------------------------------------------- prediction folders


def save_png(path, labels: np.ndarray, palette: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="L")
    if palette:  # colours unrelated to the indices: reading must give the indices
        image = image.convert("P")
        image.putpalette([(37 * i) % 256 for i in range(768)])
    image.save(path)


def test_prediction_folders_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    cm = ConfusionMatrix(K)
    for index, size in enumerate([(13, 21), (8, 5), (30, 17)]):
        pred, target = random_batch(rng, shape=size)
        name = f"city_{index % 2}/frame_{index}.png"  # sub-folders pair by relative path
        save_png(tmp_path / "pred" / name, pred, palette=index != 1)
        save_png(tmp_path / "gt" / name, target)
        cm.update(pred, target)
    metrics = evaluate_prediction_folders(tmp_path / "pred", tmp_path / "gt", K)
    expected = cm.compute()
    np.testing.assert_array_equal(metrics.iou, expected.iou)
    assert metrics.miou == expected.miou and metrics.aacc == expected.aacc


def test_prediction_folders_errors(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    labels = np.zeros((4, 6), dtype=np.uint8)
    save_png(gt_dir / "a.png", labels)
    save_png(gt_dir / "b.png", labels)
    save_png(pred_dir / "a.png", labels)
    save_png(pred_dir / "c.png", labels)
    with pytest.raises(
        ValueError, match=r"1 ground-truth files have no prediction \(b\.png\).*1 predictions .*c\.png"
    ):
        evaluate_prediction_folders(pred_dir, gt_dir, K)

    (pred_dir / "c.png").unlink()
    save_png(pred_dir / "b.png", np.zeros((6, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"b\.png: the prediction is 6×4 .* ground truth is 4×6"):
        evaluate_prediction_folders(pred_dir, gt_dir, K)

    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(pred_dir / "b.png")
    with pytest.raises(ValueError, match=r"b\.png is a RGB image with 3 channels.*index PNGs"):
        evaluate_prediction_folders(pred_dir, gt_dir, K)

    save_png(pred_dir / "b.png", labels)
    save_png(gt_dir / "b.png", np.full((4, 6), 19, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"b\.png: target holds label values \[19\]"):
        evaluate_prediction_folders(pred_dir, gt_dir, K)

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no PNG file in the ground-truth folder"):
        evaluate_prediction_folders(pred_dir, tmp_path / "empty", K)
    with pytest.raises(ValueError, match=r"prediction folder .* does not exist"):
        evaluate_prediction_folders(tmp_path / "missing", gt_dir, K)
