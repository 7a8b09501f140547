"""``torch.compile`` as an option: a compiled model gives the eager outputs, the engine trains through it
to the eager weights with checkpoints of the plain model, and the predictors keep the eager module.

The compiling tests use the ``aot_eager`` backend: it captures the model with dynamo and AOT autograd
(one graph, ``fullgraph=True``: no Python fallback hides in it) but runs the captured ops eagerly, so it
needs no C++ compiler and compiles in seconds. inductor (the default backend of ``compile=True``) works
here too (g++), but takes over a minute for the first compilation of even a tiny model on two cores.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import load_file

from psa_zoo.models._runtime import maybe_compile
from psa_zoo.pose import PoseEstimator
from psa_zoo.seg import Segmenter
from psa_zoo.train.config import ConfigError, TrainConfig, add_train_arguments, config_from_args
from tests.conftest import relative_error
from tests.models._tiny import TINY_HRNET, tiny_model
from tests.train._pose_run import make_data, weights


def test_a_compiled_tiny_model_gives_the_eager_outputs():
    model = tiny_model("simplebaseline_r50_psa_p").eval()
    assert maybe_compile(model, False) is model
    compiled = maybe_compile(model, True, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert relative_error(compiled(x), model(x)) <= 1e-5


def test_the_predictors_keep_the_eager_module_for_attention_maps():
    # torch.compile is lazy: nothing compiles until a prediction, so this costs nothing
    pose = tiny_model("hrnet_w18_psa_p")
    assert PoseEstimator(pose, compile=True).model is pose
    seg = tiny_model("deeplabv3plus_mbv2_psa")
    assert Segmenter(seg, compile=True).model is seg


def test_the_speed_flags_reach_the_config_and_bad_values_are_one_clear_error(tmp_path):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    run = ["--model", "hrnet_w18_psa_p", "--output-dir", str(tmp_path), "--max-train-steps", "1"]
    default = config_from_args(parser.parse_args(run), "pose")
    assert (default.memory_format, default.compile, default.compile_backend) == ("auto", False, "inductor")
    argv = [*run, "--memory-format", "contiguous", "--compile", "--compile-backend", "aot_eager"]
    config = config_from_args(parser.parse_args(argv), "pose")
    assert (config.memory_format, config.compile, config.compile_backend) == ("contiguous", True, "aot_eager")
    values = {"model": "hrnet_w18_psa_p", "output_dir": str(tmp_path), "max_train_steps": 1}
    with pytest.raises(ConfigError, match=r"--memory-format must be one of .*got 'nhwc'"):
        TrainConfig(**values, memory_format="nhwc").resolve()
    with pytest.raises(ConfigError, match="--compile is a switch"):
        TrainConfig(**values, compile="yes").resolve()


def test_training_through_the_compiled_model_gives_the_eager_weights(tmp_path):
    from psa_zoo.train import Trainer
    from psa_zoo.train.pose import PoseTask

    data = make_data(tmp_path / "data", num_train=8, num_val=2)
    for name, compile_ in (("eager", False), ("compiled", True)):
        config = TrainConfig(
            task="pose", model="hrnet_w18_psa_p", model_kwargs={"spec": TINY_HRNET}, data=str(data),
            output_dir=str(tmp_path / name), recipe="embedded", input_size=[64, 48], batch_size=4,
            max_train_steps=2, checkpointing_steps=2, optimizer="sgd", lr=0.05, num_workers=0, seed=5,
            compile=compile_, compile_backend="aot_eager",
        ).resolve()  # fmt: skip
        torch._dynamo.utils.counters.clear()
        Trainer(PoseTask(config), config).fit()
        # the training step did run through dynamo (and only the compiled run)
        assert (torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0) == compile_
    a, b = weights(tmp_path / "eager" / "model"), weights(tmp_path / "compiled" / "model")
    assert a.keys() == b.keys()
    assert (
        max(relative_error(b[k], a[k]) for k in a if a[k].is_floating_point() and a[k].abs().max() > 0)
        <= 1e-5
    )
    # the checkpoint holds the plain model's keys (no torch.compile "_orig_mod." prefix): it resumes anywhere
    saved = load_file(str(tmp_path / "compiled" / "checkpoints" / "step_2" / "model.safetensors"))
    assert saved.keys() == a.keys()
