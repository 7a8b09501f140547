import csv
import json
import subprocess
import sys

import pytest

import psa_zoo
from psa_zoo.cli import main
from tests.conftest import cli_error_line


def test_bench_attn_writes_tables_json_csv_and_plot(tmp_path, capsys):
    json_path, csv_path, png_path = tmp_path / "b.json", tmp_path / "b.csv", tmp_path / "b.png"
    code = main(
        [
            "bench-attn",
            "--quick",
            "--blocks",
            "psa_p",
            "se",
            "--shape",
            "1",
            "16",
            "8",
            "8",
            "--sizes",
            "8",
            "12",
            "--sweep-channels",
            "16",
            "--repeats",
            "1",
            "--sections",
            "blocks",
            "scaling",
            "--json",
            str(json_path),
            "--csv",
            str(csv_path),
            "--plot",
            str(png_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| psa_p | 528 |" in out  # 2·16² + 16 parameters
    assert "| se | " in out
    assert "1×16×12×12" in out
    rows = json.loads(json_path.read_text())["rows"]
    assert {r["block"] for r in rows} == {"psa_p", "se"}
    assert {r["section"] for r in rows} == {"blocks", "scaling"}
    with open(csv_path) as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_attn_ratios_section_reports_each_ratio(capsys):
    assert main(["bench-attn", "--quick", "--sections", "ratios", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("fwd speed-up vs reference") >= 5
    assert "| nl | 1×64×48×48 | fwd peak memory vs explicit |" in out


def test_bench_attn_unknown_block_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench-attn", "--blocks", "psa_x"])
    assert exit_info.value.code == 2
    assert "unknown attention block 'psa_x'" in capsys.readouterr().err


# --- errors: one line on stderr, exit status 2, no traceback, before any measurement -------------------


@pytest.mark.parametrize(
    ("argv", "value"),
    [
        (["bench-attn", "--sizes", "0"], "0"),
        (["bench-attn", "--sizes", "8", "-4"], "-4"),
        (["bench-attn", "--repeats", "0"], "0"),
        (["bench-attn", "--threads", "0"], "0"),
        (["bench-attn", "--shape", "1", "16", "0", "8"], "0"),
        (["bench-attn", "--shape", "-2", "16", "8", "8"], "-2"),
        (["bench-attn", "--sweep-channels", "0"], "0"),
        (["bench-attn", "--repeats", "two"], "'two'"),
        (["bench-models", "--repeats", "0"], "0"),
        (["bench-models", "--threads", "-1"], "-1"),
    ],
)
def test_non_positive_counts_and_sizes_are_refused(capsys, argv, value):
    line = cli_error_line(capsys, argv)
    assert f"argument {argv[1]}: got {value}, expected a positive integer" in line


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["bench-attn", "--sections", "ratios", "--sizes", "8"], "--sizes"),
        (["bench-attn", "--sections", "ratios", "--sweep-channels", "8"], "--sweep-channels"),
        (["bench-attn", "--sections", "scaling", "--shape", "1", "8", "8", "8"], "--shape"),
    ],
)
def test_options_of_a_section_left_out_are_refused(capsys, argv, option):
    assert f"{option} is for the" in cli_error_line(capsys, argv)


def test_missing_output_folder_fails_before_the_benchmark(capsys):
    line = cli_error_line(capsys, ["bench-models", "--quick", "--json", "/nonexistent/dir/x.json"])
    assert "/nonexistent/dir does not exist" in line


def test_output_that_is_a_folder_fails_before_the_benchmark(tmp_path, capsys):
    line = cli_error_line(capsys, ["bench-attn", "--quick", "--csv", str(tmp_path)])
    assert f"--csv {tmp_path} is a folder, expected a file path" in line


def test_output_below_a_file_fails_before_the_benchmark(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    line = cli_error_line(capsys, ["bench-attn", "--quick", "--json", str(tmp_path / "file" / "x.json")])
    assert f"{tmp_path / 'file'} is a file, expected a folder" in line


def test_read_only_output_folder_fails_before_the_benchmark(read_only_dir, capsys):
    target = read_only_dir / "x.json"
    line = cli_error_line(capsys, ["bench-models", "--quick", "--json", str(target)])
    assert f"folder {read_only_dir} is not writable" in line


def test_unknown_model_case_is_a_clear_error(capsys):
    line = cli_error_line(capsys, ["bench-models", "--quick", "--models", "hrnet_w48_psa_p"])
    assert "--models hrnet_w48_psa_p: no such benchmark case with --quick" in line


def test_train_without_against_is_a_clear_error(capsys):
    line = cli_error_line(capsys, ["bench-models", "--quick", "--train"])
    assert "--train: found without --against or --allocator, expected --against COMMIT or --allocator" in line


def test_rounds_without_allocator_is_a_clear_error(capsys):
    line = cli_error_line(capsys, ["bench-models", "--quick", "--rounds", "2"])
    assert "--rounds: found without --allocator, expected --allocator; add it or drop --rounds" in line


@pytest.mark.parametrize("mode", [["--against", "HEAD"], ["--compile"], ["--allocator"]])
def test_table_skips_with_another_mode_are_a_clear_error(capsys, mode):
    line = cli_error_line(capsys, ["bench-models", "--quick", *mode, "--no-smp", "--no-trunks"])
    assert f"--no-smp --no-trunks: found with {mode[0]}, expected only without --against, --compile" in line
    assert f"drop them or drop {mode[0]}" in line
    line = cli_error_line(capsys, ["bench-models", "--quick", *mode, "--no-smp"])
    assert f"--no-smp: found with {mode[0]}" in line and f"drop it or drop {mode[0]}" in line


def test_usage_errors_are_one_line(capsys):
    assert "invalid choice: 'tables'" in cli_error_line(capsys, ["bench-attn", "--sections", "tables"])


def test_error_exit_path_in_a_fresh_process():
    """The installed entry point's exit: status 2, one stderr line, no traceback, nothing measured."""
    result = subprocess.run(
        [sys.executable, "-m", "psa_zoo.cli", "bench-models", "--json", "/nonexistent/dir/x.json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("psa-zoo bench-models: error: --json /nonexistent/dir/x.json")


# --- help, version, quick model benchmark ---------------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"psa-zoo {psa_zoo.__version__}"


@pytest.mark.parametrize("command", ["bench-attn", "bench-models", "convert"])
def test_help_of_every_command_shows_an_example(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"\n  psa-zoo {command} " in out  # laid out as written (RawDescriptionHelpFormatter)


def test_bench_models_quick_runs_end_to_end(tmp_path, capsys):
    """The smallest quick case (the whole quick run takes about a minute on 2 cores)."""
    json_path = tmp_path / "models.json"
    assert main(["bench-models", "--quick", "--models", "hrnet_w18_psa_p", "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Machine: ")
    assert "| hrnet_w18_psa_p | 1×3×128×96 | attn | channels_last |" in out
    every = json.loads(json_path.read_text())["rows"]
    rows = [r for r in every if r["name"] == "hrnet_w18_psa_p"]
    # --quick adds the quick trunk comparison (ResNet-50 against timm's, both layouts) after the case
    assert [r["variant"] for r in every[len(rows) :]] == ["trunk", "timm", "trunk", "timm"]
    assert [r["variant"] for r in rows] == ["attn", "none", "reference", "attn contiguous", "attn folded"]
    assert [r["layout"] for r in rows] == ["channels_last"] * 3 + ["contiguous", "channels_last"]
    assert all(r["train_peak_mb"] > 0 for r in rows[:3])
    by = {r["variant"]: r for r in rows}
    # the overheads are the latency ratios of the same run: PSA vs none, contiguous and folded vs attn
    assert by["attn"]["overhead"] == pytest.approx(by["attn"]["latency_ms"] / by["none"]["latency_ms"] - 1)
    for variant in ("attn contiguous", "attn folded"):
        assert by[variant]["overhead"] == pytest.approx(
            by[variant]["latency_ms"] / by["attn"]["latency_ms"] - 1
        )


def test_trunks_are_timed_against_timms_in_both_layouts():
    from psa_zoo.bench.models import QUICK_TRUNK_PEERS, bench_trunk

    rows = bench_trunk(QUICK_TRUNK_PEERS[0], repeats=1, warmup=0)
    assert [(r.variant, r.layout) for r in rows] == [
        ("trunk", "channels_last"), ("timm", "channels_last"), ("trunk", "contiguous"), ("timm", "contiguous")
    ]  # fmt: skip
    assert rows[0].params == rows[1].params  # the same network (ResNet-50 without its classifier)
    for ours, theirs in ((rows[0], rows[1]), (rows[2], rows[3])):
        assert ours.overhead == pytest.approx(ours.latency_ms / theirs.latency_ms - 1)
        assert ours.passed == (ours.overhead <= 0)
