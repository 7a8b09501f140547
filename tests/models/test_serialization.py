"""Saving and loading that never lose or invent data (issue: the model contract, section 3)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import psa_zoo
from psa_zoo.models._download import file_sha256

from ._tiny import TINY_FAMILIES, tiny_model

HRNET = "hrnet_w18_psa_p"


def _saved(tmp_path: Path, name: str = "m", **kwargs) -> tuple[torch.nn.Module, Path]:
    model = tiny_model(HRNET, **kwargs)
    return model, model.save_pretrained(tmp_path / name)


def test_config_records_the_weights_sha256(tmp_path):
    _, folder = _saved(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["weights_sha256"] == file_sha256(folder / "model.safetensors")


def test_a_flipped_byte_in_the_weights_is_refused(tmp_path):
    _, folder = _saved(tmp_path)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # inside the tensor data: safetensors itself would load it
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch"):
        psa_zoo.from_pretrained(folder)


def test_config_and_weights_of_two_saves_are_refused(tmp_path):
    _, first = _saved(tmp_path, "first")
    _, second = _saved(tmp_path, "second")
    shutil.copy(second / "model.safetensors", first / "model.safetensors")
    with pytest.raises(ValueError, match="checksum mismatch"):
        psa_zoo.from_pretrained(first)


def test_saving_into_a_folder_with_a_model_needs_overwrite(tmp_path):
    model, folder = _saved(tmp_path)
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match=r"already holds config.json.*overwrite=True"):
        model.save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == before  # nothing touched


def test_overwrite_refuses_a_folder_with_other_files(tmp_path):
    model = tiny_model(HRNET)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"not part of a saved model \(train.json\)"):
        model.save_pretrained(tmp_path / "data", overwrite=True)
    assert (tmp_path / "data" / "train.json").read_text() == "{}"


def test_a_file_as_target_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="is a file, not a folder"):
        tiny_model(HRNET).save_pretrained(tmp_path / "f")


def test_overwrite_leaves_no_stale_card_and_no_temporary_files(tmp_path):
    model = tiny_model(HRNET)
    model.save_pretrained(tmp_path / "m", model_card="# old card\n")
    other = tiny_model(HRNET, num_classes=3)
    other.save_pretrained(tmp_path / "m", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no hidden temporaries left
    assert psa_zoo.from_pretrained(tmp_path / "m").num_classes == 3


def test_files_are_0644_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        _, folder = _saved(tmp_path)
    finally:
        os.umask(old)
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert folder.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_round_trips(tmp_path, dtype):
    model = tiny_model(HRNET, dtype=dtype)
    model.save_pretrained(tmp_path / "m")
    loaded = psa_zoo.from_pretrained(tmp_path / "m")
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_missing_local_path_fails_at_once_without_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub must not be asked for a local path")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_hub)
    for path in ("my_modle", "./runs/final", "a/b/c", tmp_path / "nope"):
        with pytest.raises(FileNotFoundError, match="no folder"):
            psa_zoo.from_pretrained(path)


def test_a_folder_without_weights_is_named(tmp_path):
    _, folder = _saved(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model.safetensors is missing"):
        psa_zoo.from_pretrained(folder)


def test_a_smaller_head_in_the_checkpoint_is_an_error_unless_asked(tmp_path, caplog):
    model = tiny_model(HRNET, num_classes=4)
    model.save_pretrained(tmp_path / "m")
    weights = {"file": str(tmp_path / "m" / "model.safetensors")}
    with pytest.raises(ValueError, match=r"head for 4 outputs.*num_classes=17.*drop the trained head"):
        tiny_model(HRNET, pretrained=True, pretrained_cfg_overlay=weights)
    with caplog.at_level("WARNING", logger="psa_zoo"):
        fresh = tiny_model(HRNET, num_classes=17, pretrained=True, pretrained_cfg_overlay=weights)
    assert "final_layer.weight" in caplog.text
    assert torch.equal(fresh.conv1.weight, model.conv1.weight)


def test_from_pretrained_with_another_num_classes_warns_and_resets_labels(tmp_path, caplog):
    model = tiny_model(HRNET)
    model.save_pretrained(tmp_path / "m")
    with caplog.at_level("WARNING", logger="psa_zoo"):
        loaded = psa_zoo.from_pretrained(tmp_path / "m", num_classes=6)
    assert "final_layer.weight" in caplog.text
    assert loaded.num_classes == 6
    assert loaded.metadata.label_names == tuple(f"keypoint_{i}" for i in range(6))


def test_a_config_asking_for_a_huge_network_fails_before_allocating(tmp_path):
    """The config asks for ~360 GB of weights; the header holds a tiny model. A process limited to 2 GiB of
    address space beyond its start must still end with our ValueError, not a MemoryError."""
    _, folder = _saved(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"]["spec"] = {
        "stage1": {"num_modules": 1, "num_blocks": [1], "widths": [8], "block": "bottleneck"},
        **{
            f"stage{n}": {"num_modules": 1, "num_blocks": [1] * n, "widths": [60000] * n, "block": "basic"}
            for n in (2, 3, 4)
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    script = textwrap.dedent(
        f"""
        import resource, psa_zoo
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + (2 << 30), hard))
        try:
            psa_zoo.from_pretrained({str(folder)!r})
        except ValueError as error:
            print("ValueError:", error)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "ValueError: weights from" in out.stdout, out.stdout + out.stderr
    assert "shape mismatches" in out.stdout


def test_a_config_asking_for_millions_of_blocks_fails_before_building_them(tmp_path):
    """Block counts cost Python objects even on the meta device, before any shape can be checked: a spec
    with 10^6 blocks per branch is refused by the spec itself, at once."""
    import time

    _, folder = _saved(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"]["spec"]["stage2"]["num_blocks"] = [1_000_000, 1_000_000]
    (folder / "config.json").write_text(json.dumps(config))
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"num_blocks entries is 1000000, at most 64 is supported"):
        psa_zoo.from_pretrained(folder)
    assert time.monotonic() - start < 5  # building 2·10^6 blocks would take many minutes and gigabytes


_KILL_SCRIPT = """
import sys, torch, psa_zoo
sys.path.insert(0, {tests!r})
from models._tiny import tiny_model
a, b = tiny_model("hrnet_w18_psa_p", num_classes=3), tiny_model("hrnet_w18_psa_p", num_classes=5)
print("ready", flush=True)
i = 0
while True:
    (a if i % 2 else b).save_pretrained({target!r}, overwrite=True)
    i += 1
"""


def test_a_kill_at_any_moment_leaves_the_old_or_the_new_model(tmp_path):
    target = tmp_path / "m"
    tiny_model(HRNET, num_classes=3).save_pretrained(target)
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parents[1]), target=str(target))
    for delay in (0.05, 0.13, 0.21, 0.37, 0.5, 0.77):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        loaded = psa_zoo.from_pretrained(target)  # verified: config and weights of one save
        assert loaded.num_classes in (3, 5)
    # a later save cleans what the kills left behind
    tiny_model(HRNET).save_pretrained(target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_pretrained_backbone_offline_without_cache_is_our_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match=r"not in the local cache.*HF_HUB_OFFLINE=1"):
        psa_zoo.create_model(HRNET, spec=TINY_FAMILIES[HRNET]["spec"], pretrained_backbone=True)
    assert time.monotonic() - start < 30  # no retries (generous bound: a loaded CI machine)


def test_timm_local_dir_restores_arguments_weights_and_metadata(tmp_path):
    import timm

    model = tiny_model("deeplabv3plus_mbv2_psa", label_names=["a", "b"])
    model.save_pretrained(tmp_path / "m")
    loaded = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True)
    assert loaded.num_classes == 2
    assert loaded.metadata.label_names == ("a", "b")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
