"""``psa-zoo`` command line: thin wrappers over library functions."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence


def _add_bench_attn(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench-attn",
        help="measure every attention block: params, FLOPs, time, memory, scaling, fast-vs-reference ratios",
        description="Benchmark the attention blocks on the CPU and print Markdown tables.",
    )
    p.add_argument("--quick", action="store_true", help="reduced sizes and repeats (about a minute)")
    p.add_argument(
        "--shape", type=int, nargs=4, metavar=("N", "C", "H", "W"), help="input of the block table"
    )
    p.add_argument("--blocks", nargs="+", help="block names (default: all of list_attn())")
    p.add_argument("--sizes", type=int, nargs="+", help="square map sides of the scaling sweep")
    p.add_argument("--sweep-channels", type=int, help="channels of the scaling sweep")
    p.add_argument("--repeats", type=int, help="timed repeats per measurement (median reported)")
    p.add_argument("--threads", type=int, help="CPU threads (default 2)")
    p.add_argument(
        "--sections",
        nargs="+",
        choices=("blocks", "scaling", "ratios"),
        default=["blocks", "scaling", "ratios"],
    )
    p.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    p.add_argument("--csv", metavar="PATH", help="also write every measurement as CSV")
    p.add_argument("--plot", metavar="PATH", help="also write a PNG of time and memory vs H×W")
    p.set_defaults(func=_run_bench_attn)


def _run_bench_attn(args: argparse.Namespace) -> int:
    from .bench import attention
    from .layers import get_attn

    cfg = attention.BenchConfig.quick() if args.quick else attention.BenchConfig()
    overrides = {
        "shape": tuple(args.shape) if args.shape else None,
        "blocks": tuple(args.blocks) if args.blocks else None,
        "sweep_sizes": tuple(args.sizes) if args.sizes else None,
        "sweep_channels": args.sweep_channels,
        "repeats": args.repeats,
        "threads": args.threads,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    for block in cfg.blocks:
        get_attn(block)  # unknown names fail before any measurement
    print(f"Machine: {attention.machine_description().split(',')[0]}, {cfg.threads} threads", flush=True)
    rows = attention.run_benchmark(cfg, sections=tuple(args.sections))
    print(attention.to_markdown(rows))
    if args.json:
        attention.write_json(rows, args.json)
    if args.csv:
        attention.write_csv(rows, args.csv)
    if args.plot and not attention.write_plot(rows, args.plot):
        print("matplotlib is not installed: no plot written (pip install 'psa_zoo[bench]')", file=sys.stderr)
    failed = [r for r in rows if r.passed is False]
    if failed:
        print(f"{len(failed)} target(s) not met on this machine (see the 'met' column).", file=sys.stderr)
    return 0


def _add_bench_models(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench-models",
        help="CPU latency and memory of the paper's models, PSA overhead (fast vs straightforward), smp",
        description="Benchmark whole models on the CPU and print a Markdown table.",
    )
    p.add_argument("--quick", action="store_true", help="two small cases, one repeat (a smoke run)")
    p.add_argument("--models", nargs="+", help="limit to these model names (default cases only)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per variant (median reported)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--no-smp", action="store_true", help="skip the segmentation_models_pytorch comparison")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.set_defaults(func=_run_bench_models)


def _run_bench_models(args: argparse.Namespace) -> int:
    import json

    from .bench import models as bench_models
    from .bench.attention import machine_description

    cases = bench_models.QUICK_CASES if args.quick else bench_models.DEFAULT_CASES
    if args.models:
        unknown = sorted(set(args.models) - {c.name for c in cases})
        if unknown:
            raise ValueError(
                f"no benchmark case for {', '.join(unknown)}; cases: {', '.join(c.name for c in cases)}"
            )
        cases = tuple(c for c in cases if c.name in args.models)
    repeats = 1 if args.quick else args.repeats
    print(f"Machine: {machine_description().split(',')[0]}, {args.threads} threads", flush=True)
    rows = bench_models.run_model_benchmark(
        cases, repeats=repeats, warmup=1, threads=args.threads, with_smp=not (args.no_smp or args.quick)
    )
    print(bench_models.to_markdown(rows))
    if args.json:
        payload = {"machine": machine_description(), "rows": bench_models.rows_as_dicts(rows)}
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=2, ensure_ascii=False)
    return 0


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    from .convert.checkpoints import FORMATS

    p = subparsers.add_parser(
        "convert",
        help="convert an official checkpoint into a folder that psa_zoo.from_pretrained loads",
        description="Read an official .pth checkpoint (weights_only), infer the architecture from its keys "
        "and shapes (or take --arch), map every key (no silent drops) and write safetensors + config.json "
        "+ model card.",
    )
    p.add_argument("src", help="official checkpoint (.pth)")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="layout of the checkpoint")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--arch", help="registered model name to convert into (default: inferred)")
    p.add_argument("--tag", help="pretrained tag the model card describes (e.g. coco_256x192)")
    p.add_argument("--output-stride", type=int, help="DeepLabV3+ output stride (not stored in the keys)")
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from .convert.checkpoints import convert_checkpoint

    extra = {"output_stride": args.output_stride} if args.output_stride else {}
    out = convert_checkpoint(args.src, args.format, args.out, arch=args.arch, tag=args.tag, **extra)
    print(f"wrote {out}: load it with psa_zoo.from_pretrained({str(out)!r})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="psa-zoo", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_bench_attn(subparsers)
    _add_bench_models(subparsers)
    _add_convert(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"psa-zoo {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
