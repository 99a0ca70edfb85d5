"""Dual bootstrap: the variance of a model evaluation when both subjects and stimuli are sampled.

To generalise to new subjects *and* new stimuli, both are resampled. The variance of the
evaluations in a bootstrap over both at once overestimates the variance of the evaluation: each
bootstrap adds a second helping of the variance caused by the other factor's sampling (Schütt et
al. 2023, "Statistical inference on representational geometries", eLife 12). On the same
draws, the evaluations are also computed with only the subjects resampled and with only the
stimuli resampled, and the three (co)variances are combined into the corrected estimate
``var = a_S var_S + a_P var_P - a_S a_P (var_SP - var_S - var_P)``, ``a_S = n_S / (n_S - 1)``,
``a_P = n_P / (n_P - 1)``, with ``var_SP``, ``var_S`` and ``var_P`` the variances in the
bootstraps of both, of the subjects (``n_S`` of them) and of the stimuli (``n_P``), kept between
``max(a_S var_S, a_P var_P)`` and ``var_SP``. The same combination gives
the variances of the differences between models and between a model and the noise ceiling, from
which t-tests with ``min(n_S, n_P) - 1`` degrees of freedom follow. This is what rsatoolbox's
``eval_dual_bootstrap`` and its ``Result`` compute for fixed models (equal to 1e-12 on the same
draws); here the three bootstraps share one pass over the draws (the stimulus bootstrap's
per-subject values, re-weighted by the subject draws), and the tests and intervals are centred on
the evaluation of the full data rather than on the mean of the three bootstraps' evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats
import torch

from brainalign._utils.seeding import check_random_state
from brainalign._utils.validation import check_option
from brainalign.rsa._backend import target_device, threads_for
from brainalign.rsa.ceiling import _ceilings, pool_rdms
from brainalign.rsa.compare import COMPARE_METHODS, as_rdm_vectors, compare_rdms
from brainalign.rsa.condensed import n_stimuli_from_pairs
from brainalign.rsa.inference import (
    _check_same_pairs,
    _draws,
    _resampled,
    _stimulus_bootstrap,
)

__all__ = ["DUAL_SCHEMES", "DualBootstrapResult", "corrected_variance", "dual_bootstrap"]

#: The three bootstraps on the same draws, in the order of ``DualBootstrapResult.evaluations``.
DUAL_SCHEMES = ("both", "subjects", "stimuli")


@dataclass(frozen=True)
class DualBootstrapResult:
    """Result of :func:`dual_bootstrap` (NumPy arrays, models in input order).

    Attributes
    ----------
    estimate : (n_models,) array
        Mean over subjects of the comparison on the full data.
    evaluations : (3, n_bootstraps, n_models) array
        The same on each draw, resampling both subjects and stimuli, only the subjects, and only
        the stimuli (:data:`DUAL_SCHEMES`). NaN for draws of fewer than 3 distinct stimuli.
    variance : (n_models,) array
        Corrected variance of each model's evaluation.
    se : (n_models,) array
        ``sqrt(variance)``.
    ci : (2, n_models) array
        t interval ``estimate -/+ t_{dof}((1 + confidence) / 2) se``.
    difference_variance : (n_models, n_models) array
        Corrected variance of each difference ``evaluation[i] - evaluation[j]`` (0 on the diagonal).
    p_zero : (n_models,) array
        One-sided t-test of ``estimate > 0``.
    p_pairwise : (n_models, n_models) array
        Two-sided t-tests of every difference between models (1 on the diagonal).
    noise_ceiling : (2,) array or None
        Lower and upper noise ceiling of the full data (``ceiling=True``).
    noise_ceilings : (3, n_bootstraps, 2) array or None
        Lower and upper noise ceiling on each draw of each scheme (NaN where a draw holds one
        distinct subject: no leave-one-subject-out bound).
    ceiling_variance : (n_models, 2) array or None
        Corrected variance of ``evaluation - lower`` and ``evaluation - upper`` ceiling.
    p_noise_ceiling : (n_models,) array or None
        Two-sided t-test of each model against the lower noise ceiling.
    dof : int
        ``min(n_subjects, n_stimuli) - 1``.
    n_subjects, n_stimuli : int
    confidence : float
    """

    estimate: np.ndarray
    evaluations: np.ndarray
    variance: np.ndarray
    se: np.ndarray
    ci: np.ndarray
    difference_variance: np.ndarray
    p_zero: np.ndarray
    p_pairwise: np.ndarray
    noise_ceiling: np.ndarray | None
    noise_ceilings: np.ndarray | None
    ceiling_variance: np.ndarray | None
    p_noise_ceiling: np.ndarray | None
    dof: int
    n_subjects: int
    n_stimuli: int
    confidence: float


def dual_bootstrap(
    data_rdms: Any,
    model_rdms: Any,
    method: str = "spearman",
    *,
    n_bootstraps: int = 1000,
    confidence: float = 0.95,
    ceiling: bool = True,
    seed: int | np.random.Generator | None = None,
    stimulus_draws: Any = None,
    subject_draws: Any = None,
    device: Any = "auto",
) -> DualBootstrapResult:
    """Evaluate models with the corrected variance of a bootstrap over subjects and stimuli.

    Parameters
    ----------
    data_rdms : array or tensor, (n_subjects, n_pairs) or squares
        One RDM per subject; at least 2 subjects.
    model_rdms : array or tensor, (n_models, n_pairs) or squares
    method : str
        Comparison method of :func:`~brainalign.rsa.compare_rdms`.
    n_bootstraps : int
        Number of draws (ignored when draws are given).
    confidence : float
        Level of the t intervals.
    ceiling : bool
        Also bootstrap the noise ceiling and test each model against its lower bound.
    seed : int, Generator or None
        Seed of the draws.
    stimulus_draws : array-like of int, (n_bootstraps, n_stimuli), optional
        Explicit stimulus indices of every draw.
    subject_draws : array-like of int, (n_bootstraps, n_subjects), optional
        Explicit subject indices of every draw (the same number of draws).
    device : str or torch.device
        Where to compute.

    Returns
    -------
    DualBootstrapResult
        See the module docstring for the correction.
    """
    check_option("method", method, COMPARE_METHODS)
    if not 0 < confidence < 1:
        raise ValueError(f"'confidence' must be in (0, 1), got {confidence}.")
    dev = target_device(device, data_rdms, model_rdms)
    data = as_rdm_vectors(data_rdms, "data_rdms", device=dev).to(torch.float64)
    models = as_rdm_vectors(model_rdms, "model_rdms", device=dev).to(torch.float64)
    _check_same_pairs(data, models)
    n = n_stimuli_from_pairs(data.shape[1], "data_rdms")
    n_subjects = data.shape[0]
    if n_subjects < 2 or n < 3:
        raise ValueError(
            "The dual bootstrap needs at least 2 subjects' RDMs and 3 stimuli, got "
            f"{n_subjects} RDMs of {n} stimuli; with one subject use bootstrap(over='stimuli')."
        )
    rng = check_random_state(seed)
    stim, subj = _draws("both", n_bootstraps, n, n_subjects, rng, stimulus_draws, subject_draws)
    if stim is None or subj is None:  # pragma: no cover - over="both" draws both
        raise RuntimeError("the dual bootstrap needs stimulus and subject draws")
    counts = np.stack([np.bincount(row, minlength=n_subjects) for row in subj])
    valid = np.array([np.unique(row).size >= 3 for row in stim])

    with threads_for((n_subjects + models.shape[0]) * data.shape[1], dev):
        full = compare_rdms(data, models, method).to(torch.float64).cpu().numpy()
        per_subject = _stimulus_bootstrap(data, models, method, stim, n).cpu().numpy()
        weights = counts / n_subjects
        evaluations = np.stack(
            [
                np.einsum("bs,bsm->bm", weights, per_subject),  # both
                weights @ full,  # subjects
                per_subject.mean(axis=1),  # stimuli
            ]
        )
        evaluations[:, ~valid] = np.nan
        ceilings = nc_full = None
        if ceiling:
            ceilings = _bootstrap_ceilings(data, method, stim, counts, valid, n)
            nc_full = np.array(_weighted_ceiling(data, np.ones(n_subjects), method))

    estimate = full.mean(axis=0)
    return _summarise(estimate, evaluations, ceilings, nc_full, valid, n_subjects, n, confidence)


def corrected_variance(
    both: Any, subjects: Any, stimuli: Any, n_subjects: int, n_stimuli: int
) -> np.ndarray:
    """Variance of an evaluation from its variances in the three bootstraps of the same draws.

    Parameters
    ----------
    both, subjects, stimuli : array-like, the same shape
        Variances across the draws of the bootstrap of both factors, of the subjects only, and
        of the stimuli only.
    n_subjects, n_stimuli : int
        Numbers of subjects and stimuli of the data (at least 2 each).

    Returns
    -------
    variance : array, the same shape
        ``a_S subjects + a_P stimuli - a_S a_P (both - subjects - stimuli)`` with
        ``a = n / (n - 1)``, clipped to ``[max(a_S subjects, a_P stimuli), both]``.
    """
    v_sp, v_s, v_p = (np.asarray(v, dtype=np.float64) for v in (both, subjects, stimuli))
    if n_subjects < 2 or n_stimuli < 2:
        raise ValueError(
            f"'n_subjects' and 'n_stimuli' must be at least 2, got {n_subjects} and {n_stimuli}."
        )
    a_s = n_subjects / (n_subjects - 1)
    a_p = n_stimuli / (n_stimuli - 1)
    variance = a_s * v_s + a_p * v_p - a_s * a_p * (v_sp - v_s - v_p)
    variance = np.maximum(np.maximum(variance, a_s * v_s), a_p * v_p)
    return np.minimum(variance, v_sp)


# ---------------------------------------------------------------------------------------------
# noise ceilings of the draws


def _weighted_ceiling(v: torch.Tensor, weights: np.ndarray, method: str) -> tuple[float, float]:
    """Noise ceiling of subjects' RDMs ``v`` (n_subjects, n_pairs; NaN at the same pairs in
    all) with subject ``weights`` (draw counts): the pooled RDMs are weighted means, the bounds
    unweighted means over the subjects present (rsatoolbox's leave-one-out over a sample with
    repeated subjects)."""
    present = np.flatnonzero(weights > 0)
    x = v[torch.from_numpy(present).to(v.device)]
    if present.size < 2:  # nobody left to pool when the one subject is left out
        pooled = pool_rdms(x, method).mean(dim=0)
        return float("nan"), float(compare_rdms(pooled, x, method)[0].mean())
    w = torch.from_numpy(weights[present].astype(np.float64))
    lower, upper = _ceilings(x, method, w)
    return float(lower.to(torch.float64).mean()), float(upper.to(torch.float64).mean())


def _bootstrap_ceilings(
    data: torch.Tensor,
    method: str,
    stim: np.ndarray,
    counts: np.ndarray,
    valid: np.ndarray,
    n: int,
) -> np.ndarray:
    """Lower and upper noise ceilings on every draw of every scheme, (3, n_bootstraps, 2)."""
    out = np.full((3, stim.shape[0], 2), np.nan)
    ones = np.ones(data.shape[0])
    for k in np.flatnonzero(valid):
        resampled = _resampled(data, data[:0], stim[k], n)[0]
        out[0, k] = _weighted_ceiling(resampled, counts[k], method)
        out[1, k] = _weighted_ceiling(data, counts[k], method)
        out[2, k] = _weighted_ceiling(resampled, ones, method)
    return out


# ---------------------------------------------------------------------------------------------
# variances and tests


def _covariances(x: np.ndarray) -> np.ndarray:
    """Covariance over the draws of each scheme: x (3, n_draws, k) -> (3, k, k)."""
    centred = x - x.mean(axis=1, keepdims=True)
    return np.einsum("sdi,sdj->sij", centred, centred) / (x.shape[1] - 1)


def _summarise(
    estimate: np.ndarray,
    evaluations: np.ndarray,
    ceilings: np.ndarray | None,
    nc_full: np.ndarray | None,
    valid: np.ndarray,
    n_subjects: int,
    n_stimuli: int,
    confidence: float,
) -> DualBootstrapResult:
    """Corrected variances, intervals and t-tests from the three bootstraps' evaluations."""
    n_models = estimate.size
    if valid.sum() < 2:
        raise ValueError(
            f"Only {int(valid.sum())} of the {valid.size} draws hold 3 or more distinct stimuli: "
            "a variance needs at least 2. Use more draws or more stimuli."
        )
    cov = _covariances(evaluations[:, valid])  # (3, n_models, n_models)
    diag = np.einsum("sii->si", cov)
    variance = corrected_variance(diag[0], diag[1], diag[2], n_subjects, n_stimuli)
    diff = diag[:, :, None] + diag[:, None, :] - 2 * cov
    difference_variance = corrected_variance(diff[0], diff[1], diff[2], n_subjects, n_stimuli)
    dof = min(n_subjects, n_stimuli) - 1
    se = np.sqrt(np.maximum(variance, 0))
    t_crit = scipy.stats.t.ppf((1 + confidence) / 2, dof)
    ci = np.stack([estimate - t_crit * se, estimate + t_crit * se])
    p_zero, p_pairwise = _t_tests(estimate, variance, difference_variance, dof)
    ceiling_variance = p_noise = None
    if ceilings is not None and nc_full is not None:
        # draws where every scheme has both bounds (a draw of one distinct subject has no lower)
        ok = valid & np.isfinite(ceilings).all(axis=(0, 2))
        if ok.sum() >= 2:
            joint = _covariances(np.concatenate([evaluations[:, ok], ceilings[:, ok]], axis=2))
            jd = np.einsum("sii->si", joint)
            between = (
                jd[:, :n_models, None] + jd[:, None, n_models:] - 2 * joint[:, :n_models, n_models:]
            )  # (3, n_models, 2): variance of evaluation - bound
            ceiling_variance = corrected_variance(
                between[0], between[1], between[2], n_subjects, n_stimuli
            )
            p_noise = _t_p(estimate - nc_full[0], ceiling_variance[:, 0], dof, two_sided=True)
        else:
            ceiling_variance = np.full((n_models, 2), np.nan)
            p_noise = np.full(n_models, np.nan)
    return DualBootstrapResult(
        estimate=estimate,
        evaluations=evaluations,
        variance=variance,
        se=se,
        ci=ci,
        difference_variance=difference_variance,
        p_zero=p_zero,
        p_pairwise=p_pairwise,
        noise_ceiling=nc_full,
        noise_ceilings=ceilings,
        ceiling_variance=ceiling_variance,
        p_noise_ceiling=p_noise,
        dof=dof,
        n_subjects=n_subjects,
        n_stimuli=n_stimuli,
        confidence=confidence,
    )


def _t_p(value: np.ndarray, variance: np.ndarray, dof: int, *, two_sided: bool) -> np.ndarray:
    """p-value of ``value / sqrt(variance)`` under a t distribution (variances floored at eps,
    as rsatoolbox)."""
    t = value / np.sqrt(np.maximum(variance, np.finfo(float).eps))
    if two_sided:
        return 2 * scipy.stats.t.sf(np.abs(t), dof)
    return scipy.stats.t.sf(t, dof)


def _t_tests(
    center: np.ndarray, variance: np.ndarray, difference_variance: np.ndarray, dof: int
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided tests of ``center > 0`` (n_models,) and two-sided tests of every difference
    (n_models, n_models), 1 on the diagonal."""
    p_zero = _t_p(center, variance, dof, two_sided=False)
    p_pairwise = _t_p(center[:, None] - center[None, :], difference_variance, dof, two_sided=True)
    np.fill_diagonal(p_pairwise, 1.0)
    return p_zero, p_pairwise
