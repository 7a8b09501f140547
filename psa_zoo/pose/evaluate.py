"""COCO keypoint evaluation of a pose model on a dataset: crops → keypoints → rescoring, OKS-NMS → COCOeval.

With an ``accelerator`` each process predicts every ``world``-th instance (no padding, no duplicates),
the predictions are gathered once, and the main process evaluates; every process gets the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.coco_keypoints import KeypointDataset, PersonInstance
from ..data.images import normalize_images
from ..evaluation.coco_keypoints import KeypointEvaluation, evaluate_keypoints, postprocess_predictions
from ..models._runtime import inference_module
from .codecs import HeatmapCodec
from .dataset import TopDownPoseDataset
from .inference import codec_for, crops_to_image, predict_heatmaps

__all__ = ["evaluate_pose_model", "predict_instances"]


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters())
    return param.device, param.dtype


def predict_instances(
    model: nn.Module,
    instances: Sequence[PersonInstance],
    *,
    flip_test: bool = True,
    batch_size: int = 32,
    num_workers: int = 0,
    codec: HeatmapCodec | None = None,
) -> list[dict[str, Any]]:
    """Predictions for person instances: dicts ``{"image_id", "category_id", "keypoints" [K, 3] (x, y,
    score in image pixels), "box_score", "area" (padded box area, for OKS-NMS), "index"}``."""
    metadata = model.metadata
    _, height, width = metadata.input_size
    codec = codec or codec_for(metadata, tuple(reversed(model.output_size((height, width)))))
    udp = codec.udp_warp
    dataset = TopDownPoseDataset(
        instances, metadata.keypoints, (width, height), channel_order=metadata.channel_order, udp=udp
    )
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    device, dtype = _model_device_dtype(model)
    flip = metadata.keypoints.flip_permutation() if flip_test else None
    out: list[dict[str, Any]] = []
    for batch in loader:
        inputs = normalize_images(batch["image"].to(device), metadata, dtype)
        heatmaps = predict_heatmaps(model, inputs, codec, flip)
        crop_kpts, scores = codec.decode(heatmaps)
        centers, scales = batch["center"].numpy(), batch["scale"].numpy()
        image_kpts = crops_to_image(
            crop_kpts, centers, scales, batch["rotation"].numpy(), (width, height), udp
        )
        for row, index in enumerate(batch["index"].tolist()):
            instance = dataset.instances[index]
            out.append(
                {
                    "image_id": instance.image_id,
                    "category_id": instance.category_id,
                    "keypoints": np.concatenate([image_kpts[row], scores[row][:, None]], axis=1),
                    "box_score": float(instance.score),
                    "area": float(np.prod(scales[row])),
                    "index": index,
                }
            )
    return out


def evaluate_pose_model(
    model: nn.Module,
    dataset: KeypointDataset,
    instances: Sequence[PersonInstance] | None = None,
    *,
    accelerator=None,
    flip_test: bool = True,
    batch_size: int = 32,
    num_workers: int = 0,
    max_images: int | None = None,
    fold_batchnorm: bool = True,
) -> tuple[KeypointEvaluation, list[dict[str, Any]]]:
    """COCO AP of ``model`` on ``dataset`` (ground-truth boxes unless ``instances`` are given, e.g.
    ``dataset.detections(file)``); ``max_images`` evaluates the first images only (whole images, so
    COCOeval is told which); ``fold_batchnorm`` predicts with a BatchNorm-folded copy of ``model``
    (:func:`psa_zoo.models._runtime.inference_module`: faster, equal to float rounding). Returns the
    evaluation and the final COCO results list."""
    instances = list(dataset.instances("eval") if instances is None else instances)
    image_ids = None
    if max_images is not None:
        image_ids = sorted(dataset.images)[:max_images]
        chosen = set(image_ids)
        instances = [i for i in instances if i.image_id in chosen]
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = list(range(rank, len(instances), world))
    local = predict_instances(
        inference_module(model, fold=fold_batchnorm),
        [instances[i] for i in mine],
        flip_test=flip_test,
        batch_size=batch_size,
        num_workers=num_workers,
    )
    for prediction in local:
        prediction["index"] = mine[prediction["index"]]
    predictions = _gather(local, accelerator)
    keypoint_set = model.metadata.keypoints
    result: list[Any] = [None, None]
    if accelerator is None or accelerator.is_main_process:
        predictions.sort(key=lambda p: p["index"])
        if len(predictions) != len(instances) or any(p["index"] != i for i, p in enumerate(predictions)):
            raise RuntimeError("gathered predictions do not cover each instance exactly once")
        results = postprocess_predictions(predictions, keypoint_set.sigmas)
        evaluation = evaluate_keypoints(
            dataset.coco,
            results,
            keypoint_set.sigmas,
            category_id=dataset.category_id,
            keypoint_names=keypoint_set.keypoint_names,
            flip_pairs=keypoint_set.flip_pairs,
            image_ids=image_ids,
        )
        result = [evaluation, results]
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        result = broadcast_object_list(result, from_process=0)
    return result[0], result[1]


def _gather(local: list[dict[str, Any]], accelerator) -> list[dict[str, Any]]:
    if accelerator is None or accelerator.num_processes == 1:
        return list(local)
    from accelerate.utils import gather_object

    gathered = gather_object([local])
    return [p for part in gathered for p in part]
