"""The pipeline commands of ``psa-zoo``: ``make-data``, ``train-pose``, ``eval-pose``.

Same conventions as :mod:`psa_zoo.cli` (one-line errors, exit status 2, options checked before work).
``train-pose`` and ``eval-pose --model`` run under ``accelerate launch``, ``torchrun`` or plain ``python``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._atomic import write_json_atomic

_MAKE_DATA_EPILOG = """\
examples:
  psa-zoo make-data --task pose --out embedded_pose/
  psa-zoo make-data --task pose --out small/ --num-train 64 --num-val 16 --seed 1 --overwrite
  psa-zoo make-data --task seg --out embedded_seg/
"""
_TRAIN_POSE_EPILOG = """\
examples:
  psa-zoo make-data --task pose --out embedded_pose/
  psa-zoo train-pose --model hrnet_w18_psa_p --data embedded_pose/ --output-dir runs/w18 --recipe embedded \\
      --input-size 128 96 --epochs 20
  torchrun --nproc-per-node 2 -m psa_zoo.cli train-pose --config my_run.yaml
  accelerate launch --multi_gpu --num_processes 2 scripts/train_pose.py --config my_run.yaml
      (on a CPU-only machine too: accelerate's --cpu flag would start a single process)
  psa-zoo train-pose --model hrnet_w32_psa_p --data coco/ --output-dir runs/w32 \\
      --resume-from-checkpoint latest
"""
_EVAL_POSE_EPILOG = """\
examples:
  psa-zoo eval-pose --ann person_keypoints_val2017.json --results results.json --json stats.json
  psa-zoo eval-pose --model runs/w18/model --data embedded_pose/
  psa-zoo eval-pose --model runs/w32/model --data coco/ \\
      --detections COCO_val2017_detections_AP_H_56_person.json
"""


def add_fold_batchnorm_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-fold-batchnorm``: predict with the model itself instead of a BatchNorm-folded copy."""
    parser.add_argument(
        "--no-fold-batchnorm",
        dest="fold_batchnorm",
        action="store_false",
        help="run the model itself, not a copy with BatchNorm folded into the convolutions (same math)",
    )


def _formatter() -> type[argparse.HelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


def add_task_commands(subparsers: argparse._SubParsersAction, positive_int) -> None:
    _add_make_data(subparsers, positive_int)
    _add_train_pose(subparsers)
    _add_eval_pose(subparsers)
    _add_train_seg(subparsers)
    _add_eval_seg(subparsers)


# --- make-data ---------------------------------------------------------------------------------------------
def _add_make_data(subparsers, positive_int) -> None:
    p = subparsers.add_parser(
        "make-data",
        help="write the embedded default dataset (generated, no download)",
        description="Generate the embedded dataset in the layout the training and evaluation commands read "
        "(pose: COCO keypoints layout with annotations/, train2017/, val2017/).",
        epilog=_MAKE_DATA_EPILOG,
        formatter_class=_formatter(),
    )
    p.add_argument("--task", required=True, choices=("pose", "seg"), help="which dataset")
    p.add_argument(
        "--out", required=True, help="folder to create (refused when it exists, unless --overwrite)"
    )
    p.add_argument("--num-train", type=positive_int, help="training images (default: pose 400, seg 300)")
    p.add_argument("--num-val", type=positive_int, help="validation images (default: pose 100, seg 60)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0): same seed, same files")
    p.add_argument("--overwrite", action="store_true", help="replace a folder generated before")
    p.set_defaults(func=_run_make_data)


def _run_make_data(args: argparse.Namespace) -> int:
    from .cli import check_output_folder
    from .data.synthetic import make_pose_dataset, make_seg_dataset

    check_output_folder(args.out, "--out")
    make = make_pose_dataset if args.task == "pose" else make_seg_dataset
    counts = {k: v for k, v in (("num_train", args.num_train), ("num_val", args.num_val)) if v is not None}
    out = make(args.out, seed=args.seed, overwrite=args.overwrite, **counts)
    print(f"wrote {out}: the embedded {args.task} dataset (seed {args.seed})")
    return 0


# --- train-pose --------------------------------------------------------------------------------------------
def _add_train_pose(subparsers) -> None:
    from .train.config import add_pose_arguments, add_train_arguments

    p = subparsers.add_parser(
        "train-pose",
        help="fine-tune or train a pose model (COCO or your own COCO-format keypoints)",
        description="Top-down pose training with accelerate: checkpoints with --checkpointing-steps, exact "
        "resume with --resume-from-checkpoint, COCO AP on the val split, a save_pretrained folder in "
        "OUTPUT_DIR/model. The dataset's keypoints (names, flip pairs, sigmas) become the model's.",
        epilog=_TRAIN_POSE_EPILOG,
        formatter_class=_formatter(),
    )
    add_train_arguments(p)
    add_pose_arguments(p)
    p.set_defaults(func=_run_train_pose)


def _run_train_pose(args: argparse.Namespace) -> int:
    from .train.pose import train_pose

    return _run_training(args, "pose", train_pose, shown=("AP", "AP50", "AR"))


def _run_training(args: argparse.Namespace, task: str, train, shown: tuple[str, ...] | None = None) -> int:
    """``train-pose`` / ``train-seg``: settings checked before any work, one summary line on the main
    process; ``shown`` picks the metrics of that line (default: all)."""
    from .cli import check_output_folder
    from .train.config import config_from_args

    config = config_from_args(args, task)
    check_output_folder(config.output_dir, "--output-dir")
    result = train(config)
    if not result["main_process"]:
        return 0
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items() if shown is None or k in shown)
    print(
        f"trained {result['steps']} steps in {result['seconds']:.0f} s; {metrics or 'not evaluated'}; "
        f"model saved to {result['model_dir']}"
    )
    return 0


# --- eval-pose ---------------------------------------------------------------------------------------------
def _add_eval_pose(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-pose",
        help="COCO keypoint AP of a results file or of a model on a dataset",
        description="Either --ann + --results (a COCO keypoint results list; entries with box_score and bbox "
        "are rescored and OKS-NMSed first) or --model + --data (predict, then evaluate). Prints the ten "
        "COCOeval stats and the per-keypoint report.",
        epilog=_EVAL_POSE_EPILOG,
        formatter_class=_formatter(),
    )
    p.add_argument("--ann", help="COCO keypoint annotation file (with --results)")
    p.add_argument("--results", help="COCO keypoint results file (with --ann)")
    p.add_argument("--model", help="saved folder or registered name (with --data)")
    p.add_argument("--data", help="dataset folder (with --model); its val split is evaluated")
    p.add_argument("--split", default="val", choices=("train", "val"), help="split of --data (default val)")
    p.add_argument("--detections", help="person boxes from a detection file instead of the ground truth")
    p.add_argument("--no-flip-test", dest="flip_test", action="store_false", help="no flip test")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", help="write {AP, ..., ARl, per_keypoint} here")
    p.add_argument("--results-out", help="also write the COCO results list (with --model)")
    add_fold_batchnorm_flag(p)
    p.set_defaults(func=_run_eval_pose)


def _check_eval_args(args: argparse.Namespace) -> None:
    from .cli import check_output_file

    by_file, by_model = args.ann or args.results, args.model or args.data
    if by_file and by_model:
        raise ValueError("give either --ann/--results or --model/--data, not both")
    if by_file and not (args.ann and args.results):
        raise ValueError("--ann and --results go together; give both")
    if not by_file and not (args.model and args.data):
        raise ValueError("give --ann ANN.json --results RES.json, or --model NAME_OR_DIR --data DIR")
    if args.results_out and not by_model:
        raise ValueError("--results-out needs --model/--data (a results file is already a results list)")
    check_output_file(args.json, "--json")
    check_output_file(args.results_out, "--results-out")


def _run_eval_pose(args: argparse.Namespace) -> int:
    from .evaluation.coco_keypoints import format_per_keypoint, format_stats

    _check_eval_args(args)
    evaluation = _eval_results_file(args) if args.ann else _eval_model(args)
    if evaluation is None:  # not the main process
        return 0
    print(format_stats(evaluation.stats))
    if evaluation.per_keypoint:
        print(format_per_keypoint(evaluation.per_keypoint))
    if args.json:
        write_json_atomic(args.json, evaluation.to_dict())
    return 0


def _eval_results_file(args):
    from .data.coco_keypoints import load_keypoint_annotations
    from .evaluation.coco_keypoints import evaluate_results_file

    dataset = load_keypoint_annotations(args.ann, Path(args.ann).parent, check_images=False)
    ks = dataset.keypoint_set
    return evaluate_results_file(
        args.ann,
        args.results,
        ks.sigmas or None,
        keypoint_names=ks.keypoint_names,
        flip_pairs=ks.flip_pairs,
        category_id=dataset.category_id,
    )


def _eval_model(args):
    from .data.coco_keypoints import find_coco_split, load_keypoint_annotations
    from .pose.evaluate import evaluate_pose_model
    from .train.engine import create_accelerator
    from .train.models import load_model

    dataset = load_keypoint_annotations(*find_coco_split(args.data, args.split))
    model = load_model(args.model, pretrained=not Path(args.model).is_dir())
    accelerator = create_accelerator()
    model = model.to(accelerator.device).eval()
    instances = dataset.detections(args.detections) if args.detections else None
    evaluation, results = evaluate_pose_model(
        model,
        dataset,
        instances,
        accelerator=accelerator,
        flip_test=args.flip_test,
        batch_size=args.batch_size,
        fold_batchnorm=args.fold_batchnorm,
    )
    _end(accelerator)
    if not accelerator.is_main_process:
        return None
    if args.results_out:
        write_json_atomic(args.results_out, results, indent=None)
    return evaluation


# --- train-seg / eval-seg ----------------------------------------------------------------------------------
_TRAIN_SEG_EPILOG = """\
examples:
  psa-zoo make-data --task seg --out embedded_seg/
  psa-zoo train-seg --model deeplabv3plus_mbv2_psa --data embedded_seg/ --output-dir runs/seg \\
      --recipe embedded_seg --epochs 10
  psa-zoo train-seg --model deeplabv3plus_r101_psa --data VOCdevkit/VOC2012 --output-dir runs/voc --recipe voc
  torchrun --nproc-per-node 2 -m psa_zoo.cli train-seg --config my_run.yaml
"""
_EVAL_SEG_EPILOG = """\
examples:
  psa-zoo eval-seg --pred predictions/ --gt masks/val/ --num-classes 21 --json miou.json
  psa-zoo eval-seg --model runs/seg/model --data embedded_seg/
  psa-zoo eval-seg --model runs/voc/model --data VOCdevkit/VOC2012 \\
      --eval-scales 0.5 0.75 1 1.25 1.5 1.75 --flip-test
"""


def _add_train_seg(subparsers) -> None:
    from .train.config import add_seg_arguments, add_train_arguments

    p = subparsers.add_parser(
        "train-seg",
        help="fine-tune or train a segmentation model (VOC aug, Cityscapes or your own folder)",
        description="Semantic-segmentation training with accelerate, the engine of train-pose: checkpoints, "
        "exact resume, mIoU on the val split, a save_pretrained folder in OUTPUT_DIR/model. The dataset's "
        "classes (names, palette, ignore index) become the model's.",
        epilog=_TRAIN_SEG_EPILOG,
        formatter_class=_formatter(),
    )
    add_train_arguments(p)
    add_seg_arguments(p)
    p.set_defaults(func=_run_train_seg)


def _run_train_seg(args: argparse.Namespace) -> int:
    from .train.seg import train_seg

    return _run_training(args, "seg", train_seg)


def _add_eval_seg(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-seg",
        help="mIoU of saved predictions or of a model on a dataset",
        description="Either --pred + --gt (folders of index PNGs with the same names) or --model + --data "
        "(predict each val image at its own size, then evaluate). One dataset-level confusion matrix; "
        "mIoU over the classes present in the ground truth or the prediction.",
        epilog=_EVAL_SEG_EPILOG,
        formatter_class=_formatter(),
    )
    p.add_argument("--pred", help="folder of predicted index PNGs (with --gt)")
    p.add_argument("--gt", help="folder of ground-truth index PNGs (with --pred)")
    p.add_argument("--num-classes", type=int, help="classes (with --pred/--gt)")
    p.add_argument("--ignore-index", type=int, default=255)
    p.add_argument("--model", help="saved folder or registered name (with --data)")
    p.add_argument("--data", help="dataset folder (with --model); its val split is evaluated")
    p.add_argument(
        "--eval-mode",
        choices=("whole", "slide", "hierarchical"),
        default="whole",
        help="hierarchical: HRNetV2-OCR forward_multiscale over --eval-scales (official: 0.5 1 2)",
    )
    p.add_argument("--eval-scales", type=float, nargs="+", default=[1.0])
    p.add_argument("--eval-crop-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"))
    p.add_argument("--flip-test", action="store_true")
    p.add_argument("--json", help='write {"mIoU", "aAcc", "mAcc", "IoU": {...}, "Acc": {...}} here')
    add_fold_batchnorm_flag(p)
    p.set_defaults(func=_run_eval_seg)


def _run_eval_seg(args: argparse.Namespace) -> int:
    from .cli import check_output_file

    by_files, by_model = args.pred or args.gt, args.model or args.data
    if by_files and by_model:
        raise ValueError("give either --pred/--gt or --model/--data, not both")
    if by_files and not (args.pred and args.gt and args.num_classes):
        raise ValueError("--pred, --gt and --num-classes go together; give all three")
    if not by_files and not (args.model and args.data):
        raise ValueError("give --pred DIR --gt DIR --num-classes N, or --model NAME_OR_DIR --data DIR")
    check_output_file(args.json, "--json")
    if by_files:
        from .evaluation.segmentation import evaluate_prediction_folders

        metrics = evaluate_prediction_folders(args.pred, args.gt, args.num_classes, args.ignore_index)
        names = [f"class_{i}" for i in range(args.num_classes)]
    else:
        metrics, names = _eval_seg_model(args)
        if metrics is None:
            return 0
    print(metrics.format_table(names))
    if args.json:
        write_json_atomic(args.json, metrics.to_dict(names))
    return 0


def _eval_seg_model(args):
    from .seg.evaluate import evaluate_seg_model
    from .train.engine import create_accelerator
    from .train.models import load_model
    from .train.seg import load_seg_split

    dataset = load_seg_split(args.data, "val")
    model = load_model(args.model, pretrained=not Path(args.model).is_dir())
    accelerator = create_accelerator()
    model = model.to(accelerator.device).eval()
    crop = tuple(args.eval_crop_size) if args.eval_crop_size else None
    metrics = evaluate_seg_model(
        model, dataset, accelerator=accelerator, mode=args.eval_mode, scales=tuple(args.eval_scales),
        flip=args.flip_test, crop_size=crop, fold_batchnorm=args.fold_batchnorm,
    )  # fmt: skip
    _end(accelerator)
    if not accelerator.is_main_process:
        return None, None
    return metrics, list(model.metadata.classes.class_names)


def _end(accelerator) -> None:
    """Leave the process group together: a gloo group left to the interpreter's exit can abort a process."""
    accelerator.wait_for_everyone()
    accelerator.end_training()
