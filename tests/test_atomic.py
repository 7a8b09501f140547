"""Files written whole or not at all (psa_zoo/_atomic.py): the old content survives a failed or a killed
write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from psa_zoo._atomic import replace_atomically, temporary_name, write_json_atomic, write_text_atomic
from psa_zoo.train import engine


def test_json_replaces_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    data = {"rows": [{"shape": "8×256×64×64", "value": 1.5}], "where": tmp_path}
    assert write_json_atomic(target, data) == target
    assert json.loads(target.read_text()) == {"rows": data["rows"], "where": str(tmp_path)}
    assert "8×256×64×64" in target.read_text()  # ensure_ascii=False: the characters as written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "table.csv", "a,b\n1,2\n")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("a,b\n3,")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(target, half_then_fail)
    assert target.read_text() == "a,b\n1,2\n"
    assert not temporary_name(target).exists()


def test_a_value_json_cannot_hold_fails_before_anything_is_written(tmp_path):
    target = write_text_atomic(tmp_path / "metrics.json", '{"step": 1}')
    looped: dict = {}
    looped["self"] = looped
    with pytest.raises(ValueError, match="Circular reference"):
        write_json_atomic(target, looped)
    assert target.read_text() == '{"step": 1}' and not temporary_name(target).exists()


def test_a_process_killed_mid_write_leaves_the_old_file_and_the_next_write_succeeds(tmp_path):
    """A real process dies (os._exit, no cleanup) while the temporary is half-written."""
    target = write_text_atomic(tmp_path / "metrics.json", '{"step": 1}')
    script = (
        "import os, sys\n"
        "from psa_zoo._atomic import replace_atomically\n"
        "def die(tmp):\n"
        '    tmp.write_text(\'{"step": 2, "lo\')\n'
        "    os._exit(9)\n"
        "replace_atomically(sys.argv[1], die)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, timeout=120)
    assert result.returncode == 9
    assert target.read_text() == '{"step": 1}'  # the old content, whole
    assert temporary_name(target).exists()  # the kill left its temporary behind ...
    write_json_atomic(target, {"step": 3})  # ... which the next write replaces
    assert json.loads(target.read_text()) == {"step": 3} and not temporary_name(target).exists()


def test_the_run_folder_knows_the_temporaries_of_its_json_files():
    """A run folder may hold what a kill during a metrics or config write leaves; the engine's list of
    allowed entries names exactly those temporaries."""
    for name in (engine.METRICS_FILE, engine.RUN_CONFIG):
        assert temporary_name(Path(name)).name in engine.RUN_ENTRIES
