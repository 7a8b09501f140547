"""Losses against the formulas written out here and against PyTorch's own CrossEntropyLoss."""

from __future__ import annotations

import pytest
import torch

from psa_zoo.losses import (
    cross_entropy_sum_and_count,
    keypoint_mse_loss,
    segmentation_cross_entropy,
    segmentation_loss,
)
from psa_zoo.models.outputs import SegmentationOutput


def test_keypoint_mse_is_hrnet_joints_mse_written_out():
    pred, gt = torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5)
    weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.5]])
    # JointsMSELoss(use_target_weight=True): sum over joints of 0.5 * MSE(pred_j * w_j, gt_j * w_j), / K
    expected = 0.0
    for j in range(3):
        w = weight[:, j].view(2, 1)
        p, g = pred[:, j].reshape(2, -1) * w, gt[:, j].reshape(2, -1) * w
        expected += 0.5 * ((p - g) ** 2).mean()
    expected /= 3
    torch.testing.assert_close(keypoint_mse_loss(pred, gt, weight.unsqueeze(-1)), expected)
    with pytest.raises(ValueError, match="one weight per joint"):
        keypoint_mse_loss(pred, gt, torch.ones(2, 4))


def test_segmentation_cross_entropy_equals_torch_with_ignore_index():
    logits = torch.randn(2, 4, 6, 6)
    labels = torch.randint(0, 4, (2, 6, 6))
    labels[0, :3] = 255
    expected = torch.nn.CrossEntropyLoss(ignore_index=255)(logits, labels)
    torch.testing.assert_close(segmentation_cross_entropy(logits, labels), expected)
    everything_ignored = torch.full((2, 6, 6), 255)
    assert segmentation_cross_entropy(logits, everything_ignored).item() == 0.0


def test_sum_and_count_of_micro_batches_give_the_whole_batch_mean():
    logits, labels = torch.randn(4, 3, 5, 5), torch.randint(0, 3, (4, 5, 5))
    labels[:3, :, :4] = 255  # micro-batches with very different numbers of labelled pixels
    parts = [cross_entropy_sum_and_count(logits[i : i + 1], labels[i : i + 1]) for i in range(4)]
    total = sum(p[0] for p in parts) / sum(p[1] for p in parts)
    torch.testing.assert_close(total, torch.nn.CrossEntropyLoss(ignore_index=255)(logits, labels))


def test_auxiliary_logits_add_with_their_weight():
    logits, aux = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    labels = torch.randint(0, 3, (1, 4, 4))
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    out = SegmentationOutput(logits=logits, aux_logits=aux)
    torch.testing.assert_close(
        segmentation_loss(out, labels, aux_weight=0.4), ce(logits, labels) + 0.4 * ce(aux, labels)
    )
    torch.testing.assert_close(segmentation_loss(logits, labels), ce(logits, labels))
