"""Predictions written to files, for ``psa-zoo predict`` and ``psa-zoo demo``: one function per task.

Pose (``<stem>_pose.json`` named keypoints per person, ``<stem>_pose.png`` the skeletons) and segmentation
(``<stem>_labels.png`` the index map at the image's size, ``<stem>_seg.png`` a colour overlay with a legend,
``<stem>_seg.json`` the classes present and their pixel shares). With attention maps,
``<stem>_attention.png`` shows the spatial gates of the model's attention blocks over what the model saw:
the first person's crop for a top-down pose model, the image for a segmentation model.

Every file is written to a temporary name and renamed, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ._atomic import replace_atomically, write_json_atomic

__all__ = ["predict_files", "predict_pose_image", "predict_seg_image", "save_attention_maps"]


def _save_png(image: Image.Image, path: Path) -> Path:
    return replace_atomically(path, lambda tmp: image.save(tmp, format="PNG"))


def _save_json(value: Any, path: Path) -> Path:
    return write_json_atomic(path, value, indent=1)


def save_attention_maps(
    model: torch.nn.Module,
    rgb: np.ndarray,
    inputs: torch.Tensor,
    out: Path,
    blocks: Sequence[str] | None = None,
) -> Path | None:
    """Run ``model`` on ``inputs`` [1, C, H, W] while recording its attention gates and draw the spatial
    gates over ``rgb`` [H, W, 3] (what the model saw) to ``out``; None when the model has no block with a
    spatial gate."""
    from .layers.attention_maps import list_attention_blocks, record_attention
    from .visualize import save_attention_grid

    if not list_attention_blocks(model):
        return None
    with torch.no_grad(), record_attention(model, blocks) as record:
        model.eval()(inputs[:1])
    maps = {name: m for name, m in record.items() if m.spatial_gate is not None}
    if not maps:
        return None
    return save_attention_grid(rgb, maps, out)


def predict_pose_image(
    estimator, image: Path, boxes: Any, out_dir: Path, *, attn_maps: bool = False, attn_blocks=None
) -> list[Path]:
    """Keypoints of the people in ``boxes`` ([P, 4] xywh; None = the whole image) of ``image``."""
    prediction = estimator.predict(image, boxes)
    stem = image.stem
    files = [
        _save_json(prediction.to_dict(), out_dir / f"{stem}_pose.json"),
        _save_png(estimator.draw(image, prediction), out_dir / f"{stem}_pose.png"),
    ]
    if attn_maps and len(prediction):
        crops, inputs = estimator.input_crops(image, prediction.boxes[:1])
        drawn = save_attention_maps(
            estimator.model, crops[0], inputs, out_dir / f"{stem}_attention.png", attn_blocks
        )
        files += [drawn] if drawn else []
    return files


def predict_seg_image(
    segmenter, image: Path, out_dir: Path, *, attn_maps: bool = False, attn_blocks=None
) -> list[Path]:
    """The label map of ``image`` at its size, its overlay and the classes present."""
    from .data.images import read_image

    prediction = segmenter.predict(image)
    stem, classes = image.stem, prediction.class_set
    labels = prediction.labels
    counts = np.bincount(labels.ravel(), minlength=classes.num_classes)
    present = {classes.class_names[i]: float(counts[i] / labels.size) for i in np.flatnonzero(counts)}
    label_png = Image.fromarray(labels.astype(np.uint8), mode="L") if classes.num_classes <= 256 else None
    files = [
        _save_json(
            {"class_names": list(classes.class_names), "pixel_share": present}, out_dir / f"{stem}_seg.json"
        ),
        _save_png(segmenter.draw(image, prediction), out_dir / f"{stem}_seg.png"),
    ]
    if label_png is not None:
        files.append(_save_png(label_png, out_dir / f"{stem}_labels.png"))
    if attn_maps:
        drawn = save_attention_maps(
            segmenter.model, read_image(image, "RGB"), segmenter.model_input(image),
            out_dir / f"{stem}_attention.png", attn_blocks,
        )  # fmt: skip
        files += [drawn] if drawn else []
    return files


def predict_files(
    model,
    images: Sequence[Path],
    out_dir: Path,
    *,
    boxes: dict[str, Any] | None = None,
    flip: bool = False,
    attn_maps: bool = False,
    attn_blocks: Sequence[str] | None = None,
    memory_format: str = "auto",
    fold_batchnorm: bool = True,
    compile: bool = False,
) -> Iterator[str]:
    """Predict each image with ``model`` (its task decides how) into ``out_dir``; yields one line per
    image saying what was found and written. ``boxes``: pose boxes by image file name (missing = the
    whole image); ``memory_format`` / ``fold_batchnorm`` / ``compile``: as the predictors take them."""
    runtime = {"memory_format": memory_format, "fold_batchnorm": fold_batchnorm, "compile": compile}
    if attn_maps and attn_blocks:
        from .layers.attention_maps import record_attention

        with record_attention(model, attn_blocks):  # unknown patterns: an error before any file is written
            pass
    if model.task == "pose":
        from .pose import PoseEstimator

        estimator = PoseEstimator(model, flip_test=flip, **runtime)
        for image in images:
            files = predict_pose_image(estimator, image, (boxes or {}).get(image.name), out_dir,
                                       attn_maps=attn_maps, attn_blocks=attn_blocks)  # fmt: skip
            people = json.loads(files[0].read_text())["people"]
            yield f"{image}: {len(people)} people → {', '.join(str(f) for f in files)}"
        return
    from .seg import Segmenter

    segmenter = Segmenter(model, flip=flip, **runtime)
    for image in images:
        files = predict_seg_image(segmenter, image, out_dir, attn_maps=attn_maps, attn_blocks=attn_blocks)
        present = json.loads(files[0].read_text())["pixel_share"]
        yield f"{image}: {', '.join(present)} → {', '.join(str(f) for f in files)}"
