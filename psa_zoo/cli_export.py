"""``psa-zoo export``: a saved model (or a registered architecture) to ONNX or a ``torch.export`` program,
checked against PyTorch (:func:`psa_zoo.export.export_model`).

Same conventions as :mod:`psa_zoo.cli` (one-line errors, exit status 2, options checked before work).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_tasks import _formatter

_EXPORT_EPILOG = """\
examples:
  psa-zoo export runs/w18/model --format onnx --decode --out w18_pose.onnx
  psa-zoo export runs/seg/model --format torch-export --input-size 513 513 --out seg.pt2
  psa-zoo export hrnet_w32_psa_p --format onnx --static --batch-size 8   # random weights: a graph check
  psa-zoo export runs/w18/model --format onnx --atol 1e-5 --rtol 1e-3 --overwrite

The file is written only when its outputs match PyTorch's (max abs error ≤ atol + rtol · max|output|);
ONNX needs pip install 'psa_zoo[export]'.
"""


def _non_negative_float(text: str) -> float:
    """``type=`` of tolerances: a finite number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a number ≥ 0") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"got {value}, expected a finite number ≥ 0")
    return value


def add_export_command(subparsers: argparse._SubParsersAction, positive_int) -> None:
    from .export import DEFAULT_ATOL, DEFAULT_KEYPOINT_ATOL, DEFAULT_RTOL, FORMATS, MIN_DYNAMIC_SIDE

    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX or torch.export (.pt2) and check the file against PyTorch",
        description="Trace the model with torch.export (batch, height and width dynamic unless --static; "
        f"height and width ≥ {MIN_DYNAMIC_SIDE}), write ONNX (dynamo exporter, opset 18) or a .pt2 "
        "program, load it back (onnxruntime / torch.export.load), run it on a normalised random image "
        "(and on a second batch and size when dynamic) and compare every output with PyTorch. A "
        "registered name is built with random weights (nothing is downloaded); give a saved folder for "
        "trained weights.",
        epilog=_EXPORT_EPILOG,
        formatter_class=_formatter(),
    )
    p.add_argument("model", metavar="NAME_OR_DIR", help="saved model folder or registered model name")
    p.add_argument(
        "--format", required=True, choices=sorted(FORMATS), help="onnx (.onnx) or torch-export (.pt2)"
    )
    p.add_argument("--out", metavar="PATH", help="file to write (default: <model name><suffix> here)")
    p.add_argument(
        "--input-size",
        type=positive_int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="example input size (default: the model's metadata input size)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        metavar="N",
        help="batch of the checked input (default 1)",
    )
    p.add_argument("--static", action="store_true", help="fixed batch and size instead of dynamic ones")
    p.add_argument(
        "--decode",
        action="store_true",
        help="pose: also output keypoints (input-crop pixels) and scores, decoded with the model's codec",
    )
    p.add_argument(
        "--atol",
        type=_non_negative_float,
        metavar="X",
        default=DEFAULT_ATOL,
        help=f"absolute tolerance, added to rtol · max|output| (default {DEFAULT_ATOL:g})",
    )
    p.add_argument(
        "--rtol",
        type=_non_negative_float,
        metavar="X",
        default=DEFAULT_RTOL,
        help=f"tolerance relative to the largest output magnitude (default {DEFAULT_RTOL:g})",
    )
    p.add_argument(
        "--keypoint-atol",
        type=_non_negative_float,
        metavar="PX",
        default=DEFAULT_KEYPOINT_ATOL,
        help=f"keypoint tolerance in pixels, with --decode (default {DEFAULT_KEYPOINT_ATOL:g})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_run_export)


def _load(name_or_dir: str):
    """(model, whether its weights are random): a saved folder, or a registered name built untrained."""
    from .models import create_model, from_pretrained, list_models

    if Path(name_or_dir).is_dir():
        return from_pretrained(name_or_dir), False
    if name_or_dir not in list_models():
        raise ValueError(
            f"NAME_OR_DIR {name_or_dir!r} is neither a folder nor a registered model name, expected a saved "
            "model folder or one of psa_zoo.list_models(); check the path or the name"
        )
    return create_model(name_or_dir, pretrained=False), True


def _run_export(args: argparse.Namespace) -> int:
    from .cli import check_output_file
    from .export import FORMATS, _check_out, _require, export_model

    folder = Path(args.model).is_dir()
    out = args.out or (Path(args.model).resolve().name if folder else args.model) + FORMATS[args.format]
    check_output_file(out, "--out")
    _check_out(out, args.format, args.overwrite)  # suffix and overwrite, before the model is built
    if args.format == "onnx":
        _require("onnx", "onnxscript", "onnxruntime")
    model, random_weights = _load(args.model)
    if random_weights:
        print(
            f"note: {args.model} built with random weights (nothing downloaded): the export checks the graph"
        )
    report = export_model(
        model,
        args.format,
        out,
        input_size=tuple(args.input_size) if args.input_size else None,
        batch_size=args.batch_size,
        dynamic=not args.static,
        decode=args.decode,
        atol=args.atol,
        rtol=args.rtol,
        keypoint_atol=args.keypoint_atol,
        overwrite=args.overwrite,
    )
    print(report.format_table())
    return 0
