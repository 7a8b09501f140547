"""bench-models --against: an earlier commit's package imported beside today's, same weights, same outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

import psa_zoo
from psa_zoo.bench import against_commit
from psa_zoo.bench.models import ModelCase

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs psa_zoo's git history")


def test_the_commits_package_is_a_separate_copy_that_builds_the_same_network(tmp_path):
    old = against_commit.import_commit("HEAD", tmp_path)
    assert old.__name__.startswith("psa_zoo_") and old is not psa_zoo
    assert Path(old.__file__).is_relative_to(tmp_path)
    model = old.create_model("hrnet_w18_small_psa_p")
    assert type(model).__module__.startswith(old.__name__)  # the copy's own classes, not today's
    case = ModelCase("hrnet_w18_small_psa_p", 2, 64, 48)
    row = against_commit.bench_case(old, case, repeats=1, warmup=0)
    assert row.rel_diff <= 1e-4 and row.before_ms > 0 and row.now_ms > 0 and row.folded_ms > 0
    assert row.folded_speedup == pytest.approx(row.before_ms / row.folded_ms)
    assert row.train_speedup is None  # training steps only when asked
    trained = against_commit.bench_case(old, case, repeats=1, warmup=0, train=True)
    assert trained.train_before_ms > 0 and trained.train_now_ms > 0
    assert trained.train_speedup == pytest.approx(trained.train_before_ms / trained.train_now_ms)
    table = against_commit.to_markdown([row, trained], "HEAD").splitlines()
    assert "train HEAD ms" in table[0] and all(line.count("|") == table[0].count("|") for line in table)
    assert table[2].startswith("| hrnet_w18_small_psa_p | 2 | 64×48 | channels_last |")
    assert "| – | – | – |" in table[2] and f"| {trained.train_speedup:.3f}× |" in table[3]


def test_an_unknown_commit_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read commit 'no-such-commit'"):
        against_commit.import_commit("no-such-commit", tmp_path)
