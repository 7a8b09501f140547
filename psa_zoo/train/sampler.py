"""The order training samples are drawn in: a function of (seed, epoch, step), never of the process count.

Exact resume needs the data position and every random draw of the data pipeline to be recomputable from
numbers the checkpoint holds. :class:`StepBatchSampler` therefore

* shuffles each epoch with its own generator seeded by ``(seed, epoch)`` (not the global RNG, which
  accelerate restores mid-epoch and which would reshuffle the resumed epoch differently: accelerate #2823);
* cuts the epoch's permutation into **global** batches of ``micro_batch × world_size × accumulation`` and
  hands this process its slice of each: rank ``r``, micro-step ``m`` of step ``t`` takes positions
  ``t·G + (m·world + r)·b … + b``. One process with batch ``2b``, two processes with ``b`` each, and one
  process with ``b`` and two accumulation steps all see the same samples in the same optimiser step;
* starts at any step without loading the skipped samples (resume mid-epoch);
* gives every sample a seed of its own, ``SeedSequence((seed, epoch, index))``, so augmentations do not
  depend on workers, processes or where a run was resumed.

Items are ``(dataset_index, sample_seed)`` pairs; datasets accept them in ``__getitem__`` and draw the
sample's augmentation from ``np.random.default_rng(sample_seed)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["StepBatchSampler", "steps_per_epoch"]


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    """Optimiser steps in one pass over ``num_samples`` (the last incomplete global batch is dropped)."""
    return num_samples // global_batch


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence((seed, epoch, index)).generate_state(1, np.uint64)[0] >> 1)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """This process's micro-batches of one epoch, from optimiser step ``start_step`` on.

    Args:
        num_samples: dataset length.
        micro_batch: samples per process per forward pass.
        world_size / rank: processes and this one's index.
        accumulation: micro-batches per optimiser step.
        epoch / seed: which permutation.
        start_step: first optimiser step of the epoch to yield (0 for a fresh epoch).
        shuffle: False keeps the dataset order (the seeds still differ per epoch).
    """

    def __init__(
        self,
        num_samples: int,
        micro_batch: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        accumulation: int = 1,
        epoch: int = 0,
        seed: int = 0,
        start_step: int = 0,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        self.num_samples, self.micro_batch = num_samples, micro_batch
        self.world_size, self.rank, self.accumulation = world_size, rank, accumulation
        self.epoch, self.seed, self.start_step, self.shuffle = epoch, seed, start_step, shuffle
        self.global_batch = micro_batch * world_size * accumulation
        self.num_steps = steps_per_epoch(num_samples, self.global_batch)
        if not 0 <= start_step <= self.num_steps:
            raise ValueError(f"start_step must be in 0..{self.num_steps}, got {start_step}")

    def permutation(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng((self.seed, self.epoch)).permutation(self.num_samples)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.permutation()
        b, w = self.micro_batch, self.world_size
        for step in range(self.start_step, self.num_steps):
            for micro in range(self.accumulation):
                begin = step * self.global_batch + (micro * w + self.rank) * b
                indices = order[begin : begin + b].tolist()
                yield [(i, _sample_seed(self.seed, self.epoch, i)) for i in indices]

    def __len__(self) -> int:
        return (self.num_steps - self.start_step) * self.accumulation
