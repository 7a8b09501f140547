"""``psa-zoo demo``: the whole job on the package's own generated data, no dataset and no network.

One call writes the embedded dataset, builds a small PSA model by name, evaluates it untrained, fine-tunes
it through the training engine (accelerate, progress bar), evaluates it again with the real metric
(pycocotools AP for pose, the confusion-matrix mIoU for segmentation), reloads the saved Hub-ready folder
with :func:`psa_zoo.from_pretrained` and checks that it gives the trained model's outputs, predicts
held-out generated images (and ``image`` when given), and writes the overlays and the PSA attention maps as
PNGs. The model learns the generated scenes only; the summary says so.

Layout of ``out``::

    data/          the generated dataset (make-data layout)
    run/           the training run; run/model/ is the save_pretrained folder (safetensors, config, card)
    predictions/   heldout_<i>.png, heldout_<i>_<task>.png / .json, heldout_<i>_attention.png, image_*.png
    summary.json   what ran, the metric before and after, times, files
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ._atomic import write_json_atomic

__all__ = ["DEMOS", "DemoError", "DemoResult", "DemoSettings", "run_demo"]

DEMO_MARK = "psa_zoo_demo.json"  # written first: only folders carrying it are replaced by ``overwrite``
HELDOUT_SEED = 10_000  # generator seeds of the held-out scenes: far from the dataset's
NUM_HELDOUT = 3


class DemoError(ValueError):
    """The demo cannot run as asked (its folder exists, an input is wrong) or a check failed."""


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What one demo trains: a registered model, a recipe and the goal on the embedded validation split."""

    task: str  # "pose" | "seg"
    model: str
    recipe: str
    metric: str
    goal: float
    num_train: int
    num_val: int
    epochs: int
    input_size: tuple[int, int] | None = None  # pose network input (H, W)
    seed: int = 0


DEMOS: dict[str, DemoSettings] = {
    # HRNet-W18-Small + PSA_p at 128×96: 5 epochs of the 769 people = 240 steps of 16 on a CPU
    "pose": DemoSettings("pose", "hrnet_w18_small_psa_p", "embedded", "AP", 0.5, 400, 100, 5, (128, 96)),
    # DeepLabV3+ MobileNetV2 + PSA_p: the embedded_seg recipe (AdamW, poly) on 160×192 crops
    "seg": DemoSettings("seg", "deeplabv3plus_mbv2_psa", "embedded_seg", "mIoU", 0.6, 300, 60, 3),
}


@dataclasses.dataclass
class DemoStep:
    name: str
    seconds: float
    result: str


@dataclasses.dataclass
class DemoResult:
    """What a demo did. ``before`` / ``after``: the metric of the untrained and the fine-tuned model on the
    embedded validation split; ``reload_max_abs_diff``: between the trained and the reloaded model."""

    task: str
    model: str
    metric: str
    before: float
    after: float
    goal: float
    reload_max_abs_diff: float
    out_dir: str
    model_dir: str
    files: list[str]
    steps: list[DemoStep]
    seconds: float

    @property
    def goal_met(self) -> bool:
        return self.after >= self.goal

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "goal_met": self.goal_met}

    def format_summary(self) -> str:
        """The table the command prints."""
        width = max(len(s.name) for s in self.steps)
        lines = [
            f"psa-zoo demo --task {self.task}: {self.model} on the embedded data",
            f"{'step'.ljust(width)}  {'time':>8}  result",
        ]
        for step in self.steps:
            lines.append(f"{step.name.ljust(width)}  {step.seconds:7.1f}s  {step.result}")
        lines.append(f"{'total'.ljust(width)}  {self.seconds:7.1f}s")
        verdict = "met" if self.goal_met else "NOT met"
        lines += [
            f"{self.metric}: {self.before:.3f} untrained → {self.after:.3f} fine-tuned "
            f"(goal ≥ {self.goal}: {verdict})",
            f"model folder (from_pretrained / push to the Hub): {self.model_dir}",
            f"pictures: {Path(self.out_dir) / 'predictions'}",
            "The model learned the generated embedded scenes only: it is not a model for real photographs.",
        ]
        return "\n".join(lines)


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out} is a file, expected a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / DEMO_MARK).is_file():
            raise DemoError(
                f"--out {out} is not empty and was not written by psa-zoo demo; choose another --out "
                "(--overwrite only replaces demo folders)"
            )
        if not overwrite:
            raise DemoError(
                f"--out {out} holds an earlier demo; add --overwrite to replace it, or choose another --out"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / DEMO_MARK, {"written_by": "psa-zoo demo"})


class _Clock:
    """Times the demo's steps and prints each as it ends."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.steps: list[DemoStep] = []
        self.log = log
        self.started = time.perf_counter()

    def run(self, name: str, work: Callable[[], tuple[Any, str]]) -> Any:
        self.log(f"[demo] {name} ...")
        tick = time.perf_counter()
        value, result = work()
        self.steps.append(DemoStep(name, time.perf_counter() - tick, result))
        self.log(f"[demo] {name}: {result}")
        return value


def _train_config(settings: DemoSettings, out: Path, num_workers: int, max_train_steps: int | None):
    from .train import TrainConfig

    values: dict[str, Any] = {
        "task": settings.task,
        "model": settings.model,
        "data": str(out / "data"),
        "output_dir": str(out / "run"),
        "recipe": settings.recipe,
        "epochs": settings.epochs,
        "max_train_steps": max_train_steps,
        "num_workers": num_workers,
        "seed": settings.seed,
    }
    if settings.input_size is not None:
        values["input_size"] = list(settings.input_size)
    return TrainConfig(**values).resolve()


def _make_data(settings: DemoSettings, out: Path, num_train: int, num_val: int) -> tuple[None, str]:
    from .data.synthetic import make_pose_dataset, make_seg_dataset

    make = make_pose_dataset if settings.task == "pose" else make_seg_dataset
    make(out / "data", num_train=num_train, num_val=num_val, seed=settings.seed)
    return None, f"{num_train} train / {num_val} val images → {out / 'data'}"


def _task(config):
    if config.task == "pose":
        from .train.pose import PoseTask

        return PoseTask(config)
    from .train.seg import SegTask

    return SegTask(config)


def _score(task, model, metric: str) -> float:
    """The metric of ``model`` on the task's validation split, as the training run's own evaluation."""
    was_training = model.training
    model.eval()
    try:
        return float(task.evaluate(model, accelerator=None)[metric])
    finally:
        model.train(was_training)


def _untrained(config, metric: str) -> tuple[float, str]:
    from accelerate.utils import set_seed

    task = _task(config)
    set_seed(config.seed)  # the run seeds the same way before building its model: these are its weights
    score = _score(task, task.build_model(), metric)
    return score, f"{metric} {score:.3f}"


def _fine_tune(config, metric: str) -> tuple[Any, str]:
    from .train import Trainer

    trainer = Trainer(_task(config), config)
    result = trainer.fit()
    return (trainer, result), (
        f"{result['steps']} steps of batch {config.batch_size} ({config.recipe} recipe, accelerate), then "
        f"{metric} {result['metrics'][metric]:.3f}"
    )


def _reload(
    model_dir: str, trained: torch.nn.Module, inputs: torch.Tensor, memory_format: torch.memory_format
) -> tuple[Any, str]:
    """Reload the saved folder and check it is the trained model: the same tensors, the same metadata, and
    bit-identical outputs when run in the trained model's memory format."""
    import psa_zoo

    from .models._runtime import format_images, to_memory_format

    reloaded = psa_zoo.from_pretrained(model_dir).eval()
    trained = trained.eval()
    to_memory_format(reloaded, memory_format)
    inputs = format_images(inputs, memory_format)
    saved, ours = reloaded.state_dict(), trained.state_dict()
    same_tensors = saved.keys() == ours.keys() and all(torch.equal(saved[k], ours[k]) for k in ours)
    with torch.no_grad():
        diff = (trained(inputs).float() - reloaded(inputs).float()).abs().max().item()
    if diff != 0.0 or not same_tensors or reloaded.metadata != trained.metadata:
        raise DemoError(
            f"the reloaded model differs from the trained one (max |Δ| {diff:.3g}, tensors equal: "
            f"{same_tensors}, metadata equal: {reloaded.metadata == trained.metadata}); this is a bug, "
            "please report it"
        )
    return (reloaded, diff), f"from_pretrained({model_dir}): the same tensors, metadata and outputs"


def run_demo(
    task: str = "pose",
    out: str | Path = "psa_zoo_demo",
    *,
    image: str | Path | None = None,
    overwrite: bool = False,
    num_train: int | None = None,
    num_val: int | None = None,
    max_train_steps: int | None = None,
    num_workers: int = 2,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo of ``task`` (``"pose"`` or ``"seg"``) into ``out`` and return what it did.

    Args:
        image: also predict this image (pose: the whole image as one person box).
        overwrite: replace ``out`` if it holds an earlier demo (never another folder).
        num_train / num_val / max_train_steps: a shorter demo (tests); the defaults are the measured one.
        num_workers: data-loader workers of the training run.
    Raises:
        DemoError: ``out`` may not be used, ``image`` cannot be read, or the reload check failed.
    """
    if task not in DEMOS:
        raise DemoError(f"--task {task!r} is not a demo; choose one of {sorted(DEMOS)}")
    settings = DEMOS[task]
    if image is not None:
        _check_image(image)
    out = Path(out)
    _prepare_folder(out, overwrite)
    clock = _Clock(log)
    clock.run("make data", lambda: _make_data(settings, out, num_train or settings.num_train,
                                                    num_val or settings.num_val))  # fmt: skip
    config = _train_config(settings, out, num_workers, max_train_steps)
    before = clock.run("evaluate untrained", lambda: _untrained(config, settings.metric))
    trainer, result = clock.run("fine-tune + evaluate", lambda: _fine_tune(config, settings.metric))
    after = float(result["metrics"][settings.metric])
    trained = trainer.model
    inputs = _inputs_for_check(trained, config)
    reloaded, diff = clock.run(
        "save + reload", lambda: _reload(result["model_dir"], trained, inputs, trainer.memory_format)
    )
    predictions = out / "predictions"
    predictions.mkdir(exist_ok=True)
    files = clock.run("predict held-out", lambda: _predict(settings, reloaded, predictions, image))
    demo = DemoResult(
        task=task, model=settings.model, metric=settings.metric, before=before, after=after,
        goal=settings.goal, reload_max_abs_diff=diff, out_dir=str(out), model_dir=result["model_dir"],
        files=[str(f) for f in files], steps=clock.steps, seconds=time.perf_counter() - clock.started,
    )  # fmt: skip
    write_json_atomic(out / "summary.json", demo.to_dict())
    return demo


def _check_image(image: str | Path) -> None:
    """``--image`` is read before the demo trains (a bad file must not cost the whole run)."""
    from .data.images import read_image

    if not Path(image).is_file():
        raise DemoError(f"--image {image} does not exist; give the path of a JPEG or PNG file")
    try:
        read_image(image, "RGB")
    except (OSError, ValueError) as error:
        raise DemoError(
            f"--image {image} cannot be read as an image ({error}); give a JPEG or PNG file"
        ) from None


def _inputs_for_check(model, config) -> torch.Tensor:
    """Two normalised inputs of the model's size, from the embedded validation images."""
    from .data.images import normalize_images, read_image

    folder = Path(config.data) / ("val2017" if config.task == "pose" else "images/val")
    paths = sorted(folder.glob("*.png"))[:2]
    _, height, width = model.metadata.input_size
    if config.task == "seg":
        height, width = config.crop_size
    arrays = [np.asarray(Image.fromarray(read_image(p, model.metadata.channel_order)).resize((width, height)))
              for p in paths]  # fmt: skip
    batch = torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())
    return normalize_images(batch, model.metadata)


def _predict(settings: DemoSettings, model, folder: Path, image: str | Path | None) -> tuple[list[Path], str]:
    """Predict held-out generated scenes (pose: in their true person boxes; there is no detector) and
    ``image``, with the attention maps."""
    from .data.synthetic import render_scene, render_seg_scene
    from .predict import predict_pose_image, predict_seg_image

    files: list[Path] = []
    render = render_scene if settings.task == "pose" else render_seg_scene
    scenes = [render(np.random.default_rng(HELDOUT_SEED + i)) for i in range(NUM_HELDOUT)]
    inputs = [(_save_input(s.image, folder, f"heldout_{i}"), s.boxes if settings.task == "pose" else None)
              for i, s in enumerate(scenes)]  # fmt: skip
    if image is not None:
        inputs.append((_save_input(image, folder, "image"), None))
    if settings.task == "pose":
        from .pose import PoseEstimator

        estimator = PoseEstimator(model, flip_test=False)
        for path, boxes in inputs:
            files += [path, *predict_pose_image(estimator, path, boxes, folder, attn_maps=True)]
    else:
        from .seg import Segmenter

        segmenter = Segmenter(model)
        for path, _ in inputs:
            files += [path, *predict_seg_image(segmenter, path, folder, attn_maps=True)]
    extra = " + --image" if image is not None else ""
    return (
        files,
        f"{NUM_HELDOUT} generated images never trained on{extra}: overlays + attention maps → {folder}",
    )


def _save_input(image: Any, folder: Path, stem: str) -> Path:
    from .data.images import read_image

    path = folder / f"{stem}.png"
    Image.fromarray(read_image(image, "RGB")).save(path)
    return path
