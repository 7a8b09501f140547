"""Model export (psa_zoo.export, psa-zoo export): every family to ONNX and torch.export with parity against
eager PyTorch, the exported decode against the numpy codecs, refusals and the command line.

Tiny members of the families keep this within about a minute on 2 cores; what an artifact computes is
always checked here by loading it with onnxruntime / torch.export.load directly, on an input of a size
export_model did not try.
"""

from __future__ import annotations

import argparse
import copy
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from psa_zoo.cli import _Parser, positive_int
from psa_zoo.cli_export import add_export_command
from psa_zoo.export import (
    MIN_DYNAMIC_SIDE,
    ExportDependencyError,
    ExportParityError,
    HeatmapDecoder,
    _check_parity,
    _require,
    _runner,
    _Tolerance,
    _trace,
    _write_onnx,
    export_model,
)
from psa_zoo.metadata import ClassSet, KeypointSet, ModelMetadata
from psa_zoo.pose.codecs import build_codec
from tests.models._tiny import tiny_model

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2"}
POSE_SIZE, SEG_SIZE = (64, 48), (64, 64)


def run_artifact(path, fmt: str, x: torch.Tensor) -> list[np.ndarray]:
    """The artifact run by its own runtime, without psa_zoo.export."""
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["input"]
        return session.run(None, {"input": x.numpy()})
    out = torch.export.load(str(path)).module()(x)
    return [t.detach().numpy() for t in (out if isinstance(out, tuple) else (out,))]


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    scale = np.abs(expected).max()
    assert scale > 0
    return float(np.abs(got.astype(np.float64) - expected).max() / scale)


# --- the torch decoders against the numpy codecs (eager) ---------------------------------------------------
def designed_heatmaps(codec, batch: int = 3, keypoints: int = 6, seed: int = 0) -> np.ndarray:
    """[N, K·c, h, w] float32: the codec's own targets for random keypoints (one 0.4 px from the left
    edge, where refinement stops) plus noise; sample 1's first map is ≤ 0 everywhere (no maximum)."""
    rng = np.random.default_rng(seed)
    width, height = codec.input_size
    maps = []
    for _ in range(batch):
        points = rng.uniform([1, 1], [width - 1, height - 1], size=(keypoints, 2))
        points[0] = [0.4, height / 2]
        maps.append(codec.encode(points, np.ones(keypoints))[0])
    maps = np.stack(maps).astype(np.float32)
    maps += rng.normal(0.0, 0.01, maps.shape).astype(np.float32)
    c = codec.channels_per_keypoint
    maps[1, :c] = -np.abs(maps[1, :c]) - 1e-3
    return maps


CODECS = ["msra", "dark", "udp", "udp_combined"]


@pytest.mark.parametrize("name", CODECS)
def test_torch_decoder_matches_the_numpy_codec(name):
    codec = build_codec(name, (48, 64), (12, 16))
    maps = designed_heatmaps(codec)
    expected_keypoints, expected_scores = codec.decode(maps)
    keypoints, scores = HeatmapDecoder(codec)(torch.from_numpy(maps), (64, 48))
    assert keypoints.shape == (3, 6, 2) and scores.shape == (3, 6)
    # numpy mixes float64 into the Newton step, the port is float32: 1e-4 input px is far below a pixel
    np.testing.assert_allclose(keypoints.numpy(), expected_keypoints, atol=1e-4, rtol=0)
    np.testing.assert_allclose(scores.numpy(), expected_scores, atol=1e-6, rtol=0)
    if name != "udp_combined":  # a map without a positive maximum decodes to (0, 0), as HRNet
        np.testing.assert_array_equal(keypoints[1, 0].numpy(), [0.0, 0.0])


def test_msra_decoder_quarter_pixel_step_written_out():
    """Peak at (x=5, y=7) of a 12×16 map, right neighbour larger than the left, upper larger than the
    lower: x + 0.25, y − 0.25, then × the stride 4 (HRNet get_final_preds)."""
    maps = torch.zeros(1, 1, 16, 12)
    maps[0, 0, 7, 5], maps[0, 0, 7, 6], maps[0, 0, 7, 4] = 1.0, 0.5, 0.2
    maps[0, 0, 6, 5], maps[0, 0, 8, 5] = 0.6, 0.1
    keypoints, scores = HeatmapDecoder(build_codec("msra", (48, 64), (12, 16)))(maps, (64, 48))
    torch.testing.assert_close(keypoints, torch.tensor([[[5.25 * 4, 6.75 * 4]]]))
    torch.testing.assert_close(scores, torch.tensor([[1.0]]))


# --- the exported decode against the numpy codecs ----------------------------------------------------------
class PoolingPoseModel(nn.Module):
    """A stand-in pose model whose heatmaps are its input average-pooled 4×4 (an input that repeats
    designed heatmaps 4× along each axis gives exactly those heatmaps)."""

    task = "pose"

    def __init__(self, codec: str, channels: int = 3):
        super().__init__()
        labels = KeypointSet.generic(channels)
        self.metadata = ModelMetadata(
            "pose", (channels, 64, 48), (0.5,) * channels, (0.5,) * channels, keypoints=labels,
            extra={"codec": codec},
        )  # fmt: skip

    @staticmethod
    def output_size(input_size):
        return input_size[0] // 4, input_size[1] // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 4)


class EveryDecoder(nn.Module):
    """Heatmaps [N, 6, h, w] = the input average-pooled 4×4, decoded by each codec's decoder built for
    64×48 crops (udp_combined reads the 6 channels as 2 keypoints): one ONNX export for all four."""

    def __init__(self):
        super().__init__()
        self.decoders = nn.ModuleList(HeatmapDecoder(build_codec(n, (48, 64), (12, 16))) for n in CODECS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heatmaps = F.avg_pool2d(x, 4)
        outputs = [heatmaps]
        for decoder in self.decoders:
            outputs += decoder(heatmaps, x.shape[-2:])
        return tuple(outputs)


def test_exported_decoders_match_the_numpy_codecs(tmp_path):
    """ONNX, where ports of the decode go wrong; the .pt2 decode runs the eager decoder's torch ops (the
    family tests check its keypoints too). At the codec's own size and at a larger one (dynamic)."""
    names = ("heatmaps", *[f"{n}_{o}" for n in CODECS for o in ("keypoints", "scores")])
    notes: list[str] = []
    program, axes, traced = _trace(
        EveryDecoder(), torch.randn(2, 6, 64, 48), 1, ("batch", "height", "width"), notes
    )
    assert axes == ("batch", "height", "width") and notes == []
    _write_onnx(program, traced, axes, names, tmp_path / "decoders.onnx", "{}")
    session = onnxruntime.InferenceSession(
        str(tmp_path / "decoders.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.get_inputs()[0].shape == ["batch", 6, "height", "width"]

    for index, name in enumerate(CODECS):
        trained = build_codec(name, (48, 64), (12, 16))
        spec = {"name": name, "sigma": trained.sigma, "blur_kernel_size": trained.blur_kernel_size}
        for batch, (width, height) in ((3, (48, 64)), (2, (56, 80))):
            codec = build_codec(spec, (width, height), (width // 4, height // 4))
            if name == "udp_combined":
                codec.radius = trained.radius  # the decoder keeps the radius of its training size
            maps = designed_heatmaps(codec, batch, keypoints=2 if name == "udp_combined" else 6, seed=index)
            x = torch.from_numpy(maps).repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
            outputs = session.run(None, {"input": x.numpy()})
            np.testing.assert_allclose(outputs[0], maps, atol=1e-6, rtol=0)
            expected_keypoints, expected_scores = codec.decode(maps)
            keypoints, scores = outputs[1 + 2 * index], outputs[2 + 2 * index]
            np.testing.assert_allclose(keypoints, expected_keypoints, atol=1e-4, rtol=0, err_msg=name)
            np.testing.assert_allclose(scores, expected_scores, atol=1e-6, rtol=0, err_msg=name)


# --- every family, both formats ----------------------------------------------------------------------------
def tiny(name: str, codec: str | None = None) -> nn.Module:
    """A tiny family member whose metadata input size is the test size (and whose codec is ``codec``)."""
    torch.manual_seed(0)
    model = tiny_model(name)
    height, width = POSE_SIZE if model.task == "pose" else SEG_SIZE
    extra = {"codec": codec} if codec else {}
    model.set_metadata(model.metadata.replace(input_size=(3, height, width), extra=extra))
    return model


# (family, format, codec of the decode or None, dynamic). Each family once in the default run — ONNX with
# dynamic shapes and DARK decode on HRNet, the others static — as one export costs 5–30 s on 2 cores
# (dynamic .pt2 files are covered by the stand-in models below); PSA_ZOO_EXPORT_MATRIX=1 adds every family
# in both formats with dynamic shapes (about 4 minutes).
DEFAULT_CASES = [
    ("hrnet_w18_psa_p", "onnx", "dark", True),
    ("simplebaseline_r50_psa_p", "torch-export", "udp", False),
    ("hrnetv2_w48_ocr_psa_s", "onnx", None, False),
]  # deeplabv3plus_mbv2_psa: torch-export, static, through the command line below
MATRIX_CASES = [
    ("hrnet_w18_psa_p", "torch-export", "msra", True),
    ("simplebaseline_r50_psa_p", "torch-export", "udp", True),
    ("simplebaseline_r50_psa_p", "onnx", None, True),
    ("deeplabv3plus_mbv2_psa", "onnx", None, True),
    ("deeplabv3plus_mbv2_psa", "torch-export", None, True),
    ("hrnetv2_w48_ocr_psa_s", "onnx", None, True),
    ("hrnetv2_w48_ocr_psa_s", "torch-export", None, True),
]
_matrix = pytest.mark.skipif(
    os.environ.get("PSA_ZOO_EXPORT_MATRIX") != "1",
    reason="set PSA_ZOO_EXPORT_MATRIX=1 for every family × format",
)
CASES = [pytest.param(*c, id=f"{c[0]}-{c[1]}-{'dynamic' if c[3] else 'static'}") for c in DEFAULT_CASES] + [
    pytest.param(*c, id=f"{c[0]}-{c[1]}-dynamic", marks=_matrix) for c in MATRIX_CASES
]


@pytest.mark.parametrize(("name", "fmt", "codec", "dynamic"), CASES)
def test_family_export_matches_eager(tmp_path, name, fmt, codec, dynamic):
    model = tiny(name, codec)
    model.train()  # export_model exports in eval mode and gives the mode back
    out = tmp_path / f"model{SUFFIX[fmt]}"
    report = export_model(model, fmt, out, decode=codec is not None, dynamic=dynamic, atol=0.0)
    assert model.training
    model.eval()
    height, width = model.metadata.input_size[1:]
    assert report.passed and report.path == out and out.is_file()
    assert report.max_rel_error < 1e-4 and report.notes == ()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left
    if dynamic:
        assert report.dynamic_axes == ("batch", "height", "width")
        assert report.checked_shapes == ((1, 3, height, width), (2, 3, height - 7, width - 7))
        # a batch and size export_model did not try
        x = torch.randn(3, 3, height + 9, width + 5)
    else:
        assert report.dynamic_axes == () and report.checked_shapes == ((1, 3, height, width),)
        x = torch.randn(1, 3, height, width)

    # the artifact run by its own runtime, against eager PyTorch
    got = run_artifact(out, fmt, x)
    with torch.no_grad():
        expected = model(x).numpy()
    assert got[0].shape == expected.shape
    assert relative_error(got[0], expected) < 1e-4
    if codec is not None:
        assert report.keypoint_max_px_error is not None and report.keypoint_max_px_error < 1e-2
        # the artifact's keypoints are the numpy codec's decode of the artifact's heatmaps: the codec of
        # the metadata (sigma and blur kernel at its 64×48 input), scaled to this input size
        trained = build_codec(codec, (width, height), model.output_size((height, width))[::-1])
        spec = {"name": codec, "sigma": trained.sigma, "blur_kernel_size": trained.blur_kernel_size}
        reference = build_codec(spec, tuple(x.shape[:1:-1]), got[0].shape[:1:-1])
        expected_keypoints, expected_scores = reference.decode(got[0])
        assert got[1].shape == (x.shape[0], model.num_classes, 2)
        np.testing.assert_allclose(got[2], expected_scores, rtol=1e-6, atol=0)
        assert np.abs(got[1] - expected_keypoints).max() < 1e-2


# --- refusals and failures ---------------------------------------------------------------------------------
class NoisyPoseModel(PoolingPoseModel):
    """Adds a fresh random draw on every call: no artifact can reproduce an eager run of it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = super().forward(x)
        return pooled + torch.rand_like(pooled)


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_outputs_that_differ_raise_and_write_nothing(tmp_path, fmt):
    out = tmp_path / f"noisy{SUFFIX[fmt]}"
    with pytest.raises(ExportParityError) as error:
        export_model(NoisyPoseModel("msra"), fmt, out, dynamic=False)
    assert "heatmaps max abs error" in str(error.value) and "does not match PyTorch" in str(error.value)
    assert error.value.errors["heatmaps"]["max_abs"] > 0.01  # uniform noise differs by ~0.3 on average
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one


class ConvPoseModel(PoolingPoseModel):
    """A stand-in pose model with weights: one 4×4 stride-4 convolution."""

    def __init__(self):
        super().__init__("msra")
        self.conv = nn.Conv2d(3, 3, 4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_parity_check_against_perturbed_weights_reports_the_difference(tmp_path):
    model = ConvPoseModel().eval()
    report = export_model(model, "torch-export", tmp_path / "conv.pt2", dynamic=False, atol=0.0)
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.conv.weight.mul_(1.5)
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        expected, exported = perturbed(x).numpy(), model(x).numpy()
    difference = np.abs(exported - expected).max()  # the artifact computes the unperturbed model
    assert difference > 0.01
    tolerance = _Tolerance(atol=0.0, rtol=1e-4, keypoint_atol=1e-2)
    with pytest.raises(ExportParityError) as error:
        _check_parity(_runner(report.path, "torch-export"), perturbed, [x], ("heatmaps",), tolerance)
    assert error.value.errors["heatmaps"]["max_abs"] == pytest.approx(difference, rel=1e-5)
    assert error.value.errors["heatmaps"]["input_shape"] == (1, 3, 64, 48)
    assert "heatmaps max abs error" in str(error.value)
    # the same check against the exported model itself passes
    worst = _check_parity(_runner(report.path, "torch-export"), model, [x], ("heatmaps",), tolerance)
    assert worst["heatmaps"]["max_abs"] <= 1e-4 * np.abs(exported).max()


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "model.pt2"
    out.write_bytes(b"keep me")
    model = PoolingPoseModel("msra")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_model(model, "torch-export", out)
    assert out.read_bytes() == b"keep me"
    report = export_model(model, "torch-export", out, overwrite=True)
    assert report.checked_shapes == ((1, 3, 64, 48), (2, 3, 57, 41))
    assert report.dynamic_axes == ("batch", "height", "width")
    assert out.stat().st_mode & 0o777 == 0o644  # not the temporary file's 0600
    x = torch.randn(3, 3, 72, 40)  # the replaced file is a dynamic program
    np.testing.assert_allclose(run_artifact(out, "torch-export", x)[0], F.avg_pool2d(x, 4).numpy(), atol=1e-6)


class SegmentationStub(nn.Module):
    """A segmentation stand-in whose head is a Linear layer over the flattened image: its height and width
    cannot be dynamic."""

    task = "segmentation"

    def __init__(self):
        super().__init__()
        self.metadata = ModelMetadata(
            "segmentation", (1, 40, 36), (0.5,), (0.5,), classes=ClassSet.generic(2)
        )
        self.head = nn.Linear(40 * 36, 2 * 40 * 36)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1)).view(x.shape[0], 2, 40, 36)


def test_dimension_the_model_fixes_stays_static_with_a_note(tmp_path):
    report = export_model(SegmentationStub(), "onnx", tmp_path / "seg.onnx", atol=0.0)
    assert report.dynamic_axes == ("batch",)
    assert len(report.notes) == 1 and report.notes[0].startswith("height, width kept static")
    assert report.checked_shapes == ((1, 1, 40, 36), (2, 1, 40, 36))
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 1, 40, 36]


class BranchingPoseModel(PoolingPoseModel):
    """Branches on the input height (runs at any size in PyTorch, but a trace fixes the branch taken)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * (2.0 if x.shape[2] >= 64 else 1.0)


def test_dimension_the_trace_fixes_stays_static_with_a_note(tmp_path):
    report = export_model(BranchingPoseModel("msra"), "torch-export", tmp_path / "branch.pt2", atol=0.0)
    assert report.dynamic_axes == ("batch", "width")
    assert len(report.notes) == 1 and report.notes[0].startswith("height kept static: torch.export says")
    assert report.checked_shapes == ((1, 3, 64, 48), (2, 3, 64, 41))
    x = torch.randn(3, 3, 64, 36)
    np.testing.assert_allclose(
        run_artifact(report.path, "torch-export", x)[0], 2 * F.avg_pool2d(x, 4).numpy()
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "tflite"}, "unknown export format 'tflite'"),
        ({"decode": True, "model": "seg"}, "is for pose models, got a segmentation model"),
        ({"input_size": (32, 48)}, f"expected ≥ {MIN_DYNAMIC_SIDE} for a dynamic height and width"),
        ({"out": "model.onnx"}, "expected '.pt2' for torch-export"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"rtol": -1e-4}, "tolerances must be finite numbers ≥ 0"),
    ],
)
def test_bad_arguments_are_one_clear_error(tmp_path, kwargs, message):
    model = SegmentationStub() if kwargs.pop("model", None) == "seg" else PoolingPoseModel("msra")
    args = {"format": "torch-export", "out": "model.pt2", **kwargs}
    with pytest.raises(ValueError, match=message):
        export_model(model, args.pop("format"), tmp_path / args.pop("out"), **args)
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_packages_name_the_extra():
    with pytest.raises(ExportDependencyError) as error:
        _require("onnx", "psa_zoo_no_such_module")
    assert isinstance(error.value, ValueError)  # the CLI turns it into one line
    message = str(error.value)
    assert "psa_zoo_no_such_module" in message and "pip install 'psa_zoo[export]'" in message
    assert "\n" not in message


# --- command line ------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="psa-zoo")
    add_export_command(root.add_subparsers(dest="command", required=True), positive_int)
    return root


def test_cli_exports_a_saved_model_and_prints_the_table(tmp_path, capsys):
    model = tiny("deeplabv3plus_mbv2_psa").eval()
    model.save_pretrained(tmp_path / "seg")
    out = tmp_path / "seg.pt2"
    out.write_bytes(b"old")
    args = parser().parse_args(
        ["export", str(tmp_path / "seg"), "--format", "torch-export", "--out", str(out), "--static",
         "--batch-size", "2", "--overwrite"]
    )  # fmt: skip
    assert args.func(args) == 0
    table = capsys.readouterr().out
    assert "parity          pass" in table and "2×3×64×64" in table and "none (static)" in table
    assert "random weights" not in table

    extra = {"psa_zoo": ""}
    program = torch.export.load(str(out), extra_files=extra)
    record = json.loads(extra["psa_zoo"])
    assert record["model_name"] == "deeplabv3plus_mbv2_psa" and record["outputs"] == ["logits"]
    assert record["metadata"]["input_size"] == [3, 64, 64] and record["metadata"]["classes"]["name"] == "voc"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x).numpy()
    assert relative_error(program.module()(x).detach().numpy(), expected) < 1e-5
    with pytest.raises(Exception, match="2"):  # static: another batch is refused by the program's guards
        program.module()(torch.randn(3, 3, 64, 64))


def test_cli_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "exists.onnx"
    out.write_bytes(b"old")
    args = parser().parse_args(["export", "hrnet_w18_psa_p", "--format", "onnx", "--out", str(out)])
    with pytest.raises(
        FileExistsError, match=r"exists\.onnx exists; pass overwrite=True \(CLI: --overwrite\)"
    ):
        args.func(args)
    args = parser().parse_args(
        ["export", "no_such_model", "--format", "onnx", "--out", str(tmp_path / "a.onnx")]
    )
    with pytest.raises(ValueError, match="neither a folder nor a registered model name"):
        args.func(args)
    args = parser().parse_args(["export", "deeplabv3plus_mbv2_psa", "--format", "onnx", "--decode",
                                "--out", str(tmp_path / "a.onnx")])  # fmt: skip
    with pytest.raises(
        ValueError, match=r"decode=True \(CLI: --decode\) is for pose models, got a segmentation model"
    ):
        args.func(args)
    assert "random weights" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["export", "x", "--format", "tflite"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'tflite'" in err
    assert list(p.name for p in tmp_path.iterdir()) == ["exists.onnx"]


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["export", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "psa-zoo export runs/w18/model --format onnx --decode" in text
    assert "--input-size HEIGHT WIDTH" in text and "--static" in text
