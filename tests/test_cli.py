import csv
import json

import pytest

from psa_zoo.cli import main


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
