"""Batched rank statistics against scipy and naive O(n^2) counts, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from scipy.stats import rankdata as scipy_rankdata

import brainalign.rsa._ranks as ranks_module
from brainalign.rsa._ranks import (
    _argsort_row,
    _dense_ranks_numpy,
    _inversions_numpy,
    _inversions_torch,
    _kendall_counts_merge,
    _kendall_counts_numpy,
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


def pair_signs(x):
    """sign(x_i - x_j) for every ordered pair, (n, n) int8."""
    return np.sign(x[:, None] - x[None, :]).astype(np.int8)


def naive_concordance(sx, sy):
    """concordant - discordant from the pair signs of two vectors (O(n^2))."""
    return int(np.einsum("ij,ij->", sx, sy, dtype=np.int64)) // 2


def long_rows(rng, n):
    """Rows longer than the batched-sort limit: continuous, categorical, negative and signed
    zeros, and values that differ only in their last mantissa bits."""
    rows = np.empty((6, n))
    rows[0] = rng.random(n)
    rows[1] = np.round(rng.random(n) * 4)  # 5 levels: the few-distinct path
    rows[2] = -rng.standard_normal(n)
    rows[3] = np.where(rng.random(n) < 0.5, -0.0, 0.0) + np.round(rng.standard_normal(n), 1)
    rows[4] = 1.0 + np.arange(n)[rng.permutation(n)] * np.finfo(float).eps  # low bits only
    rows[5] = np.round(rng.random(n) * 600)  # many tied levels: argsort path with ties
    return rows


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


def test_argsort_row_is_an_argsort(rng):
    for row in long_rows(rng, 5000):
        order, values = _argsort_row(row)
        assert sorted(order.tolist()) == list(range(row.size))
        np.testing.assert_array_equal(values, np.sort(row))
        np.testing.assert_array_equal(values, row[order])


@pytest.mark.parametrize("n", [45, 4950])  # batched sort / one row at a time
def test_dense_ranks_of_long_and_short_rows(rng, n):
    x = long_rows(rng, n)
    info = _dense_ranks_numpy(x)
    for row, order, dense, levels, ties in zip(
        x, info.order, info.dense, info.levels, info.tie_pairs
    ):
        distinct, inverse, counts = np.unique(row, return_inverse=True, return_counts=True)
        np.testing.assert_array_equal(dense, inverse + 1)
        assert levels == distinct.size
        assert ties == int((counts * (counts - 1) // 2).sum())
        assert (np.diff(row[order]) >= 0).all()
    no_order = _dense_ranks_numpy(x, need_order=False)
    np.testing.assert_array_equal(no_order.dense, info.dense)


@pytest.mark.parametrize("n", [2, 3, 45, 4950])
def test_fenwick_and_merge_counts_equal_naive(rng, n):
    a = long_rows(rng, n)[[0, 1, 3, 5]]
    b = long_rows(rng, n)
    fenwick = _kendall_counts_numpy(a, b, same=False)
    merge = _kendall_counts_merge(torch.from_numpy(a), torch.from_numpy(b))
    signs_b = [pair_signs(y) for y in b]
    expected = np.array(
        [[naive_concordance(sx, sy) for sy in signs_b] for sx in map(pair_signs, a)]
    )
    np.testing.assert_array_equal(fenwick[0], expected)
    np.testing.assert_array_equal(merge[0].numpy(), expected)
    for ours, ref in zip(fenwick[1:], merge[1:]):
        np.testing.assert_array_equal(ours, ref.numpy())


def test_kendall_of_a_set_with_itself_fills_both_triangles(rng):
    x = torch.from_numpy(long_rows(rng, 300))
    both = kendall_tau(x, x, "b")  # the same tensor: each pair once
    ref = kendall_tau(x, x.clone(), "b")
    np.testing.assert_array_equal(both.numpy(), ref.numpy())
    np.testing.assert_allclose(np.diag(both.numpy()), 1.0, atol=1e-15)


def test_kendall_without_the_scipy_counter_equals_with_it(rng, monkeypatch):
    a = torch.from_numpy(long_rows(rng, 120))
    b = torch.from_numpy(long_rows(rng, 120)[::-1].copy())
    with_counter = kendall_tau(a, b, "a")
    monkeypatch.setattr(ranks_module, "_scipy_kendall_dis", None)
    np.testing.assert_array_equal(kendall_tau(a, b, "a").numpy(), with_counter.numpy())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rankdata_of_long_rows_matches_scipy(rng, dtype):
    x = long_rows(rng, 5000).astype(dtype)
    ours = rankdata(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(ours, scipy_rankdata(x, axis=1))
    assert ours.dtype == (np.float64 if dtype == np.float64 else np.float32)
