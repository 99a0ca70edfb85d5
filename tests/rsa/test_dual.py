"""Dual bootstrap: rsatoolbox's eval_dual_bootstrap on the same draws, and the three schemes
against the single bootstraps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from brainalign.rsa import (
    bootstrap,
    compare_models,
    corrected_variance,
    dual_bootstrap,
    noise_ceiling,
)
from brainalign.rsa.dual import _t_p, _t_tests

rsatoolbox = pytest.importorskip("rsatoolbox")
import rsatoolbox.inference.evaluate as rsa_evaluate  # noqa: E402
from rsatoolbox.model import ModelFixed  # noqa: E402
from rsatoolbox.rdm import RDMs  # noqa: E402
from rsatoolbox.util.inference_util import _dual_bootstrap  # noqa: E402

N_STIM, N_SUBJ = 11, 6
N_PAIRS = N_STIM * (N_STIM - 1) // 2


@pytest.fixture
def rdms(rng):
    data = rng.random((N_SUBJ, N_PAIRS))
    models = rng.random((3, N_PAIRS))
    models[2] = np.round(models[2] * 3)  # ties
    return data, models


def rsatoolbox_dual(data, models, method, n_boot, monkeypatch):
    """rsatoolbox's eval_dual_bootstrap and the draws it made (subjects, stimuli)."""
    recorded = []
    original = rsa_evaluate.bootstrap_sample

    def recorder(*args, **kwargs):
        out = original(*args, **kwargs)
        recorded.append((out[1].copy(), out[2].copy()))
        return out

    monkeypatch.setattr(rsa_evaluate, "bootstrap_sample", recorder)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    mods = [ModelFixed(f"m{k}", RDMs(models[k : k + 1])) for k in range(models.shape[0])]
    np.random.seed(1)  # noqa: NPY002 - rsatoolbox draws from numpy's global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = rsa_evaluate.eval_dual_bootstrap(mods, RDMs(data), method=method, N=n_boot)
    subjects = np.stack([r[0] for r in recorded])
    stimuli = np.stack([r[1] for r in recorded])
    return result, subjects, stimuli


@pytest.mark.parametrize("method", ["spearman", "corr", "tau-a"])
def test_dual_bootstrap_equals_rsatoolbox(rdms, method, monkeypatch):
    data, models = rdms
    ref, subjects, stimuli = rsatoolbox_dual(data, models, method, 30, monkeypatch)
    ours = dual_bootstrap(data, models, method, stimulus_draws=stimuli, subject_draws=subjects)
    tol = {"rtol": 0, "atol": 1e-10}
    # the three bootstraps' evaluations and noise ceilings, draw by draw
    ref_ev = ref.evaluations[:, :, 0, 0, :].transpose(2, 0, 1)  # (scheme, draw, model)
    np.testing.assert_allclose(ours.evaluations, ref_ev, **tol)
    ref_nc = ref.noise_ceiling[:, :, 0, :].transpose(2, 1, 0)  # (scheme, draw, bound)
    np.testing.assert_allclose(ours.noise_ceilings, ref_nc, **tol)
    # the corrected variances
    np.testing.assert_allclose(ours.variance, ref.model_var, **tol)
    iu = np.triu_indices(3, 1)  # rsatoolbox's pair order
    np.testing.assert_allclose(ours.difference_variance[iu], ref.diff_var, **tol)
    np.testing.assert_allclose(ours.difference_variance, ours.difference_variance.T)
    np.testing.assert_allclose(np.diag(ours.difference_variance), 0, atol=1e-15)
    np.testing.assert_allclose(ours.ceiling_variance, ref.noise_ceil_var, **tol)
    np.testing.assert_allclose(ours.se, ref.get_sem(), **tol)
    assert ours.dof == ref.dof == min(N_SUBJ, N_STIM) - 1
    # the tests and intervals, centred (as rsatoolbox's) on the mean of the bootstraps
    means = ref.get_means()
    p_zero, p_pairwise = _t_tests(means, ours.variance, ours.difference_variance, ours.dof)
    np.testing.assert_allclose(p_zero, ref.test_zero(), **tol)
    np.testing.assert_allclose(p_pairwise, ref.test_pairwise(), **tol)
    nc = np.nanmean(ref.noise_ceiling[0])
    p_noise = _t_p(means - nc, ours.ceiling_variance[:, 0], ours.dof, two_sided=True)
    np.testing.assert_allclose(p_noise, ref.test_noise(), **tol)
    t_crit = scipy.stats.t.ppf(0.975, ours.dof)
    np.testing.assert_allclose(
        np.stack([means - t_crit * ours.se, means + t_crit * ours.se]), ref.get_ci(0.95), **tol
    )
    # ours: centred on the full data's evaluation and noise ceiling
    full = dual_bootstrap(data, models, method, stimulus_draws=stimuli, subject_draws=subjects)
    np.testing.assert_allclose(full.ci, full.estimate + np.outer([-t_crit, t_crit], full.se))
    nc_full = noise_ceiling(data, method)
    np.testing.assert_allclose(full.noise_ceiling, [nc_full.lower, nc_full.upper], atol=1e-12)
    np.testing.assert_allclose(
        full.p_zero, scipy.stats.t.sf(full.estimate / full.se, full.dof), atol=1e-12
    )


def test_corrected_variance_equals_rsatoolbox_formula(rng):
    v = rng.random((3, 50)) * np.array([[2.0], [1.0], [1.0]])  # both, subjects, stimuli
    v[0, :10] = 0.01  # the clip at the variance of both
    v[1, 10:20] = 5.0  # the clip at the subject term
    ours = corrected_variance(v[0], v[1], v[2], 7, 40)
    np.testing.assert_allclose(ours, _dual_bootstrap(v, n_rdm=7, n_pattern=40), atol=1e-15)
    with pytest.raises(ValueError, match="at least 2"):
        corrected_variance(1.0, 1.0, 1.0, 1, 40)


def test_schemes_equal_the_single_bootstraps_on_the_same_draws(rdms, rng):
    data, models = rdms
    stim = rng.integers(0, N_STIM, size=(25, N_STIM))
    subj = rng.integers(0, N_SUBJ, size=(25, N_SUBJ))
    stim[3] = 0  # one distinct stimulus: an invalid draw in every scheme
    dual = dual_bootstrap(data, models, "spearman", stimulus_draws=stim, subject_draws=subj)
    both = bootstrap(data, models, "spearman", over="both", stimulus_draws=stim, subject_draws=subj)
    subjects = bootstrap(data, models, "spearman", over="subjects", subject_draws=subj)
    stimuli = bootstrap(data, models, "spearman", stimulus_draws=stim)
    np.testing.assert_allclose(dual.evaluations[0], both.evaluations, atol=1e-14)
    np.testing.assert_allclose(dual.evaluations[2], stimuli.evaluations, atol=1e-14)
    valid = np.arange(25) != 3
    np.testing.assert_allclose(dual.evaluations[1, valid], subjects.evaluations[valid], atol=1e-14)
    assert np.isnan(dual.evaluations[:, 3]).all()
    np.testing.assert_allclose(dual.estimate, both.estimate, atol=1e-15)
    # the correction never exceeds the variance of the bootstrap of both
    assert np.all(dual.variance <= np.nanvar(dual.evaluations[0], axis=0, ddof=1) + 1e-15)


def test_seeded_draws_torch_inputs_and_untouched_inputs(rdms):
    data, models = rdms
    data.setflags(write=False)  # a write into an input raises
    first = dual_bootstrap(data, models, "corr", n_bootstraps=20, seed=3, ceiling=False)
    again = dual_bootstrap(
        torch.from_numpy(data), torch.from_numpy(models), "corr", n_bootstraps=20, seed=3
    )
    np.testing.assert_allclose(again.evaluations, first.evaluations, atol=1e-14)
    np.testing.assert_allclose(again.variance, first.variance, atol=1e-14)
    assert first.noise_ceilings is None
    assert first.p_noise_ceiling is None
    assert again.noise_ceilings.shape == (3, 20, 2)
    assert first.evaluations.shape == (3, 20, 3)
    assert first.p_pairwise.shape == (3, 3)
    assert np.all(np.diag(first.p_pairwise) == 1)


def test_draws_of_one_distinct_subject_leave_the_lower_ceiling_out(rng):
    data, models = rng.random((2, N_PAIRS)), rng.random((2, N_PAIRS))
    subj = np.array([[0, 0], [0, 1], [1, 1], [1, 0]] * 3)
    stim = rng.integers(0, N_STIM, size=(12, N_STIM))
    dual = dual_bootstrap(data, models, "spearman", stimulus_draws=stim, subject_draws=subj)
    lower_both = dual.noise_ceilings[0, :, 0]
    assert np.isnan(lower_both[::4]).all()
    assert np.isnan(lower_both[2::4]).all()
    assert np.isfinite(dual.ceiling_variance).all()
    assert np.isfinite(dual.p_noise_ceiling).all()


def test_compare_models_over_dual_uses_the_corrected_t_tests(rng):
    n_pairs = 30 * 29 // 2
    truth = rng.random(n_pairs)
    data = truth + 0.3 * rng.standard_normal((N_SUBJ, n_pairs))
    models = rng.random((3, n_pairs))
    models[1] = truth  # the generating model
    comparison = compare_models(data, models, "spearman", over="dual", n_bootstraps=60, seed=0)
    dual = dual_bootstrap(data, models, "spearman", n_bootstraps=60, seed=0, ceiling=False)
    np.testing.assert_array_equal(comparison.p_values, dual.p_pairwise)
    np.testing.assert_array_equal(comparison.bootstrap.ci, dual.ci)
    np.testing.assert_array_equal(comparison.bootstrap.se, dual.se)
    assert comparison.bootstrap.over == "dual"
    assert comparison.significant[1, 0]
    assert comparison.significant[1, 2]
    assert not comparison.significant[0, 2]


def test_bad_inputs(rdms):
    data, models = rdms
    with pytest.raises(ValueError, match="at least 2 subjects"):
        dual_bootstrap(data[:1], models)
    with pytest.raises(ValueError, match="'confidence'"):
        dual_bootstrap(data, models, confidence=1.5)
    with pytest.raises(ValueError, match="'subject_draws'"):
        dual_bootstrap(data, models, subject_draws=np.full((5, N_SUBJ), N_SUBJ))
    with pytest.raises(ValueError, match="'over'"):
        compare_models(data, models, over="dually")
    stim = np.zeros((4, N_STIM), dtype=int)  # no draw with 3 distinct stimuli
    with pytest.raises(ValueError, match="3 or more distinct stimuli"):
        dual_bootstrap(data, models, stimulus_draws=stim, subject_draws=np.zeros((4, N_SUBJ), int))
