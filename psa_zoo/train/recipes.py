"""Recipe presets: the published schedules and augmentations, as data.

Sources (facts in ``shared/reference/pose_and_segmentation_recipes.md`` §1.6):

* ``hrnet`` — leoxiaobin/deep-high-resolution-net.pytorch
  ``experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml``: Adam lr 1e-3 (no weight decay:
  ``get_optimizer`` passes only the lr), 210 epochs, lr × 0.1 at 170 and 200, 32 per GPU × 4 = 128,
  rotation 45°, scale 0.35, half-body 0.3, flip 0.5, σ = 2 at 64×48, flip test.
* ``simplebaseline`` — the same repository's
  ``experiments/coco/resnet/res50_256x192_d256x3_adam_lr1e-3.yaml``: Adam 1e-3, 140 epochs, steps 90 / 120,
  batch 128, rotation 40°, scale 0.3.
* ``udp`` — the HRNet schedule with the unit-length (UDP) warp and codec (Huang et al., CVPR 2020;
  HuangJunJie2017/UDP-Pose, mmpose's ``*_udp.py`` configs): no flip shift; everything else as ``hrnet``.
* ``embedded`` — for the package's generated dataset (:mod:`psa_zoo.data.synthetic`) on a CPU, not a paper
  recipe: constant-lr Adam 2e-3, batch 16, σ = 2 whatever the heatmap size (wide targets are learnt in
  a few hundred steps), DARK codec, no half-body, and **no flip** augmentation or flip test: the embedded
  figures colour their left and right joints differently, so a mirrored figure is not a valid sample.

``batch_size`` is per process (HRNet: 32 per GPU); ``reference_batch`` is the total batch the lr was tuned
for (HRNet: 4 GPUs × 32). A run with another total batch (processes × batch × accumulation) scales the
lr linearly (Goyal et al., 2017) unless ``--lr`` is given.
"""

from __future__ import annotations

__all__ = ["RECIPES", "default_recipe", "recipe_table"]

_POSE_COMMON = {
    "task": "pose",
    "optimizer": "adam",
    "weight_decay": 0.0,
    "momentum": 0.9,
    "lr_schedule": "multistep",
    "lr_gamma": 0.1,
    "poly_power": 0.9,
    "warmup_steps": 0,
    "flip_prob": 0.5,
    "half_body_prob": 0.3,
    "flip_test": True,
    "use_joint_weights": False,
}

_HRNET = {
    **_POSE_COMMON,
    "lr": 1e-3,
    "batch_size": 32,
    "reference_batch": 128,
    "epochs": 210,
    "lr_milestones": [170, 200],
    "scale_factor": 0.35,
    "rotation_factor": 45.0,
    "codec": "msra",
}

RECIPES: dict[str, dict] = {
    "hrnet": _HRNET,
    "simplebaseline": {**_HRNET, "epochs": 140, "lr_milestones": [90, 120], "scale_factor": 0.30,
                       "rotation_factor": 40.0},
    "udp": {**_HRNET, "codec": "udp"},
    "embedded": {**_POSE_COMMON, "lr": 2e-3, "batch_size": 16, "reference_batch": 16, "epochs": 30,
                 "lr_schedule": "constant", "lr_milestones": [], "scale_factor": 0.25,
                 "rotation_factor": 30.0, "half_body_prob": 0.0, "codec": "dark",
                 "flip_prob": 0.0, "flip_test": False, "sigma": 2.0},
}  # fmt: skip


_SEG_COMMON = {
    "task": "seg",
    "optimizer": "sgd",
    "momentum": 0.9,
    "lr_schedule": "poly",
    "poly_power": 0.9,
    "lr_gamma": 0.1,
    "lr_milestones": [],
    "warmup_steps": 0,
    "scale_range": [0.5, 2.0],
    "flip_prob": 0.5,
    "aux_weight": 0.4,
    "eval_mode": "whole",
    "eval_scales": [1.0],
    "flip_test": False,
}

RECIPES.update({
    # VainF/DeepLabV3Plus-Pytorch main.py + README: SGD 0.9, lr 0.01 head / 0.001 backbone, poly 0.9,
    # 30k iterations, batch 16, weight decay 1e-4, crop 513, scale 0.5-2.0, flip.
    "voc": {**_SEG_COMMON, "lr": 0.01, "backbone_lr_mult": 0.1, "weight_decay": 1e-4, "batch_size": 16,
            "reference_batch": 16, "max_train_steps": 30000, "crop_size": [513, 513]},
    # HRNet-Semantic-Segmentation (HRNet-OCR branch) seg_hrnet_ocr_w48_train_512x1024_sgd_lr1e-2_wd5e-4_bs_12_
    # epoch484.yaml: SGD 0.01, wd 5e-4, poly 0.9, crop 1024x512, 3 per GPU x 4, 484 epochs, aux 0.4.
    "cityscapes_ocr": {**_SEG_COMMON, "lr": 0.01, "backbone_lr_mult": 1.0, "weight_decay": 5e-4,
                       "batch_size": 3, "reference_batch": 12, "epochs": 484, "crop_size": [512, 1024]},
    # the package's generated data on a CPU (not a paper recipe)
    "embedded_seg": {**_SEG_COMMON, "optimizer": "adamw", "lr": 2e-3, "lr_schedule": "poly",
                     "backbone_lr_mult": 1.0, "weight_decay": 1e-4, "batch_size": 8, "reference_batch": 8,
                     "epochs": 3, "crop_size": [160, 192], "scale_range": [1.0, 1.0]},
})  # fmt: skip


def default_recipe(task: str, model_name: str) -> str:
    """The recipe a model trains with unless told otherwise."""
    if task == "pose":
        if "udp" in model_name:
            return "udp"
        return "simplebaseline" if model_name.startswith("simplebaseline") else "hrnet"
    if task == "seg":
        return "cityscapes_ocr" if model_name.startswith("hrnetv2") else "voc"
    raise ValueError(f"no default recipe for task {task!r}")


_TABLE_FIELDS = (
    ("optimizer", "optimizer"), ("lr", "lr"), ("weight_decay", "weight decay"),
    ("reference_batch", "total batch"), ("batch_size", "per process"), ("epochs", "epochs"),
    ("max_train_steps", "steps"),
    ("lr_schedule", "schedule"), ("lr_milestones", "milestones (epochs)"), ("codec", "codec"),
    ("sigma", "σ"), ("rotation_factor", "rotation °"), ("scale_factor", "scale ±"),
    ("half_body_prob", "half-body"), ("flip_prob", "flip"), ("flip_test", "flip test"),
    ("crop_size", "crop (H, W)"), ("scale_range", "scale range"), ("backbone_lr_mult", "backbone lr ×"),
    ("aux_weight", "aux weight (OCR)"),
)  # fmt: skip


def recipe_table(task: str) -> str:
    """A markdown table of the recipes of ``task`` ("pose" or "seg"), one column per recipe, one row per
    setting (docs/training.md embeds it; a test keeps it current)."""
    names = [n for n, r in RECIPES.items() if r["task"] == task]
    rows = [(label, [RECIPES[n].get(key) for n in names]) for key, label in _TABLE_FIELDS]
    rows = [(label, values) for label, values in rows if any(v not in (None, []) for v in values)]
    lines = ["| setting | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
    for label, values in rows:
        lines.append(f"| {label} | " + " | ".join("–" if v is None else _cell(v) for v in values) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "–"
    return f"{value:g}" if isinstance(value, float) else str(value)
