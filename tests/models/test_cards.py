"""model_cards/*.md are generated from the registry and must match it; their YAML parses back to the
registry's metrics; each card tells the truth about where its weights stand."""

from __future__ import annotations

import dataclasses
import re
import shlex

import pytest
import torch
from huggingface_hub import ModelCard

from psa_zoo import __version__
from psa_zoo.cli import build_parser
from psa_zoo.labels import CITYSCAPES_CLASSES, COCO_KEYPOINTS, VOC_CLASSES
from psa_zoo.models import Metric, create_model, get_pretrained_cfg, list_models, list_tags
from psa_zoo.publish.cards import (
    CARDS_README,
    GENERATOR_COMMAND,
    HUB_REPO,
    expected_model_cards,
    render_model_card,
)
from tests.conftest import REPO_ROOT

CARDS_DIR = REPO_ROOT / "model_cards"
TAGGED = [f"{name}.{tag}" for name in list_models() for tag in list_tags(name)]
PIPELINE_TAGS = {"pose": "keypoint-detection", "segmentation": "image-segmentation"}
DATASET_IDS = {COCO_KEYPOINTS: "coco", VOC_CLASSES: "pascal_voc", CITYSCAPES_CLASSES: "cityscapes"}


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    return expected_model_cards()


def _card_text(name: str) -> str:
    path = CARDS_DIR / f"{name}.md"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `{GENERATOR_COMMAND}`")
    return path.read_text(encoding="utf-8")


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_there_is_one_card_per_registered_tag(expected):
    assert len(TAGGED) >= 19  # the registry's tags when the cards were introduced
    assert set(expected) == {f"{name}.md" for name in TAGGED}


def test_model_cards_folder_is_up_to_date_with_the_registry(expected):
    actual = {p.name: p.read_text(encoding="utf-8") for p in CARDS_DIR.glob("*.md") if p.name != CARDS_README}
    missing = sorted(set(expected) - set(actual))
    stale = sorted(set(actual) - set(expected))
    differing = sorted(name for name in set(expected) & set(actual) if actual[name] != expected[name])
    assert not (missing or stale or differing), (
        f"model_cards/ is out of date with the registry (missing {missing}, no longer registered {stale}, "
        f"different {differing}): run `{GENERATOR_COMMAND}`"
    )


@pytest.mark.parametrize("name", TAGGED)
def test_card_yaml_round_trips_to_the_registry(name):
    cfg = get_pretrained_cfg(name)
    _card_text(name)  # fails with what to run when the card is missing
    data = ModelCard.load(CARDS_DIR / f"{name}.md").data
    assert data.library_name == "psa_zoo"
    assert data.pipeline_tag == PIPELINE_TAGS[cfg.task]
    assert "polarized-self-attention" in data.tags
    assert data.license
    if data.license == "other":
        assert data.license_name
    assert data.datasets == [DATASET_IDS[cfg.label_names]]
    got = [
        (r.metric_name, r.metric_value, r.dataset_name, r.source_name, r.task_type)
        for r in data.eval_results or []
    ]
    want = [(m.name, m.value, m.dataset, m.provenance, PIPELINE_TAGS[cfg.task]) for m in cfg.metrics]
    assert got == want
    if cfg.metrics:
        assert data.model_name == name
        assert all(r.source_url and r.source_url.startswith("https://") for r in data.eval_results)


@pytest.mark.parametrize("name", [n for n in TAGGED if get_pretrained_cfg(n).status == "convertible"])
def test_convertible_cards_give_a_convert_command_the_cli_accepts(name):
    cfg = get_pretrained_cfg(name)
    text = _card_text(name)
    assert "not on the Hugging Face Hub yet" in text
    assert f"--format {cfg.convert_format}" in text
    commands = [
        line
        for block in _code_blocks(text, "bash")
        for line in block.splitlines()
        if "psa-zoo convert" in line
    ]
    assert commands, "the card shows no `psa-zoo convert` command"
    for command in commands:
        argv = shlex.split(command)
        assert argv[:2] == ["psa-zoo", "convert"]
        args = build_parser().parse_args(argv[1:])
        assert (args.format, args.arch, args.tag) == (cfg.convert_format, cfg.architecture, cfg.tag)
    python = "\n".join(_code_blocks(text, "python"))
    assert 'psa_zoo.from_pretrained("DIR")' in python
    assert 'pretrained_cfg_overlay={"file": "DIR/model.safetensors"}' in python


def test_convertible_card_snippets_load_a_converted_folder(tmp_path, monkeypatch):
    """Run the card's own Python snippets against a folder laid out as `psa-zoo convert` writes it
    (save_pretrained); torch.hub is pointed at this checkout (source="local") instead of GitHub."""
    name = "deeplabv3plus_mbv2.voc_aug"  # the smallest convertible model
    reference = create_model(name.split(".")[0]).eval()
    out = tmp_path / "converted"
    reference.save_pretrained(out)
    real_load = torch.hub.load

    def load_from_this_checkout(repo: str, model: str, *args, **kwargs):
        assert repo == HUB_REPO
        return real_load(str(REPO_ROOT), model, *args, source="local", **kwargs)

    monkeypatch.setattr(torch.hub, "load", load_from_this_checkout)
    with pytest.raises(ValueError, match="psa-zoo convert"):  # what the card says happens without DIR
        create_model(name, pretrained=True)
    snippets = _code_blocks(_card_text(name), "python")
    assert len(snippets) == 3
    want = reference.state_dict()
    for snippet in snippets:
        namespace: dict = {}
        exec(snippet.replace('"DIR', f'"{out}'), namespace)
        model = namespace["model"]
        assert not model.training
        got = model.state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("name", [n for n in TAGGED if get_pretrained_cfg(n).status == "not released"])
def test_not_released_cards_say_there_are_no_weights(name):
    text = _card_text(name)
    assert "never published these weights" in text
    assert "psa-zoo convert" not in text
    # no code example pretends to load weights that do not exist
    assert all("pretrained=True" not in block for block in _code_blocks(text, "python"))


def test_published_card_loads_from_the_hub_in_three_ways():
    """No tag is published yet: render one as if it were, so the published branch is checked too."""
    cfg = dataclasses.replace(
        get_pretrained_cfg("hrnet_w32.coco_256x192"),
        status="published",
        hf_hub_id="org/hrnet_w32.coco_256x192",
        hf_hub_revision="0123456789abcdef0123456789abcdef01234567",
        sha256="ab" * 32,
    )
    text = render_model_card(cfg)
    python = "\n".join(_code_blocks(text, "python"))
    assert 'psa_zoo.create_model("hrnet_w32.coco_256x192", pretrained=True)' in python
    assert '"hrnet_w32", pretrained=True, pretrained_cfg="coco_256x192"' in python
    assert (
        'psa_zoo.from_pretrained("org/hrnet_w32.coco_256x192", '
        'revision="0123456789abcdef0123456789abcdef01234567")' in python
    )
    assert "psa-zoo convert" not in text
    assert "ab" * 32 in text


def test_rendering_is_deterministic_and_carries_no_date_or_version():
    cfg = get_pretrained_cfg("hrnetv2_w48_ocr_psa_p.cityscapes")
    first, second = render_model_card(cfg), render_model_card(cfg)
    assert first == second
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", first)
    assert __version__ not in first


def test_a_provenance_without_a_known_source_fails_loudly():
    cfg = get_pretrained_cfg("hrnet_w32.coco_256x192")
    unknown = dataclasses.replace(
        cfg, metrics=(Metric("AP", 1.0, "COCO val2017", "some protocol", "reported by a blog post"),)
    )
    with pytest.raises(ValueError, match="no source URL known"):
        render_model_card(unknown)
