"""Checkpoints: atomic folders, the latest one, pruning, RNG states restored exactly."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from brainalign.train import TrainConfig, latest_checkpoint, list_checkpoints, load_checkpoint
from brainalign.train.checkpoint import get_rng_state, save_checkpoint, set_rng_state


def test_save_load_latest_and_keep(tmp_path):
    config = TrainConfig(lr=1e-3, out_dir=str(tmp_path))
    assert latest_checkpoint(tmp_path) is None
    for step in (3, 10, 7):
        save_checkpoint(tmp_path, {"w": torch.full((2,), float(step)), "step": step},
                        step=step, config=config, keep=2)  # fmt: skip
    # a folder left by a killed save is not a checkpoint
    (tmp_path / "checkpoints" / ".step-00000099.abc.tmp").mkdir()
    (tmp_path / "checkpoints" / "step-00000050").mkdir()  # no state.pt
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000007", "step-00000010"]
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step-00000010"
    state = load_checkpoint(latest)
    assert state["step"] == 10
    assert torch.equal(state["w"], torch.full((2,), 10.0))
    assert state["config"] == config
    with pytest.raises(FileNotFoundError, match="latest_checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_rng_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    save_checkpoint(tmp_path, {"rng": get_rng_state()}, step=1)
    expected = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    random.seed(9)
    np.random.seed(9)  # noqa: NPY002
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(latest_checkpoint(tmp_path))["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert torch.equal(got[2], expected[2])
