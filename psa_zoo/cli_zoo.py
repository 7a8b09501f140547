"""The zoo commands of ``psa-zoo``: ``demo``, ``list``, ``info``, ``predict``.

Same conventions as :mod:`psa_zoo.cli` (one-line errors, exit status 2, options checked before work).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._atomic import write_json_atomic
from .cli_tasks import _formatter, add_fold_batchnorm_flag

_DEMO_EPILOG = """\
examples:
  psa-zoo demo                                   # pose: HRNet-W18-Small + PSA_p, AP before / after
  psa-zoo demo --task seg --out seg_demo/        # segmentation: DeepLabV3+ MobileNetV2 + PSA_p, mIoU
  psa-zoo demo --image photo.jpg --overwrite     # also predict your image (it knows stick figures only)
"""
_LIST_EPILOG = """\
examples:
  psa-zoo list
  psa-zoo list 'hrnet*' --flops
  psa-zoo list --pretrained --json zoo.json
"""
_INFO_EPILOG = """\
examples:
  psa-zoo info hrnet_w48_psa_p
  psa-zoo info hrnet_w32.coco_256x192 --json hrnet_w32.json
"""
_PREDICT_EPILOG = """\
examples:
  psa-zoo predict psa_zoo_demo/run/model --image person.jpg --boxes 10,20,120,300 --out predictions/
  psa-zoo predict seg_demo/run/model --image a.png b.png --out predictions/ --attn-maps
  psa-zoo predict hrnet_w32.coco_256x192 --image crowd.jpg --boxes-json detections.json
      (a registered name needs loadable weights: published, or converted with psa-zoo convert)
"""


def _check_json_target(path: str | None, overwrite: bool = False) -> None:
    """``--json PATH``: a writable place that holds no file yet, unless ``overwrite`` was asked for."""
    from .cli import check_output_file

    check_output_file(path, "--json")
    if path and Path(path).exists() and not overwrite:
        raise ValueError(f"--json {path} exists; remove it or choose another path")


def add_zoo_commands(subparsers: argparse._SubParsersAction, positive_int) -> None:
    _add_demo(subparsers, positive_int)
    _add_list(subparsers)
    _add_info(subparsers)
    _add_predict(subparsers)


# --- demo ---------------------------------------------------------------------------------------------------
def _add_demo(subparsers, positive_int) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole job on generated data: fine-tune, evaluate, save, reload, predict (no download)",
        description="Writes the embedded dataset, fine-tunes a small PSA model through the training engine, "
        "evaluates it before and after (COCO AP / mIoU), saves and reloads the Hub-ready folder, predicts "
        "held-out images and draws the PSA attention maps. A few minutes on 2 CPU cores.",
        epilog=_DEMO_EPILOG,
        formatter_class=_formatter(),
    )
    p.add_argument("--task", choices=("pose", "seg"), default="pose")
    p.add_argument("--out", default="psa_zoo_demo", help="folder for the data, the run and the pictures")
    p.add_argument("--image", help="also predict this image")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds an earlier demo")
    p.add_argument("--num-train", type=positive_int, help="training images (default: the measured demo's)")
    p.add_argument("--num-val", type=positive_int, help="validation images")
    p.add_argument("--max-train-steps", type=positive_int, help="stop after N steps (a shorter demo)")
    p.add_argument("--num-workers", type=int, default=2, help="data-loader workers (default 2)")
    p.add_argument("--json", help="also write the summary here")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _check_json_target(args.json, overwrite=args.overwrite)
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be ≥ 0, got {args.num_workers}")
    result = run_demo(
        args.task, args.out, image=args.image, overwrite=args.overwrite, num_train=args.num_train,
        num_val=args.num_val, max_train_steps=args.max_train_steps, num_workers=args.num_workers,
    )  # fmt: skip
    print(result.format_summary())
    if args.json:
        write_json_atomic(args.json, result.to_dict())
    return 0


# --- list / info --------------------------------------------------------------------------------------------
def _add_list(subparsers) -> None:
    p = subparsers.add_parser(
        "list",
        help="the registered models: task, params, paper metric, weights status",
        description="One row per registered model (built on the meta device: no memory, no download).",
        epilog=_LIST_EPILOG,
        formatter_class=_formatter(),
    )
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'hrnet*' (default: all)")
    p.add_argument(
        "--pretrained", action="store_true", help="only models with loadable or convertible weights"
    )
    p.add_argument("--flops", action="store_true", help="also count GMACs at the paper's input size (slower)")
    p.add_argument("--json", help="write the rows here")
    p.set_defaults(func=_run_list)


def _run_list(args: argparse.Namespace) -> int:
    import dataclasses

    from .info import format_zoo_table, zoo_rows

    _check_json_target(args.json)
    rows = zoo_rows(args.pattern, pretrained=args.pretrained, with_macs=args.flops)
    if not rows:
        raise ValueError(f"no registered model matches {args.pattern!r}; run psa-zoo list to see them all")
    table = format_zoo_table(rows)
    if not args.flops:  # the GMACs column would be all NaN
        table = "\n".join(_drop_column(line, 3) for line in table.splitlines())
    print(table)
    if args.json:
        write_json_atomic(args.json, [dataclasses.asdict(r) for r in rows])
    return 0


def _drop_column(line: str, index: int) -> str:
    cells = line.split("|")
    del cells[index + 1]
    return "|".join(cells)


def _add_info(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="one model: architecture, params, GMACs, tags with metrics, provenance, weights, metadata",
        epilog=_INFO_EPILOG,
        formatter_class=_formatter(),
    )
    p.add_argument("name", help="registered name, optionally with a tag (name.tag)")
    p.add_argument("--json", help="write the whole record here")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    import dataclasses

    from .info import format_model_info, model_info

    _check_json_target(args.json)
    info = model_info(args.name)
    print(format_model_info(info))
    if args.json:
        write_json_atomic(args.json, {**dataclasses.asdict(info), "status": info.status})
    return 0


# --- predict ------------------------------------------------------------------------------------------------
def _add_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="keypoints or label maps of images (by the model's task): JSON + PNG overlays",
        description="Pose models: keypoints of the people in --boxes (default: the whole image is one "
        "person), JSON with named keypoints + a PNG with the skeleton. Segmentation models: an index PNG "
        "(labels at the image's size), a colour overlay with a legend and a JSON of the classes present.",
        epilog=_PREDICT_EPILOG,
        formatter_class=_formatter(),
    )
    p.add_argument("model", help="saved folder (from_pretrained) or registered name with weights")
    p.add_argument("--image", nargs="+", required=True, help="image files (JPEG, PNG)")
    p.add_argument("--out", default="predictions", help="folder for the results (default predictions/)")
    p.add_argument("--boxes", nargs="+", metavar="X,Y,W,H", help="pose: person boxes in pixels (one image)")
    p.add_argument(
        "--boxes-json", help='pose: {"image file name": [[x, y, w, h], ...]} or a COCO results file'
    )
    p.add_argument("--flip-test", action="store_true", help="also predict the mirrored image and average")
    p.add_argument("--attn-maps", action="store_true", help="also draw the spatial gates of attention blocks")
    p.add_argument(
        "--attn-blocks",
        nargs="+",
        metavar="PATTERN",
        help="which blocks, fnmatch on module names, e.g. '*stage4*' (default: up to 16 spread over all)",
    )
    p.add_argument("--memory-format", choices=("auto", "channels_last", "contiguous"), default="auto",
                   help="model and input layout (auto: channels_last on CPU and CUDA)")  # fmt: skip
    p.add_argument("--compile", action="store_true", help="run the forward through torch.compile")
    add_fold_batchnorm_flag(p)
    p.add_argument("--overwrite", action="store_true", help="replace result files that exist")
    p.set_defaults(func=_run_predict)


def _parse_box(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"--boxes takes X,Y,W,H (four numbers joined by commas), got {text!r}")
    return values


def _boxes_by_image(args: argparse.Namespace, images: list[Path]) -> dict[str, list[list[float]] | None]:
    if args.boxes and args.boxes_json:
        raise ValueError("give --boxes or --boxes-json, not both")
    if args.attn_blocks and not args.attn_maps:
        raise ValueError("--attn-blocks chooses the blocks of --attn-maps; add --attn-maps")
    if args.boxes:
        if len(images) != 1:
            raise ValueError(
                f"--boxes are for one image, got {len(images)} images; use --boxes-json for several"
            )
        return {images[0].name: [_parse_box(b) for b in args.boxes]}
    if not args.boxes_json:
        return {}
    try:
        data = json.loads(Path(args.boxes_json).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--boxes-json {args.boxes_json} is not valid JSON ({error}); fix or regenerate it"
        ) from None
    if isinstance(data, list):  # COCO detection results: [{"image_id", "bbox", "score"}, ...] by file stem
        boxes: dict[str, list] = {}
        for d in data:
            if not isinstance(d, dict) or "image_id" not in d or "bbox" not in d:
                raise ValueError(
                    f"--boxes-json {args.boxes_json}: an entry without image_id / bbox ({str(d)[:80]}), "
                    'expected COCO detection results [{"image_id": ..., "bbox": [x, y, w, h], "score": ...}]'
                )
            boxes.setdefault(str(d["image_id"]), []).append(d["bbox"])
        return {p.name: boxes.get(p.stem, boxes.get(str(int(p.stem)) if p.stem.isdigit() else "", []))
                for p in images}  # fmt: skip
    if not isinstance(data, dict):
        raise ValueError(f"--boxes-json {args.boxes_json}: expected an object {{file name: boxes}} or a list")
    return {p.name: data.get(p.name) for p in images}


def _predict_model(name_or_dir: str):
    import psa_zoo
    from psa_zoo.models import list_tags

    if Path(name_or_dir).is_dir():
        return psa_zoo.from_pretrained(name_or_dir)
    cfg = psa_zoo.get_pretrained_cfg(name_or_dir)
    if not cfg.has_weights:
        names = [cfg.name] if cfg.tag else [f"{cfg.architecture}.{t}" for t in list_tags(cfg.architecture)]
        tags = [psa_zoo.get_pretrained_cfg(n) for n in names]
        convertible = next((t for t in tags if t.convert_format), None)
        hint = (
            f"{convertible.name} converts from {convertible.source or 'the official checkpoint'}: psa-zoo "
            f"convert CHECKPOINT --format {convertible.convert_format} --out DIR, then predict DIR"
            if convertible
            else "fine-tune it (psa-zoo train-pose / train-seg) and predict the run's model/ folder"
        )
        raise ValueError(f"{name_or_dir} has no loadable weights here (status: {cfg.status}); {hint}")
    return psa_zoo.create_model(name_or_dir, pretrained=True)


def _check_targets(paths: list[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ValueError(
            f"{existing[0]} exists; add --overwrite to replace the results, or choose another --out"
        )


def _run_predict(args: argparse.Namespace) -> int:
    images = [Path(p) for p in args.image]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise ValueError(f"--image {missing[0]} does not exist; give paths of JPEG or PNG files")
    stems = [p.stem for p in images]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(
            f"several --image files are named {twice[0]}.*; their results would overwrite each other"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder")
    model = _predict_model(args.model)
    if model.task == "pose":
        boxes = _boxes_by_image(args, images)
    elif args.boxes or args.boxes_json:
        raise ValueError("--boxes / --boxes-json are for pose models; this is a segmentation model")
    suffixes = (
        ("_pose.json", "_pose.png") if model.task == "pose" else ("_seg.json", "_seg.png", "_labels.png")
    )
    suffixes += ("_attention.png",) if args.attn_maps else ()
    _check_targets([out / f"{p.stem}{s}" for p in images for s in suffixes], args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    from .predict import predict_files

    pose_boxes = boxes if model.task == "pose" else None
    lines = predict_files(model, images, out, boxes=pose_boxes, flip=args.flip_test, attn_maps=args.attn_maps,
                          attn_blocks=args.attn_blocks, memory_format=args.memory_format,
                          fold_batchnorm=args.fold_batchnorm, compile=args.compile)  # fmt: skip
    for line in lines:
        print(line)
    return 0
