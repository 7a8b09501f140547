"""Semantic-segmentation metrics: a dataset-level confusion matrix, IoU / accuracy per class, mIoU.

The protocol of the benchmark code (VainF ``metrics/stream_metrics.py``, HRNet ``lib/utils/utils.py``
``get_confusion_matrix``, mmseg ``IoUMetric``):

1. drop the pixels whose label is the ignore index (255);
2. add ``bincount(K · gt + pred)`` into one K×K matrix **over the whole dataset** (never per image);
3. IoU_c = TP / (TP + FP + FN), NaN where class c is in neither the labels nor the predictions; the mIoU is
   the mean over the classes that are not NaN.

Evaluation is at the label resolution: predictions are resized to the mask, never the mask to the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["ConfusionMatrix", "SegmentationMetrics", "evaluate_prediction_folders"]

_SHOWN = 10  # out-of-range values / unpaired names quoted in an error message


def _as_labels(values: Any, what: str) -> torch.Tensor:
    """Integer class indices as an int64 tensor (on the device of a tensor input, the CPU for numpy)."""
    if not isinstance(values, torch.Tensor):
        array = np.asarray(values)
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise ValueError(
                f"{what} must hold integer class indices, got dtype {array.dtype}; pass label maps, e.g. "
                "logits.argmax(1) for predictions"
            )
        values = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    elif values.dtype.is_floating_point or values.dtype.is_complex:
        raise ValueError(
            f"{what} must hold integer class indices, got dtype {values.dtype}; pass label maps, e.g. "
            "logits.argmax(1) for predictions"
        )
    return values.long()


def _values_list(values: torch.Tensor) -> list[int]:
    return torch.unique(values)[:_SHOWN].tolist()


class ConfusionMatrix:
    """A K×K pixel count over a dataset: ``matrix[g, p]`` pixels of ground-truth class g predicted as p.

    Counts are int64 and accumulate with ``torch.bincount`` on the device of the inputs (a GPU evaluation
    never copies its masks to the CPU).

    Distributed evaluation: every process updates with its own images, then every process calls
    :meth:`all_reduce` **once**, after its last update, and only then :meth:`compute`. A second reduction
    would count every pixel again, so it is refused, and so is an update after the reduction.

    Args:
        num_classes: K; predictions and labels are class indices 0..K-1.
        ignore_index: label value whose pixels are not counted (void, borders).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(
                f"ignore_index {ignore_index} is a class index (0..{num_classes - 1}); use a value outside "
                "the classes, e.g. 255"
            )
        self.num_classes = num_classes
        self.ignore_index = int(ignore_index)
        self._hist: torch.Tensor | None = None  # [K, K] int64, created on the device of the first update
        self.reduced = False

    def reset(self) -> None:
        """Forget every count (and the reduction): ready for another evaluation."""
        self._hist, self.reduced = None, False

    def _check_not_reduced(self, action: str) -> None:
        if self.reduced:
            raise RuntimeError(
                f"cannot {action}: all_reduce() already summed this confusion matrix over the processes; "
                "call all_reduce once, after the last update (or reset() to start a new evaluation)"
            )

    def _add(self, hist: torch.Tensor) -> None:
        if self._hist is None:
            self._hist = hist.clone()
        else:
            self._hist += hist.to(self._hist.device)

    @torch.no_grad()
    def update(self, pred: Any, target: Any) -> None:
        """Add one batch.

        Args:
            pred: predicted class indices [N, H, W] or [H, W] (int tensor or array).
            target: labels of the same shape; pixels equal to ``ignore_index`` are dropped.
        Raises:
            ValueError: shapes differ, float inputs, a label outside 0..K-1 that is not the ignore index, or
                a prediction outside 0..K-1 at a labelled pixel.
        """
        self._check_not_reduced("update")
        pred, target = _as_labels(pred, "pred"), _as_labels(target, "target")
        if pred.shape != target.shape or pred.ndim not in (2, 3):
            raise ValueError(
                f"pred and target must be label maps of one shape, [N, H, W] or [H, W]; got pred "
                f"{tuple(pred.shape)} and target {tuple(target.shape)} (for logits [N, K, H, W] pass "
                "logits.argmax(1))"
            )
        k = self.num_classes
        target = target.reshape(-1)
        pred = pred.to(target.device).reshape(-1)
        keep = target != self.ignore_index
        target, pred = target[keep], pred[keep]
        bad = (target < 0) | (target >= k)
        if bool(bad.any()):
            raise ValueError(
                f"target holds label values {_values_list(target[bad])} that are neither a class "
                f"(0..{k - 1}) nor the ignore index {self.ignore_index}; map them to class indices or to "
                f"{self.ignore_index} first (e.g. Cityscapes label ids → train ids, binary masks stored as "
                "0/255 → 0/1) or give the right num_classes / ignore_index"
            )
        bad = (pred < 0) | (pred >= k)
        if bool(bad.any()):
            raise ValueError(
                f"pred holds class indices {_values_list(pred[bad])} outside 0..{k - 1} at labelled pixels; "
                f"predictions must be the argmax of a {k}-class model (check num_classes)"
            )
        self._add(torch.bincount(target * k + pred, minlength=k * k).reshape(k, k))

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add the counts of ``other`` (same K and ignore index) into this matrix; returns self."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a confusion matrix of {other.num_classes} classes (ignore "
                f"{other.ignore_index}) into one of {self.num_classes} classes (ignore {self.ignore_index}); "
                "both must count the same classes"
            )
        if other.reduced != self.reduced:
            raise RuntimeError(
                "cannot merge a confusion matrix summed over the processes (all_reduce) with one that was "
                "not: merge the per-process matrices first, then call all_reduce once"
            )
        if other._hist is not None:
            self._add(other._hist)
        return self

    def all_reduce(self, accelerator: Any) -> ConfusionMatrix:
        """Sum the counts over all processes (``accelerator.reduce``); returns self.

        Collective: every process must call it, once, after its last :meth:`update` (a process with no
        images contributes zeros). A second call raises instead of counting everything twice.
        """
        self._check_not_reduced("all_reduce again")
        k = self.num_classes
        hist = self._hist if self._hist is not None else torch.zeros(k, k, dtype=torch.int64)
        self._hist = accelerator.reduce(hist.to(accelerator.device), reduction="sum")
        self.reduced = True
        return self

    @property
    def matrix(self) -> np.ndarray:
        """[K, K] int64 counts (a CPU copy): rows = ground truth, columns = prediction."""
        k = self.num_classes
        if self._hist is None:
            return np.zeros((k, k), dtype=np.int64)
        return self._hist.cpu().numpy().astype(np.int64, copy=True)

    def compute(self) -> SegmentationMetrics:
        """IoU and accuracy per class, mIoU, pixel accuracy and mean accuracy of the counts so far."""
        hist = self.matrix.astype(np.float64)
        total = hist.sum()
        if total == 0:
            raise ValueError(
                "no labelled pixel was counted (no update, or every label was the ignore index "
                f"{self.ignore_index}); nothing to evaluate"
            )
        tp = np.diag(hist)
        gt, predicted = hist.sum(axis=1), hist.sum(axis=0)
        union = gt + predicted - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(gt > 0, tp / gt, np.nan)
        return SegmentationMetrics(
            iou=iou,
            acc=acc,
            miou=float(np.nanmean(iou)),
            aacc=float(tp.sum() / total),
            macc=float(np.nanmean(acc)),
            num_pixels=int(total),
        )


def _names_for(class_names: Sequence[str] | None, k: int) -> list[str]:
    if class_names is None:
        return [f"class_{i}" for i in range(k)]
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"got {len(names)} class names for metrics of {k} classes; give one name per class")
    return names


def _json_value(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass
class SegmentationMetrics:
    """Metrics of a dataset-level confusion matrix (fractions in [0, 1]).

    Attributes:
        iou: [K] TP / (TP + FP + FN); NaN where the class is in neither the labels nor the predictions.
        acc: [K] TP / (labelled pixels of the class); NaN where the class has no labelled pixel.
        miou: nanmean of ``iou``, i.e. the mean over the classes present in the labels or the predictions.
            This is the convention of mmseg ``IoUMetric``, VainF's DeepLabV3+ and HRNet, whose numbers the
            papers report. torchmetrics' ``MulticlassJaccardIndex(average=None)`` gives 0 for an absent
            class and smp's ``iou_score`` 1 (their ``zero_division``); averaging those would differ.
        aacc: pixel accuracy, sum(TP) / labelled pixels.
        macc: nanmean of ``acc``.
        num_pixels: labelled pixels counted (the ignore index left out): a dataset evaluated twice over, or
            half of it, shows here and not in the ratios.
    """

    iou: np.ndarray
    acc: np.ndarray
    miou: float
    aacc: float
    macc: float
    num_pixels: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.iou)

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready: ``{"mIoU", "aAcc", "mAcc", "IoU": {name: value}, "Acc": {name: value},
        "num_pixels"}``, None for NaN (an absent class); names default to ``class_0..``."""
        names = _names_for(class_names, self.num_classes)
        return {
            "mIoU": _json_value(self.miou),
            "aAcc": _json_value(self.aacc),
            "mAcc": _json_value(self.macc),
            "IoU": {n: _json_value(v) for n, v in zip(names, self.iou.tolist(), strict=True)},
            "Acc": {n: _json_value(v) for n, v in zip(names, self.acc.tolist(), strict=True)},
            "num_pixels": self.num_pixels,
        }

    def format_table(self, class_names: Sequence[str] | None = None) -> str:
        """A per-class table of IoU and Acc in percent, then the summary line; "-" for an absent class."""
        names = _names_for(class_names, self.num_classes)
        width = max(len("class"), *(len(n) for n in names))

        def cell(value: float) -> str:
            return f"{'-':>7}" if math.isnan(value) else f"{100 * value:7.2f}"

        lines = [f"{'class':<{width}}  {'IoU (%)':>7}  {'Acc (%)':>7}"]
        lines += [
            f"{n:<{width}}  {cell(i)}  {cell(a)}" for n, i, a in zip(names, self.iou, self.acc, strict=True)
        ]
        lines.append(f"mIoU {100 * self.miou:.2f}  aAcc {100 * self.aacc:.2f}  mAcc {100 * self.macc:.2f}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- prediction folders


def _png_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{what} folder {folder} does not exist or is not a folder")
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.png"))}


def _read_index_png(path: Path) -> np.ndarray:
    """[H, W] label values of an index PNG, read as stored (a palette PNG gives its indices)."""
    with Image.open(path) as image:
        mode = image.mode
        values = np.array(image)
    if values.ndim != 2:
        raise ValueError(
            f"{path} is a {mode} image with {values.shape[-1]} channels; label PNGs must hold one class "
            "index per pixel: store index PNGs (mode 'P' with a palette, or 'L'), converting colour masks "
            "to indices first"
        )
    return values


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (", …" if len(names) > _SHOWN else "")


def evaluate_prediction_folders(
    pred_dir: str | Path, gt_dir: str | Path, num_classes: int, ignore_index: int = 255
) -> SegmentationMetrics:
    """Metrics of predicted label PNGs against ground-truth label PNGs of the same names.

    Both folders are searched recursively for ``*.png``; files pair by their path relative to the folder.
    Values are read as stored (a palette PNG's indices are the labels, never its colours).

    Raises:
        ValueError: a file without its pair, a size mismatch, a colour (multi-channel) PNG, or a value out of
            range (see :meth:`ConfusionMatrix.update`); each names the file.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    preds, gts = _png_files(pred_dir, "prediction"), _png_files(gt_dir, "ground-truth")
    if not gts:
        raise ValueError(f"no PNG file in the ground-truth folder {gt_dir}")
    missing, extra = sorted(gts.keys() - preds.keys()), sorted(preds.keys() - gts.keys())
    if missing or extra:
        raise ValueError(
            f"{pred_dir} and {gt_dir} must hold PNGs of the same names: {len(missing)} ground-truth files "
            f"have no prediction ({_few(missing)}) and {len(extra)} predictions have no ground truth "
            f"({_few(extra)}); predict every labelled image under its label's name, and keep other PNGs out"
        )
    matrix = ConfusionMatrix(num_classes, ignore_index)
    for name, gt_path in gts.items():
        pred, target = _read_index_png(preds[name]), _read_index_png(gt_path)
        if pred.shape != target.shape:
            raise ValueError(
                f"{name}: the prediction is {pred.shape[0]}×{pred.shape[1]} (height×width) but the ground "
                f"truth is {target.shape[0]}×{target.shape[1]}; predict at the label resolution (metrics are "
                "computed on the original masks, never on resized ones)"
            )
        try:
            matrix.update(pred, target)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    return matrix.compute()
