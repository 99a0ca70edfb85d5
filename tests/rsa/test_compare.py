"""RDM comparisons against rsatoolbox's compare, scipy's rank correlations and naive counts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import squareform
from scipy.stats import kendalltau, pearsonr, spearmanr

from brainalign.rsa import COMPARE_METHODS, compare_rdms

rsatoolbox = pytest.importorskip("rsatoolbox")
from rsatoolbox.rdm import RDMs, compare  # noqa: E402
from rsatoolbox.rdm.compare import _get_v  # noqa: E402

ATOL = 1e-10


def rsa_compare(a, b, method, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare(RDMs(a), RDMs(b), method=method, **kw)


def rdm_sets(rng, n_stimuli):
    p = n_stimuli * (n_stimuli - 1) // 2
    a = rng.random((3, p))
    b = rng.random((4, p))
    b[1] = np.round(b[1] * 3)  # a model that predicts ties
    b[2] = np.round(b[2] * 2)
    return a, b


@pytest.mark.parametrize("n_stimuli", [7, 13])
@pytest.mark.parametrize("method", [m for m in COMPARE_METHODS if m != "tau-b"])
def test_every_method_equals_rsatoolbox(rng, n_stimuli, method):
    a, b = rdm_sets(rng, n_stimuli)
    ours = compare_rdms(a, b, method)
    assert ours.shape == (3, 4)
    np.testing.assert_allclose(ours, rsa_compare(a, b, method), rtol=0, atol=ATOL)


def test_rank_correlations_equal_scipy(rng):
    a, b = rdm_sets(rng, 9)
    sp = compare_rdms(a, b, "spearman")
    kb = compare_rdms(a, b, "kendall")
    pe = compare_rdms(a, b, "corr")
    for x in range(3):
        for y in range(4):
            assert sp[x, y] == pytest.approx(spearmanr(a[x], b[y]).statistic, abs=1e-12)
            assert kb[x, y] == pytest.approx(kendalltau(a[x], b[y]).statistic, abs=1e-12)
            assert pe[x, y] == pytest.approx(pearsonr(a[x], b[y]).statistic, abs=1e-12)
    np.testing.assert_array_equal(compare_rdms(a, b, "tau-b"), kb)


def test_tau_a_with_ties_equals_naive_count(rng):
    a = np.round(rng.random((2, 21)) * 4)
    b = np.round(rng.random((3, 21)) * 3)
    ours = compare_rdms(a, b, "tau-a")
    for x in range(2):
        for y in range(3):
            s = sum(
                np.sign(a[x, i] - a[x, j]) * np.sign(b[y, i] - b[y, j])
                for i in range(21)
                for j in range(i + 1, 21)
            )
            assert ours[x, y] == pytest.approx(s / 210, abs=1e-14)
    # with ties tau-a is smaller in magnitude than tau-b
    assert np.all(np.abs(ours) <= np.abs(compare_rdms(a, b, "tau-b")) + 1e-15)


@pytest.mark.parametrize("as_torch", [False, True])
def test_tau_a_of_long_rdms_with_ties_equals_rsatoolbox(rng, as_torch):
    # 100 stimuli: each RDM ranked on its own, categorical models by the few-distinct path
    a, b = rdm_sets(rng, 100)
    a[2] = np.round(a[2] * 40)  # data with many ties
    ref = rsa_compare(a, b, "tau-a")
    ours = (
        compare_rdms(torch.from_numpy(a), b, "tau-a") if as_torch else compare_rdms(a, b, "tau-a")
    )
    assert isinstance(ours, torch.Tensor) == as_torch
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=0, atol=1e-12)
    # a set with itself: each pair counted once, both triangles filled
    np.testing.assert_allclose(
        compare_rdms(b, method="tau-a"), rsa_compare(b, b, "tau-a"), atol=1e-12
    )


def test_rho_a_definition(rng):
    a, b = rdm_sets(rng, 8)
    n = a.shape[1]
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1) - (n + 1) / 2
    rb = rankdata(b, axis=1) - (n + 1) / 2
    np.testing.assert_allclose(compare_rdms(a, b, "rho-a"), 12 * ra @ rb.T / (n**3 - n), atol=1e-14)


def test_single_vectors_squares_and_self_comparison(rng):
    a, b = rdm_sets(rng, 7)
    full = compare_rdms(a, b, "spearman")
    np.testing.assert_allclose(compare_rdms(a[0], b[1], "spearman"), full[:1, 1:2], atol=1e-15)
    squares = np.stack([squareform(v) for v in b])
    np.testing.assert_allclose(compare_rdms(a, squares, "spearman"), full, atol=1e-15)
    np.testing.assert_allclose(compare_rdms(squareform(a[2]), b, "spearman"), full[2:], atol=1e-15)
    own = compare_rdms(a, method="corr")
    np.testing.assert_allclose(own, compare_rdms(a, a, "corr"), atol=1e-15)
    np.testing.assert_allclose(np.diag(own), 1.0, atol=1e-12)


def test_constant_vectors_follow_rsatoolbox(rng):
    a, b = rdm_sets(rng, 7)
    b[0] = 0.0  # zero vector: no angle, no correlation, no ranks
    for method in ("cosine", "corr", "spearman", "rho-a", "tau-a"):
        assert np.all(compare_rdms(a, b, method)[:, 0] == 0)
    with np.errstate(invalid="ignore"):
        assert np.all(np.isnan(compare_rdms(a, b, "kendall")[:, 0]))


@pytest.mark.parametrize(
    "method", ["cosine", "corr", "spearman", "tau-a", "corr_cov", "cosine_cov"]
)
def test_nans_at_common_pairs_equal_rsatoolbox(rng, method):
    a, b = rdm_sets(rng, 9)
    for v in (a, b):
        v[:, [3, 17, 30]] = np.nan
    ref = rsa_compare(a, b, method)
    np.testing.assert_allclose(compare_rdms(a, b, method), ref, atol=ATOL)
    np.testing.assert_allclose(compare_rdms(a, b, method, nan_policy="common"), ref, atol=ATOL)


@pytest.mark.parametrize("method", ["corr", "spearman", "tau-a", "cosine_cov"])
def test_pairwise_nan_policy_drops_pairs_per_comparison(rng, method):
    a, b = rdm_sets(rng, 9)
    a[0, [2, 5]] = np.nan
    a[2, 11] = np.nan
    b[1, [5, 20]] = np.nan
    ours = compare_rdms(a, b, method)
    for x in range(3):
        for y in range(4):
            keep = ~(np.isnan(a[x]) | np.isnan(b[y]))
            # rsatoolbox on the same RDMs with the union of both NaN sets
            av, bv = a[x].copy(), b[y].copy()
            av[~keep] = np.nan
            bv[~keep] = np.nan
            ref = rsa_compare(av[None], bv[None], method)[0, 0]
            assert ours[x, y] == pytest.approx(ref, abs=ATOL)
    # "common": every comparison drops the union of all NaN positions
    common = compare_rdms(a, b, method, nan_policy="common")
    drop = np.isnan(a).any(0) | np.isnan(b).any(0)
    a2, b2 = a.copy(), b.copy()
    a2[:, drop] = np.nan
    b2[:, drop] = np.nan
    np.testing.assert_allclose(common, rsa_compare(a2, b2, method), atol=ATOL)


@pytest.mark.parametrize("method", ["cosine_cov", "corr_cov"])
def test_sigma_k_whitening_is_the_exact_rdm_covariance(rng, method):
    n = 7
    a, b = rdm_sets(rng, n)
    s = rng.standard_normal((n, n))
    sigma = s @ s.T + n * np.eye(n)
    ours = compare_rdms(a, b, method, sigma_k=sigma)
    v = _get_v(n, sigma).toarray()
    x, y = a, b
    if method == "corr_cov":
        x = a - a.mean(1, keepdims=True)
        y = b - b.mean(1, keepdims=True)
    wx, wy = np.linalg.solve(v, x.T).T, np.linalg.solve(v, y.T).T
    exact = (x @ wy.T) / np.sqrt((x * wx).sum(1))[:, None] / np.sqrt((y * wy).sum(1))[None]
    np.testing.assert_allclose(ours, exact, atol=1e-10)
    # rsatoolbox solves the same system by conjugate gradients (tolerance 1e-5)
    np.testing.assert_allclose(ours, rsa_compare(a, b, method, sigma_k=sigma), atol=1e-4)
    # a diagonal given as a vector is the same as the diagonal matrix
    d = rng.random(n) + 0.5
    np.testing.assert_allclose(
        compare_rdms(a, b, method, sigma_k=d),
        compare_rdms(a, b, method, sigma_k=np.diag(d)),
        atol=1e-12,
    )


@pytest.mark.parametrize("method", ["corr", "spearman", "tau-a", "cosine_cov"])
def test_torch_in_torch_out_on_device(device, rng, method):
    a, b = rdm_sets(rng, 8)
    ref = compare_rdms(a, b, method)
    out = compare_rdms(torch.from_numpy(a).to(device), torch.from_numpy(b).to(device), method)
    assert isinstance(out, torch.Tensor)
    assert out.device.type == device
    np.testing.assert_allclose(out.cpu().numpy(), ref, atol=1e-12)
    out32 = compare_rdms(torch.from_numpy(a).float().to(device), b.astype(np.float32), method)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.cpu().numpy(), ref, atol=1e-5)


def test_inputs_are_not_modified(rng):
    a, b = rdm_sets(rng, 7)
    a[0, 2] = np.nan
    a0, b0 = a.copy(), b.copy()
    for method in COMPARE_METHODS:
        compare_rdms(a, b, method)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_bad_inputs(rng):
    a, b = rdm_sets(rng, 7)
    with pytest.raises(ValueError, match=r"'method' parameter.*Did you mean 'spearman'"):
        compare_rdms(a, b, "spearmann")
    with pytest.raises(ValueError, match="'nan_policy' parameter"):
        compare_rdms(a, b, nan_policy="omit")
    with pytest.raises(ValueError, match="same stimuli: 'a' has 21 pairs and 'b' 15"):
        compare_rdms(a, b[:, :15])
    with pytest.raises(ValueError, match="'b' has 20 dissimilarities"):
        compare_rdms(a, b[:, :20])
    asym = rng.random((7, 7))
    with pytest.raises(ValueError, match="not a symmetric RDM"):
        compare_rdms(asym, b)
    with pytest.raises(ValueError, match="'sigma_k' is used by method='cosine_cov'"):
        compare_rdms(a, b, "corr", sigma_k=np.eye(7))
    with pytest.raises(ValueError, match=r"'sigma_k' must have shape \(7,\) or \(7, 7\)"):
        compare_rdms(a, b, "cosine_cov", sigma_k=np.eye(6))
