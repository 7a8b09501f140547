"""The scaling plot reads at a glance: one legend entry and one colour per block, x ticks at the measured
sizes, N and C in the title, the quick-mode note under it."""

from __future__ import annotations

import pytest

from psa_zoo.bench.attention import Row, scaling_figure, write_plot
from psa_zoo.layers import list_attn

plt = pytest.importorskip("matplotlib.pyplot")
SIZES = (16, 32, 64)


def _rows() -> list[Row]:
    rows = []
    for i, block in enumerate(list_attn()):
        for size in SIZES:
            for metric in ("fwd_ms", "peak_mb_fwd"):
                rows.append(Row("scaling", block, f"1×64×{size}×{size}", metric, (i + 1) * size**2 / 100))
    return rows


def test_every_block_has_its_own_colour_and_a_legend_entry():
    fig = scaling_figure(_rows(), note="quick mode: the ratios are indicative only")
    try:
        legend = fig.legends[0]
        assert [t.get_text() for t in legend.get_texts()] == list_attn()
        for ax in fig.axes:
            colours = [tuple(line.get_color()) if not isinstance(line.get_color(), str) else line.get_color()
                       for line in ax.get_lines()]  # fmt: skip
            assert len(colours) == len(list_attn()) == len(set(colours))
            assert [t.get_text() for t in ax.get_xticklabels()] == [f"{s}×{s}" for s in SIZES]
            assert list(ax.get_xticks()) == [s * s for s in SIZES]
        title = fig._suptitle.get_text()
        assert "N = 1, C = 64" in title and "indicative only" in title
    finally:
        plt.close(fig)


def test_write_plot_writes_a_png(tmp_path):
    out = tmp_path / "scaling.png"
    assert write_plot(_rows(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
