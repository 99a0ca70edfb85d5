"""TrainConfig: checked fields, YAML round trip, overrides, errors that name the key and fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from brainalign.train import TrainConfig


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(
        model="mindeye1",
        model_kwargs={"hidden": 64, "target_shape": [3, 5]},
        loss="mindeye",
        loss_kwargs={"mix_fraction": 0.5},
        lr=1e-3,
        ema_decay=0.99,
        patience=3,
        out_dir=str(tmp_path / "run"),
    )
    path = config.to_yaml(tmp_path / "config.yaml")
    assert TrainConfig.from_yaml(path) == config


def test_overrides(tmp_path):
    path = TrainConfig(model_kwargs={"hidden": 8}).to_yaml(tmp_path / "c.yaml")
    config = TrainConfig.from_yaml(
        path,
        overrides=[
            "lr=1e-3",
            "model_kwargs.n_blocks=2",
            "loss_kwargs.init_logit_scale=2.5",
            "patience=null",
            "schedule=onecycle",
        ],
    )
    assert config.lr == 1e-3
    assert isinstance(config.lr, float)
    assert config.model_kwargs == {"hidden": 8, "n_blocks": 2}
    assert config.loss_kwargs == {"init_logit_scale": 2.5}
    assert config.patience is None
    assert config.schedule == "onecycle"


def test_integer_lr_is_accepted_as_float():
    assert TrainConfig(lr=1).lr == 1.0


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ({"lrr": 1e-3}, ValueError, r"Unknown TrainConfig key 'lrr'.*Did you mean 'lr'"),
        ({"loss": "clipp"}, ValueError, r"'loss'.*'clip'.*got 'clipp'"),
        ({"schedule": "linear"}, ValueError, r"'schedule'.*'cosine', 'onecycle'"),
        ({"precision": "fp16"}, ValueError, r"'precision'.*'bf16'"),
        ({"lr": -1.0}, ValueError, r"TrainConfig.lr must be a positive number, got -1.0"),
        ({"epochs": 0}, ValueError, r"TrainConfig.epochs must be an integer >= 1, got 0"),
        ({"epochs": 2.5}, ValueError, r"TrainConfig.epochs must be an integer"),
        ({"batch_size": True}, ValueError, r"batch_size"),
        ({"warmup": 1.0}, ValueError, r"warmup is a fraction"),
        ({"ema_decay": 1.0}, ValueError, r"ema_decay must lie in \(0, 1\)"),
        ({"model_kwargs": [1]}, TypeError, r"model_kwargs must be a dict"),
        ({"drop_last": "yes"}, TypeError, r"drop_last must be true or false"),
    ],
)
def test_bad_values(values, error, match):
    with pytest.raises(error, match=match):
        TrainConfig.from_dict(values)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("lr", r"must be a string 'key=value'"),
        ("epoch=3", r"Unknown TrainConfig key 'epoch'.*Did you mean 'epochs'"),
        ("lr.x=3", r"only model_kwargs.<name> and loss_kwargs.<name> take dots"),
    ],
)
def test_bad_overrides(override, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict({}, [override])


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lr: -3\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*TrainConfig.lr"):
        TrainConfig.from_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        TrainConfig.from_yaml(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_import_is_lazy():
    code = (
        "import sys, brainalign.train as t; assert 'torch' not in sys.modules; "
        "t.TrainConfig(); assert 'torch' not in sys.modules, 'config imports torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
