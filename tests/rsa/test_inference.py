"""Permutation tests, bootstrap, model comparisons and noise ceilings against rsatoolbox."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import binom, false_discovery_control

from brainalign.rsa import (
    bootstrap,
    compare_models,
    compare_rdms,
    correct_pvalues,
    noise_ceiling,
    pairwise_bootstrap_tests,
    permutation_test,
    to_condensed,
    to_square,
)

rsatoolbox = pytest.importorskip("rsatoolbox")
from rsatoolbox.inference import eval_bootstrap_pattern, eval_bootstrap_rdm  # noqa: E402
from rsatoolbox.inference.noise_ceiling import boot_noise_ceiling  # noqa: E402
from rsatoolbox.model import ModelFixed  # noqa: E402
from rsatoolbox.rdm import RDMs  # noqa: E402
from rsatoolbox.util.inference_util import bootstrap_pair_tests  # noqa: E402

N_STIM = 11


@pytest.fixture
def rdms(rng):
    p = N_STIM * (N_STIM - 1) // 2
    data = rng.random((5, p))
    models = rng.random((3, p))
    models[2] = np.round(models[2] * 3)  # ties
    return data, models


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a", "tau-a", "corr_cov"])
def test_stimulus_bootstrap_equals_rsatoolbox(rdms, method, capsys):
    data, models = rdms
    mods = [ModelFixed(f"m{k}", RDMs(models[k : k + 1])) for k in range(3)]
    n_boot = 12
    np.random.seed(7)  # noqa: NPY002 - rsatoolbox draws from numpy's global generator
    ref = quiet(
        eval_bootstrap_pattern, mods, RDMs(data), method=method, N=n_boot, boot_noise_ceil=False
    )
    legacy = np.random.RandomState(7)  # the same stream as the seeded global generator
    draws = np.stack([legacy.randint(0, N_STIM, size=N_STIM) for _ in range(n_boot)])
    ours = bootstrap(data, models, method, stimulus_draws=draws)
    np.testing.assert_allclose(ours.evaluations, ref.evaluations, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        ours.estimate, compare_rdms(data, models, method).mean(0), atol=1e-15
    )


def test_subject_bootstrap_equals_rsatoolbox(rdms):
    data, models = rdms
    mods = [ModelFixed(f"m{k}", RDMs(models[k : k + 1])) for k in range(3)]
    np.random.seed(3)  # noqa: NPY002 - rsatoolbox draws from numpy's global generator
    ref = quiet(
        eval_bootstrap_rdm, mods, RDMs(data), method="spearman", N=15, boot_noise_ceil=False
    )
    legacy = np.random.RandomState(3)
    draws = np.stack([legacy.randint(0, 5, size=5) for _ in range(15)])
    ours = bootstrap(data, models, "spearman", over="subjects", subject_draws=draws)
    np.testing.assert_allclose(ours.evaluations, ref.evaluations, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["spearman", "tau-a"])
def test_both_bootstrap_equals_explicit_resampling(rdms, rng, method):
    data, models = rdms
    stim = rng.integers(0, N_STIM, size=(6, N_STIM))
    subj = rng.integers(0, 5, size=(6, 5))
    ours = bootstrap(data, models, method, over="both", stimulus_draws=stim, subject_draws=subj)
    for b in range(6):
        sel = np.sort(stim[b])
        sq_d, sq_m = to_square(data)[:, sel][:, :, sel], to_square(models)[:, sel][:, :, sel]
        same = sel[:, None] == sel[None, :]
        sq_d[:, same] = np.nan
        sq_m[:, same] = np.nan
        d = to_condensed(sq_d, check=False)[subj[b]]
        m = to_condensed(sq_m, check=False)
        expected = compare_rdms(d, m, method).mean(axis=0)
        np.testing.assert_allclose(ours.evaluations[b], expected, atol=1e-12)


def test_bootstrap_summary_and_degenerate_draws(rdms, rng):
    data, models = rdms
    res = bootstrap(data, models, "corr", n_bootstraps=200, seed=0, confidence=0.9)
    assert res.evaluations.shape == (200, 3)
    np.testing.assert_allclose(res.ci, np.percentile(res.evaluations, [5, 95], axis=0))
    np.testing.assert_allclose(res.se, res.evaluations.std(axis=0, ddof=1))
    # same seed, same draws
    again = bootstrap(data, models, "corr", n_bootstraps=200, seed=0, confidence=0.9)
    np.testing.assert_array_equal(res.evaluations, again.evaluations)
    # fewer than 3 distinct stimuli: no RDM to compare (rsatoolbox's NaN)
    draws = np.tile(np.array([[0, 1] * 5 + [0]]), (4, 1))
    draws[0] = np.arange(N_STIM)
    out = bootstrap(data, models, "spearman", stimulus_draws=draws)
    assert np.isfinite(out.evaluations[0]).all()
    assert np.isnan(out.evaluations[1:]).all()


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "tau-a", "corr_cov"])
def test_noise_ceiling_equals_rsatoolbox_boot_noise_ceiling(rdms, method):
    data, _ = rdms
    ours = noise_ceiling(data, method)
    lower, upper = quiet(boot_noise_ceiling, RDMs(data), method=method)
    assert ours.lower == pytest.approx(lower, abs=1e-12)
    assert ours.upper == pytest.approx(upper, abs=1e-12)
    assert ours.lower_per_subject.shape == (5,)
    assert ours.lower <= ours.upper


def explicit_null(data, models, method, perms):
    sq = to_square(data)
    return np.stack([compare_rdms(to_condensed(sq[:, p][:, :, p]), models, method) for p in perms])


@pytest.mark.parametrize("method", ["cosine", "corr", "spearman", "rho-a", "corr_cov", "tau-a"])
def test_permutation_null_equals_explicitly_permuted_rdms(rdms, method):
    data, models = rdms
    res = permutation_test(data, models, method, n_permutations=40, seed=5)
    perms = np.argsort(np.random.default_rng(5).random((40, N_STIM)), axis=1)
    np.testing.assert_allclose(res.null, explicit_null(data, models, method, perms), atol=1e-12)
    np.testing.assert_allclose(res.statistic, compare_rdms(data, models, method), atol=1e-15)
    expected = (1 + (res.null >= res.statistic - 1e-12).sum(0)) / 41
    np.testing.assert_array_equal(res.p_values, expected)


def test_permutation_alternatives_and_average(rdms):
    data, models = rdms
    less = permutation_test(data, models, "corr", n_permutations=30, seed=1, alternative="less")
    two = permutation_test(data, models, "corr", n_permutations=30, seed=1, alternative="two-sided")
    np.testing.assert_array_equal(less.p_values, (1 + (less.null <= less.statistic).sum(0)) / 31)
    np.testing.assert_array_equal(
        two.p_values, (1 + (np.abs(two.null) >= np.abs(two.statistic)).sum(0)) / 31
    )
    avg = permutation_test(data, models, "corr", n_permutations=30, seed=1, average=True)
    assert avg.statistic.shape == (3,)
    assert avg.null.shape == (30, 3)
    np.testing.assert_allclose(avg.null, less.null.mean(axis=1), atol=1e-15)


def test_permutation_p_values_are_calibrated(rng):
    # 200 independent null data RDMs (unrelated to the model), 200 permutations each, in one call
    n, n_data = 9, 200
    p = n * (n - 1) // 2
    data = rng.random((n_data, p))
    model = rng.random(p)
    res = permutation_test(data, model, "spearman", n_permutations=200, seed=2)
    false_positives = int((res.p_values[:, 0] <= 0.05).sum())
    lo, hi = binom.ppf([0.005, 0.995], n_data, 0.05)
    assert lo <= false_positives <= hi
    # a true effect is detected
    signal = permutation_test(
        model + 0.1 * rng.random(p), model, "spearman", n_permutations=200, seed=2
    )
    assert signal.p_values[0, 0] == pytest.approx(1 / 201)


def test_resampling_on_device_equals_cpu(device, rdms):
    data, models = rdms
    td, tm = torch.from_numpy(data).to(device), torch.from_numpy(models).to(device)
    cpu = permutation_test(data, models, "spearman", n_permutations=20, seed=0)
    dev = permutation_test(td, tm, "spearman", n_permutations=20, seed=0)
    np.testing.assert_allclose(dev.null, cpu.null, atol=1e-12)
    cpu_b = bootstrap(data, models, "spearman", n_bootstraps=10, seed=0)
    dev_b = bootstrap(td, tm, "spearman", n_bootstraps=10, seed=0)
    np.testing.assert_allclose(dev_b.evaluations, cpu_b.evaluations, atol=1e-12)


def test_pairwise_tests_equal_rsatoolbox(rng):
    ev = rng.random((60, 4))
    ev[:, 1] = ev[:, 0]  # ties between two models
    ref = quiet(bootstrap_pair_tests, ev)  # 0/0 for the tied pair: NaN in both
    np.testing.assert_allclose(pairwise_bootstrap_tests(ev), ref, atol=1e-15)


def test_corrections(rng):
    p = rng.random(12) ** 3
    np.testing.assert_allclose(correct_pvalues(p, "bonferroni"), np.minimum(p * 12, 1))
    np.testing.assert_allclose(correct_pvalues(p, "fdr_bh"), false_discovery_control(p))
    # Holm by its definition: step down through the sorted p-values
    order = np.argsort(p)
    holm = np.empty(12)
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, (12 - rank) * p[k])
        holm[k] = min(running, 1.0)
    np.testing.assert_allclose(correct_pvalues(p, "holm"), holm)
    np.testing.assert_array_equal(correct_pvalues(p, None), p)
    with_nan = np.array([0.01, np.nan, 0.04])
    np.testing.assert_allclose(correct_pvalues(with_nan, "bonferroni"), [0.02, np.nan, 0.08])
    with pytest.raises(ValueError, match=r"'method' parameter.*'holm'"):
        correct_pvalues(p, "hochberg")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        correct_pvalues([0.5, 1.5])


def test_compare_models(rdms, rng):
    data, models = rdms
    models[0] = data.mean(0) + 0.01 * rng.random(data.shape[1])  # a clearly better model
    res = compare_models(data, models, "spearman", n_bootstraps=100, seed=0, correction="holm")
    assert res.p_values.shape == res.p_corrected.shape == (3, 3)
    np.testing.assert_array_equal(res.p_values, res.p_values.T)
    np.testing.assert_array_equal(np.diag(res.p_corrected), 1.0)
    assert res.significant[0, 1]
    assert res.significant[0, 2]
    assert not res.significant.diagonal().any()
    np.testing.assert_allclose(
        res.difference, res.bootstrap.estimate[:, None] - res.bootstrap.estimate[None, :]
    )
    iu = np.triu_indices(3, 1)
    np.testing.assert_allclose(res.p_corrected[iu], correct_pvalues(res.p_values[iu], "holm"))


def test_bad_inputs(rdms):
    data, models = rdms
    with pytest.raises(ValueError, match="'alternative' parameter"):
        permutation_test(data, models, alternative="bigger")
    with pytest.raises(ValueError, match="'n_permutations' must be positive"):
        permutation_test(data, models, n_permutations=0)
    with pytest.raises(ValueError, match="describe the same stimuli"):
        permutation_test(data, models[:, :45])
    with pytest.raises(ValueError, match="'over' parameter"):
        bootstrap(data, models, over="trials")
    with pytest.raises(ValueError, match=r"'stimulus_draws' must be an integer array"):
        bootstrap(data, models, stimulus_draws=np.full((3, N_STIM), N_STIM))
    with pytest.raises(ValueError, match="needs several data RDMs"):
        bootstrap(data[0], models, over="subjects")
    with pytest.raises(ValueError, match="'confidence' must be in"):
        bootstrap(data, models, confidence=95)
    with pytest.raises(ValueError, match="at least 2 subjects"):
        noise_ceiling(data[:1])
    with pytest.raises(ValueError, match="'correction' parameter"):
        compare_models(data, models, correction="sidak")
