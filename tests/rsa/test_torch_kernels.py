"""The torch kernels that run off the CPU (CUDA), exercised on the CPU against the NumPy ones.

On the CPU brainalign.rsa computes with NumPy; on other devices with torch. Without a GPU the
torch branches would go untested, so these tests call them directly on CPU tensors (or route the
CPU through them) and compare with the NumPy results.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata as scipy_rankdata

from brainalign.rsa import compute_rdms
from brainalign.rsa import rdm as rdm_module
from brainalign.rsa._ranks import _ranks_torch, _sort_info_torch, sort_info
from brainalign.rsa.topology import _order_statistics_numpy, _order_statistics_torch

CASES = [
    ("correlation", {}),
    ("cosine", {"remove_mean": True}),
    ("euclidean", {}),
    ("sqeuclidean", {}),
    ("poisson", {}),
    ("mahalanobis", {"noise": np.diag(np.linspace(0.5, 2.0, 8))}),
    ("mahalanobis", {"noise": np.linspace(0.5, 2.0, 8)}),
]


@pytest.mark.parametrize(("metric", "kw"), CASES)
def test_torch_rdm_kernels_equal_numpy(rng, monkeypatch, metric, kw):
    x = rng.poisson(3.0, (2, 13, 8)).astype(float) + 0.5
    ref = compute_rdms(x, metric, chunk_size=5, **kw)
    monkeypatch.setattr(rdm_module, "_native", lambda t: t)  # CPU tensors take the torch path
    out = compute_rdms(torch.from_numpy(x), metric, chunk_size=5, **kw)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["crossnobis", "poisson_cv"])
def test_torch_cross_validated_kernels_equal_numpy(rng, monkeypatch, metric):
    x = np.abs(rng.standard_normal((2, 18, 8)))
    cond = np.tile(np.arange(6), 3)
    kw = {"noise": np.eye(8) * 1.5} if metric == "crossnobis" else {}
    ref = compute_rdms(x, metric, descriptors=cond, chunk_size=4, **kw)
    monkeypatch.setattr(rdm_module, "_native", lambda t: t)
    out = compute_rdms(torch.from_numpy(x), metric, descriptors=cond, chunk_size=4, **kw)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


def test_torch_descriptor_averaging_and_padded_lists_equal_numpy(rng, monkeypatch):
    layers = [rng.standard_normal((13, 8)), rng.standard_normal((13, 6))]
    desc = np.arange(13) % 6
    ref = compute_rdms(layers, "correlation", descriptors=desc)
    monkeypatch.setattr(rdm_module, "_native", lambda t: t)
    out = compute_rdms([torch.from_numpy(x) for x in layers], "correlation", descriptors=desc)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


def test_torch_sort_info_and_ranks_equal_numpy(rng):
    x = np.round(rng.random((4, 37)) * 5)
    x[0] = rng.random(37)  # no ties
    t = torch.from_numpy(x)
    ref = sort_info(t)  # NumPy on the CPU
    got = _sort_info_torch(t)
    for field in ("start", "end", "dense", "tie_pairs"):
        np.testing.assert_array_equal(getattr(got, field).numpy(), getattr(ref, field).numpy())
    np.testing.assert_array_equal(
        _ranks_torch(got, torch.float64).numpy(), scipy_rankdata(x, axis=1)
    )
    untied = _sort_info_torch(t[:1])
    assert int(untied.tie_pairs[0]) == 0


def test_order_statistics_torch_and_blocked_numpy_equal_sorting(rng):
    x = rng.random((7, 45))
    x[2] = np.round(x[2] * 3)
    ks = [0, 3, 4, 22, 44]
    sorted_x = np.sort(x, axis=1)
    got_t = _order_statistics_torch(torch.from_numpy(x), ks)
    # block_elements=100: two rows per block, the last block short
    got_n = _order_statistics_numpy(x, [0, 3, 22, 44], block_elements=100)
    for k in ks:
        np.testing.assert_array_equal(got_t[k].numpy(), sorted_x[:, k])
        np.testing.assert_array_equal(got_n[k].numpy(), sorted_x[:, k])


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a"])
def test_torch_comparisons_equal_numpy(rng, monkeypatch, method):
    from brainalign.rsa import compare as compare_module

    a, b = rng.random((3, 36)), rng.random((4, 36))
    b[1] = np.round(b[1] * 3)
    ref = compare_module.compare_rdms(a, b, method)
    monkeypatch.setattr(compare_module, "_NUMPY_METHODS", ())
    out = compare_module.compare_rdms(torch.from_numpy(a), torch.from_numpy(b), method)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)
