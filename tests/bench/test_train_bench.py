"""``psa-zoo bench-train``: the quick run through the CLI (tables, JSON, the arithmetic of its numbers), the
target column, and the one-line errors. No timed assertions: only relations that hold on any machine."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import torch
from torch.utils.data import DataLoader

from psa_zoo.bench.train import (
    TINY_SPEC,
    SegBenchConfig,
    TrainBenchConfig,
    TrainBenchReport,
    TrainCase,
    bench_training,
    make_bench_data,
    to_markdown,
)
from psa_zoo.cli import main
from tests.conftest import cli_error_line

QUICK_MODELS = ["hrnet_w18_psa_p (tiny spec)", "hrnet_w32_psa_p (tiny spec)"]


def _tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of ``text`` as a list of {header: cell} rows."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif block:
            header, _rule, *body = block
            tables.append([dict(zip(header, row, strict=True)) for row in body])
            block = []
    return tables


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench_train") / "train.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench-train", "--quick", "--json", str(path)])
    assert code == 0
    torch.set_num_threads(2)
    return out.getvalue(), json.loads(path.read_text())


def _rows(payload: dict, kind: str) -> list[dict]:
    return [r for r in payload["rows"] if r["kind"] == kind]


def test_output_starts_with_the_machine_and_holds_both_tables(quick_run):
    text, payload = quick_run
    first = text.splitlines()[0]
    assert first.startswith("Machine: ") and first.endswith(", 2 threads")
    assert payload["machine"].startswith(first.removeprefix("Machine: ").removesuffix(", 2 threads"))
    assert ", 2 threads, torch " in payload["machine"]
    train, loader = _tables(text)
    assert [r["model"] for r in train] == QUICK_MODELS
    assert [r["workers"] for r in loader] == ["0 (main process)", "1", "2"]


def test_training_rows_name_the_setup_and_have_sane_numbers(quick_run):
    text, _ = quick_run
    train, _ = _tables(text)
    for row in train:
        assert (row["input"], row["batch"], row["workers"], row["steps timed"]) == ("64×48", "8", "2", "2")
        assert row["device"].startswith("cuda") if torch.cuda.is_available() else row["device"] == "cpu"
        assert row["layout/dtype"] == "NCHW, fp32"
        rate = float(row["images/s"])
        assert math.isfinite(rate) and rate > 0
        share = float(row["data-wait share"].removesuffix("%")) / 100
        assert 0 <= share <= 1
        assert row["target"] == "" and row["met"] == ""  # the target is for the full hrnet_w32_psa_p


def test_json_rows_are_the_printed_rows(quick_run):
    text, payload = quick_run
    train, loader = _tables(text)
    rows = _rows(payload, "train")
    assert [r["model"] for r in rows] == [r["model"] for r in train]
    for printed, row in zip(train, rows, strict=True):
        assert printed["images/s"] == f"{row['images_per_s']:.2f}"
        assert printed["data-wait share"] == f"{row['data_wait_share']:.2%}"
        assert printed["ms/step"] == f"{row['ms_per_step']:,.0f}"
        assert (row["input"], row["batch"], row["workers"], row["steps"]) == ("64×48", 8, 2, 2)
        assert row["name"] == printed["model"].split(" ")[0]
    rows = _rows(payload, "loader")
    assert [r["workers"] for r in rows] == [0, 1, 2]
    for printed, row in zip(loader, rows, strict=True):
        assert printed["images/s"] == f"{row['images_per_s']:.1f}"
        assert printed["images/s per worker"] == f"{row['images_per_s_per_worker']:.1f}"


def test_training_numbers_are_the_timed_steps_over_their_seconds(quick_run):
    _, payload = quick_run
    assert payload["settings"]["warmup"] == 1 and payload["settings"]["steps"] == 2
    for row in _rows(payload, "train"):
        seconds = row["data_seconds"] + row["compute_seconds"]
        assert row["images_per_s_runs"] == [row["images_per_s"]]  # one run per model with --quick
        assert row["images_per_s"] == pytest.approx(row["steps"] * row["batch"] / seconds, rel=1e-9)
        assert row["data_wait_share"] == pytest.approx(row["data_seconds"] / seconds, rel=1e-9)
        assert row["ms_per_step"] == pytest.approx(seconds / row["steps"] * 1e3, rel=1e-9)
        # the warm-up step is in the engine's totals and not in the timed seconds
        assert 0 <= row["data_seconds"] <= row["engine_data_seconds"]
        assert 0 < row["compute_seconds"] < row["engine_compute_seconds"]
        assert len(row["step_seconds"]) == row["steps"] and min(row["step_seconds"]) > 0
        assert sum(row["step_seconds"]) == pytest.approx(seconds, rel=1e-9)
        assert row["spec"]["stem_width"] == 16 and row["spec"]["stage4"]["widths"] == [8, 16, 32, 64]


def test_loader_rows_per_worker_and_skipped_prefetch(quick_run):
    _, payload = quick_run
    prefetch = DataLoader(range(4), num_workers=1).prefetch_factor  # torch's default, batches per worker
    for row in _rows(payload, "loader"):
        workers = row["workers"]
        assert row["input"] == f"64×48 → {64 // 4}×{48 // 4}"
        assert math.isfinite(row["images_per_s"]) and row["images_per_s"] > 0
        assert row["images_per_s_per_worker"] == pytest.approx(row["images_per_s"] / max(workers, 1))
        assert row["batches_skipped"] == max(1, prefetch * workers)


def test_data_wait_target_is_judged_at_two_workers(tmp_path):
    cases = (
        TrainCase("always met", "hrnet_w18_psa_p", TINY_SPEC, data_wait_target=1.0),
        TrainCase("never met", "hrnet_w18_psa_p", TINY_SPEC, data_wait_target=0.0),
    )
    cfg = TrainBenchConfig.quick(cases=cases, steps=1)
    rows = bench_training(make_bench_data(tmp_path, cfg), tmp_path / "runs", cfg)
    assert [(r.target, r.passed) for r in rows] == [("data wait < 100%", True), ("data wait < 0%", False)]
    train, _ = _tables(to_markdown(TrainBenchReport("machine", {}, [], rows)))
    assert [(r["model"], r["target"], r["met"]) for r in train] == [
        ("always met", "data wait < 100%", "yes"),
        ("never met", "data wait < 0%", "**no**"),
    ]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--task", "depth"], "--task depth is not benchmarked, expected pose or seg"),
        (["--task", "seg", "--num-workers", "-1"], "--num-workers -1 is negative, expected 0 or more"),
        (["--task", "seg", "--batch-size", "0"], "argument --batch-size: got 0, expected a positive integer"),
        (["--batch-size", "0"], "argument --batch-size: got 0, expected a positive integer"),
        (["--steps", "two"], "argument --steps: got 'two', expected a positive integer"),
        (["--num-workers", "-1"], "--num-workers -1 is negative, expected 0 or more"),
        (["--mixed-precision", "fp32"], "argument --mixed-precision: invalid choice: 'fp32'"),
    ],
)
def test_bad_options_give_one_line(capsys, argv, fragment):
    assert fragment in cli_error_line(capsys, ["bench-train", *argv])


@pytest.mark.parametrize("task", ["pose", "seg"])
def test_json_into_a_folder_is_refused_before_any_work(capsys, tmp_path, task):
    line = cli_error_line(capsys, ["bench-train", "--task", task, "--quick", "--json", str(tmp_path)])
    assert f"--json {tmp_path} is a folder, expected a file path" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs on a GPU")
@pytest.mark.parametrize("task", ["pose", "seg"])
def test_fp16_without_a_gpu_is_refused(capsys, task):
    line = cli_error_line(capsys, ["bench-train", "--task", task, "--quick", "--mixed-precision", "fp16"])
    assert "no CUDA GPU" in line and "use 'bf16' or 'no'" in line


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("steps", 0, "steps is 0, expected a positive integer"),
        ("warmup", True, "warmup is True, expected a positive integer"),
        ("num_workers", -2, "num_workers is -2, expected an integer ≥ 0"),
        ("input_size", (16, 48), "input_size is (16, 48), expected (height, width) of at least 32"),
        ("cases", (), "cases is empty"),
    ],
)
def test_config_refuses_bad_values(field, value, fragment):
    with pytest.raises(ValueError, match="^" + fragment.replace("(", r"\(").replace(")", r"\)")):
        TrainBenchConfig(**{field: value})


# --- --task seg ------------------------------------------------------------------------------------------

SEG_MODEL = "deeplabv3plus_mbv2_psa"


@pytest.fixture(scope="module")
def seg_quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench_train_seg") / "train_seg.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench-train", "--task", "seg", "--quick", "--json", str(path)])
    assert code == 0
    torch.set_num_threads(2)
    return out.getvalue(), json.loads(path.read_text())


def _finite_positive(text: str) -> float:
    value = float(text.replace(",", "").removesuffix("%"))
    assert math.isfinite(value) and value > 0, text
    return value


def test_seg_output_has_the_machine_and_the_three_tables(seg_quick_run):
    text, payload = seg_quick_run
    first = text.splitlines()[0]
    assert first.startswith("Machine: ") and first.endswith(", 2 threads")
    assert payload["settings"]["task"] == "seg" and payload["settings"]["recipe"] == "voc"
    train, evaluation, memory = _tables(text)
    assert [r["model"] for r in train] == [SEG_MODEL]
    row = train[0]
    assert (row["input"], row["batch"], row["workers"], row["steps timed"]) == ("64×64", "2", "2", "1")
    assert row["device"].startswith("cuda") if torch.cuda.is_available() else row["device"] == "cpu"
    _finite_positive(row["images/s"])
    _finite_positive(row["ms/step"])
    assert 0 <= float(row["data-wait share"].removesuffix("%")) <= 100
    assert row["target"] == "" and row["met"] == ""  # the < 10% target is for the 513×513 run
    assert [(r["evaluation (whole image)"], r["input"], r["images"]) for r in evaluation] == [
        (SEG_MODEL, "64×64", "1")
    ]
    _finite_positive(evaluation[0]["images/s"])
    assert [r["mode"] for r in memory] == ["slide 64×64, stride 43×43", "whole"]
    for r in memory:
        assert (r["image"], r["classes"]) == ("64×128", "19")
        _finite_positive(r["peak RSS growth MiB"])
        _finite_positive(r["seconds"])


def test_seg_json_rows_are_the_printed_rows(seg_quick_run):
    text, payload = seg_quick_run
    train, evaluation, memory = _tables(text)
    assert [r["kind"] for r in payload["rows"]] == ["train", "eval", "memory", "memory"]
    row = _rows(payload, "train")[0]
    assert train[0]["images/s"] == f"{row['images_per_s']:.2f}"
    assert train[0]["data-wait share"] == f"{row['data_wait_share']:.2%}"
    assert (row["name"], row["spec"], row["batch"], row["steps"], row["warmup_steps"]) == (
        SEG_MODEL,
        None,
        2,
        1,
        1,
    )
    seconds = row["data_seconds"] + row["compute_seconds"]
    assert row["images_per_s"] == pytest.approx(row["steps"] * row["batch"] / seconds, rel=1e-9)
    assert 0 <= row["data_seconds"] <= row["engine_data_seconds"]
    assert 0 < row["compute_seconds"] < row["engine_compute_seconds"]  # the warm-up step is left out
    row = _rows(payload, "eval")[0]
    assert evaluation[0]["images/s"] == f"{row['images_per_s']:.2f}"
    assert row["images_per_s_runs"] == [row["images_per_s"]]  # one repeat with --quick
    assert row["ms_per_image"] == pytest.approx(1e3 / row["images_per_s"], rel=1e-9)
    for printed, row in zip(memory, _rows(payload, "memory"), strict=True):
        assert printed["peak RSS growth MiB"] == f"{row['peak_rss_growth_mib']:,.1f}"
        assert row["rss_before_mib"] > 0
        assert (row["cuda_peak_growth_mib"] is None) == (not torch.cuda.is_available())


def test_seg_memory_rows_count_windows_and_the_logits_floor(seg_quick_run):
    _, payload = seg_quick_run
    slide, whole = _rows(payload, "memory")
    # 64×128 image, 64×64 windows every 43 px (the last snapped to the border): 1 row, 1 + ⌈(128−64)/43⌉ = 3
    assert (slide["windows"], whole["windows"]) == (1 * (1 + math.ceil((128 - 64) / 43)), 1)
    for row in (slide, whole):
        assert row["logits_floor_mib"] == 19 * 64 * 128 * 4 / 2**20  # K·H·W float32 bytes in MiB


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("crop_size", (32, 513), "crop_size is (32, 513), expected (height, width) from 64 to 4096"),
        ("slide_stride", (600, 342), "slide_stride (600, 342) is larger than slide_crop (513, 513)"),
        ("eval_images", 0, "eval_images is 0, expected a positive integer"),
        ("num_workers", -1, "num_workers is -1, expected an integer ≥ 0"),
        ("mixed_precision", "fp8", "mixed_precision is 'fp8', expected 'no', 'bf16' or 'fp16'"),
    ],
)
def test_seg_config_refuses_bad_values(field, value, fragment):
    with pytest.raises(ValueError, match="^" + fragment.replace("(", r"\(").replace(")", r"\)")):
        SegBenchConfig(**{field: value})
