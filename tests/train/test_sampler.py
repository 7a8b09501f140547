"""The sample order is a function of (seed, epoch, step): the same optimiser step sees the same samples
whatever the process count, accumulation, or resume point."""

from __future__ import annotations

import numpy as np
import pytest

from psa_zoo.train.sampler import StepBatchSampler, steps_per_epoch


def _steps(num_samples, micro, world, accumulation, epoch=0, start_step=0):
    """{step: sorted (index, seed) pairs of that optimiser step over all processes}."""
    per_rank = [
        list(StepBatchSampler(num_samples, micro, world_size=world, rank=r, accumulation=accumulation,
                              epoch=epoch, seed=7, start_step=start_step))
        for r in range(world)
    ]  # fmt: skip
    steps = {}
    for r, batches in enumerate(per_rank):
        for i, batch in enumerate(batches):
            step = start_step + i // accumulation
            steps.setdefault(step, []).extend(batch)
        assert all(len(b) == micro for b in batches), f"rank {r} got a short micro-batch"
    return {s: sorted(v) for s, v in steps.items()}


def test_same_samples_per_step_for_one_or_two_processes_and_accumulation():
    one = _steps(50, 8, world=1, accumulation=1)
    two = _steps(50, 4, world=2, accumulation=1)
    accumulated = _steps(50, 4, world=1, accumulation=2)
    both = _steps(50, 2, world=2, accumulation=2)
    assert one == two == accumulated == both
    assert len(one) == 50 // 8 == steps_per_epoch(50, 8)


def test_an_epoch_visits_each_sample_at_most_once_and_drops_only_the_remainder():
    steps = _steps(50, 8, world=1, accumulation=1)
    indices = [i for pairs in steps.values() for i, _ in pairs]
    assert len(indices) == len(set(indices)) == 48


def test_resuming_at_a_step_yields_the_rest_of_the_epoch():
    full = _steps(64, 4, world=2, accumulation=1, epoch=3)
    tail = _steps(64, 4, world=2, accumulation=1, epoch=3, start_step=5)
    assert tail == {s: v for s, v in full.items() if s >= 5}


def test_epochs_shuffle_differently_and_seeds_follow_the_sample():
    a = [i for b in StepBatchSampler(40, 40, epoch=0, seed=1) for i, _ in b]
    b = [i for b in StepBatchSampler(40, 40, epoch=1, seed=1) for i, _ in b]
    assert sorted(a) == sorted(b) == list(range(40)) and a != b
    by_rank = [StepBatchSampler(40, 5, world_size=2, rank=r, seed=1) for r in range(2)]
    seeds_by_rank = dict(p for sampler in by_rank for batch in sampler for p in batch)
    seeds_single = dict(p for batch in StepBatchSampler(40, 10, seed=1) for p in batch)
    assert seeds_by_rank == seeds_single and len(set(seeds_single.values())) == 40


def test_the_global_rng_is_not_used():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    list(StepBatchSampler(30, 3, seed=4))
    assert np.array_equal(np.random.get_state()[1], before)


def test_bad_rank_or_start_step_is_refused():
    with pytest.raises(ValueError, match=r"rank must be in 0\.\.1"):
        StepBatchSampler(10, 2, world_size=2, rank=2)
    with pytest.raises(ValueError, match=r"start_step must be in 0\.\.5"):
        StepBatchSampler(10, 2, start_step=6)
