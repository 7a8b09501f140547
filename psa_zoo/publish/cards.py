"""Model cards of the pretrained tags, generated from the registry (``model_cards/<name>.<tag>.md``).

Each card is a Hugging Face ``README.md``: YAML front matter written by ``huggingface_hub``'s
``ModelCardData`` (``library_name``, ``pipeline_tag``, ``tags``, ``datasets``, ``license`` and a
``model-index`` built from the tag's :class:`~psa_zoo.models.Metric` records with ``EvalResult``), then a
Markdown body: what the model is, where its weights stand, how to load it (``create_model``,
``torch.hub``, ``from_pretrained``), the recipe and evaluation protocol, metrics with their provenance,
limitations and citations.

Rendering is deterministic (no dates, no versions): the same registry gives the same bytes, so a test can
compare ``model_cards/`` with :func:`expected_model_cards`. Parameter counts come from the model built on
the meta device (shapes only, no memory). Nothing here touches the network; ``ModelCard.validate`` (a Hub
call) is never used.

    >>> from psa_zoo.publish.cards import render_model_card
    >>> text = render_model_card(psa_zoo.get_pretrained_cfg("hrnet_w32.coco_256x192"))
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..labels import CITYSCAPES_CLASSES, COCO_KEYPOINTS, VOC_CLASSES
from ..models._loading import ATTENTION_MODULE_NAMES
from ..models._pretrained import Metric, PretrainedCfg
from ..models._registry import get_pretrained_cfg, list_models, list_tags, model_entrypoint

__all__ = [
    "CARDS_README",
    "GENERATOR_COMMAND",
    "HUB_REPO",
    "card_filename",
    "expected_model_cards",
    "model_card_data",
    "render_model_card",
    "write_model_cards",
]

GENERATOR_COMMAND = "python scripts/make_model_cards.py"
CARDS_README = "README.md"  # the folder's own index, not a card
HUB_REPO = "<owner>/psa_zoo"  # GitHub repository of psa_zoo for torch.hub (no public home yet)

# task → (Hub pipeline tag, model-index task name, topic tag)
_TASKS: dict[str, tuple[str, str, str]] = {
    "pose": ("keypoint-detection", "Pose Estimation", "pose-estimation"),
    "segmentation": ("image-segmentation", "Semantic Segmentation", "semantic-segmentation"),
}

# label set → (Hub dataset id, display name)
_LABEL_DATASETS: dict[tuple[str, ...], tuple[str, str]] = {
    COCO_KEYPOINTS: ("coco", "COCO keypoints (17 keypoints)"),
    VOC_CLASSES: ("pascal_voc", "Pascal VOC 2012 (21 classes)"),
    CITYSCAPES_CLASSES: ("cityscapes", "Cityscapes (19 train ids)"),
}
# dataset text of a Metric → Hub dataset id (first match wins)
_DATASET_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\bcoco\b", "coco"),
    (r"\bvoc\b", "pascal_voc"),
    (r"\bcityscapes\b", "cityscapes"),
)

# first word of PretrainedCfg.license → Hub license id
_HUB_LICENSES = {"mit": "mit", "apache-2.0": "apache-2.0", "bsd-3-clause": "bsd-3-clause"}

# Metric.name → model-index metric type
_METRIC_TYPES = {"AP": "ap", "mIoU": "mean_iou"}

# where a provenance or source string points (first match wins: the most specific names first)
_SOURCE_URLS: tuple[tuple[str, str], ...] = (
    (
        "leoxiaobin/deep-high-resolution-net.pytorch",
        "https://github.com/leoxiaobin/deep-high-resolution-net.pytorch",
    ),
    ("DeLightCMU/PSA", "https://github.com/DeLightCMU/PSA"),
    ("NVIDIA/semantic-segmentation", "https://github.com/NVIDIA/semantic-segmentation"),
    (
        "HRNet/HRNet-Semantic-Segmentation",
        "https://github.com/HRNet/HRNet-Semantic-Segmentation/tree/HRNet-OCR",
    ),
    ("VainF", "https://github.com/VainF/DeepLabV3Plus-Pytorch"),
    ("UDP-Pose", "https://github.com/HuangJunJie2017/UDP-Pose"),
    ("PSA paper", "https://arxiv.org/abs/2107.00782"),
)

_ATTN_DESCRIPTIONS = {
    "psa_p": (
        "PSA_p, the parallel layout, as in the released code (DeLightCMU/PSA): a channel-only and a "
        "spatial-only branch each gate the block's input and the two gated copies are summed. Like the "
        "released module, it has no LayerNorm in the channel branch and applies the softmax over positions "
        "after the query–value product in the spatial branch (the paper's equations differ there)"
    ),
    "psa_s": (
        "PSA_s, the sequential layout, as in the released code (DeLightCMU/PSA): the channel gate first, "
        "then the spatial gate on its output. Like the released module, its channel branch ends in a "
        "C/2 → C/8 → C bottleneck with LayerNorm and ReLU, and the spatial branch softmaxes the value maps "
        "over positions (the paper's equations differ there)"
    ),
    "psa_p_paper": "PSA_p written from the paper's equations (not the released code's variant)",
    "psa_s_paper": "PSA_s written from the paper's equations (not the released code's variant)",
}

# BibTeX of every paper a card may cite, in our own formatting
_BIBTEX = {
    "psa": """@article{liu2021polarized,
  title   = {Polarized Self-Attention: Towards High-quality Pixel-wise Regression},
  author  = {Liu, Huajun and Liu, Fuqiang and Fan, Xinyi and Huang, Dong},
  journal = {arXiv preprint arXiv:2107.00782},
  year    = {2021}
}""",
    "simplebaseline": """@inproceedings{xiao2018simple,
  title     = {Simple Baselines for Human Pose Estimation and Tracking},
  author    = {Xiao, Bin and Wu, Haiping and Wei, Yichen},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2018}
}""",
    "hrnet": """@inproceedings{sun2019deep,
  title     = {Deep High-Resolution Representation Learning for Human Pose Estimation},
  author    = {Sun, Ke and Xiao, Bin and Liu, Dong and Wang, Jingdong},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2019}
}""",
    "udp": """@inproceedings{huang2020devil,
  title     = {The Devil is in the Details: Delving into Unbiased Data Processing for Human Pose Estimation},
  author    = {Huang, Junjie and Zhu, Zheng and Guo, Feng and Huang, Guan},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2020}
}""",
    "deeplabv3plus": """@inproceedings{chen2018encoder,
  title     = {Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation},
  author    = {Chen, Liang-Chieh and Zhu, Yukun and Papandreou, George and Schroff, Florian
               and Adam, Hartwig},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2018}
}""",
    "ocr": """@inproceedings{yuan2020object,
  title     = {Object-Contextual Representations for Semantic Segmentation},
  author    = {Yuan, Yuhui and Chen, Xilin and Wang, Jingdong},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2020}
}""",
    "mscale": """@article{tao2020hierarchical,
  title   = {Hierarchical Multi-Scale Attention for Semantic Segmentation},
  author  = {Tao, Andrew and Sapra, Karan and Catanzaro, Bryan},
  journal = {arXiv preprint arXiv:2005.10821},
  year    = {2020}
}""",
}
_PAPER_TITLES = {
    "psa": "Liu et al., *Polarized Self-Attention: Towards High-quality Pixel-wise Regression*, "
    "arXiv 2107.00782",
    "simplebaseline": "Xiao et al., *Simple Baselines for Human Pose Estimation and Tracking*, ECCV 2018",
    "hrnet": "Sun et al., *Deep High-Resolution Representation Learning for Human Pose Estimation*, "
    "CVPR 2019",
    "udp": "Huang et al., *The Devil is in the Details: Delving into Unbiased Data Processing for Human Pose "
    "Estimation*, CVPR 2020",
    "deeplabv3plus": "Chen et al., *Encoder-Decoder with Atrous Separable Convolution for Semantic Image "
    "Segmentation* (DeepLabV3+), ECCV 2018",
    "ocr": "Yuan et al., *Object-Contextual Representations for Semantic Segmentation*, ECCV 2020",
    "mscale": "Tao et al., *Hierarchical Multi-Scale Attention for Semantic Segmentation*, arXiv 2005.10821",
}

_TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

{{ summary }}

## Model description

{{ description }}

## Weights

{{ weights }}

## How to load

{{ loading }}

## Training recipe and evaluation protocol

{{ recipe }}

## Metrics

{{ metrics }}

## Limitations

{{ limitations }}

## Citation

{{ citations }}

---

{{ footer }}
"""


# --- facts taken from the model itself ------------------------------------------------------------------
@dataclass(frozen=True)
class _ModelFacts:
    """What the built model says about itself (on the meta device: shapes only)."""

    model_class: str
    params: int
    attn: str | None  # the attention name of its residual blocks, None without attention
    attn_blocks: int  # number of attention modules in the ``attn`` / ``deattn`` slots
    attn_params: int  # parameters of those modules
    init_args: tuple[tuple[str, object], ...]

    def arg(self, name: str, default: object = None) -> object:
        return dict(self.init_args).get(name, default)


@functools.cache
def _model_facts(architecture: str) -> _ModelFacts:
    from ..models._factory import create_model

    model = create_model(architecture, device="meta")
    blocks = [
        module
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in ATTENTION_MODULE_NAMES and any(True for _ in module.parameters())
    ]
    config = model.get_config()
    attn = config.get("attn")
    init_args = tuple(
        (k, tuple(v) if isinstance(v, list) else v)
        for k, v in config.items()
        if isinstance(v, str | int | float | bool | list) or v is None
    )
    return _ModelFacts(
        model_class=type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        attn=attn if isinstance(attn, str) else None,
        attn_blocks=len(blocks),
        attn_params=sum(p.numel() for block in blocks for p in block.parameters()),
        init_args=init_args,
    )


# --- small helpers --------------------------------------------------------------------------------------
def card_filename(name: str) -> str:
    """``"hrnet_w32.coco_256x192"`` → ``"hrnet_w32.coco_256x192.md"``."""
    return f"{name}.md"


def _source_url(text: str) -> str | None:
    for needle, url in _SOURCE_URLS:
        if needle in text:
            return url
    return None


def _task(cfg: PretrainedCfg) -> tuple[str, str, str]:
    try:
        return _TASKS[cfg.task]
    except KeyError:
        raise ValueError(
            f"{cfg.name}: no model card rule for task {cfg.task!r} (known: {sorted(_TASKS)})"
        ) from None


def _metric_dataset_id(metric: Metric) -> str:
    for pattern, dataset_id in _DATASET_PATTERNS:
        if re.search(pattern, metric.dataset, flags=re.IGNORECASE):
            return dataset_id
    raise ValueError(f"no Hub dataset id known for the metric dataset {metric.dataset!r}")


def _datasets(cfg: PretrainedCfg) -> list[str]:
    """Hub dataset ids: the label set's dataset, then those of the metrics (unique, in that order)."""
    found = []
    if cfg.label_names in _LABEL_DATASETS:
        found.append(_LABEL_DATASETS[cfg.label_names][0])
    found += [_metric_dataset_id(m) for m in cfg.metrics]
    return list(dict.fromkeys(found))


def _split(dataset: str) -> str | None:
    """The model-index split of a metric's dataset text (None where the text does not say)."""
    text = dataset.lower()
    if "test-dev" in text:
        return "test-dev"
    if re.search(r"\bval(2017|idation)?\b", text):
        return "validation"
    if re.search(r"\btest\b", text):
        return "test"
    return None


def _license(cfg: PretrainedCfg) -> dict[str, str]:
    """``license`` (and ``license_name`` for "other") of the front matter."""
    if cfg.license is None:
        return {
            "license": "other",
            "license_name": "no-weights" if cfg.status == "not released" else "unknown",
        }
    first = cfg.license.split()[0].lower()
    if first in _HUB_LICENSES:
        return {"license": _HUB_LICENSES[first]}
    slug = re.sub(r"[^a-z0-9]+", "-", cfg.license.lower()).strip("-")
    return {"license": "other", "license_name": slug}


def _eval_results(cfg: PretrainedCfg) -> list[EvalResult]:
    pipeline_tag, task_name, _ = _task(cfg)
    results = []
    for metric in cfg.metrics:
        url = _source_url(metric.provenance)
        if url is None:
            raise ValueError(
                f"{cfg.name}: no source URL known for the provenance {metric.provenance!r}; "
                "add it to psa_zoo.publish.cards._SOURCE_URLS"
            )
        results.append(
            EvalResult(
                task_type=pipeline_tag,
                task_name=task_name,
                dataset_type=_metric_dataset_id(metric),
                dataset_name=metric.dataset,
                dataset_split=_split(metric.dataset),
                metric_type=_METRIC_TYPES.get(metric.name, re.sub(r"\W+", "_", metric.name.lower())),
                metric_name=metric.name,
                metric_value=metric.value,
                source_name=metric.provenance,
                source_url=url,
            )
        )
    return results


def _family(facts: _ModelFacts) -> tuple[str, list[str], list[str]]:
    """(display name, Hub tags, paper keys) of the model class."""
    families = {
        "SimpleBaseline": ("SimpleBaseline", ["simplebaseline", "resnet"], ["simplebaseline"]),
        "HRNetPose": ("HRNet", ["hrnet"], ["hrnet"]),
        "DeepLabV3Plus": ("DeepLabV3+", ["deeplabv3plus"], ["deeplabv3plus"]),
        "HRNetOCR": (
            "HRNetV2 + OCR",
            ["hrnet", "ocr", "hierarchical-multi-scale-attention"],
            ["hrnet", "ocr", "mscale"],
        ),
    }
    if facts.model_class == "HRNetOCR" and not _has_scale_attn(facts):
        return "HRNetV2 + OCR", ["hrnet", "ocr"], ["hrnet", "ocr"]
    return families.get(facts.model_class, (facts.model_class, [], []))


def _has_scale_attn(facts: _ModelFacts) -> bool:
    return facts.arg("scale_attn_channels", 256) is not None


def _is_udp(cfg: PretrainedCfg) -> bool:
    return (cfg.tag or "").startswith("udp_")


def _fmt_size(cfg: PretrainedCfg) -> str:
    return f"{cfg.input_size[1]}×{cfg.input_size[2]}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _bullets(lines: Iterable[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def _code(language: str, code: str) -> str:
    return f"```{language}\n{code.strip()}\n```"


# --- sections -------------------------------------------------------------------------------------------
def _summary(cfg: PretrainedCfg, facts: _ModelFacts) -> str:
    _, task_name, _ = _task(cfg)
    status = {
        "published": "Weights are published on the Hugging Face Hub.",
        "convertible": (
            "**The weights are not on the Hugging Face Hub yet**: they are the official upstream "
            f"checkpoint, which `psa-zoo convert --format {cfg.convert_format}` turns into a psa_zoo folder."
        ),
        "not released": (
            "**No weights exist for this tag**: the upstream authors reported the result but never released "
            "the checkpoint. This card records the architecture and the reported figures only."
        ),
        "none": (
            "No pretrained tag: this card describes the architecture; the registry records no weights "
            "under this bare name."
        ),
    }.get(cfg.status, f"Weights status: {cfg.status}.")
    attn = (
        f"with Polarized Self-Attention (`{facts.attn}`)"
        if facts.attn
        else "without attention (a PSA baseline)"
    )
    labels = _LABEL_DATASETS.get(cfg.label_names, (None, f"{cfg.num_classes} outputs"))[1]
    return (
        f"{_display_name(facts)} {attn} for {task_name.lower()} on {labels}, input {_fmt_size(cfg)}, from "
        "psa_zoo, a model zoo for Polarized Self-Attention (PSA, "
        "[arXiv 2107.00782](https://arxiv.org/abs/2107.00782)). "
        f"{status}"
    )


def _architecture_text(facts: _ModelFacts) -> str:
    cls = facts.model_class
    if cls == "SimpleBaseline":
        return (
            f"SimpleBaseline: a ResNet-{facts.arg('depth')} trunk (output stride 32), three 4×4 stride-2 "
            "transposed convolutions (256 channels, BN, ReLU) and a 1×1 convolution that gives one heatmap "
            "per keypoint at 1/4 of the input resolution."
        )
    if cls == "HRNetPose":
        spec = str(facts.arg("spec", ""))
        return (
            f"HRNet-{spec.upper()} pose network: a stem of two stride-2 3×3 convolutions and four "
            "Bottlenecks, then stages 2–4 that keep 2, 3 and 4 parallel branches (strides 4 to 32, each "
            "twice as wide as the one above) and exchange information between them after every module. "
            "A 1×1 convolution on the highest-resolution branch gives one heatmap per keypoint at 1/4 "
            "of the input resolution."
        )
    if cls == "DeepLabV3Plus":
        output_stride = facts.arg("output_stride", 16)
        rates = "6/12/18" if output_stride == 16 else "12/24/36" if output_stride == 8 else "scaled"
        return (
            "DeepLabV3+ in the layout of VainF/DeepLabV3Plus-Pytorch: a "
            f"{_encoder_name(facts.arg('encoder'))} encoder "
            f"dilated to output stride {output_stride}, ASPP (1×1, three atrous 3×3 at rates {rates}, "
            "image pooling; 256 channels), and a decoder that joins the upsampled ASPP output with the "
            "stride-4 encoder features (projected to 48 channels) through one 3×3 convolution (the paper "
            "uses two). Logits are upsampled bilinearly to the input size."
        )
    if cls == "HRNetOCR" and not _has_scale_attn(facts):
        return (
            "HRNetV2-W48 + OCR as released by HRNet/HRNet-Semantic-Segmentation (branch HRNet-OCR): the four "
            "HRNet branches are upsampled to stride 4 and concatenated (720 channels); an auxiliary head "
            "predicts soft object regions, and the OCR block lets every pixel attend to the per-class region "
            "features (512 channels, 256 key channels) before a 1×1 classifier. Every bilinear resize (trunk "
            "fuse layers, branch concatenation, logits to the input size) uses `align_corners=True`, as that "
            "code does. There is no scale-attention head: `model(x)` is the single-scale prediction."
        )
    if cls == "HRNetOCR":
        return (
            "HRNetV2-W48 + OCR with the hierarchical multi-scale attention head of NVIDIA's "
            "semantic-segmentation code (the model DeLightCMU/PSA released): the four HRNet branches are "
            "upsampled to stride 4 and concatenated (720 channels); an auxiliary head predicts soft object "
            "regions, the OCR block lets every pixel attend to the per-class region features (512 "
            "channels, 256 key channels), and a small scale-attention head predicts, per pixel, how much "
            "a prediction made at one scale is trusted when scales are combined. `model(x)` is one scale; "
            "`model.forward_multiscale(x, scales=(0.5, 1.0, 2.0))` is the combination of the official "
            "evaluation."
        )
    return f"{cls} (see its docstring)."


def _encoder_name(encoder: object) -> str:
    """``"resnet101"`` → ``"ResNet-101"``, ``"mobilenetv2"`` → ``"MobileNetV2"``."""
    text = str(encoder)
    if text.startswith("resnet"):
        return f"ResNet-{text[len('resnet') :]}"
    return {"mobilenetv2": "MobileNetV2"}.get(text, text)


def _display_name(facts: _ModelFacts) -> str:
    """``"HRNet-W48"``, ``"SimpleBaseline ResNet-50"``, ``"DeepLabV3+ MobileNetV2"``, ..."""
    family, _, _ = _family(facts)
    if facts.model_class in ("HRNetPose", "HRNetOCR"):
        width = str(facts.arg("spec", "")).upper()
        return f"HRNet-{width}" if facts.model_class == "HRNetPose" else f"HRNetV2-{width} + OCR"
    if facts.model_class == "SimpleBaseline":
        return f"SimpleBaseline ResNet-{facts.arg('depth')}"
    if facts.model_class == "DeepLabV3Plus":
        return f"DeepLabV3+ {_encoder_name(facts.arg('encoder'))}"
    return family


def _placement(facts: _ModelFacts) -> str:
    """Where the attention slot is, per model class (as the backbones build it)."""
    if facts.model_class in ("HRNetPose", "HRNetOCR"):
        return (
            "It sits after the first 3×3 convolution (with its BN and ReLU) of every BasicBlock of stages "
            "2–4, in the `deattn` slot of the released code; the stage-1 Bottlenecks have none."
        )
    encoder = str(facts.arg("encoder", "resnet"))
    if facts.model_class == "SimpleBaseline" or encoder.startswith("resnet"):
        return (
            "It sits after the 3×3 convolution (with its BN and ReLU) of every ResNet Bottleneck: the "
            'paper\'s rule "after the first 3×3 convolution of every residual block" read for '
            "Bottlenecks (no released code shows this placement)."
        )
    if encoder == "mobilenetv2":
        return (
            "It sits after the depthwise 3×3 convolution (with its BN and ReLU6) of every inverted-residual "
            "block with an identity shortcut. This is psa_zoo's own choice: the paper does not say where "
            "PSA goes in MobileNetV2."
        )
    return "See the model's docstring for the placement."


def _description(cfg: PretrainedCfg, facts: _ModelFacts) -> str:
    default = get_pretrained_cfg(cfg.architecture)
    entry_doc = " ".join((model_entrypoint(cfg.architecture).__doc__ or "").split()).replace("``", "`")
    lines = [
        f"**Registered name:** `{cfg.architecture}`"
        + (f", pretrained tag `{cfg.tag}`" if cfg.tag else "")
        + f' (`psa_zoo.create_model("{cfg.name}")`). {entry_doc}',
        "",
        _architecture_text(facts),
        "",
    ]
    if facts.attn:
        flavour = _ATTN_DESCRIPTIONS.get(facts.attn, f"the attention block `{facts.attn}`")
        lines += [
            f"**Where PSA sits:** {flavour}. {_placement(facts)} That is {facts.attn_blocks} blocks, which "
            f"add {facts.attn_params:,} parameters.",
            "",
        ]
    else:
        variants = [n for n in list_models(f"{cfg.architecture}_psa*") if n != cfg.architecture]
        with_psa = (
            "psa_zoo registers the same network with PSA as " + ", ".join(f"`{n}`" for n in variants) + "."
            if variants
            else "psa_zoo registers no PSA variant of this exact network."
        )
        lines += [
            f"**Where PSA sits:** nowhere: this is the baseline that PSA is measured against. {with_psa} "
            "Any attention block of `psa_zoo.list_attn()` can be put in its residual blocks with `attn=`.",
            "",
        ]
    paper = default.paper
    paper_figures = []
    if paper.params_m is not None:
        paper_figures.append(f"{paper.params_m} M parameters")
    if paper.gmacs is not None:
        paper_figures.append(f"{paper.gmacs} GMACs at {_fmt_size(default)}")
    counted = f"**Parameters:** {facts.params:,} ({facts.params / 1e6:.2f} M), counted by psa_zoo"
    if paper_figures:
        counted += f"; the paper's figures ({paper.source}): {', '.join(paper_figures)}"
    if paper.note:
        counted += f" (note: {paper.note})"
    lines.append(counted + ". FLOPs of every model: `docs/models.md`.")
    lines.append("")
    mean = ", ".join(f"{v:g}" for v in cfg.mean)
    std = ", ".join(f"{v:g}" for v in cfg.std)
    if cfg.task == "pose":
        io = (
            f"**Input:** a person crop of {_fmt_size(cfg)} (H×W), RGB in [0, 1] normalised with mean "
            f"({mean}) and std ({std}). **Output:** [N, {cfg.num_classes}, H/4, W/4] heatmaps, one per "
            "keypoint: " + ", ".join(cfg.label_names) + "."
        )
    else:
        io = (
            f"**Input:** an RGB image in [0, 1] normalised with mean ({mean}) and std ({std}); the "
            f"recipe's evaluation size is {_fmt_size(cfg)} (H×W), any size works. **Output:** "
            f"[N, {cfg.num_classes}, H, W] class logits at the input size; classes: "
            + ", ".join(cfg.label_names)
            + "."
        )
    lines.append(io)
    return "\n".join(lines)


def _weights(cfg: PretrainedCfg) -> str:
    rows = []
    if cfg.status == "published":
        rows.append(f"Published on the Hugging Face Hub: `{cfg.hf_hub_id}`, file `{cfg.filename}`")
        if cfg.hf_hub_revision:
            rows.append(f"Pinned revision: `{cfg.hf_hub_revision}`")
        if cfg.sha256:
            rows.append(f"sha256 of the file (checked before loading): `{cfg.sha256}`")
    elif cfg.status == "convertible":
        rows += [
            "**Not on the Hugging Face Hub yet.** `create_model(..., pretrained=True)` without a local file "
            "raises an error that says how to convert.",
            f"Upstream checkpoint: {cfg.source}.",
            f"Conversion: `psa-zoo convert CHECKPOINT --format {cfg.convert_format} --out DIR` maps every "
            "key of the official file onto the psa_zoo model (nothing dropped silently) and writes "
            "`DIR/model.safetensors`, `DIR/config.json` and this card.",
        ]
    elif cfg.status == "not released":
        rows += [
            "**Not released: the upstream never published these weights**, so psa_zoo cannot convert or "
            "publish them, and `create_model(..., pretrained=True)` raises an error.",
            f"Upstream: {cfg.source}.",
        ]
    else:
        rows.append("No weights are recorded for this name.")
    if cfg.license:
        rows.append(
            f"License recorded in the registry: {cfg.license}. The upstream states no separate license for "
            "the weights; check the upstream repository and the dataset terms before reuse."
            if cfg.status != "published"
            else f"License: {cfg.license}."
        )
    return _bullets(rows)


def _loading(cfg: PretrainedCfg) -> str:
    arch, tag = cfg.architecture, cfg.tag
    local = (
        'From a local checkout, `torch.hub.load("path/to/psa_zoo", ..., source="local")` takes the same '
        "arguments."
    )
    if cfg.status == "published":
        revision = f', revision="{cfg.hf_hub_revision}"' if cfg.hf_hub_revision else ""
        return "\n\n".join(
            [
                "1. `psa_zoo.create_model` (downloads through the Hugging Face cache; `HF_HUB_OFFLINE=1` "
                "works once cached):",
                _code(
                    "python",
                    f'import psa_zoo\n\nmodel = psa_zoo.create_model("{cfg.name}", pretrained=True).eval()',
                ),
                "2. `torch.hub` (one entry point per registered model; the tag is `pretrained_cfg`):",
                _code(
                    "python",
                    f'import torch\n\nmodel = torch.hub.load("{HUB_REPO}", "{arch}", pretrained=True, '
                    f'pretrained_cfg="{tag}").eval()',
                ),
                local,
                "3. `psa_zoo.from_pretrained` (the Hub repository as a folder: `model.safetensors` + "
                "`config.json`; returns the model in eval mode):",
                _code(
                    "python",
                    f'import psa_zoo\n\nmodel = psa_zoo.from_pretrained("{cfg.hf_hub_id}"{revision})',
                ),
            ]
        )
    if cfg.status == "convertible":
        return "\n\n".join(
            [
                "The weights are not on the Hub yet, so every way starts from the official checkpoint "
                f"({cfg.source}). Download it from the upstream release, then convert it once:",
                _code(
                    "bash",
                    f"psa-zoo convert CHECKPOINT --format {cfg.convert_format} --arch {arch} --tag {tag} "
                    "--out DIR",
                ),
                "1. `psa_zoo.from_pretrained` on the converted folder (returns the model in eval mode):",
                _code("python", 'import psa_zoo\n\nmodel = psa_zoo.from_pretrained("DIR")'),
                "2. `psa_zoo.create_model` with the converted file as a local override:",
                _code(
                    "python",
                    "import psa_zoo\n\n"
                    f'model = psa_zoo.create_model(\n    "{cfg.name}", pretrained=True, '
                    'pretrained_cfg_overlay={"file": "DIR/model.safetensors"}\n).eval()',
                ),
                "3. `torch.hub` (one entry point per registered model; the tag is `pretrained_cfg`):",
                _code(
                    "python",
                    "import torch\n\n"
                    f'model = torch.hub.load(\n    "{HUB_REPO}", "{arch}", pretrained=True, '
                    f'pretrained_cfg="{tag}",\n'
                    '    pretrained_cfg_overlay={"file": "DIR/model.safetensors"},\n).eval()',
                ),
                local + " Without the `file` override, `pretrained=True` raises an error until the weights "
                "are published.",
            ]
        )
    backbone = (
        f" or with timm's ImageNet weights of `{cfg.timm_backbone}` in its backbone "
        "(`pretrained_backbone=True`)"
        if cfg.timm_backbone
        else ""
    )
    intro = (
        f'There are no weights to load: `psa_zoo.create_model("{cfg.name}", pretrained=True)` raises '
        "`ValueError`. "
        if cfg.status == "not released"
        else ""
    )
    return "\n\n".join(
        [
            f"{intro}The architecture is available untrained{backbone}, e.g. to train it yourself:",
            "1. `psa_zoo.create_model`:",
            _code(
                "python",
                f'import psa_zoo\n\nmodel = psa_zoo.create_model("{arch}", pretrained_backbone=True)',
            ),
            "2. `torch.hub`:",
            _code(
                "python",
                f'import torch\n\nmodel = torch.hub.load("{HUB_REPO}", "{arch}", pretrained_backbone=True)',
            ),
            "3. `psa_zoo.from_pretrained`, once you have trained and saved it:",
            _code(
                "python",
                'import psa_zoo\n\nmodel.save_pretrained("DIR")  # after training\n'
                'model = psa_zoo.from_pretrained("DIR")',
            ),
        ]
    )


def _sigma(cfg: PretrainedCfg) -> str:
    """The heatmap Gaussian's σ of the HRNet-repository configs ("" for crop sizes they do not have)."""
    sigma = {256: "2", 384: "3"}.get(cfg.input_size[1])
    return f"σ = {sigma} " if sigma else ""


def _coco_eval_text(cfg: PretrainedCfg) -> str:
    return _bullets(
        [
            "COCO val2017 (5,000 images). Person boxes come from a detector, not the ground truth: "
            "`COCO_val2017_detections_AP_H_56_person.json` (person AP 56.4), every box kept.",
            "Each box is enlarged 1.25× at the model's aspect ratio and warped to the input crop; the "
            "heatmaps of the crop and of its horizontal mirror (flipped back, left/right joints swapped, "
            "shifted one pixel) are averaged.",
            "A keypoint is the heatmap maximum moved a quarter pixel towards its higher neighbour, mapped "
            "back to the image; the person score is the box score times the mean of the keypoint scores "
            "above 0.2; OKS-based NMS at 0.9 per image.",
            "Metric: COCO keypoint AP (`pycocotools` COCOeval, mean over OKS thresholds 0.50:0.05:0.95).",
        ]
    )


def _recipe(cfg: PretrainedCfg, facts: _ModelFacts) -> str:
    h, w = cfg.input_size[1], cfg.input_size[2]
    if cfg.convert_format in ("simplebaseline", "hrnet-pose"):
        hrnet = cfg.convert_format == "hrnet-pose"
        config = (
            f"experiments/coco/hrnet/{facts.arg('spec')}_{h}x{w}_adam_lr1e-3.yaml"
            if hrnet
            else f"experiments/coco/resnet/res{facts.arg('depth')}_{h}x{w}_d256x3_adam_lr1e-3.yaml"
        )
        training = [
            "COCO train2017 person instances with keypoints (about 150k), cropped around their "
            "ground-truth boxes (enlarged 1.25× at the model's aspect ratio).",
            f"Targets: one Gaussian heatmap per keypoint ({_sigma(cfg)}at {h // 4}×{w // 4}), mean-squared "
            "error weighted by keypoint visibility.",
            "Augmentation: horizontal flip (p = 0.5), half-body crops (p = 0.3), random scale "
            f"(±{35 if hrnet else 30} %), random rotation (σ = {45 if hrnet else 40}°, p = 0.6).",
            "Adam, lr 1e-3 without weight decay, "
            + (
                "210 epochs with the lr divided by 10 at epochs 170 and 200, "
                f"{24 if (facts.arg('spec'), h) == ('w48', 384) else 32} crops per GPU on 4 GPUs."
                if hrnet
                else "140 epochs with the lr divided by 10 at epochs 90 and 120."
            ),
            "Backbone initialised from ImageNet weights"
            + (
                "; images fed in RGB order."
                if hrnet
                else "; the ResNet configs read images in **BGR** order (`COLOR_RGB: false`)."
            ),
        ]
        return "\n\n".join(
            [
                f"Trained by the upstream (leoxiaobin/deep-high-resolution-net.pytorch, `{config}`), not by "
                "psa_zoo. Top-down: the model sees one person at a time.",
                "**Training**\n\n" + _bullets(training),
                "**Evaluation**\n\n" + _coco_eval_text(cfg),
            ]
        )
    if _is_udp(cfg):
        return "\n\n".join(
            [
                "Neither training code nor weights were released for the PSA pose models. The PSA README "
                "and paper describe HRNet-W48 with PSA in every BasicBlock, trained with the UDP-Pose "
                "recipe (unbiased data processing); the exact settings the PSA authors used are not "
                "documented.",
                "**UDP-Pose recipe, for orientation** (official configs of HuangJunJie2017/UDP-Pose, an "
                "mmpose 0.x fork):\n\n"
                + _bullets(
                    [
                        "Coordinates measured in unit lengths: the crop is warped so that the box maps onto "
                        "the pixel-centre grid, and keypoints are scaled to the heatmap by "
                        "(input − 1)/(heatmap − 1) instead of the stride; the flip test needs no shift.",
                        "Combined target (a keypoint disk plus x/y offset maps) in the official configs.",
                        "Adam, lr 3e-3, 210 epochs with steps at 170 and 200, 48 crops per GPU; rotation "
                        "up to 45°, scale ±35 %, flip and half-body augmentation.",
                    ]
                ),
                "**Evaluation**\n\n"
                + _bullets(
                    [m.protocol for m in cfg.metrics]
                    + [
                        "The README does not say which COCO split and person detector the AP uses. The "
                        "UDP-Pose README's own numbers use a detector with person AP 65.1, stronger than "
                        "the AP 56.4 boxes of the other COCO cards, so these figures are not directly "
                        "comparable with them."
                    ]
                ),
            ]
        )
    if cfg.convert_format == "vainf-deeplab":
        return "\n\n".join(
            [
                "Trained by the upstream (VainF/DeepLabV3Plus-Pytorch), not by psa_zoo.",
                "**Training**\n\n"
                + _bullets(
                    [
                        "Pascal VOC 2012 train_aug: 10,582 images (VOC train plus the SBD annotations, "
                        "without VOC val), 21 classes, label 255 ignored.",
                        "30k iterations, batch 16, 513×513 crops after random scaling (0.5–2.0) and "
                        "horizontal flips; output stride 16.",
                        "SGD (momentum 0.9, weight decay 1e-4), lr 0.01 for the decoder and 0.001 for the "
                        "ImageNet-initialised encoder, polynomial decay (power 0.9); cross-entropy.",
                    ]
                ),
                "**Evaluation**\n\n"
                + _bullets(
                    [
                        "Pascal VOC 2012 val (1,449 images), single scale, output stride 16.",
                        "The upstream table uses `--crop_val`: each image is resized to 513 and "
                        "center-cropped to 513×513, so image borders are left out; the usual protocol "
                        "scores the full images.",
                        "mIoU from one confusion matrix accumulated over the whole set.",
                    ]
                ),
            ]
        )
    if cfg.convert_format == "psa-nvidia":
        if facts.attn:
            trained = (
                "Trained by the PSA authors with their release (DeLightCMU/PSA `semantic-segmentation/`, "
                "a copy of NVIDIA/semantic-segmentation), not by psa_zoo."
            )
            training = [
                "Cityscapes fine annotations: 2,975 training images, 19 classes, label 255 ignored.",
                "Initialised from NVIDIA's Mapillary Vistas–pretrained "
                "`ocrnet.HRNet_industrious-chicken.pth` (which has no PSA: the PSA blocks start from their "
                "own initialisation).",
                "1024×2048 crops, 1 image per GPU on 8–16 GPUs, SGD with lr 5e-3 and polynomial decay "
                "(power 2), 175 epochs, RMI loss with the OCR auxiliary loss weighted 0.4, synchronised BN, "
                "mixed precision.",
            ]
        else:
            trained = (
                "Trained by NVIDIA with NVIDIA/semantic-segmentation (hierarchical multi-scale attention), "
                "not by psa_zoo; the PSA release reuses this code base and architecture."
            )
            training = [
                "Cityscapes, 19 classes, label 255 ignored, starting from NVIDIA's Mapillary "
                "Vistas–pretrained checkpoint; RMI loss with the OCR auxiliary loss weighted 0.4, polynomial "
                "lr decay, synchronised BN, mixed precision.",
                "NVIDIA's scripts have a fine-annotations configuration (lr 5e-3) and a stronger one that "
                "adds coarse and automatically labelled data (lr 1e-2); the registry does not record which "
                "one produced this checkpoint.",
            ]
        return "\n\n".join(
            [
                trained,
                "**Training** (the code base's Cityscapes scripts)\n\n" + _bullets(training),
                "**Evaluation**\n\n"
                + _bullets(
                    [
                        "Cityscapes val (500 images, 1024×2048).",
                        "Predictions at scales 0.5, 1.0 and 2.0, merged by the learned scale attention "
                        "(`model.forward_multiscale(x, scales=(0.5, 1.0, 2.0))`); mIoU over the 19 classes.",
                    ]
                ),
            ]
        )
    if cfg.convert_format == "hrnet-ocr":
        trainval = cfg.tag == "cityscapes_trainval"
        return "\n\n".join(
            [
                "Trained by the upstream (HRNet/HRNet-Semantic-Segmentation, branch HRNet-OCR, "
                "`experiments/cityscapes/seg_hrnet_ocr_w48_"
                + ("trainval" if trainval else "train")
                + "_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml`), not by psa_zoo.",
                "**Training**\n\n"
                + _bullets(
                    [
                        "Cityscapes fine annotations: "
                        + ("train + val (3,475 images)" if trainval else "train (2,975 images)")
                        + ", 19 classes, label 255 ignored.",
                        "HRNetV2-W48 trunk initialised from ImageNet weights; 1024×512 (W×H) crops after "
                        "random scaling (0.5–2.0 of the 2048-pixel long side) and horizontal flips.",
                        "SGD (momentum 0.9, weight decay 5e-4), lr 0.01 with polynomial decay (power 0.9), "
                        "484 epochs, 3 crops per GPU on 4 GPUs.",
                        "Class-weighted cross-entropy on the main and the auxiliary (soft object region) "
                        "outputs, weighted 1 and 0.4.",
                    ]
                ),
                "**Evaluation**\n\n"
                + _bullets(
                    [m.protocol for m in cfg.metrics]
                    + [
                        "Logits are resized to the label size bilinearly with `align_corners=True`; mIoU "
                        "over the 19 classes from one confusion matrix accumulated over the whole set.",
                    ]
                ),
            ]
        )
    return f"The registry records no recipe for this tag; see its source: {cfg.source or 'not recorded'}."


def _metrics(cfg: PretrainedCfg) -> str:
    if not cfg.metrics:
        return (
            "The registry records no metric for this tag, so none is quoted here (see the upstream "
            f"source: {cfg.source})."
        )
    rows = [
        "| metric | value | dataset | protocol | provenance |",
        "|---|---|---|---|---|",
    ]
    for m in cfg.metrics:
        url = _source_url(m.provenance)
        provenance = f"[{_cell(m.provenance)}]({url})" if url else _cell(m.provenance)
        rows.append(f"| {m.name} | {m.value:g} | {_cell(m.dataset)} | {_cell(m.protocol)} | {provenance} |")
    reported = all(m.provenance.startswith("reported by") for m in cfg.metrics)
    note = (
        "\n\nAll figures are as reported by their source; psa_zoo has not re-measured them."
        if reported
        else ""
    )
    return "\n".join(rows) + note


def _limitations(cfg: PretrainedCfg, facts: _ModelFacts) -> str:
    items = []
    if cfg.metrics and all(m.provenance.startswith("reported by") for m in cfg.metrics):
        items.append(
            "The metrics are the upstream's; psa_zoo has not reproduced them (its training and evaluation "
            "pipelines are still open work)."
        )
    if cfg.status == "convertible":
        items.append(
            "The weights are not on the Hub: you need the official checkpoint from the upstream's hosting, "
            "which psa_zoo does not control and whose file checksum it does not record."
        )
    if cfg.status == "not released":
        items.append(
            "No weights exist, so nothing on this card can be checked by running a model; the figures are "
            "claims of the paper / README."
        )
    if cfg.task == "pose":
        items.append(
            "Top-down pose model: it needs a person box per instance from a separate detector, and the "
            "reported AP depends on that detector. The model returns heatmaps; box handling, flip testing "
            "and heatmap decoding of the protocol above are not part of the model."
        )
        items.append(
            "Trained on COCO keypoints (17 body keypoints of people in everyday photos); other keypoint "
            "sets or domains need fine-tuning (`num_classes=` rebuilds the head)."
        )
    if cfg.convert_format == "simplebaseline":
        items.append(
            "The official ResNet configs feed images in BGR channel order; the conversion copies the "
            "weights unchanged, so reverse the channels of RGB input to reproduce the reported AP."
        )
    if _is_udp(cfg):
        items.append(
            "The COCO split and detector behind the reported AP are unconfirmed; compare it only with "
            "results measured the same way."
        )
    if cfg.convert_format == "vainf-deeplab":
        items.append(
            "The reported mIoU uses the center-crop protocol of the upstream (`--crop_val`), not full "
            "images; it is not directly comparable with full-image VOC results, including the PSA paper's."
        )
    if cfg.convert_format == "psa-nvidia":
        items.append(
            "The recipe (Mapillary Vistas pretraining, RMI loss, three-scale inference with learned scale "
            "attention) is much stronger than plain HRNetV2-OCR training; its results are not comparable "
            "with single-scale results from ImageNet initialisation."
        )
    if cfg.convert_format == "hrnet-ocr":
        items.append(
            "The model has no scale-attention head, so `forward_multiscale` is not available; the upstream's "
            "multi-scale test (sliding windows, scales 0.5–1.75, flip, summed logits) is an evaluation "
            "procedure outside the model. Fine-tuning keeps `align_corners=True`; changing it changes "
            "the outputs of these weights."
        )
    if cfg.label_names == CITYSCAPES_CLASSES:
        items.append(
            "Cityscapes is urban street scenes from German and neighbouring cities; other domains need "
            "fine-tuning. The Cityscapes terms restrict use of the data to non-commercial purposes: check "
            "them before using a model trained on it."
        )
        if facts.attn == "psa_p":
            items.append(
                "The released training code builds PSA_s in its blocks; how the PSA_p checkpoint was trained "
                "is not visible in the released code."
            )
    if cfg.task == "segmentation" and cfg.label_names == VOC_CLASSES:
        items.append(
            "Trained on Pascal VOC's 20 object classes plus background; other classes need fine-tuning."
        )
    if facts.attn and cfg.status != "not released":
        items.append(
            "The PSA blocks follow the released code, which differs from the paper's equations; the "
            "equation-faithful blocks (`psa_p_paper`, `psa_s_paper`) cannot load these weights."
        )
    return _bullets(items)


def _citations(cfg: PretrainedCfg, facts: _ModelFacts) -> str:
    _, _, keys = _family(facts)
    keys = ["psa", *keys, *(["udp"] if _is_udp(cfg) else [])]
    keys = list(dict.fromkeys(keys))
    intro = "If you use this model, cite PSA and the papers it builds on:\n\n" + _bullets(
        _PAPER_TITLES[k] for k in keys
    )
    return intro + "\n\n" + _code("bibtex", "\n\n".join(_BIBTEX[k] for k in keys))


# --- public API -----------------------------------------------------------------------------------------
def model_card_data(cfg: PretrainedCfg) -> ModelCardData:
    """The YAML front matter of ``cfg``'s card."""
    pipeline_tag, _, topic = _task(cfg)
    facts = _model_facts(cfg.architecture)
    _, family_tags, _ = _family(facts)
    tags = ["polarized-self-attention", topic, *family_tags, "pytorch"]
    if facts.attn:
        tags.append(facts.attn.replace("_", "-"))
    if _is_udp(cfg):
        tags.append("udp")
    eval_results = _eval_results(cfg)
    return ModelCardData(
        library_name="psa_zoo",
        pipeline_tag=pipeline_tag,
        tags=tags,
        datasets=_datasets(cfg),
        **_license(cfg),
        model_name=cfg.name if eval_results else None,
        eval_results=eval_results or None,
    )


def render_model_card(cfg: PretrainedCfg) -> str:
    """The Markdown text (YAML front matter + body) of the model card of ``cfg`` (a ``name.tag`` config).

    Deterministic: the same registry entry always gives the same text. Raises ``ValueError`` for a task,
    metric dataset or provenance the card rules do not know (add them here rather than guess).
    """
    facts = _model_facts(cfg.architecture)
    card = ModelCard.from_template(
        model_card_data(cfg),
        template_str=_TEMPLATE,
        name=cfg.name,
        summary=_summary(cfg, facts),
        description=_description(cfg, facts),
        weights=_weights(cfg),
        loading=_loading(cfg),
        recipe=_recipe(cfg, facts),
        metrics=_metrics(cfg),
        limitations=_limitations(cfg, facts),
        citations=_citations(cfg, facts),
        footer=(
            f"*Generated from the psa_zoo registry by `{GENERATOR_COMMAND}`; edit the registry "
            "(`psa_zoo/models/zoo.py`) or `psa_zoo/publish/cards.py` rather than this file.*"
        ),
    )
    return str(card).rstrip("\n") + "\n"


def expected_model_cards() -> dict[str, str]:
    """``{"<name>.<tag>.md": card text}`` for every tag of every registered model."""
    return {
        card_filename(f"{name}.{tag}"): render_model_card(get_pretrained_cfg(f"{name}.{tag}"))
        for name in list_models()
        for tag in list_tags(name)
    }


def write_model_cards(directory: str | Path, prune: bool = False) -> list[Path]:
    """Write every card of :func:`expected_model_cards` into ``directory`` (created if needed).

    With ``prune=True``, other ``*.md`` files there (cards of tags no longer registered) are deleted;
    ``README.md`` is always kept. Returns the paths written, sorted.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cards = expected_model_cards()
    if prune:
        for stale in directory.glob("*.md"):
            if stale.name != CARDS_README and stale.name not in cards:
                stale.unlink()
    written = []
    for filename, text in sorted(cards.items()):
        path = directory / filename
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
