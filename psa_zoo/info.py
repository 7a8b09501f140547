"""What the zoo holds: one row per registered model (``psa-zoo list``) and the whole record of one model
(``psa-zoo info``), computed without weights on the meta device (no memory, no download)."""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

import torch

from .models import create_model, get_pretrained_cfg, list_models
from .models._pretrained import PretrainedCfg
from .models._registry import list_tags

__all__ = ["ModelInfo", "format_model_info", "format_zoo_table", "model_info", "zoo_rows"]


@dataclasses.dataclass
class ModelInfo:
    """A registered model (or one tag of it): what it is, what it costs, what weights exist.

    ``gmacs`` are multiply-accumulates (what papers print as GFLOPs) of one image at ``input_size``, as
    in docs/models.md (:func:`psa_zoo.bench.fidelity.measure`: ``torch.utils.flop_counter``, element-wise
    ops not counted, PSA in its straightforward form). ``paper_params_m`` / ``paper_gmacs`` are the
    paper's figures where it prints them.
    """

    name: str
    architecture: str
    task: str
    input_size: tuple[int, int, int]
    num_classes: int
    params: int
    gmacs: float
    attention: str | None
    attention_blocks: int
    paper_params_m: float | None
    paper_gmacs: float | None
    paper_source: str
    paper_note: str
    tags: list[dict[str, Any]]
    metadata: dict[str, Any]
    doc: str

    @property
    def status(self) -> str:
        """Weights status over the tags: the best of published > convertible > not released > none."""
        order = ("published", "convertible", "not released", "none")
        statuses = [t["status"] for t in self.tags] or ["none"]
        return min(statuses, key=order.index)


def _attention(model: torch.nn.Module) -> tuple[str | None, int]:
    names = {type(m).__name__ for n, m in model.named_modules() if n.endswith((".attn", ".deattn"))}
    count = sum(1 for n, _ in model.named_modules() if n.endswith((".attn", ".deattn")))
    return (", ".join(sorted(names)) or None), count


def _tag_row(cfg: PretrainedCfg) -> dict[str, Any]:
    return {
        "tag": cfg.tag,
        "status": cfg.status,
        "input_size": list(cfg.input_size),
        "source": cfg.source,
        "convert_format": cfg.convert_format,
        "hf_hub_id": cfg.hf_hub_id,
        "metrics": [dataclasses.asdict(m) for m in cfg.metrics],
    }


def model_info(name: str, with_macs: bool = True) -> ModelInfo:
    """The record of registered model ``name`` (``architecture`` or ``architecture.tag``).

    Raises:
        ValueError: an unknown name (with the closest registered names).
    """
    cfg = get_pretrained_cfg(name)
    model = create_model(name, device="meta")
    architecture = cfg.architecture
    tags = [get_pretrained_cfg(f"{architecture}.{t}") for t in list_tags(architecture)]
    if cfg.tag is not None:
        tags = [t for t in tags if t.tag == cfg.tag]
    attention, blocks = _attention(model)
    from .bench.fidelity import measure
    from .models import model_entrypoint

    return ModelInfo(
        name=cfg.name,
        architecture=architecture,
        task=cfg.task,
        input_size=tuple(cfg.input_size),
        num_classes=cfg.num_classes,
        params=sum(p.numel() for p in model.parameters()),
        gmacs=measure(cfg.name).gmacs if with_macs else float("nan"),
        attention=attention,
        attention_blocks=blocks,
        paper_params_m=cfg.paper.params_m,
        paper_gmacs=cfg.paper.gmacs,
        paper_source=cfg.paper.source,
        paper_note=cfg.paper.note,
        tags=[_tag_row(t) for t in tags],
        metadata=model.metadata.to_dict(),
        doc=(model_entrypoint(architecture).__doc__ or "").strip(),
    )


def zoo_rows(pattern: str = "*", pretrained: bool = False, with_macs: bool = True) -> list[ModelInfo]:
    """One :class:`ModelInfo` per registered architecture matching ``pattern`` (fnmatch); ``pretrained``
    keeps those with a tag whose weights can be loaded or converted."""
    rows = [model_info(n, with_macs) for n in list_models() if fnmatch.fnmatch(n, pattern)]
    if pretrained:
        rows = [r for r in rows if r.status in ("published", "convertible")]
    return rows


def _best_metric(info: ModelInfo) -> str:
    for tag in info.tags:
        for metric in tag["metrics"]:
            return f"{metric['name']} {metric['value']} ({metric['dataset']})"
    return "–"


def format_zoo_table(rows: list[ModelInfo]) -> str:
    """A markdown table: name, task, params, GMACs, input, attention, paper metric, weights status."""
    lines = [
        "| model | task | params (M) | GMACs | input | attention | paper metric | weights |",
        "|---|---|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        size = f"{r.input_size[1]}×{r.input_size[2]}"
        attention = f"{r.attention} ×{r.attention_blocks}" if r.attention else "–"
        lines.append(
            f"| {r.name} | {r.task} | {r.params / 1e6:.2f} | {r.gmacs:.1f} | {size} | {attention} | "
            f"{_best_metric(r)} | {r.status} |"
        )
    return "\n".join(lines)


def _attention_text(info: ModelInfo) -> str:
    return f"{info.attention} × {info.attention_blocks} blocks" if info.attention else "none"


def format_model_info(info: ModelInfo) -> str:
    """The text ``psa-zoo info`` prints."""
    paper = (
        f"{info.paper_params_m} M params" + (f", {info.paper_gmacs} GMACs" if info.paper_gmacs else "")
        if info.paper_params_m
        else "–"
    )
    meta = info.metadata
    labels = meta.get("keypoints") or meta.get("classes") or {}
    names = labels.get("keypoint_names") or labels.get("class_names") or []
    lines = [
        f"{info.name}: {info.doc.splitlines()[0] if info.doc else ''}",
        f"  task          {info.task}",
        f"  input         {info.input_size[0]}×{info.input_size[1]}×{info.input_size[2]} "
        f"({meta.get('channel_order')}, mean {meta.get('mean')}, std {meta.get('std')})",
        f"  outputs       {info.num_classes} ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})",
        f"  output stride {meta.get('output_stride')}",
        f"  params        {info.params:,} ({info.params / 1e6:.2f} M)",
        f"  GMACs         {info.gmacs:.2f} at {info.input_size[1]}×{info.input_size[2]}",
        f"  attention     {_attention_text(info)}",
        f"  paper         {paper}{f' — {info.paper_source}' if info.paper_source else ''}",
        f"  weights       {info.status}",
    ]
    if info.paper_note:
        lines.insert(-1, f"  note          {info.paper_note}")
    for tag in info.tags:
        lines.append(
            f"  tag {tag['tag']}: {tag['status']}, input {tag['input_size'][1]}×{tag['input_size'][2]}"
        )
        if tag["source"]:
            lines.append(f"      source: {tag['source']}")
        if tag["convert_format"]:
            lines.append(f"      convert: psa-zoo convert CHECKPOINT --format {tag['convert_format']}")
        for m in tag["metrics"]:
            lines.append(
                f"      {m['name']} {m['value']} on {m['dataset']}: {m['protocol']} ({m['provenance']})"
            )
    return "\n".join(lines)
