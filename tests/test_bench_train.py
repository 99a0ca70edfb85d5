"""Smoke test of benchmarks/bench_train.py at tiny sizes: it runs and its numbers are sane."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("name", ["fmri", "meeg-pooled", "meeg-speech"])
def test_step_and_pipeline_tiny(bench, name):
    setup = bench.build_setup(name, "tiny", n_subjects=2)
    step = bench.measure_step(setup, 6, "cpu", warmup=1, steps=2)
    for key in ("model_s", "optim_s", "step_s", "samples_per_s", "loss"):
        assert math.isfinite(step[key]), (key, step[key])
        assert step[key] > 0, (key, step[key])
    assert step["trainable"] == step["params"] + 1  # the loss's learnable logit scale
    assert step["peak_bytes"] >= 0  # a tiny model may fit in memory the process already holds
    assert step["adapter_params"] > 0

    data = bench.make_dataset(setup, 6 * 4, n_stimuli=5)
    assert len(data) == 24
    assert set(data.subjects) == set(setup.n_features)
    for path in ("loop", "loader"):
        out = bench.measure_pipeline(data, 6, "cpu", path=path, workers=0, n_batches=3)
        for key in ("samples_per_s", "mean_samples_per_s", "first_s"):
            assert math.isfinite(out[key]), (path, key, out[key])
            assert out[key] > 0, (path, key, out[key])
        assert out["pinned"] is None


def test_pipeline_needs_enough_trials(bench):
    setup = bench.build_setup("fmri", "tiny", n_subjects=2)
    data = bench.make_dataset(setup, 10)
    with pytest.raises(ValueError, match="needs"):
        bench.measure_pipeline(data, 6, "cpu", n_batches=3)
