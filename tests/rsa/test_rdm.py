"""RDMs against rsatoolbox's calc_rdm and scipy's pdist; chunking, batching, devices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from brainalign.rsa import compute_rdms, noise_covariance, noise_precision

rsatoolbox = pytest.importorskip("rsatoolbox")
from rsatoolbox.data import Dataset  # noqa: E402
from rsatoolbox.data.noise import cov_from_residuals, prec_from_residuals  # noqa: E402
from rsatoolbox.rdm import calc_rdm  # noqa: E402

ATOL = 1e-10


def rsa_rdm(x, method, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calc_rdm(Dataset(x, obs_descriptors=kw.pop("obs", None)), method=method, **kw)


def precision(rng, p):
    a = rng.standard_normal((p, p))
    return a @ a.T / p + np.eye(p)


@pytest.mark.parametrize("shape", [(7, 9), (13, 8)])
@pytest.mark.parametrize("metric", ["correlation", "euclidean", "poisson"])
def test_equals_rsatoolbox(rng, shape, metric):
    x = rng.standard_normal(shape)
    if metric == "poisson":
        x = rng.poisson(3.0, shape).astype(float)
    ref = rsa_rdm(x, metric).get_vectors()[0]
    np.testing.assert_allclose(compute_rdms(x, metric), ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape", [(7, 9), (13, 8)])
def test_mahalanobis_equals_rsatoolbox(rng, shape):
    x = rng.standard_normal(shape)
    w = precision(rng, shape[1])
    ref = rsa_rdm(x, "mahalanobis", noise=w).get_vectors()[0]
    np.testing.assert_allclose(compute_rdms(x, "mahalanobis", noise=w), ref, rtol=0, atol=ATOL)
    # a diagonal precision given as a vector equals the full diagonal matrix
    d = rng.random(shape[1]) + 0.5
    np.testing.assert_allclose(
        compute_rdms(x, "mahalanobis", noise=d),
        compute_rdms(x, "mahalanobis", noise=np.diag(d)),
        rtol=0,
        atol=ATOL,
    )
    # no precision: euclidean (rsatoolbox's convention)
    np.testing.assert_allclose(
        compute_rdms(x, "mahalanobis"), compute_rdms(x, "euclidean"), rtol=0, atol=ATOL
    )


@pytest.mark.parametrize("shape", [(7, 9), (13, 8)])
def test_cosine_and_sqeuclidean_equal_scipy(rng, shape):
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(compute_rdms(x, "cosine"), pdist(x, "cosine"), atol=ATOL)
    np.testing.assert_allclose(compute_rdms(x, "sqeuclidean"), pdist(x, "sqeuclidean"), atol=ATOL)
    xc = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(
        compute_rdms(x, "cosine", remove_mean=True), pdist(xc, "cosine"), atol=ATOL
    )


def test_remove_mean_and_descriptor_averaging_equal_rsatoolbox(rng):
    x = rng.standard_normal((14, 9))
    cond = np.array(list("gfedcbagfedcba"))  # 7 conditions, twice, unsorted
    for metric in ("euclidean", "correlation"):
        ref = rsa_rdm(x, metric, obs={"c": cond}, descriptor="c", remove_mean=True)
        ours = compute_rdms(x, metric, descriptors=cond, remove_mean=True)
        np.testing.assert_allclose(ours, ref.get_vectors()[0], atol=ATOL)
        assert list(ref.pattern_descriptors["c"]) == sorted(set(cond))


@pytest.mark.parametrize("noise", [False, True])
def test_crossnobis_equals_rsatoolbox(rng, noise):
    n_cond, n_folds, p = 7, 4, 9
    x = rng.standard_normal((n_cond * n_folds, p))
    cond = np.tile(np.arange(n_cond), n_folds)
    run = np.repeat(np.arange(n_folds), n_cond)
    w = precision(rng, p) if noise else None
    ref = rsa_rdm(
        x, "crossnobis", obs={"c": cond, "r": run}, descriptor="c", cv_descriptor="r", noise=w
    )
    ours = compute_rdms(x, "crossnobis", descriptors=cond, folds=run, noise=w)
    np.testing.assert_allclose(ours, ref.get_vectors()[0], atol=ATOL)
    # default folds: the k-th repetition of each condition (rsatoolbox's default)
    shuffled = rng.permutation(x.shape[0])
    ref = rsa_rdm(x[shuffled], "crossnobis", obs={"c": cond[shuffled]}, descriptor="c", noise=w)
    ours = compute_rdms(x[shuffled], "crossnobis", descriptors=cond[shuffled], noise=w)
    np.testing.assert_allclose(ours, ref.get_vectors()[0], atol=ATOL)


def test_crossnobis_unbalanced_folds_equal_rsatoolbox(rng):
    # three runs, the second holds two repetitions of every condition
    n_cond, p = 7, 8
    run = np.repeat([0, 1, 1, 2], n_cond)
    cond = np.tile(np.arange(n_cond), 4)
    x = rng.standard_normal((run.size, p))
    ref = rsa_rdm(x, "crossnobis", obs={"c": cond, "r": run}, descriptor="c", cv_descriptor="r")
    ours = compute_rdms(x, "crossnobis", descriptors=cond, folds=run)
    np.testing.assert_allclose(ours, ref.get_vectors()[0], atol=ATOL)


def test_crossnobis_is_unbiased_for_identical_conditions(rng):
    # pure noise: every condition has the same true pattern, expected crossnobis distance 0
    n_cond, n_folds, p = 6, 5, 30
    cond = np.tile(np.arange(n_cond), n_folds)
    run = np.repeat(np.arange(n_folds), n_cond)
    values = [
        compute_rdms(
            rng.standard_normal((cond.size, p)), "crossnobis", descriptors=cond, folds=run
        ).mean()
        for _ in range(20)
    ]
    # the mean over repetitions is within 4 standard errors of 0; euclidean would be ~ 2 / n_folds
    assert abs(np.mean(values)) < 4 * np.std(values) / np.sqrt(len(values))


def test_poisson_cv_averages_the_folds_rsatoolbox_computes_one_by_one(rng):
    # rsatoolbox's calc_rdm_poisson_cv returns the last fold's RDM only; with two folds,
    # relabelling the folds gives the other one, and ours is their mean
    n_cond, p = 7, 9
    x = rng.poisson(4.0, (2 * n_cond, p)).astype(float)
    cond = np.tile(np.arange(n_cond), 2)
    run = np.repeat([0, 1], n_cond)
    last = [
        rsa_rdm(
            x, "poisson_cv", obs={"c": cond, "r": r}, descriptor="c", cv_descriptor="r"
        ).get_vectors()[0]
        for r in (run, 1 - run)
    ]
    ours = compute_rdms(x, "poisson_cv", descriptors=cond, folds=run)
    np.testing.assert_allclose(ours, (last[0] + last[1]) / 2, atol=ATOL)


@pytest.mark.parametrize("metric", ["correlation", "cosine", "euclidean", "sqeuclidean", "poisson"])
def test_chunked_equals_unchunked_and_batched_equals_loop(rng, metric):
    x = rng.poisson(3.0, (3, 13, 8)).astype(float) + 0.5
    whole = compute_rdms(x, metric)
    assert whole.shape == (3, 78)
    for chunk in (1, 4, 5, 12, 50):  # 13 stimuli: none of these divides the row count
        np.testing.assert_allclose(compute_rdms(x, metric, chunk_size=chunk), whole, atol=1e-12)
    loop = np.stack([compute_rdms(x[k], metric) for k in range(3)])
    np.testing.assert_allclose(whole, loop, atol=1e-12)


@pytest.mark.parametrize("metric", ["correlation", "cosine", "euclidean", "mahalanobis"])
def test_list_of_feature_counts_equals_separate_calls(rng, metric):
    layers = [rng.standard_normal((13, k)) for k in (7, 8, 9)]
    out = compute_rdms(layers, metric, chunk_size=5)
    assert out.shape == (3, 78)
    for k, x in enumerate(layers):
        np.testing.assert_allclose(out[k], compute_rdms(x, metric), atol=1e-12)
    # very different sizes are not padded but give the same result
    wide = [rng.standard_normal((9, 3)), rng.standard_normal((9, 40))]
    out = compute_rdms(wide, metric)
    for k, x in enumerate(wide):
        np.testing.assert_allclose(out[k], compute_rdms(x, metric), atol=1e-12)


def test_batched_noise_per_rdm(rng):
    x = rng.standard_normal((2, 7, 8))
    ws = [precision(rng, 8), precision(rng, 8)]
    out = compute_rdms(x, "mahalanobis", noise=ws)
    for k in range(2):
        np.testing.assert_allclose(
            out[k], compute_rdms(x[k], "mahalanobis", noise=ws[k]), atol=ATOL
        )


@pytest.mark.parametrize("metric", ["correlation", "euclidean", "crossnobis"])
def test_torch_in_torch_out_on_the_same_device(device, rng, metric):
    x = rng.standard_normal((12, 9))
    kw = {"descriptors": np.tile(np.arange(6), 2)} if metric == "crossnobis" else {}
    ref = compute_rdms(x, metric, **kw)
    t = torch.from_numpy(x).to(device)
    out = compute_rdms(t, metric, **kw)
    assert isinstance(out, torch.Tensor)
    assert out.device.type == device
    np.testing.assert_allclose(out.cpu().numpy(), ref, atol=1e-10)
    # float32 stays float32 (and close to the float64 result)
    out32 = compute_rdms(t.float(), metric, **kw)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.cpu().numpy(), ref, rtol=1e-4, atol=1e-4)


def test_square_output_and_inputs_untouched(rng):
    x = rng.standard_normal((7, 9))
    before = x.copy()
    x.setflags(write=False)  # any write would raise
    sq = compute_rdms(x, "correlation", condensed=False)
    assert sq.shape == (7, 7)
    assert np.allclose(sq, sq.T)
    assert np.all(np.diag(sq) == 0)
    np.testing.assert_array_equal(x, before)
    t = torch.from_numpy(before.copy())
    compute_rdms(t, "euclidean", remove_mean=True)
    assert torch.equal(t, torch.from_numpy(before))


def test_integer_input_becomes_float64(rng):
    x = rng.integers(0, 5, (7, 9))
    out = compute_rdms(x, "euclidean")
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, pdist(x, "sqeuclidean") / 9, atol=ATOL)


def test_bad_inputs_say_what_to_do(rng):
    x = rng.standard_normal((7, 9))
    with pytest.raises(ValueError, match=r"'metric' parameter.*Did you mean 'correlation'"):
        compute_rdms(x, "corelation")
    with pytest.raises(ValueError, match="needs 'descriptors'"):
        compute_rdms(x, "crossnobis")
    cond = np.array([0, 1, 2, 0, 1, 2, 0])
    with pytest.raises(ValueError, match="same number of repetitions of every condition"):
        compute_rdms(x, "crossnobis", descriptors=cond)
    with pytest.raises(ValueError, match="Condition 2 has no observation in fold 1"):
        compute_rdms(x, "crossnobis", descriptors=cond, folds=[0, 0, 0, 1, 1, 0, 1])
    with pytest.raises(ValueError, match=r"'noise' must be a precision of shape \(9, 9\)"):
        compute_rdms(x, "mahalanobis", noise=np.eye(8))
    with pytest.raises(ValueError, match="'noise' is used by metric='mahalanobis'"):
        compute_rdms(x, "euclidean", noise=np.eye(9))
    with pytest.raises(ValueError, match="one label per observation"):
        compute_rdms(x, "euclidean", descriptors=[0, 1])
    with pytest.raises(ValueError, match="same number of stimuli"):
        compute_rdms([x, x[:5]], "euclidean")
    with pytest.raises(ValueError, match="got 1 dimensions"):
        compute_rdms(x[0], "euclidean")
    with pytest.raises(ValueError, match="remove_mean=True has no meaning"):
        compute_rdms(np.abs(x), "poisson", remove_mean=True)
    with pytest.raises(ValueError, match="at least 2 stimuli"):
        compute_rdms(x[:1], "euclidean")
    with pytest.raises(TypeError, match="must hold numbers"):
        compute_rdms(np.array([["a", "b"], ["c", "d"]]), "euclidean")


@pytest.mark.parametrize("method", ["shrinkage_diag", "shrinkage_eye", "diag", "full"])
def test_noise_covariance_and_precision_equal_rsatoolbox(rng, method):
    residuals = rng.standard_normal((40, 9)) @ rng.standard_normal((9, 9))
    before = residuals.copy()
    np.testing.assert_allclose(
        noise_covariance(residuals, method),
        cov_from_residuals(residuals, method=method),
        rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        noise_precision(residuals, method, dof=30),
        prec_from_residuals(residuals, method=method, dof=30),
        rtol=1e-9,
        atol=1e-10,
    )
    np.testing.assert_array_equal(residuals, before)
    t = noise_covariance(torch.from_numpy(residuals), method)
    assert isinstance(t, torch.Tensor)


def test_noise_errors(rng):
    with pytest.raises(ValueError, match=r"'method' parameter.*'shrinkage_diag'"):
        noise_covariance(rng.standard_normal((5, 3)), "shrinkage")
    with pytest.raises(ValueError, match=r"\(n_residuals, n_channels\)"):
        noise_covariance(rng.standard_normal(5))
    with pytest.raises(ValueError, match=r"singular.*shrinkage"):
        noise_precision(rng.standard_normal((3, 6)), "full")
