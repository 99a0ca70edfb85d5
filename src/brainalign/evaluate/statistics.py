"""Bootstrap confidence intervals for evaluation metrics (percentile method, seeded).

A retrieval metric is a statistic of per-query values (a hit, a reciprocal rank, a rank). Its
uncertainty over the choice of test items is estimated by resampling the queries with replacement
(Efron's bootstrap) and reading the percentiles of the statistic over the resamples. When several
queries share a stimulus (repetitions of one image, several draws of an N-way protocol), they are
not independent: pass ``groups`` and whole groups are resampled (a cluster bootstrap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from brainalign._utils.seeding import check_random_state

__all__ = ["bootstrap_ci", "bootstrap_distribution"]

# Number of resampled values generated at once (bounds the memory of the vectorised path).
_BLOCK_ELEMENTS = 1 << 22


def _check_values(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(
            f"'values' must be a 1-D array of per-query values, got shape {arr.shape}; "
            "pass one value per query (e.g. the hits of a top-k metric)."
        )
    if arr.size == 0:
        raise ValueError("'values' is empty; the bootstrap needs at least one value.")
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr))[:5].tolist()
        raise ValueError(f"'values' contains NaN or infinite entries (positions {bad}); drop them.")
    return arr


def _check_statistic(statistic: str | Callable) -> Callable | str:
    if callable(statistic):
        return statistic
    if statistic not in ("mean", "median"):
        raise ValueError(
            "Invalid value for the 'statistic' parameter. Allowed values are 'mean', 'median' "
            f"or a callable f(x, axis), but got {statistic!r} instead."
        )
    return statistic


def _apply(statistic: str | Callable, x: np.ndarray, axis: int) -> np.ndarray:
    if statistic == "mean":
        return x.mean(axis=axis)
    if statistic == "median":
        return np.median(x, axis=axis)
    return np.asarray(statistic(x, axis=axis), dtype=np.float64)  # type: ignore[operator]


def bootstrap_distribution(
    values: Any,
    *,
    statistic: str | Callable = "mean",
    n_bootstrap: int = 1000,
    seed: int | np.random.Generator | None = 0,
    groups: Any = None,
) -> np.ndarray:
    """Return the statistic of ``n_bootstrap`` resamples of ``values``.

    Parameters
    ----------
    values : array-like, shape (n_queries,)
        One value per query.
    statistic : {'mean', 'median'} or callable
        The statistic; a callable is called as ``f(x, axis=1)`` on a ``(n, n_queries)`` block of
        resamples (without ``groups``) or as ``f(x, axis=0)`` on one resample (with ``groups``).
    n_bootstrap : int
        Number of resamples.
    seed : int | numpy.random.Generator | None
        Seed of the resampling; the same seed gives the same resamples.
    groups : array-like, shape (n_queries,) | None
        Cluster labels (e.g. the stimulus of each query). When given, groups are drawn with
        replacement and every query of a drawn group enters the resample; with the mean this is
        the ratio estimator ``sum(m_g * sum_g) / sum(m_g * count_g)`` over draw counts ``m_g``.

    Returns
    -------
    distribution : ndarray of float64, shape (n_bootstrap,)
    """
    arr = _check_values(values)
    stat = _check_statistic(statistic)
    n_bootstrap = _check_n_bootstrap(n_bootstrap)
    rng = check_random_state(seed)
    n = arr.size
    out = np.empty(n_bootstrap, dtype=np.float64)
    if groups is None:
        block = max(1, _BLOCK_ELEMENTS // n)
        for start in range(0, n_bootstrap, block):
            stop = min(start + block, n_bootstrap)
            idx = rng.integers(0, n, size=(stop - start, n))
            out[start:stop] = _apply(stat, arr[idx], axis=1)
        return out

    labels = np.asarray(groups)
    if labels.shape != arr.shape:
        raise ValueError(
            f"'groups' must have one label per value ({arr.size}), got shape {labels.shape}."
        )
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(-1)
    n_groups = int(codes.max()) + 1
    if stat == "mean":
        sums = np.bincount(codes, weights=arr, minlength=n_groups)
        counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
        block = max(1, _BLOCK_ELEMENTS // n_groups)
        for start in range(0, n_bootstrap, block):
            stop = min(start + block, n_bootstrap)
            idx = rng.integers(0, n_groups, size=(stop - start, n_groups))
            out[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
        return out
    # General statistic: expand the drawn groups into their members, one resample at a time.
    order = np.argsort(codes, kind="stable")
    sorted_values = arr[order]
    starts = np.searchsorted(codes[order], np.arange(n_groups))
    sizes = np.bincount(codes, minlength=n_groups)
    for b in range(n_bootstrap):
        drawn = rng.integers(0, n_groups, size=n_groups)
        members = np.concatenate([np.arange(s, s + c) for s, c in zip(starts[drawn], sizes[drawn])])
        out[b] = float(_apply(stat, sorted_values[members], axis=0))
    return out


def _check_n_bootstrap(n_bootstrap: Any) -> int:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer):
        raise TypeError(f"'n_bootstrap' must be an int, got {type(n_bootstrap).__name__}.")
    if n_bootstrap < 1:
        raise ValueError(f"'n_bootstrap' must be at least 1, got {n_bootstrap}; 1000 is usual.")
    return int(n_bootstrap)


def _check_ci(ci: Any) -> float:
    if isinstance(ci, bool) or not isinstance(ci, float | int) or not 0 < ci < 1:
        raise ValueError(
            f"'ci' must be a coverage strictly between 0 and 1 (e.g. 0.95), got {ci!r}."
        )
    return float(ci)


def bootstrap_ci(
    values: Any,
    *,
    statistic: str | Callable = "mean",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    groups: Any = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a statistic of per-query values.

    Parameters
    ----------
    values : array-like, shape (n_queries,)
        One value per query: ``1.0``/``0.0`` hits for top-k accuracy, reciprocal ranks for the
        MRR, ranks for the median rank.
    statistic : {'mean', 'median'} or callable
        The statistic whose interval is returned (see :func:`bootstrap_distribution`).
    n_bootstrap : int
        Number of resamples (1,000 is usual; 10,000 for the tails of a 99 % interval).
    ci : float
        Coverage of the interval, strictly between 0 and 1.
    seed : int | numpy.random.Generator | None
        Seed of the resampling (default 0, so results are reproducible); ``None`` draws fresh
        randomness.
    groups : array-like, shape (n_queries,) | None
        Cluster labels; whole clusters are resampled (use the stimulus of each query when one
        stimulus has several queries).

    Returns
    -------
    low, high : float
        The ``(1 - ci) / 2`` and ``(1 + ci) / 2`` percentiles of the bootstrap distribution
        (linear interpolation between order statistics).

    Examples
    --------
    >>> hits = [1, 0, 1, 1, 0, 1, 1, 1]
    >>> low, high = bootstrap_ci(hits, seed=0)
    >>> low <= sum(hits) / len(hits) <= high
    True
    """
    coverage = _check_ci(ci)
    dist = bootstrap_distribution(
        values, statistic=statistic, n_bootstrap=n_bootstrap, seed=seed, groups=groups
    )
    alpha = (1.0 - coverage) / 2.0
    low, high = np.quantile(dist, [alpha, 1.0 - alpha])
    return float(low), float(high)
