"""Training configuration: defaults < recipe < --config file < command line; clear errors; lr schedules."""

from __future__ import annotations

import argparse
import json

import pytest

from psa_zoo.train.config import ConfigError, add_pose_arguments, add_train_arguments, config_from_args
from psa_zoo.train.engine import LrSchedule


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    add_pose_arguments(parser)
    return parser.parse_args(argv)


def test_command_line_beats_config_file_beats_recipe(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("model: hrnet_w18_psa_p\nlr: 0.005\nepochs: 3\nrotation-factor: 10\n")
    args = _parse(["--config", str(config_file), "--output-dir", "out", "--lr", "0.02"])
    config = config_from_args(args, "pose")
    assert config.lr == 0.02  # command line
    assert config.epochs == 3 and config.rotation_factor == 10  # file
    assert config.recipe == "hrnet" and config.scale_factor == 0.35  # recipe (HRNet official: 0.35)
    assert config.lr_milestones == [170, 200] and config.optimizer == "adam"


def test_json_config_and_recipe_defaults_for_simplebaseline(tmp_path):
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps({"model": "simplebaseline_r50", "output_dir": "o"}))
    config = config_from_args(_parse(["--config", str(config_file)]), "pose")
    # HRNet repository, ResNet configs: 140 epochs, steps 90/120, rotation 40, scale 0.3
    assert (config.recipe, config.epochs, config.lr_milestones) == ("simplebaseline", 140, [90, 120])
    assert (config.rotation_factor, config.scale_factor) == (40.0, 0.30)


def test_lr_scales_linearly_with_the_total_batch_unless_given():
    config = config_from_args(_parse(["--model", "hrnet_w32", "--output-dir", "o", "--batch-size", "8",
                                      "--gradient-accumulation-steps", "2"]), "pose")  # fmt: skip
    # recipe: 1e-3 at a total batch of 128; here 8 × 2 accumulation × 2 processes = 32
    assert config.scaled_lr(num_processes=2) == pytest.approx(1e-3 * 32 / 128)
    given = config_from_args(_parse(["--model", "hrnet_w32", "--output-dir", "o", "--lr", "0.01"]), "pose")
    assert given.scaled_lr(num_processes=4) == 0.01


_RUN = ["--model", "hrnet_w32", "--output-dir", "o"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output-dir", "o"], "no --model given"),
        (["--model", "hrnet_w32"], "no --output-dir given"),
        (["--model", "hrnet_w32", "--output-dir", "o", "--recipe", "nope"], "unknown recipe 'nope'"),
        ([*_RUN, "--batch-size", "0"], "--batch-size must be a positive"),
        ([*_RUN, "--input-size", "4", "4"], "--input-size takes HEIGHT"),
    ],
)
def test_bad_settings_are_one_clear_error(argv, message):
    with pytest.raises(ConfigError, match=message):
        config_from_args(_parse(argv), "pose")


def test_unknown_config_key_names_the_file(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("model: hrnet_w32\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key 'learning_rate'"):
        config_from_args(_parse(["--config", str(config_file), "--output-dir", "o"]), "pose")


def test_lr_schedules_follow_their_formulas():
    multistep = LrSchedule("multistep", milestones=[10, 20], gamma=0.1, power=0.9, warmup=0, total=30)
    assert [multistep(s) for s in (0, 9, 10, 19, 20, 29)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    poly = LrSchedule("poly", milestones=[], gamma=0.1, power=0.9, warmup=0, total=100)
    assert poly(25) == pytest.approx((1 - 25 / 100) ** 0.9) and poly(100) == 0.0
    warm = LrSchedule("constant", milestones=[], gamma=0.1, power=0.9, warmup=4, total=10)
    assert [warm(s) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("model: hrnet_w32\nlr: 1e-3\nweight_decay: 5e-4\nepochs: 2\n")  # YAML 1.1: strings
    config = config_from_args(_parse(["--config", str(config_file), "--output-dir", "o"]), "pose")
    assert config.lr == 1e-3 and config.weight_decay == 5e-4
    config_file.write_text("model: hrnet_w32\nlr: fast\n")
    with pytest.raises(ConfigError, match="lr must be a number, got 'fast'"):
        config_from_args(_parse(["--config", str(config_file), "--output-dir", "o"]), "pose")


def test_batchnorm_folding_for_evaluation_is_on_unless_switched_off(tmp_path):
    assert config_from_args(_parse(_RUN), "pose").fold_batchnorm is True
    assert config_from_args(_parse([*_RUN, "--no-fold-batchnorm"]), "pose").fold_batchnorm is False
    config_file = tmp_path / "run.yaml"
    config_file.write_text("fold_batchnorm: maybe\n")
    with pytest.raises(ConfigError, match=r"fold_batchnorm is a switch .* got 'maybe'"):
        config_from_args(_parse([*_RUN, "--config", str(config_file)]), "pose")
