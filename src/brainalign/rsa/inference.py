"""Inference on RDM comparisons: permutation tests, bootstrap, pairwise model comparisons.

Both resampling schemes avoid recomputing what does not change:

* **Permutation of stimulus labels.** A permutation only reorders the entries of a data RDM, so
  each RDM is transformed once (centred and normalised; for Spearman ranked; for the whitened
  methods double-centred) and every null statistic is a gather of the transformed data vector
  followed by one matrix product with all model RDMs, for a batch of permutations at once.
* **Bootstrap of stimuli.** A bootstrap sample of ``n`` stimuli drawn with replacement contains
  the original pair ``(a, b)`` ``m_a * m_b`` times (``m`` = draw counts) and drops pairs of a
  stimulus with its own copy (rsatoolbox's convention). The comparisons are therefore weighted
  comparisons of the original vectors; for Spearman the average ranks of the sample follow from
  one sort per RDM (done once) and cumulative sums of the weights in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from brainalign._utils.seeding import check_random_state
from brainalign._utils.validation import check_option, check_positive
from brainalign.rsa._backend import matmul, target_device, threads_for
from brainalign.rsa._ranks import rankdata, sort_info
from brainalign.rsa.compare import (
    COMPARE_METHODS,
    _whiten,
    as_rdm_vectors,
    compare_rdms,
    has_nan,
)
from brainalign.rsa.condensed import condensed_index, n_stimuli_from_pairs, pair_indices
from brainalign.rsa.correction import CORRECTIONS, correct_pvalues

__all__ = [
    "ALTERNATIVES",
    "BOOTSTRAP_OVER",
    "COMPARE_OVER",
    "BootstrapResult",
    "ModelComparison",
    "PermutationResult",
    "bootstrap",
    "compare_models",
    "pairwise_bootstrap_tests",
    "permutation_test",
]

#: Accepted values of ``alternative``.
ALTERNATIVES = ("greater", "less", "two-sided")
#: Accepted values of ``over`` in :func:`bootstrap`.
BOOTSTRAP_OVER = ("stimuli", "subjects", "both")
#: Accepted values of ``over`` in :func:`compare_models`: also the dual bootstrap's t-tests.
COMPARE_OVER = (*BOOTSTRAP_OVER, "dual")
#: Methods whose permutation and bootstrap nulls use the fast (transform once) path.
_LINEAR = ("cosine", "corr", "spearman", "rho-a", "cosine_cov", "corr_cov")
_WEIGHTED = ("cosine", "corr", "spearman", "rho-a")
#: Values per batch of resamples (bounds temporary memory to a few hundred MB).
_BATCH_ELEMENTS = 1 << 23


# ---------------------------------------------------------------------------------------------
# permutation test


@dataclass(frozen=True)
class PermutationResult:
    """Result of :func:`permutation_test` (NumPy arrays).

    Attributes
    ----------
    statistic : (n_data, n_models) array, or (n_models,) with ``average=True``
        The observed comparisons.
    p_values : same shape
        ``(1 + #{null at least as extreme}) / (1 + n_permutations)``: exact-valid p-values.
    null : (n_permutations, *statistic.shape) array
        The statistic under each permutation of the data RDMs' stimulus labels.
    alternative : str
    """

    statistic: np.ndarray
    p_values: np.ndarray
    null: np.ndarray
    alternative: str


def permutation_test(
    data_rdms: Any,
    model_rdms: Any,
    method: str = "spearman",
    *,
    n_permutations: int = 1000,
    alternative: str = "greater",
    average: bool = False,
    seed: int | np.random.Generator | None = None,
    device: Any = "auto",
) -> PermutationResult:
    """Test data-model RDM similarity against random relabellings of the stimuli.

    Parameters
    ----------
    data_rdms : array or tensor, (n_data, n_pairs), (n_pairs,) or squares
        E.g. one RDM per subject or region.
    model_rdms : array or tensor, (n_models, n_pairs), (n_pairs,) or squares
    method : str
        Comparison method of :func:`~brainalign.rsa.compare_rdms`. Cosine, correlation, Spearman,
        rho-a and the whitened methods (without ``sigma_k``) use the batched gather path; Kendall's
        tau recomputes each permuted comparison (still O(n log n) each).
    n_permutations : int
        Number of random permutations.
    alternative : {"greater", "less", "two-sided"}
        ``"two-sided"`` compares absolute values.
    average : bool
        Test the mean over data RDMs (e.g. subjects), permuting all of them with the same
        permutation, instead of each data RDM separately.
    seed : int, Generator or None
        Seed of the permutations.
    device : str or torch.device
        Where to compute.

    Returns
    -------
    PermutationResult
    """
    check_option("method", method, COMPARE_METHODS)
    check_option("alternative", alternative, ALTERNATIVES)
    check_positive("n_permutations", n_permutations)
    dev = target_device(device, data_rdms, model_rdms)
    data = as_rdm_vectors(data_rdms, "data_rdms", device=dev).to(torch.float64)
    models = as_rdm_vectors(model_rdms, "model_rdms", device=dev).to(torch.float64)
    _check_same_pairs(data, models)
    n = n_stimuli_from_pairs(data.shape[1], "data_rdms")
    rng = check_random_state(seed)
    with threads_for((data.shape[0] + models.shape[0]) * data.shape[1], dev):
        observed = compare_rdms(data, models, method).to(torch.float64)
        groups = [slice(None)] if average else None
        null = _null(data, models, method, n_permutations, rng, n, groups)
    if average:
        observed = observed.mean(dim=0)
        null = null[:, 0]
    obs = observed.cpu().numpy()
    nul = null.cpu().numpy()
    return PermutationResult(obs, _permutation_p(obs, nul, alternative), nul, alternative)


def _null(
    data: torch.Tensor,
    models: torch.Tensor,
    method: str,
    n_permutations: int,
    rng: np.random.Generator,
    n: int,
    groups: list[slice] | None = None,
) -> torch.Tensor:
    """Null statistics of every data RDM with every model, (n_permutations, n_data, n_models);
    with ``groups`` (slices of data rows) their mean over each group, (n_permutations, n_groups,
    n_models)."""
    dev = data.device
    i, j = pair_indices(n, dev)
    fast = method in _LINEAR and not (has_nan(data) or has_nan(models))
    reduced = False
    if fast:
        td, td_diag = _permutable(data, method, n)
        tm, tm_diag = _permutable(models, method, n)
        if groups is not None:
            # the statistic is linear in the transformed data vector: the mean of a group's
            # statistics is the statistic of the group's mean vector
            td = torch.stack([td[g].mean(dim=0) for g in groups])
            if td_diag is not None:
                td_diag = torch.stack([td_diag[g].mean(dim=0) for g in groups])
            reduced = True
        if dev.type == "cpu":
            return torch.from_numpy(
                _fast_null_numpy(td, td_diag, tm, tm_diag, rng, n_permutations, n)
            )
    n_rows = td.shape[0] if reduced else data.shape[0]
    null = torch.empty((n_permutations, n_rows, models.shape[0]), dtype=torch.float64, device=dev)
    batch = max(1, _BATCH_ELEMENTS // max(1, data.shape[1] * n_rows))
    for s in range(0, n_permutations, batch):
        e = min(s + batch, n_permutations)
        perm = torch.from_numpy(_permutations(rng, e - s, n)).to(dev)
        idx = condensed_index(perm[:, i], perm[:, j], n)  # (b, n_pairs)
        if fast:
            g = td[:, idx]  # (n_rows, b, n_pairs)
            stat = matmul(g, tm.T)  # (n_rows, b, n_models)
            if td_diag is not None and tm_diag is not None:
                stat = stat + matmul(td_diag[:, perm], tm_diag.T)
            null[s:e] = stat.transpose(0, 1)
        else:
            permuted = data[:, idx].reshape(-1, data.shape[1])
            null[s:e] = (
                compare_rdms(permuted, models, method)
                .reshape(data.shape[0], e - s, models.shape[0])
                .transpose(0, 1)
            )
    if groups is not None and not reduced:
        null = torch.stack([null[:, g].mean(dim=1) for g in groups], dim=1)
    return null


def _permutation_p(obs: np.ndarray, nul: np.ndarray, alternative: str) -> np.ndarray:
    """``(1 + #{null at least as extreme}) / (1 + n_permutations)``."""
    # tolerance: the permuted statistic is computed along another summation path than the
    # observed one, so equal values may differ in the last bits
    tol = 1e-12 * np.maximum(1.0, np.abs(obs))
    if alternative == "greater":
        hits = nul >= obs - tol
    elif alternative == "less":
        hits = nul <= obs + tol
    else:
        hits = np.abs(nul) >= np.abs(obs) - tol
    return (1 + hits.sum(axis=0)) / (1 + nul.shape[0])


def _permutations(rng: np.random.Generator, n_perm: int, n: int) -> np.ndarray:
    return np.argsort(rng.random((n_perm, n)), axis=1)


def _fast_null_numpy(
    td: torch.Tensor,
    td_diag: torch.Tensor | None,
    tm: torch.Tensor,
    tm_diag: torch.Tensor | None,
    rng: np.random.Generator,
    n_perm: int,
    n: int,
) -> np.ndarray:
    """Null statistics of the transformed vectors on the CPU, (n_perm, n_data, n_models).

    Permuting the data's stimuli by ``perm`` gives the same inner products as permuting the
    models' by its inverse: the smaller set is gathered (one gather per RDM and permutation, then
    one matrix product for a batch of permutations).
    """
    d, m = td.numpy(), tm.numpy()
    dd = None if td_diag is None else td_diag.numpy()
    md = None if tm_diag is None else tm_diag.numpy()
    n_data, n_models, n_pairs = d.shape[0], m.shape[0], d.shape[1]
    gather_models = n_models < n_data
    moving, fixed = (m, d) if gather_models else (d, m)
    moving_diag, fixed_diag = (md, dd) if gather_models else (dd, md)
    # condensed position of every ordered pair of stimuli (diagonal unused)
    iu, ju = np.triu_indices(n, 1)
    table = np.zeros((n, n), dtype=np.intp)
    table[iu, ju] = np.arange(n_pairs)
    table[ju, iu] = table[iu, ju]
    flat = table.ravel()
    null = np.empty((n_perm, n_data, n_models), dtype=np.float64)
    batch = max(1, _BATCH_ELEMENTS // max(1, n_pairs * moving.shape[0]))
    for s in range(0, n_perm, batch):
        e = min(s + batch, n_perm)
        perm = _permutations(rng, e - s, n)
        if gather_models:
            p = np.empty_like(perm)
            np.put_along_axis(p, perm, np.arange(n)[None], axis=1)  # inverse permutations
        else:
            p = perm
        idx = np.take(flat, p[:, iu] * n + p[:, ju])  # (b, n_pairs)
        g = np.take(moving, idx, axis=1).reshape(-1, n_pairs)  # (n_moving * b, n_pairs)
        stat = (g @ fixed.T).reshape(moving.shape[0], e - s, fixed.shape[0])
        if moving_diag is not None and fixed_diag is not None:
            gd = np.take(moving_diag, p, axis=1).reshape(-1, n)
            stat += (gd @ fixed_diag.T).reshape(stat.shape)
        # (b, n_data, n_models)
        null[s:e] = stat.transpose(1, 2, 0) if gather_models else stat.transpose(1, 0, 2)
    return null


def _check_same_pairs(data: torch.Tensor, models: torch.Tensor) -> None:
    if data.shape[1] != models.shape[1]:
        raise ValueError(
            f"'data_rdms' ({data.shape[1]} pairs) and 'model_rdms' ({models.shape[1]} pairs) must "
            "describe the same stimuli."
        )


def _permutable(
    v: torch.Tensor, method: str, n_cond: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unit vectors whose inner products give ``method``; diagonal part for whitened methods.

    Stimulus permutations act on them by a gather (off-diagonal pairs) and a permutation of the
    diagonal: every transform used here commutes with relabelling the stimuli.
    """
    diag = None
    if method in ("spearman", "rho-a"):
        v = rankdata(v).to(torch.float64)
    if method in ("corr", "spearman", "rho-a", "corr_cov"):
        v = v - v.mean(dim=1, keepdim=True)
    if method in ("cosine_cov", "corr_cov"):
        w = _whiten(v, None, n_cond)
        v, diag = w[:, : v.shape[1]], w[:, v.shape[1] :]
    if method == "rho-a":
        n = v.shape[1]
        return v * np.sqrt(12 / (n**3 - n)), None
    sq = (v * v).sum(dim=1, keepdim=True)
    if diag is not None:
        sq = sq + (diag * diag).sum(dim=1, keepdim=True)
    norm = torch.sqrt(sq)
    norm = torch.where(norm > 0, norm, torch.ones_like(norm))  # zero vectors stay zero: cosine 0
    return v / norm, (None if diag is None else diag / norm)


# ---------------------------------------------------------------------------------------------
# bootstrap


@dataclass(frozen=True)
class BootstrapResult:
    """Result of :func:`bootstrap` (NumPy arrays).

    Attributes
    ----------
    estimate : (n_models,) array
        Mean over data RDMs of the comparison on the full data.
    evaluations : (n_bootstraps, n_models) array
        The same on each bootstrap sample (NaN for stimulus samples with fewer than 3 distinct
        stimuli, as rsatoolbox).
    ci : (2, n_models) array
        Percentile confidence interval (lower, upper) of the evaluations (with
        ``over="dual"`` in :func:`compare_models`: the t interval of the corrected variance).
    se : (n_models,) array
        Bootstrap standard error (standard deviation of the evaluations; with ``over="dual"``
        the square root of the corrected variance).
    confidence : float
    over : str
    """

    estimate: np.ndarray
    evaluations: np.ndarray
    ci: np.ndarray
    se: np.ndarray
    confidence: float
    over: str


def bootstrap(
    data_rdms: Any,
    model_rdms: Any,
    method: str = "spearman",
    *,
    n_bootstraps: int = 1000,
    over: str = "stimuli",
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = None,
    stimulus_draws: Any = None,
    subject_draws: Any = None,
    device: Any = "auto",
) -> BootstrapResult:
    """Bootstrap distribution of the data-model comparison (mean over data RDMs).

    Parameters
    ----------
    data_rdms : array or tensor, (n_data, n_pairs) or squares
        One RDM per subject (or per measurement).
    model_rdms : array or tensor, (n_models, n_pairs) or squares
    method : str
        Comparison method. Cosine, correlation, Spearman and rho-a use weighted comparisons of
        the original vectors (no resampled RDM is built); the other methods compare explicitly
        resampled RDMs.
    n_bootstraps : int
        Number of bootstrap samples (ignored when draws are given).
    over : {"stimuli", "subjects", "both"}
        Resample stimuli (generalise to new stimuli; rsatoolbox's ``eval_bootstrap_pattern``),
        subjects (``eval_bootstrap_rdm``), or both independently.
    confidence : float
        Level of the percentile interval.
    seed : int, Generator or None
        Seed of the draws.
    stimulus_draws : array-like of int, (n_bootstraps, n_stimuli), optional
        Explicit stimulus indices of every sample (e.g. to share draws between calls).
    subject_draws : array-like of int, (n_bootstraps, n_data), optional
        Explicit data-RDM indices of every sample.
    device : str or torch.device
        Where to compute.

    Returns
    -------
    BootstrapResult
    """
    check_option("method", method, COMPARE_METHODS)
    check_option("over", over, BOOTSTRAP_OVER)
    if not 0 < confidence < 1:
        raise ValueError(f"'confidence' must be in (0, 1), got {confidence}.")
    dev = target_device(device, data_rdms, model_rdms)
    data = as_rdm_vectors(data_rdms, "data_rdms", device=dev).to(torch.float64)
    models = as_rdm_vectors(model_rdms, "model_rdms", device=dev).to(torch.float64)
    _check_same_pairs(data, models)
    n = n_stimuli_from_pairs(data.shape[1], "data_rdms")
    n_data = data.shape[0]
    rng = check_random_state(seed)
    stim, subj = _draws(over, n_bootstraps, n, n_data, rng, stimulus_draws, subject_draws)
    n_boot = next(d.shape[0] for d in (stim, subj) if d is not None)

    with threads_for((n_data + models.shape[0]) * data.shape[1], dev):
        full = compare_rdms(data, models, method).to(torch.float64)  # (n_data, n_models)
        if stim is None:
            per_data = full.expand(n_boot, -1, -1)
        else:
            per_data = _stimulus_bootstrap(data, models, method, stim, n)
        if subj is None:
            evaluations = per_data.mean(dim=1)
        else:
            counts = torch.from_numpy(
                np.stack([np.bincount(row, minlength=n_data) for row in subj])
            ).to(dev, torch.float64)
            evaluations = matmul(counts[:, None, :], per_data.contiguous())[:, 0] / n_data
    ev = evaluations.cpu().numpy()
    ci, se = _interval(ev, confidence)
    return BootstrapResult(full.mean(dim=0).cpu().numpy(), ev, ci, se, confidence, over)


def _interval(ev: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval (2, n_models) and standard error of evaluations (n_boot, n_models)."""
    alpha = (1 - confidence) / 2
    finite = np.isfinite(ev).any(axis=1)
    if finite.any():
        ci = np.nanpercentile(ev[finite], [100 * alpha, 100 * (1 - alpha)], axis=0)
        se = (
            np.nanstd(ev[finite], axis=0, ddof=1)
            if finite.sum() > 1
            else np.full(ev.shape[1], np.nan)
        )
    else:
        ci = np.full((2, ev.shape[1]), np.nan)
        se = np.full(ev.shape[1], np.nan)
    return ci, se


def _draws(
    over: str,
    n_boot: int,
    n: int,
    n_data: int,
    rng: np.random.Generator,
    stimulus_draws: Any,
    subject_draws: Any,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    stim = subj = None
    if over in ("stimuli", "both"):
        stim = _explicit(stimulus_draws, n, "stimulus_draws", "n_stimuli")
        if stim is None:
            check_positive("n_bootstraps", n_boot)
            stim = rng.integers(0, n, size=(n_boot, n))
    if over in ("subjects", "both"):
        if n_data < 2 and subject_draws is None:
            raise ValueError(
                f"Bootstrapping subjects needs several data RDMs, got {n_data}; use over='stimuli'."
            )
        subj = _explicit(subject_draws, n_data, "subject_draws", "n_data")
        if subj is None:
            check_positive("n_bootstraps", n_boot)
            rows = stim.shape[0] if stim is not None else n_boot
            subj = rng.integers(0, n_data, size=(rows, n_data))
    if stim is not None and subj is not None and stim.shape[0] != subj.shape[0]:
        raise ValueError(
            f"'stimulus_draws' has {stim.shape[0]} samples but 'subject_draws' {subj.shape[0]}."
        )
    return stim, subj


def _explicit(draws: Any, n: int, name: str, what: str) -> np.ndarray | None:
    if draws is None:
        return None
    arr = np.asarray(draws)
    if (
        arr.ndim != 2
        or arr.shape[0] < 1
        or arr.dtype.kind not in "iu"
        or arr.min() < 0
        or arr.max() >= n
    ):
        raise ValueError(
            f"{name!r} must be an integer array (n_bootstraps, {what}) of indices in [0, {n - 1}], "
            f"got shape {arr.shape} and dtype {arr.dtype}."
        )
    return arr.astype(np.int64)


def _stimulus_bootstrap(
    data: torch.Tensor, models: torch.Tensor, method: str, stim: np.ndarray, n: int
) -> torch.Tensor:
    """Comparison of every data RDM with every model on each stimulus sample, (n_boot, n_data,
    n_models)."""
    dev = data.device
    n_boot = stim.shape[0]
    counts = np.stack([np.bincount(row, minlength=n) for row in stim])  # (n_boot, n)
    valid = (counts > 0).sum(axis=1) >= 3
    out = torch.full(
        (n_boot, data.shape[0], models.shape[0]), float("nan"), dtype=torch.float64, device=dev
    )
    fast = method in _WEIGHTED and not (has_nan(data) or has_nan(models))
    if fast and dev.type == "cpu" and method in ("spearman", "rho-a"):
        out_np = np.full((n_boot, data.shape[0], models.shape[0]), np.nan)
        _weighted_rank_compare_numpy(
            data.numpy(), models.numpy(), method, counts, np.flatnonzero(valid), out_np
        )
        return torch.from_numpy(out_np)
    i, j = pair_indices(n, dev)
    both = torch.cat([data, models])
    info = sort_info(both) if method in ("spearman", "rho-a") else None
    n_pairs = data.shape[1]
    batch = max(1, _BATCH_ELEMENTS // max(1, n_pairs * both.shape[0]))
    rows = np.flatnonzero(valid)
    for s in range(0, rows.size, batch):
        r = rows[s : s + batch]
        if fast:
            m = torch.from_numpy(counts[r]).to(dev, torch.float64)
            w = m[:, i] * m[:, j]  # (b, n_pairs): multiplicity of each original pair
            out[torch.from_numpy(r).to(dev)] = _weighted_compare(
                both, w, method, info, data.shape[0]
            )
        else:
            for k in r:
                d, mo = _resampled(data, models, stim[k], n)
                out[int(k)] = compare_rdms(d, mo, method, nan_policy="common").to(torch.float64)
    return out


def _weighted_rank_compare_numpy(
    data: np.ndarray,
    models: np.ndarray,
    method: str,
    counts: np.ndarray,
    rows: np.ndarray,
    out: np.ndarray,
) -> None:
    """Spearman / rho-a of every data RDM with every model on the stimulus samples ``rows``
    (draw counts ``counts``), written into ``out[rows]`` (CPU, NumPy).

    Each RDM is sorted once. In a sample that repeats pair ``p`` ``w_p`` times, the average rank
    of ``p`` is ``(c[start] + c[end + 1] + 1) / 2`` with ``c`` the cumulative weights in the RDM's
    sorted order (with a leading 0) and ``start``/``end`` the sorted positions of ``p``'s tie
    group; without ties ``(2 c[pos + 1] - w_p + 1) / 2``. Twice the centred ranks are integers,
    computed exactly in integer arithmetic (and exact in float64); the factor 2 cancels exactly
    in the cosine. The RDMs are processed in chunks of about a million pairs that stay in cache.
    """
    n = counts.shape[1]
    n_data, n_models = data.shape[0], models.shape[0]
    n_pairs = data.shape[1]
    info = sort_info(torch.from_numpy(np.concatenate([data, models])))
    order, start, end = info.order.numpy(), info.start.numpy(), info.end.numpy()
    tied = info.tie_pairs.numpy() > 0
    # twice a rank is at most 2 W + 1 <= n^2 + 1
    idtype = np.int32 if n * n + 2 < 2**31 else np.int64
    per_chunk = max(1, (1 << 20) // max(1, n_pairs))

    def chunks(rdms: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, Any]]:
        """(rows, order, flat positions of c[end + 1], of c[start] or None) per chunk of rows
        with or without ties."""
        found = []
        for group in (rdms[~tied[rdms]], rdms[tied[rdms]]):
            for s in range(0, group.size, per_chunk):
                g = group[s : s + per_chunk]
                o = order[g]
                base = (np.arange(g.size) * (n_pairs + 1))[:, None]
                hi = np.empty_like(o)
                np.put_along_axis(hi, o, end[g] + 1 + base, axis=1)
                lo = None
                if tied[g[0]]:
                    lo = np.empty_like(o)
                    np.put_along_axis(lo, o, start[g] + base, axis=1)
                found.append((g, o, hi, lo))
        return found

    data_chunks = chunks(np.arange(n_data))
    model_chunks = chunks(np.arange(n_data, n_data + n_models))
    buffers: dict[int, np.ndarray] = {}

    def twice_centred(
        w: np.ndarray, w_total: np.ndarray, total: int, o: np.ndarray, hi: np.ndarray, lo: Any
    ) -> np.ndarray:
        c = buffers.get(o.shape[0])
        if c is None:
            c = buffers[o.shape[0]] = np.zeros((o.shape[0], n_pairs + 1), dtype=idtype)
        np.cumsum(np.take(w, o), axis=1, out=c[:, 1:])
        flat = c.reshape(-1)
        t = np.take(flat, hi)
        # twice the centred rank: (2 rank - 1) - W
        if lo is None:
            t *= 2
            return np.subtract(t, w_total, dtype=np.float64)  # 2 c[pos + 1] - w - W
        t += np.take(flat, lo)
        return np.subtract(t, total, dtype=np.float64)

    iu, ju = np.triu_indices(n, 1)
    xm = np.empty((n_models, n_pairs))
    sq_m = np.empty(n_models)
    num = np.empty((n_data, n_models))
    sq_d = np.empty(n_data)
    for k in rows:
        m = counts[k].astype(idtype)
        w = m[iu] * m[ju]  # multiplicity of each original pair in the sample
        total = int(w.sum(dtype=np.int64))  # sample size
        wf = w.astype(np.float64)
        w_total = w + idtype(total)
        for g, o, hi, lo in model_chunks:
            x = twice_centred(w, w_total, total, o, hi, lo)
            xm[g - n_data] = x
            sq_m[g - n_data] = np.einsum("rp,rp->r", x * wf, x)
        for g, o, hi, lo in data_chunks:
            x = twice_centred(w, w_total, total, o, hi, lo)
            xw = x * wf
            num[g] = xw @ xm.T
            sq_d[g] = np.einsum("rp,rp->r", xw, x)
        if method == "rho-a":
            tf = float(total)
            out[k] = num / 4 * 12 / (tf**3 - tf)
            continue
        na, nb = np.sqrt(sq_d), np.sqrt(sq_m)
        with np.errstate(divide="ignore", invalid="ignore"):
            val = num / na[:, None] / nb[None, :]
        val[~((na > 0)[:, None] & (nb > 0)[None, :])] = 0.0
        out[k] = val


def _weighted_compare(
    both: torch.Tensor, w: torch.Tensor, method: str, info: Any, n_data: int
) -> torch.Tensor:
    """Comparisons of the data rows with the model rows of ``both`` (n_rdms, n_pairs), each pair
    counted ``w[b, p]`` times: (n_b, n_data, n_models)."""
    total = w.sum(dim=1)  # sample size of each draw
    if method in ("spearman", "rho-a"):
        x = _weighted_ranks(w, info) - ((total + 1) / 2)[:, None, None]  # centred: mean (W+1)/2
    elif method == "corr":
        mean = matmul(w, both.T) / total[:, None]  # (b, n_rdms)
        x = both[None] - mean[:, :, None]
    else:
        x = both[None].expand(w.shape[0], -1, -1)
    xw = x * w[:, None, :]
    num = matmul(xw[:, :n_data], x[:, n_data:].transpose(1, 2))  # (b, n_data, n_models)
    if method == "rho-a":
        return num * 12 / (total**3 - total)[:, None, None]
    sq = (xw * x).sum(dim=2)  # (b, n_rdms)
    na, nb = torch.sqrt(sq[:, :n_data]), torch.sqrt(sq[:, n_data:])
    out = num / na[:, :, None] / nb[:, None, :]
    ok = (na > 0)[:, :, None] & (nb > 0)[:, None, :]
    return torch.where(ok, out, torch.zeros((), dtype=out.dtype, device=out.device))


def _weighted_ranks(w: torch.Tensor, info: Any) -> torch.Tensor:
    """Average ranks in the sample that repeats pair p ``w[b, p]`` times, at the original
    positions: (n_b, n_rdms, n_pairs)."""
    order = info.order  # (n_rdms, n_pairs)
    ws = w[:, order]  # weights in each RDM's sorted order, (b, n_rdms, n_pairs)
    c = ws.cumsum(dim=2)
    tied = info.start != info.end
    if bool(tied.any()):
        before = torch.where(
            info.start > 0,
            c.gather(2, (info.start - 1).clamp(min=0).expand_as(c)),
            torch.zeros((), dtype=c.dtype, device=c.device),
        )
        group = c.gather(2, info.end.expand_as(c)) - before
        ranks_sorted = before + (group + 1) / 2
    else:
        ranks_sorted = c - (ws - 1) / 2
    return torch.empty_like(ranks_sorted).scatter_(2, order.expand_as(ranks_sorted), ranks_sorted)


def _resampled(
    data: torch.Tensor, models: torch.Tensor, draw: np.ndarray, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit bootstrap RDMs (rsatoolbox's ``subsample_pattern``): sorted draw, NaN where a
    stimulus meets its own copy."""
    sel = torch.from_numpy(np.sort(draw)).to(data.device)
    i, j = pair_indices(sel.numel(), data.device)
    a, b = sel[i], sel[j]
    same = a == b
    idx = condensed_index(a, torch.where(same, (a + 1) % n, b), n)
    d = data[:, idx].clone()
    m = models[:, idx].clone()
    d[:, same] = float("nan")
    m[:, same] = float("nan")
    return d, m


# ---------------------------------------------------------------------------------------------
# pairwise model comparison


@dataclass(frozen=True)
class ModelComparison:
    """Result of :func:`compare_models` (NumPy arrays, models in input order).

    Attributes
    ----------
    bootstrap : BootstrapResult
    difference : (n_models, n_models) array
        ``estimate[i] - estimate[j]``.
    p_values : (n_models, n_models) array
        Two-sided bootstrap p-values of each difference (1 on the diagonal).
    p_corrected : (n_models, n_models) array
        Adjusted for the ``n_models (n_models - 1) / 2`` comparisons.
    significant : (n_models, n_models) bool array
        ``p_corrected < alpha``.
    correction : str or None
    alpha : float
    """

    bootstrap: BootstrapResult
    difference: np.ndarray
    p_values: np.ndarray
    p_corrected: np.ndarray
    significant: np.ndarray
    correction: str | None
    alpha: float


def pairwise_bootstrap_tests(evaluations: Any) -> np.ndarray:
    """Two-sided bootstrap p-values of every pairwise difference between models.

    rsatoolbox's ``bootstrap_pair_tests``: with ``q`` the fraction of samples (ties excluded) in
    which model i scores below model j, ``p = 2 min(q, 1 - q)``, shrunk as ``(N - 1)/N p + 1/N``.

    Parameters
    ----------
    evaluations : array-like, (n_bootstraps, n_models)
        Samples with NaN (invalid draws) are dropped.

    Returns
    -------
    p_values : (n_models, n_models) array, symmetric, 1 on the diagonal.
    """
    ev = np.asarray(evaluations, dtype=np.float64)
    if ev.ndim != 2:
        raise ValueError(f"'evaluations' must be (n_bootstraps, n_models), got shape {ev.shape}.")
    ev = ev[np.isfinite(ev).all(axis=1)]
    n_boot, n_models = ev.shape
    if n_boot == 0:
        return np.full((n_models, n_models), np.nan)
    below = (ev[:, :, None] < ev[:, None, :]).sum(axis=0)
    ties = (ev[:, :, None] == ev[:, None, :]).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prop = below / (n_boot - ties)
    p = np.minimum(prop, 1 - prop) * 2
    p = (n_boot - 1) / n_boot * p + 1 / n_boot
    np.fill_diagonal(p, 1.0)
    return p


def compare_models(
    data_rdms: Any,
    model_rdms: Any,
    method: str = "spearman",
    *,
    n_bootstraps: int = 1000,
    over: str = "stimuli",
    correction: str | None = "holm",
    alpha: float = 0.05,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = None,
    device: Any = "auto",
) -> ModelComparison:
    """Which models fit the data better than which: paired bootstrap tests of every difference.

    All models are evaluated on the same bootstrap samples, so the differences are paired.

    Parameters
    ----------
    data_rdms, model_rdms, method, n_bootstraps, confidence, seed, device
        As :func:`bootstrap`.
    over : {"stimuli", "subjects", "both", "dual"}
        The first three: :func:`bootstrap` over these, percentile tests of the differences
        (:func:`pairwise_bootstrap_tests`). ``"dual"``: subjects and stimuli resampled with the
        corrected variance of :func:`~brainalign.rsa.dual_bootstrap`, t-tests of the differences;
        ``bootstrap`` then holds the evaluations of the bootstrap of both, the t intervals and the
        corrected standard errors.
    correction : {"holm", "bonferroni", "fdr_bh", None}
        Multiple-comparison correction over the ``n_models (n_models - 1) / 2`` pairs.
    alpha : float
        Level for ``significant``.

    Returns
    -------
    ModelComparison
    """
    check_option("over", over, COMPARE_OVER)
    check_option("correction", correction, CORRECTIONS)
    if not 0 < alpha < 1:
        raise ValueError(f"'alpha' must be in (0, 1), got {alpha}.")
    if over == "dual":
        from brainalign.rsa.dual import dual_bootstrap  # the dual module imports this one

        dual = dual_bootstrap(
            data_rdms,
            model_rdms,
            method,
            n_bootstraps=n_bootstraps,
            confidence=confidence,
            ceiling=False,
            seed=seed,
            device=device,
        )
        result = BootstrapResult(
            dual.estimate, dual.evaluations[0], dual.ci, dual.se, confidence, over
        )
        p = dual.p_pairwise
    else:
        result = bootstrap(
            data_rdms,
            model_rdms,
            method,
            n_bootstraps=n_bootstraps,
            over=over,
            confidence=confidence,
            seed=seed,
            device=device,
        )
        p = pairwise_bootstrap_tests(result.evaluations)
    n_models = p.shape[0]
    iu = np.triu_indices(n_models, 1)
    corrected = np.ones_like(p)
    corrected[iu] = correct_pvalues(p[iu], correction)
    corrected[(iu[1], iu[0])] = corrected[iu]
    significant = corrected < alpha
    np.fill_diagonal(significant, False)
    diff = result.estimate[:, None] - result.estimate[None, :]
    return ModelComparison(result, diff, p, corrected, significant, correction, alpha)
