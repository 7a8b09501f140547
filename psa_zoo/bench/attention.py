"""Benchmark of the attention blocks (PSA Table 1, measured): cost per block, scaling with H×W, and the
fast-vs-straightforward ratios of PSA, NL and DANet with their targets.

Run ``psa-zoo bench-attn --help``. Everything runs on the CPU with a fixed number of threads.
"""

from __future__ import annotations

import csv
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .._atomic import replace_atomically, write_json_atomic
from ..layers import create_attn, list_attn
from ..layers._helpers import apply_parallel_gates
from ._measure import count_flops, peak_memory, saved_for_backward, time_interleaved

Shape = tuple[int, int, int, int]

# Target shapes from the PSA benchmark specification: one large map and the four HRNet-W48 stage shapes
# (batch 32, 256×192 input: strides 4/8/16/32).
LARGE_SHAPE: Shape = (8, 256, 64, 64)
HRNET_W48_SHAPES: tuple[Shape, ...] = ((32, 48, 64, 48), (32, 96, 32, 24), (32, 192, 16, 12), (32, 384, 8, 6))
MEMORY_SHAPE: Shape = (1, 256, 128, 128)


@dataclass
class BenchConfig:
    """What to measure. ``quick()`` is a reduced setting that finishes in about a minute."""

    shape: Shape = (2, 256, 64, 64)
    blocks: tuple[str, ...] = field(default_factory=lambda: tuple(list_attn()))
    sweep_sizes: tuple[int, ...] = (16, 32, 64, 96, 128)
    sweep_batch: int = 1
    sweep_channels: int = 64
    ratio_shapes: tuple[Shape, ...] = (LARGE_SHAPE, *HRNET_W48_SHAPES)
    memory_shape: Shape = MEMORY_SHAPE
    repeats: int = 7
    warmup: int = 2
    threads: int = 2

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            shape=(1, 64, 32, 32),
            sweep_sizes=(16, 32, 48),
            ratio_shapes=((2, 64, 32, 32), (8, 48, 32, 24)),
            memory_shape=(1, 64, 48, 48),
            repeats=3,
            warmup=1,
        )


@dataclass
class Row:
    """One measured quantity; ``target`` is a human-readable bound (``"≥ 4"``) or empty."""

    section: str
    block: str
    shape: str
    metric: str
    value: float | None
    target: str = ""
    passed: bool | None = None


def _shape_str(shape: Shape) -> str:
    return "×".join(map(str, shape))


def _forward(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return module(x)

    return run


def _forward_backward(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()

    return run


def _gating_forward_backward(x: torch.Tensor) -> Callable[[], object]:
    """PSA_p's floor in training: forward + backward of ``x ⊙ a + x ⊙ s`` alone, gates a [N, C, 1, 1] and
    s [N, 1, H, W] given (leaves that need gradients), through the same gating autograd as PSA_p."""
    n, c, h, w = x.shape
    gates = (torch.rand(n, c, 1, 1, requires_grad=True), torch.rand(n, 1, h, w, requires_grad=True))

    def run() -> object:
        x.grad = gates[0].grad = gates[1].grad = None
        apply_parallel_gates(x, *gates).sum().backward()

    return run


def _saved(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Activation bytes ``module`` keeps for backward, besides its input and parameters."""
    return saved_for_backward(lambda: module(x), exclude=(x, *module.parameters()))


def _build(block: str, channels: int, **kwargs) -> torch.nn.Module:
    return create_attn(block, channels, **kwargs).train()


def bench_blocks(cfg: BenchConfig) -> list[Row]:
    """Params, forward FLOPs, forward / forward+backward median time and peak memory of every block.

    FLOPs are given as run and for the straightforward form (``impl="reference"``, where a block has one):
    the latter is the textbook count of the block's math; the fused forms skip (PSA) or repeat (DA's
    shared-key heads) some of that work.
    """
    rows: list[Row] = []
    n, c, h, w = cfg.shape
    shape = _shape_str(cfg.shape)
    for block in cfg.blocks:
        module = _build(block, c)
        x = torch.randn(n, c, h, w)
        x_grad = x.clone().requires_grad_(True)
        times = time_interleaved(
            {"fwd": _forward(module, x), "fwd_bwd": _forward_backward(module, x_grad)},
            repeats=cfg.repeats,
            warmup=cfg.warmup,
        )
        params = sum(p.numel() for p in module.parameters())
        reference = _build(block, c, impl="reference") if hasattr(module, "impl") else module
        rows += [
            Row("blocks", block, shape, "params", params),
            Row("blocks", block, shape, "gflops_fwd", count_flops(_forward(module, x)) / 1e9),
            Row("blocks", block, shape, "gflops_fwd_reference", count_flops(_forward(reference, x)) / 1e9),
            Row("blocks", block, shape, "fwd_ms", times["fwd"] * 1e3),
            Row("blocks", block, shape, "fwd_bwd_ms", times["fwd_bwd"] * 1e3),
            Row("blocks", block, shape, "peak_mb_fwd", _mb(peak_memory(_forward(module, x)))),
            Row(
                "blocks", block, shape, "peak_mb_fwd_bwd", _mb(peak_memory(_forward_backward(module, x_grad)))
            ),
            Row("blocks", block, shape, "saved_mb", _mb(_saved(module, x_grad))),
        ]
    return rows


def bench_scaling(cfg: BenchConfig) -> list[Row]:
    """Forward time and peak memory of every block over square maps of side ``sweep_sizes``."""
    rows: list[Row] = []
    for size in cfg.sweep_sizes:
        x = torch.randn(cfg.sweep_batch, cfg.sweep_channels, size, size)
        modules = {block: _build(block, cfg.sweep_channels) for block in cfg.blocks}
        times = time_interleaved(
            {block: _forward(m, x) for block, m in modules.items()}, repeats=cfg.repeats, warmup=cfg.warmup
        )
        shape = _shape_str(tuple(x.shape))
        for block, module in modules.items():
            rows.append(Row("scaling", block, shape, "fwd_ms", times[block] * 1e3))
            rows.append(Row("scaling", block, shape, "peak_mb_fwd", _mb(peak_memory(_forward(module, x)))))
    return rows


def _ratio_row(
    block: str, shape: Shape, metric: str, value: float, bound: float | None, at_least: bool
) -> Row:
    """A ratio, with its target attached only when ``bound`` is given (i.e. at the target's shape)."""
    if bound is None:
        return Row("ratios", block, _shape_str(shape), metric, value)
    passed = value >= bound if at_least else value <= bound
    return Row(
        "ratios", block, _shape_str(shape), metric, value, f"{'≥' if at_least else '≤'} {bound:g}", passed
    )


def _fast_and_reference(block: str, channels: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    fast, reference = _build(block, channels), _build(block, channels, impl="reference")
    reference.load_state_dict(fast.state_dict())
    return fast, reference


def _psa_p_rows(
    shape: Shape,
    times: dict[str, float],
    what: str,
    floor: str,
    speedup_target: float | None,
    floor_target: float | None,
) -> list[Row]:
    """PSA_p's speed-up over its reference form and its time over the ``floor`` candidate's."""
    return [
        _ratio_row(
            "psa_p", shape, f"{what} speed-up vs reference", times["reference"] / times["fast"],
            speedup_target, at_least=True,
        ),
        _ratio_row(
            "psa_p", shape, f"{what} time / {floor} time", times["fast"] / times["floor"], floor_target,
            at_least=False,
        ),
    ]  # fmt: skip


def bench_ratios(cfg: BenchConfig) -> list[Row]:
    """Fast vs straightforward PSA (time), PSA vs one elementwise pass, NL/DA fused vs explicit (memory).

    Targets (issue 12), attached only at their shapes: PSA_p forward speed-up ≥ 10 at (8, 256, 64, 64) and
    ≥ 2 at each HRNet-W48 stage shape; fast PSA_p ≤ 1.2× the time of ``x * 2`` at (8, 256, 64, 64)
    (reported elsewhere); forward+backward speed-up ≥ 4 and fast PSA_p's forward+backward ≤ 1.2× its
    floor, the forward+backward of the gating product ``x ⊙ a + x ⊙ s`` alone with the two gates given
    (what any PSA_p pays), at (8, 256, 64, 64); NL and DA forward peak memory < 0.5× of their explicit
    forms at (1, 256, 128, 128). Every ratio shape gets forward and forward+backward; the first also the
    other PSA flavours.
    """
    rows: list[Row] = []
    for index, shape in enumerate(cfg.ratio_shapes):
        x = torch.randn(shape)
        fast, reference = _fast_and_reference("psa_p", shape[1])
        times = time_interleaved(
            {"fast": _forward(fast, x), "reference": _forward(reference, x), "floor": lambda x=x: x * 2},
            repeats=cfg.repeats,
            warmup=cfg.warmup,
        )
        is_large = shape == LARGE_SHAPE
        speedup_target = 10.0 if is_large else 2.0 if shape in HRNET_W48_SHAPES else None
        rows += _psa_p_rows(shape, times, "fwd", "(x*2)", speedup_target, 1.2 if is_large else None)
        x_grad = x.clone().requires_grad_(True)
        train_times = time_interleaved(
            {
                "fast": _forward_backward(fast, x_grad),
                "reference": _forward_backward(reference, x_grad),
                "floor": _gating_forward_backward(x_grad),
            },
            repeats=cfg.repeats,
            warmup=cfg.warmup,
        )
        targets = (4.0, 1.2) if is_large else (None, None)
        rows += _psa_p_rows(shape, train_times, "fwd+bwd", "gating fwd+bwd", *targets)
        if index:
            continue
        for block in ("psa_s", "psa_p_paper", "psa_s_paper"):
            fast_b, reference_b = _fast_and_reference(block, shape[1])
            t = time_interleaved(
                {"fast": _forward(fast_b, x), "reference": _forward(reference_b, x)},
                repeats=cfg.repeats,
                warmup=cfg.warmup,
            )
            rows.append(
                _ratio_row(
                    block, shape, "fwd speed-up vs reference", t["reference"] / t["fast"], None, at_least=True
                )
            )
    x = torch.randn(cfg.memory_shape)
    memory_target = 0.5 if cfg.memory_shape == MEMORY_SHAPE else None
    for block in ("nl", "da"):
        fast, reference = _fast_and_reference(block, cfg.memory_shape[1])
        ratio = peak_memory(_forward(fast, x)) / peak_memory(_forward(reference, x))
        rows.append(
            _ratio_row(
                block, cfg.memory_shape, "fwd peak memory vs explicit", ratio, memory_target, at_least=False
            )
        )
    return rows


def _mb(num_bytes: int) -> float:
    return num_bytes / 2**20


def machine_description() -> str:
    """One line naming the CPU, threads and library versions the numbers were taken with."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}"
    )


def run_benchmark(cfg: BenchConfig, sections: tuple[str, ...] = ("blocks", "scaling", "ratios")) -> list[Row]:
    """Run the chosen sections with ``cfg.threads`` CPU threads and return every measurement."""
    torch.manual_seed(0)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        rows: list[Row] = []
        if "blocks" in sections:
            rows += bench_blocks(cfg)
        if "scaling" in sections:
            rows += bench_scaling(cfg)
        if "ratios" in sections:
            rows += bench_ratios(cfg)
        return rows
    finally:
        torch.set_num_threads(previous_threads)


# --- reporting --------------------------------------------------------------------------------------
_BLOCK_COLUMNS = (
    "params",
    "gflops_fwd",
    "gflops_fwd_reference",
    "fwd_ms",
    "fwd_bwd_ms",
    "peak_mb_fwd",
    "peak_mb_fwd_bwd",
    "saved_mb",
)


def _fmt(value: float | None, metric: str = "") -> str:
    if value is None:
        return "n/a"
    if metric == "params":
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def to_markdown(rows: list[Row]) -> str:
    """Markdown tables: blocks (one row per block), scaling (blocks × sizes) and ratios with targets."""
    out: list[str] = []
    blocks = [r for r in rows if r.section == "blocks"]
    if blocks:
        shape = blocks[0].shape
        out += [f"### Attention blocks at input {shape} (N×C×H×W)", ""]
        out.append(
            "| block | params | GFLOPs fwd (as run) | GFLOPs fwd (straightforward form) "
            "| fwd ms | fwd+bwd ms | peak MB fwd | peak MB fwd+bwd | MB kept for backward |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for block in dict.fromkeys(r.block for r in blocks):
            values = {r.metric: r.value for r in blocks if r.block == block}
            out.append(f"| {block} | " + " | ".join(_fmt(values.get(m), m) for m in _BLOCK_COLUMNS) + " |")
        out.append("")
    scaling = [r for r in rows if r.section == "scaling"]
    if scaling:
        shapes = list(dict.fromkeys(r.shape for r in scaling))
        for metric, title in (("fwd_ms", "forward ms"), ("peak_mb_fwd", "forward peak MB")):
            out += [f"### Scaling over H×W: {title}", ""]
            out.append("| block | " + " | ".join(shapes) + " |")
            out.append("|---|" + "---:|" * len(shapes))
            for block in dict.fromkeys(r.block for r in scaling):
                cells = {r.shape: r.value for r in scaling if r.block == block and r.metric == metric}
                out.append(f"| {block} | " + " | ".join(_fmt(cells.get(s)) for s in shapes) + " |")
            out.append("")
    ratios = [r for r in rows if r.section == "ratios"]
    if ratios:
        out += ["### Fast vs straightforward forms", ""]
        out.append("| block | shape | metric | value | target | met |")
        out.append("|---|---|---|---:|---|---|")
        for r in ratios:
            met = "" if r.passed is None else ("yes" if r.passed else "**no**")
            out.append(f"| {r.block} | {r.shape} | {r.metric} | {_fmt(r.value)} | {r.target} | {met} |")
        out.append("")
    return "\n".join(out)


def write_json(rows: list[Row], path: str | Path) -> None:
    payload = {"machine": machine_description(), "rows": [asdict(r) for r in rows]}
    write_json_atomic(path, payload)


def write_csv(rows: list[Row], path: str | Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(Row.__dataclass_fields__))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)

    replace_atomically(path, write)


def write_plot(rows: list[Row], path: str | Path, note: str = "") -> bool:
    """Time and memory vs H×W, one line per block (log-log), x ticks at the measured sizes, N and C in the
    title, ``note`` under it (e.g. that a quick run's ratios are indicative only). Returns False when
    matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig = scaling_figure(rows, note)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def scaling_figure(rows: list[Row], note: str = ""):
    """The matplotlib figure :func:`write_plot` saves."""
    import matplotlib.pyplot as plt

    scaling = [r for r in rows if r.section == "scaling" and r.value is not None]
    blocks = list(dict.fromkeys(r.block for r in scaling))
    # tab10's ten colours, then black and greys: every block its own colour (and its own marker)
    colours = [*plt.get_cmap("tab10").colors, "black", "dimgray", "darkgoldenrod", "darkslateblue"]
    shapes = sorted({r.shape for r in scaling}, key=_positions)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, metric, label in (
        (axes[0], "fwd_ms", "forward time (ms)"),
        (axes[1], "peak_mb_fwd", "peak memory (MB)"),
    ):
        for index, block in enumerate(blocks):
            points = [
                (_positions(r.shape), r.value) for r in scaling if r.block == block and r.metric == metric
            ]
            if points:
                style = {"color": colours[index % len(colours)], "marker": "osD^v<>phX*"[index % 11]}
                ax.plot(*zip(*points, strict=True), label=block, **style)
        ax.set(xscale="log", yscale="log", xlabel="H×W", ylabel=label)
        ax.set_xticks([_positions(s) for s in shapes], ["×".join(s.split("×")[2:]) for s in shapes])
        ax.minorticks_off()
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, title="block")
    n, c = (shapes[0].split("×")[:2]) if shapes else ("?", "?")
    title = f"Attention blocks vs map size, N = {n}, C = {c} ({machine_description()})"
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def _positions(shape: str) -> int:
    _, _, h, w = (int(v) for v in shape.split("×"))
    return h * w
