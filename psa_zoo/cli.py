"""``psa-zoo`` command line: thin wrappers over library functions.

Every error is one line on stderr, ``psa-zoo <command>: error: <what was found>, <what was expected>;
<what to do>``, with exit status 2 and no traceback. Options and output paths are checked before any
measurement or conversion starts, so a wrong path fails in a second, not after minutes of benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from ._atomic import write_json_atomic
from ._cpu_memory import keep_cpu_memory_unless_disabled
from .cli_export import add_export_command
from .cli_tasks import add_task_commands
from .cli_zoo import add_zoo_commands

EXIT_ERROR = 2

_EPILOG = """\
examples:
  psa-zoo demo
  psa-zoo list 'hrnet*'
  psa-zoo info hrnet_w48_psa_p
  psa-zoo predict psa_zoo_demo/run/model --image person.jpg --out predictions/ --attn-maps
  psa-zoo export psa_zoo_demo/run/model --format onnx --decode --out w18_small.onnx
  psa-zoo bench-attn --quick
  psa-zoo make-data --task pose --out embedded_pose/
  psa-zoo train-pose --model hrnet_w18_psa_p --data embedded_pose/ --output-dir runs/w18 --recipe embedded \
      --input-size 128 96 --epochs 5
  psa-zoo make-data --task seg --out embedded_seg/
  psa-zoo train-seg --model deeplabv3plus_mbv2_psa --data embedded_seg/ --output-dir runs/seg \
      --recipe embedded_seg
  psa-zoo eval-pose --ann person_keypoints_val2017.json --results results.json
  psa-zoo bench-train --task pose --quick
  psa-zoo convert pose_hrnet_w48_256x192.pth --format hrnet-pose --out hrnet_w48/

run 'psa-zoo <command> --help' for the options of a command.
"""
_BENCH_ATTN_EPILOG = """\
examples:
  psa-zoo demo
  psa-zoo list 'hrnet*'
  psa-zoo info hrnet_w48_psa_p
  psa-zoo predict psa_zoo_demo/run/model --image person.jpg --out predictions/ --attn-maps
  psa-zoo export psa_zoo_demo/run/model --format onnx --decode --out w18_small.onnx
  psa-zoo bench-attn --quick
  psa-zoo bench-attn --blocks psa_p psa_s se --shape 2 256 64 64 --sections blocks --json blocks.json
  psa-zoo bench-attn --sections scaling --sizes 32 64 128 --plot scaling.png --csv scaling.csv
"""
_BENCH_MODELS_EPILOG = """\
examples:
  psa-zoo bench-models --quick
  psa-zoo bench-models --models hrnet_w48_psa_p --repeats 3 --no-smp --json models.json
  psa-zoo bench-models --models simplebaseline_r50_psa_p --no-smp   # + the trunks against timm's
  psa-zoo bench-models --against 6dcb848^ --models hrnet_w48_psa_p   # today's code vs that commit's
  psa-zoo bench-models --against 6dcb848^ --train   # + one training step of each side
  psa-zoo bench-models --compile --models hrnet_w48_psa_p   # PSA's overhead eager and compiled
  psa-zoo bench-models --allocator --train   # freed CPU memory given back vs kept, a process each
"""
_CONVERT_EPILOG = """\
examples:
  psa-zoo convert best_deeplabv3plus_mobilenet_voc_os16.pth --format vainf-deeplab --output-stride 16 \\
      --out deeplabv3plus_mbv2/
  psa-zoo convert pose_hrnet_w32_256x192.pth --format hrnet-pose --arch hrnet_w32 --tag coco_256x192 \\
      --out hrnet_w32/ --overwrite
"""


class _Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose usage errors are one line (argparse's own print the usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def positive_int(text: str) -> int:
    """``type=`` of counts and sizes: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}, expected a positive integer (≥ 1)")
    return value


def _check_writable_folder(folder: Path, what: str) -> None:
    """Raise ``ValueError`` unless files can be created in ``folder`` (tried, so root and read-only
    mounts are judged as the later write will be)."""
    if not folder.exists():
        raise ValueError(f"{what}: folder {folder} does not exist, expected an existing folder; create it")
    if not folder.is_dir():
        raise ValueError(f"{what}: {folder} is a file, expected a folder; choose another path")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(
            f"{what}: folder {folder} is not writable ({error.strerror}), expected a writable folder; "
            "choose another path or change its permissions"
        ) from None


def check_output_file(path: str | None, option: str) -> None:
    """Raise ``ValueError`` now when ``path`` (the value of ``option``) could not be written later."""
    if path is None:
        return
    target = Path(path)
    what = f"{option} {path}"
    if target.is_dir():
        raise ValueError(f"{what} is a folder, expected a file path; give a file name inside it")
    _check_writable_folder(target.parent, what)
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{what} is a read-only file, expected a writable one; choose another path")


def check_output_folder(path: str, option: str) -> None:
    """Raise ``ValueError`` now when the folder ``path`` could not be saved into later: the save writes a
    temporary folder beside ``path`` and moves it in place, so the nearest existing parent must be a
    writable folder. An existing file at ``path`` itself (and a folder that already holds a model) is left
    to :func:`psa_zoo.convert.checkpoints.convert_checkpoint`, which refuses it."""
    target = Path(path).absolute()
    if target.exists() and not target.is_dir():
        return
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    _check_writable_folder(existing, f"{option} {path}")


def _one_line(error: Exception) -> str:
    """The message of ``error`` on one line; an OS error names the path and the reason."""
    if isinstance(error, OSError) and error.strerror:
        where = error.filename if error.filename is not None else "a file"
        return f"{where}: {error.strerror}, expected a path that can be read or written; check it"
    return " ".join(str(error).split())


def _add_bench_attn(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench-attn",
        help="measure every attention block: params, FLOPs, time, memory, scaling, fast-vs-reference ratios",
        description="Benchmark the attention blocks on the CPU and print Markdown tables.",
        epilog=_BENCH_ATTN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="reduced sizes and repeats (about a minute)")
    p.add_argument(
        "--shape",
        type=positive_int,
        nargs=4,
        metavar=("N", "C", "H", "W"),
        help="input of the block table (section blocks)",
    )
    p.add_argument("--blocks", nargs="+", help="block names (default: all of list_attn())")
    p.add_argument(
        "--sizes",
        type=positive_int,
        nargs="+",
        help="square map sides of the scaling sweep (section scaling)",
    )
    p.add_argument("--sweep-channels", type=positive_int, help="channels of the scaling sweep")
    p.add_argument("--repeats", type=positive_int, help="timed repeats per measurement (median reported)")
    p.add_argument("--threads", type=positive_int, help="CPU threads (default 2)")
    p.add_argument(
        "--sections",
        nargs="+",
        choices=("blocks", "scaling", "ratios"),
        default=["blocks", "scaling", "ratios"],
    )
    p.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    p.add_argument("--csv", metavar="PATH", help="also write every measurement as CSV")
    p.add_argument(
        "--plot", metavar="PATH", help="also write a PNG of time and memory vs H×W (section scaling)"
    )
    p.set_defaults(func=_run_bench_attn)


def _check_bench_attn_args(args: argparse.Namespace) -> None:
    """Options of a section that ``--sections`` leaves out would be ignored: refuse them instead."""
    needs = {"--shape": "blocks", "--sizes": "scaling", "--sweep-channels": "scaling", "--plot": "scaling"}
    for option, section in needs.items():
        value = getattr(args, option[2:].replace("-", "_"))
        if value is not None and section not in args.sections:
            raise ValueError(
                f"{option} is for the {section} section but --sections is {' '.join(args.sections)}, "
                f"expected {section} among them; add it to --sections or drop {option}"
            )
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise ValueError(
            f"--plot {args.plot} given but matplotlib is not installed, expected it for the plot; "
            "pip install 'psa_zoo[bench]' or drop --plot"
        )
    for option in ("json", "csv", "plot"):
        check_output_file(getattr(args, option), f"--{option}")


def _run_bench_attn(args: argparse.Namespace) -> int:
    from .bench import attention
    from .layers import get_attn

    _check_bench_attn_args(args)
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
    quick_note = "quick mode: small shapes, few repeats; the ratios are indicative only" if args.quick else ""
    if quick_note:
        print(quick_note)
    if args.plot:
        attention.write_plot(rows, args.plot, note=quick_note)
    failed = [r for r in rows if r.passed is False]
    if failed:
        print(f"{len(failed)} target(s) not met on this machine (see the 'met' column).", file=sys.stderr)
    return 0


def _add_bench_models(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench-models",
        help="CPU latency and memory of the paper's models, PSA overhead (fast vs straightforward), smp",
        description="Benchmark whole models on the CPU and print a Markdown table.",
        epilog=_BENCH_MODELS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="two small cases, one repeat (a smoke run)")
    p.add_argument("--models", nargs="+", help="limit to these model names (default cases only)")
    p.add_argument(
        "--repeats",
        type=positive_int,
        help="timed repeats per variant, median reported (default 5; 1 with --quick)",
    )
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads (default 2)")
    p.add_argument("--no-smp", action="store_true", help="default table: skip the smp comparison")
    p.add_argument("--no-trunks", action="store_true", help="default table: skip the trunks against timm's")
    instead = p.add_mutually_exclusive_group()
    instead.add_argument(
        "--against",
        metavar="COMMIT",
        help="instead: time each model as built by COMMIT's code and by today's, same weights, interleaved "
        "(needs a git checkout)",
    )
    instead.add_argument(
        "--compile",
        action="store_true",
        help="instead: PSA's overhead over attn=None, eager and under torch.compile (inductor), interleaved",
    )
    instead.add_argument(
        "--allocator",
        action="store_true",
        help="instead: each model in processes of its own, freed CPU memory given back (glibc's default) "
        "and kept (what psa-zoo sets, PSA_ZOO_KEEP_CPU_MEMORY), alternating; --repeats per process",
    )
    p.add_argument(
        "--rounds", type=positive_int, help="with --allocator: pairs of processes per model (default 3)"
    )
    p.add_argument(
        "--train",
        action="store_true",
        help="with --against or --allocator: also time one training step (forward + backward) of each side",
    )
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.set_defaults(func=_run_bench_models)


def _run_bench_models(args: argparse.Namespace) -> int:
    from .bench import models as bench_models
    from .bench.attention import machine_description

    cases = bench_models.QUICK_CASES if args.quick else bench_models.DEFAULT_CASES
    if args.models:
        unknown = sorted(set(args.models) - {c.name for c in cases})
        if unknown:
            mode = " with --quick" if args.quick else ""
            raise ValueError(
                f"--models {' '.join(unknown)}: no such benchmark case{mode}, "
                f"expected one of {', '.join(c.name for c in cases)}; pick among those"
            )
        cases = tuple(c for c in cases if c.name in args.models)
    check_output_file(args.json, "--json")
    if args.train and not (args.against or args.allocator):
        raise ValueError(
            "--train: found without --against or --allocator, expected --against COMMIT or --allocator; "
            "add one or drop --train"
        )
    if args.rounds and not args.allocator:
        raise ValueError("--rounds: found without --allocator, expected --allocator; add it or drop --rounds")
    modes = (("--against", args.against), ("--compile", args.compile), ("--allocator", args.allocator))
    mode = next((flag for flag, given in modes if given), None)
    skips = [flag for flag, given in (("--no-smp", args.no_smp), ("--no-trunks", args.no_trunks)) if given]
    if mode and skips:
        them = "them" if len(skips) > 1 else "it"
        raise ValueError(
            f"{' '.join(skips)}: found with {mode}, expected only without --against, --compile or "
            f"--allocator (they apply to the default table); drop {them} or drop {mode}"
        )
    repeats = args.repeats or (1 if args.quick else 5)
    print(f"Machine: {machine_description().split(',')[0]}, {args.threads} threads", flush=True)
    payload = {"machine": machine_description()}
    if args.against or args.compile:
        import torch

        torch.set_num_threads(args.threads)  # run_model_benchmark sets its own
    if args.allocator:
        payload.update(_bench_allocator(args, cases, repeats))
    elif args.against:
        import dataclasses

        from .bench import against_commit

        commit_rows = against_commit.bench_against_commit(
            args.against, cases, repeats=repeats, warmup=1, train=args.train
        )
        print(against_commit.to_markdown(commit_rows, args.against))
        payload.update(against=args.against, rows=[dataclasses.asdict(r) for r in commit_rows])
    else:
        if args.compile:
            rows = [row for case in cases for row in bench_models.bench_compiled(case, repeats, warmup=1)]
        else:
            trunks = bench_models.QUICK_TRUNK_PEERS if args.quick else bench_models.TRUNK_PEERS
            rows = bench_models.run_model_benchmark(
                cases, repeats=repeats, warmup=1, threads=args.threads,
                with_smp=not (args.no_smp or args.quick), trunks=() if args.no_trunks else trunks,
            )  # fmt: skip
        print(bench_models.to_markdown(rows))
        payload["rows"] = bench_models.rows_as_dicts(rows)
    if args.json:
        write_json_atomic(args.json, payload)
    return 0


def _bench_allocator(args: argparse.Namespace, cases, repeats: int) -> dict:
    """``bench-models --allocator``: print the table, return the JSON payload's entries."""
    import dataclasses

    from .bench import allocator

    rounds = args.rounds or 3
    rows = allocator.bench_allocator(
        cases, rounds=rounds, repeats=repeats, warmup=1, train=args.train, threads=args.threads
    )
    print(allocator.to_markdown(rows))
    settings = dict(rounds=rounds, repeats=repeats, warmup=1, train=args.train, threads=args.threads)
    return {"settings": settings, "rows": [dataclasses.asdict(r) for r in rows]}


_BENCH_TRAIN_EPILOG = """\
examples:
  psa-zoo bench-train --quick
  psa-zoo bench-train --task pose --json train.json
  psa-zoo bench-train --task seg --json train_seg.json
  psa-zoo bench-train --batch-size 32 --steps 20 --mixed-precision bf16   # on a GPU
"""


def _add_bench_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench-train",
        help="training images/s of the engine, the data loader alone, and the share of a step spent waiting "
        "for data",
        description="Benchmark the training loop (the engine of psa-zoo train-pose / train-seg) on "
        "generated data (nothing is downloaded) and print Markdown tables.",
        epilog=_BENCH_TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--task",
        default="pose",
        metavar="{pose,seg}",
        help="pose (default): HRNet models at 256×192 and the loader alone; seg: deeplabv3plus_mbv2_psa "
        "training and evaluation at 513×513 and sliding-window memory at 1024×2048",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes (pose: tiny models at 64×48, 2 timed steps; seg: 64×64, 1 timed step)",
    )
    p.add_argument("--batch-size", type=positive_int, help="samples per step (default 8; seg 4)")
    p.add_argument(
        "--steps",
        type=positive_int,
        help="timed optimiser steps per run (default 5, 2 with --quick; seg 3, 1 with --quick)",
    )
    p.add_argument(
        "--warmup", type=positive_int, help="first steps left out of the timing (default 1; worker start-up)"
    )
    p.add_argument("--repeats", type=positive_int, help="runs per model, round-robin, median (default 1)")
    p.add_argument("--num-workers", type=int, help="data-loader workers while training (default 2)")
    p.add_argument(
        "--threads", type=positive_int, default=2, help="torch threads of the main process (default 2)"
    )
    p.add_argument(
        "--mixed-precision",
        choices=("no", "bf16", "fp16"),
        default="no",
        help="autocast dtype (default no; fp16 needs a CUDA GPU); the device is chosen automatically",
    )
    p.add_argument("--json", metavar="PATH", help="also write the rows and the machine as JSON")
    p.set_defaults(func=_run_bench_train)


def _run_bench_train(args: argparse.Namespace) -> int:
    from .bench import train as bench_train

    if args.task not in ("pose", "seg"):
        raise ValueError(
            f"--task {args.task} is not benchmarked, expected pose or seg; run psa-zoo bench-train --task seg"
        )
    if args.num_workers is not None and args.num_workers < 0:
        raise ValueError(
            f"--num-workers {args.num_workers} is negative, expected 0 or more (0: load in the main "
            "process); give a count ≥ 0"
        )
    check_output_file(args.json, "--json")
    overrides = {
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "num_workers": args.num_workers,
        "threads": args.threads,
        "mixed_precision": args.mixed_precision,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config_class = bench_train.SegBenchConfig if args.task == "seg" else bench_train.TrainBenchConfig
    cfg = config_class.quick(**overrides) if args.quick else config_class(**overrides)
    print(f"Machine: {bench_train.machine_description().split(',')[0]}, {cfg.threads} threads", flush=True)
    run = bench_train.run_seg_benchmark if args.task == "seg" else bench_train.run_train_benchmark
    report = run(cfg)
    print(bench_train.to_markdown(report))
    if args.json:
        write_json_atomic(args.json, report.to_dict())
    failed = [r for r in report.train if r.passed is False]
    if failed:
        print(f"{len(failed)} target(s) not met on this machine (see the 'met' column).", file=sys.stderr)
    return 0


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    from .convert.checkpoints import FORMATS
    from .models.deeplabv3plus import ASPP_RATES

    p = subparsers.add_parser(
        "convert",
        help="convert an official checkpoint into a folder that psa_zoo.from_pretrained loads",
        description="Read an official .pth checkpoint (weights_only), infer the architecture from its keys "
        "and shapes (or take --arch), map every key (no silent drops) and write safetensors + config.json "
        "+ model card.",
        epilog=_CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", help="official checkpoint (.pth)")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="layout of the checkpoint")
    p.add_argument("--out", required=True, help="output folder (refused when it holds a model already)")
    p.add_argument("--overwrite", action="store_true", help="replace the model that --out already holds")
    p.add_argument("--arch", help="registered model name to convert into (default: inferred)")
    p.add_argument("--tag", help="pretrained tag the model card describes (e.g. coco_256x192)")
    p.add_argument(
        "--output-stride",
        type=int,
        choices=sorted(ASPP_RATES),
        help="DeepLabV3+ output stride (not stored in the keys; format vainf-deeplab only)",
    )
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from .convert.checkpoints import convert_checkpoint

    extra = {"output_stride": args.output_stride} if args.output_stride is not None else {}
    check_output_folder(args.out, "--out")
    out = convert_checkpoint(
        args.src, args.format, args.out, arch=args.arch, tag=args.tag, overwrite=args.overwrite, **extra
    )
    print(f"wrote {out}: load it with psa_zoo.from_pretrained({str(out)!r})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="psa-zoo",
        description=__doc__.split("\n\n")[0],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_zoo_commands(subparsers, positive_int)
    _add_bench_attn(subparsers)
    _add_bench_models(subparsers)
    _add_bench_train(subparsers)
    _add_convert(subparsers)
    add_task_commands(subparsers, positive_int)
    add_export_command(subparsers, positive_int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        keep_cpu_memory_unless_disabled()  # this process runs models: reuse freed memory (see _cpu_memory)
        return args.func(args)
    except (OSError, ValueError) as error:  # FileNotFoundError and FileExistsError are OSErrors
        parser.exit(EXIT_ERROR, f"psa-zoo {args.command}: error: {_one_line(error)}\n")


if __name__ == "__main__":
    sys.exit(main())
