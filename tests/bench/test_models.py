"""The model benchmark on a small case: the variants, their layouts and memory figures, and the table."""

import pytest
import torch

from psa_zoo.bench.models import QUICK_CASES, ModelCase, _train_step, bench_case, to_markdown
from psa_zoo.models import create_model


@pytest.fixture(scope="module")
def rows():
    return bench_case(ModelCase("hrnet_w18_psa_p", 1, 256, 192, overhead_target=10.0), repeats=1, warmup=0)


def test_the_variants_with_their_parameters_and_layouts(rows):
    by_variant = {r.variant: r for r in rows}
    assert list(by_variant) == ["attn", "none", "reference", "attn contiguous", "attn folded"]
    assert by_variant["attn"].params == by_variant["reference"].params > by_variant["none"].params
    assert by_variant["attn contiguous"].params == by_variant["attn"].params
    assert by_variant["none"].overhead is None and by_variant["attn"].overhead is not None
    assert by_variant["attn"].target and by_variant["attn"].passed is not None
    # the default layout on the CPU is channels_last; the extra rows are the same model contiguous and
    # folded (BatchNorm folded: fewer parameters, no running statistics)
    assert [r.layout for r in rows] == ["channels_last"] * 3 + ["contiguous", "channels_last"]
    assert by_variant["attn folded"].params < by_variant["attn"].params
    for variant in ("attn contiguous", "attn folded"):
        row = by_variant[variant]
        assert row.peer == "attn" and row.train_peak_mb is None
        assert row.overhead == pytest.approx(row.latency_ms / by_variant["attn"].latency_ms - 1)


def test_training_memory_exceeds_inference_and_orders_the_variants(rows):
    by_variant = {r.variant: r for r in rows}
    for row in rows[:3]:  # the contiguous and folded rows are timed only
        assert row.train_peak_mb > row.peak_mb > 0  # training keeps activations and gradients
    # attention adds activations; the straightforward PSA form keeps its C/2 × HW maps on top
    assert by_variant["none"].train_peak_mb < by_variant["attn"].train_peak_mb
    assert by_variant["attn"].train_peak_mb < by_variant["reference"].train_peak_mb


def test_table_reports_training_memory_against_the_baseline(rows):
    table = to_markdown(rows).splitlines()
    assert "train memory vs baseline" in table[0]
    attn_row = next(line for line in table if "| attn |" in line)
    base = next(r for r in rows if r.variant == "none").train_peak_mb
    attn = next(r for r in rows if r.variant == "attn").train_peak_mb
    assert attn_row.rstrip(" |").endswith(f"{attn / base - 1:+.1%}")


@pytest.mark.parametrize("case", QUICK_CASES, ids=lambda case: case.name)
def test_quick_cases_train_at_their_batch(case):
    """``bench-models --quick`` measures training memory: every quick case must run in training mode
    (BatchNorm refuses one value per channel, e.g. DeepLabV3+'s image pooling at batch 1)."""
    model = create_model(case.name).train()
    model(torch.randn(case.batch, 3, case.height, case.width)).sum().backward()


def test_batch_one_training_failure_names_the_fix():
    with pytest.raises(ValueError, match=r"cannot run in training mode at input .*; use batch ≥ 2"):
        _train_step(create_model("deeplabv3plus_mbv2_psa"), torch.randn(1, 3, 33, 33))()
