"""``psa-zoo convert``: official checkpoint → folder → ``psa_zoo.from_pretrained`` → the official outputs."""

import json
import random
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import psa_zoo
from psa_zoo.cli import main
from tests.conftest import cli_error_line

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


# --- errors: one line on stderr, exit status 2, no traceback, checked before the checkpoint is read ------


def _random_bytes_checkpoint(tmp_path) -> str:
    path = tmp_path / "random.pth"
    path.write_bytes(random.Random(2).randbytes(4096))  # torch's unpickler raises IndexError on these
    return str(path)


def test_random_bytes_are_not_a_checkpoint(tmp_path, capsys):
    src = _random_bytes_checkpoint(tmp_path)
    line = cli_error_line(capsys, ["convert", src, "--format", "hrnet-pose", "--out", str(tmp_path / "o")])
    assert f"{src} is not a readable PyTorch checkpoint" in line
    assert not (tmp_path / "o").exists()


def test_random_bytes_exit_path_in_a_fresh_process(tmp_path):
    src = _random_bytes_checkpoint(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "psa_zoo.cli",
            "convert",
            src,
            "--format",
            "hrnet-pose",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{src} is not a readable PyTorch checkpoint" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["0", "-8", "7"])
def test_output_stride_outside_its_choices_is_refused(tmp_path, capsys, value):
    argv = ["convert", "x.pth", "--format", "vainf-deeplab", "--out", str(tmp_path), "--output-stride", value]
    assert f"argument --output-stride: invalid choice: {value}" in cli_error_line(capsys, argv)


def test_output_stride_for_a_format_without_one_is_refused(tmp_path, capsys):
    # the source does not exist: the option is checked before the checkpoint is read
    argv = [
        "convert",
        "missing.pth",
        "--format",
        "hrnet-pose",
        "--out",
        str(tmp_path / "o"),
        "--output-stride",
        "16",
    ]
    line = cli_error_line(capsys, argv)
    assert "output_stride=16 given, but format hrnet-pose converts to HRNetPose" in line
    assert "--output-stride" in line


@pytest.mark.parametrize(
    ("arch", "tag", "message"),
    [
        ("hrnet_w32", "coco", "unknown tag 'coco' for hrnet_w32, expected one of coco_256x192, coco_384x288"),
        ("hrnet_w18", "coco_256x192", "tag 'coco_256x192' given, but hrnet_w18 has no pretrained tags"),
        ("hrnet_w33", "coco_256x192", "unknown model 'hrnet_w33'"),
    ],
)
def test_tag_that_the_architecture_lacks_is_refused_before_reading(tmp_path, capsys, arch, tag, message):
    argv = ["convert", "missing.pth", "--format", "hrnet-pose", "--out", str(tmp_path / "o")]
    assert message in cli_error_line(capsys, [*argv, "--arch", arch, "--tag", tag])


def test_tag_for_an_inferred_architecture_is_checked(shared_dir, tmp_path, capsys):
    src = str(shared_dir / "fixtures" / FIXTURES["vainf-deeplab"][0])
    argv = ["convert", src, "--format", "vainf-deeplab", "--out", str(tmp_path / "o"), "--tag", "coco"]
    assert "unknown tag 'coco' for deeplabv3plus_mbv2, expected one of voc_aug" in cli_error_line(
        capsys, argv
    )
    assert not (tmp_path / "o").exists()


def test_tag_for_an_unregistered_layout_is_refused(shared_dir, tmp_path, capsys):
    src = str(shared_dir / "fixtures" / FIXTURES["hrnet-pose"][0])  # reduced width: no registry name
    argv = ["convert", src, "--format", "hrnet-pose", "--out", str(tmp_path / "o"), "--tag", "coco_256x192"]
    assert "matches no registered architecture" in cli_error_line(capsys, argv)


def test_folder_holding_a_model_is_refused_before_reading(tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")
    argv = ["convert", "missing.pth", "--format", "hrnet-pose", "--out", str(out)]
    line = cli_error_line(capsys, argv)
    assert f"{out} already holds a model (config.json); pass overwrite=True (CLI: --overwrite)" in line
    assert (out / "config.json").read_text() == "{}"


def test_overwrite_replaces_the_model_a_folder_holds(shared_dir, tmp_path, capsys):
    out = _convert(shared_dir, tmp_path, "hrnet-pose")
    src = str(shared_dir / "fixtures" / FIXTURES["hrnet-pose"][0])
    argv = ["convert", src, "--format", "hrnet-pose", "--out", str(out)]
    capsys.readouterr()  # the first conversion's "wrote ..." line
    assert "already holds a model (config.json, model.safetensors)" in cli_error_line(capsys, argv)
    assert main([*argv, "--overwrite"]) == 0
    assert isinstance(psa_zoo.from_pretrained(out), psa_zoo.HRNetPose)


def test_folder_holding_other_files_is_refused_before_reading(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["convert", "missing.pth", "--format", "hrnet-pose", "--out", str(out)]
    assert f"{out} already holds notes.txt" in cli_error_line(capsys, argv)
    # --overwrite replaces the whole folder: files that are not a saved model's are never deleted
    assert "not part of a saved model (notes.txt)" in cli_error_line(capsys, [*argv, "--overwrite"])
    assert (out / "notes.txt").read_text() == "mine"


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("")
    line = cli_error_line(capsys, ["convert", "missing.pth", "--format", "hrnet-pose", "--out", str(out)])
    assert f"{out} is a file, not a folder" in line


def test_output_below_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "model"
    line = cli_error_line(capsys, ["convert", "missing.pth", "--format", "hrnet-pose", "--out", str(out)])
    assert f"--out {out}: {tmp_path / 'file'} is a file, expected a folder" in line


def test_read_only_output_parent_is_refused(read_only_dir, capsys):
    out = read_only_dir / "new" / "model"
    line = cli_error_line(capsys, ["convert", "missing.pth", "--format", "hrnet-pose", "--out", str(out)])
    assert f"folder {read_only_dir} is not writable" in line


def test_missing_source_is_one_clear_line(tmp_path, capsys):
    src = str(tmp_path / "missing.pth")
    line = cli_error_line(capsys, ["convert", src, "--format", "hrnet-pose", "--out", str(tmp_path / "o")])
    assert f"checkpoint {src} does not exist" in line
