"""Helpers of the training tests: a seeded synthetic linear decoding problem and tiny encoders.

Two subjects with different voxel counts (7 and 9) respond linearly to 5-d stimulus embeddings;
stimulus, voxel and target counts all differ so that a transposed axis cannot pass.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from brainalign.models import build_model
from brainalign.train import BrainTargetDataset, latest_checkpoint

SIZES = {"01": 7, "02": 9}
N_STIMULI, TARGET_DIM = 40, 5


def synthetic(
    n_stimuli: int = N_STIMULI, *, noise: float = 0.1, seed: int = 0, repeats: int = 1
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Responses ``{subject: (n_trials, n_voxels)}``, stimulus ids, targets ``(n_stimuli, 5)``."""
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=(n_stimuli, TARGET_DIM))
    brain, ids = {}, {}
    for s, n_voxels in SIZES.items():
        stim = np.tile(np.arange(n_stimuli), repeats)
        mixing = rng.normal(size=(TARGET_DIM, n_voxels))
        brain[s] = targets[stim] @ mixing + noise * rng.normal(size=(len(stim), n_voxels))
        ids[s] = stim
    return brain, ids, targets


def dataset(**kwargs) -> BrainTargetDataset:
    return BrainTargetDataset(*synthetic(**kwargs))


def tiny_model(seed: int = 0, dropout: float = 0.1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        "mindeye2",
        n_voxels=dict(SIZES),
        target_dim=TARGET_DIM,
        hidden=16,
        n_blocks=1,
        dropout=dropout,
    )


def metrics_records(config) -> list[dict]:
    """The lines of the run's ``metrics.jsonl`` (beside the checkpoints of ``config.out_dir``)."""
    path = latest_checkpoint(config.out_dir).parent.parent / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_equal_states(a: dict, b: dict) -> None:
    """Two state dicts hold the same keys and the same tensors, bit for bit."""
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(b[key], value), key


def assert_logged_terms_add_up(result, config, weights: dict[str, float]) -> None:
    """The first epoch's and every step's logged ``loss`` is ``contrastive + Σ weight · term``
    (``weights``: ``{"prior": 2.0}`` …), each term logged beside the total that was minimised."""
    import pytest

    def total(record: dict, prefix: str) -> float:
        terms = sum(w * record[f"{prefix}{name}_loss"] for name, w in weights.items())
        return record[f"{prefix}contrastive_loss"] + terms

    first = result.history[0]
    assert first["train_loss"] == pytest.approx(total(first, "train_"), rel=1e-6)
    steps = [r for r in metrics_records(config) if r["event"] == "step"]
    assert len(steps) == result.n_steps
    for record in steps:
        assert record["loss"] == pytest.approx(total(record, ""), rel=1e-5)


def crash_at_step(step: int):
    """A fit callback that interrupts the run (``KeyboardInterrupt``) when it reaches ``step``."""

    def crash(info: dict) -> None:
        if info["event"] == "step" and info["step"] == step:
            raise KeyboardInterrupt

    return crash
