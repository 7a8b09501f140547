"""``psa-zoo convert``: official checkpoint → folder → ``psa_zoo.from_pretrained`` → the official outputs."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import psa_zoo
from psa_zoo.cli import main

FIXTURES = {
    "vainf-deeplab": (
        "official_deeplabv3plus/deeplabv3plus_mobilenet_os16_checkpoint.pth",
        "deeplabv3plus_mbv2",
    ),
    "hrnet-pose": ("official_pose_hrnet/pose_hrnet_w16_checkpoint.pth", None),
    "psa-nvidia": ("official_psa_seg/psa_s_checkpoint.pth", None),
}


def _convert(shared_dir, tmp_path, fmt: str, *extra: str):
    src = shared_dir / "fixtures" / FIXTURES[fmt][0]
    out = tmp_path / fmt
    assert main(["convert", str(src), "--format", fmt, "--out", str(out), *extra]) == 0
    return out


def test_vainf_checkpoint_converts_and_reproduces_the_official_logits(shared_dir, tmp_path):
    out = _convert(shared_dir, tmp_path, "vainf-deeplab", "--output-stride", "16")
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "deeplabv3plus_mbv2"  # inferred from keys and shapes
    with safe_open(out / "model.safetensors", "pt") as handle:
        assert handle.metadata()["model_class"] == "DeepLabV3Plus"
    model = psa_zoo.from_pretrained(out)
    io = load_file(shared_dir / "fixtures" / "official_deeplabv3plus" / "io_mobilenet_os16.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["logits"], atol=1e-4, rtol=1e-4)


def test_pose_hrnet_checkpoint_converts_and_reproduces_the_official_heatmaps(shared_dir, tmp_path):
    model = psa_zoo.from_pretrained(_convert(shared_dir, tmp_path, "hrnet-pose"))
    assert (
        isinstance(model, psa_zoo.HRNetPose) and model.model_name is None
    )  # reduced width: no registry name
    io = load_file(shared_dir / "fixtures" / "official_pose_hrnet" / "io.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["heatmaps"], atol=1e-4, rtol=1e-4)


def test_psa_checkpoint_converts_and_reproduces_single_and_multiscale_outputs(shared_dir, tmp_path):
    model = psa_zoo.from_pretrained(_convert(shared_dir, tmp_path, "psa-nvidia"))
    io = load_file(shared_dir / "fixtures" / "official_psa_seg" / "io_psa_s.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["fwd_1.0x.cls_out"], atol=1e-4, rtol=1e-4)
        pred = model.forward_multiscale(io["input"], scales=(0.5, 1.0, 2.0))
    torch.testing.assert_close(pred, io["nscale.pred"], atol=1e-4, rtol=1e-4)


def test_arch_option_converts_into_a_registered_model(shared_dir, tmp_path):
    out = _convert(shared_dir, tmp_path, "vainf-deeplab", "--arch", "deeplabv3plus_mbv2", "--tag", "voc_aug")
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "deeplabv3plus_mbv2"
    assert config["source_tag"] == "deeplabv3plus_mbv2.voc_aug"


def test_wrong_arch_for_the_format_is_a_clear_error(shared_dir, tmp_path, capsys):
    src = shared_dir / "fixtures" / FIXTURES["vainf-deeplab"][0]
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "convert",
                str(src),
                "--format",
                "vainf-deeplab",
                "--out",
                str(tmp_path / "x"),
                "--arch",
                "hrnet_w32",
            ]
        )
    assert exit_info.value.code == 2
    assert "is a HRNetPose; format vainf-deeplab converts to DeepLabV3Plus" in capsys.readouterr().err


def test_wrong_format_for_the_checkpoint_is_a_clear_error(shared_dir, tmp_path, capsys):
    src = shared_dir / "fixtures" / FIXTURES["vainf-deeplab"][0]
    with pytest.raises(SystemExit):
        main(["convert", str(src), "--format", "hrnet-pose", "--out", str(tmp_path / "x")])
    assert "psa-zoo convert: error:" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing half-written


class Payload:
    """An arbitrary object: loading a file that holds it would need full unpickling."""


def test_unreadable_and_unsafe_files_are_refused(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SystemExit):
        main(["convert", str(corrupt), "--format", "hrnet-pose", "--out", str(tmp_path / "a")])
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Payload()}, unsafe)
    with pytest.raises(SystemExit):
        main(["convert", str(unsafe), "--format", "hrnet-pose", "--out", str(tmp_path / "b")])
    assert "never unpickles" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            ["convert", str(tmp_path / "missing.pth"), "--format", "hrnet-pose", "--out", str(tmp_path / "c")]
        )
    assert "does not exist" in capsys.readouterr().err


def test_publish_script_dry_run_writes_a_loadable_folder(shared_dir, tmp_path, capsys):
    import importlib.util

    from tests.conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("publish", REPO_ROOT / "scripts" / "publish.py")
    publish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish)
    src = shared_dir / "fixtures" / FIXTURES["vainf-deeplab"][0]
    out = tmp_path / "folder"
    assert (
        publish.main(
            [str(src), "--format", "vainf-deeplab", "--tag", "voc_aug", "--dry-run", "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "sha256 of model.safetensors: " in printed
    assert isinstance(psa_zoo.from_pretrained(out), psa_zoo.DeepLabV3Plus)
    with pytest.raises(SystemExit):
        publish.main(
            [str(src), "--format", "vainf-deeplab", "--tag", "voc_aug"]
        )  # no --repo-id, no --dry-run
