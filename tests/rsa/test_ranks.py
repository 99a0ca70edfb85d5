"""Batched rank statistics against scipy and naive O(n^2) counts, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from scipy.stats import rankdata as scipy_rankdata

from brainalign.rsa._ranks import (
    _inversions_numpy,
    _inversions_torch,
    count_inversions,
    kendall_tau,
    rankdata,
    sort_info,
)


def naive_inversions(v):
    return sum(int((v[:k] > v[k]).sum()) for k in range(len(v)))


def naive_tau_a(x, y):
    n = len(x)
    s = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i in range(n) for j in range(i + 1, n))
    return s / (n * (n - 1) / 2)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 31, 32, 33, 64, 65, 200])
def test_inversions_match_naive_count_with_ties(rng, n):
    v = rng.integers(0, max(2, n // 3), size=(5, n))
    expected = [naive_inversions(row) for row in v]
    assert count_inversions(torch.from_numpy(v)).tolist() == expected
    if n >= 2:
        # the torch kernel (used on GPUs) gives the same counts on the CPU
        assert _inversions_torch(torch.from_numpy(v)).tolist() == expected
        assert _inversions_numpy(v).tolist() == expected


def test_inversions_of_permutations_extremes():
    n = 100
    v = torch.arange(n)[None]
    assert count_inversions(v).item() == 0
    assert count_inversions(v.flip(1)).item() == n * (n - 1) // 2


def test_rankdata_matches_scipy_average_ranks(rng):
    x = np.round(rng.random((4, 37)) * 5)  # many ties
    x[0] = rng.random(37)  # none
    ours = rankdata(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(ours, scipy_rankdata(x, axis=1))
    info = sort_info(torch.from_numpy(x))
    dense = info.dense.numpy()
    for row, d in zip(x, dense):
        np.testing.assert_array_equal(d, np.unique(row, return_inverse=True)[1])
    # tied pairs: sum over groups of t (t - 1) / 2
    for row, t in zip(x, info.tie_pairs.tolist()):
        counts = np.unique(row, return_counts=True)[1]
        assert t == int((counts * (counts - 1) // 2).sum())


@pytest.mark.parametrize("n", [2, 3, 7, 13, 36, 78])
def test_kendall_tau_a_and_b_with_ties(rng, n):
    a = np.round(rng.random((3, n)) * 3)
    a[0] = rng.random(n)  # untied
    b = np.round(rng.random((4, n)) * 2)
    b[1] = rng.random(n)  # untied
    b[2] = 1.0  # constant
    ta = kendall_tau(torch.from_numpy(a), torch.from_numpy(b), "a").numpy()
    tb = kendall_tau(torch.from_numpy(a), torch.from_numpy(b), "b").numpy()
    ref_a = np.array([[naive_tau_a(x, y) for y in b] for x in a])
    with np.errstate(invalid="ignore"):
        ref_b = np.array([[kendalltau(x, y).statistic for y in b] for x in a])
    np.testing.assert_allclose(ta, ref_a, atol=1e-12)
    np.testing.assert_allclose(tb, ref_b, atol=1e-12)  # NaN where a vector is constant
    assert np.isnan(tb[:, 2]).all()
    assert (ta[:, 2] == 0).all()


def test_tau_a_equals_tau_b_without_ties(rng):
    a, b = rng.random((2, 50)), rng.random((3, 50))
    ta = kendall_tau(torch.from_numpy(a), torch.from_numpy(b), "a")
    tb = kendall_tau(torch.from_numpy(a), torch.from_numpy(b), "b")
    np.testing.assert_allclose(ta.numpy(), tb.numpy(), rtol=0, atol=1e-15)
    ref = np.array([[kendalltau(x, y).statistic for y in b] for x in a])
    np.testing.assert_allclose(ta.numpy(), ref, atol=1e-14)


def test_kendall_on_device_equals_cpu(device, rng):
    a = np.round(rng.random((2, 45)) * 4)
    b = rng.random((3, 45))
    cpu = kendall_tau(torch.from_numpy(a), torch.from_numpy(b), "a")
    dev = kendall_tau(torch.from_numpy(a).to(device), torch.from_numpy(b).to(device), "a")
    assert dev.device.type == device
    np.testing.assert_array_equal(dev.cpu().numpy(), cpu.numpy())


def test_count_inversions_rejects_1d():
    with pytest.raises(ValueError, match="expects a 2-D tensor"):
        count_inversions(torch.arange(5))
