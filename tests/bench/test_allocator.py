"""The allocator benchmark: processes of its own per setting, their rows and the table."""

import pytest

from psa_zoo.bench.allocator import bench_allocator, to_markdown
from psa_zoo.bench.models import ModelCase


@pytest.fixture(scope="module")
def rows():
    case = ModelCase("hrnet_w18_psa_p", 1, 128, 96)
    return bench_allocator([case], rounds=1, repeats=1, warmup=0, train=True, threads=1)


def test_each_setting_ran_and_the_ratios_are_theirs(rows):
    (row,) = rows
    assert (row.name, row.batch, row.input, row.rounds) == ("hrnet_w18_psa_p", 1, "128×96", 1)
    assert row.given_back_ms > 0 and row.kept_ms > 0
    assert row.speedup == pytest.approx(row.given_back_ms / row.kept_ms)
    assert row.train_speedup == pytest.approx(row.train_given_back_ms / row.train_kept_ms)
    # each process loaded torch and built the model: its peak resident memory is that of a real process
    assert row.given_back_rss_mb > 100 and row.kept_rss_mb > 100


def test_the_table_has_the_row(rows):
    table = to_markdown(rows).splitlines()
    assert table[0].startswith("| model | batch | input | rounds | given back ms | kept ms | speed-up")
    assert table[2].startswith("| hrnet_w18_psa_p | 1 | 128×96 | 1 | ")
    assert table[2].endswith("× |")
    assert len(table) == 3
