"""Corrections of p-values for multiple comparisons."""

from __future__ import annotations

from typing import Any

import numpy as np

from brainalign._utils.validation import check_option

__all__ = ["CORRECTIONS", "correct_pvalues"]

#: Accepted values of ``method`` (``None`` leaves the p-values as they are).
CORRECTIONS = ("bonferroni", "holm", "fdr_bh", None)


def correct_pvalues(p_values: Any, method: str | None = "holm") -> np.ndarray:
    """Adjust p-values for multiple comparisons.

    Parameters
    ----------
    p_values : array-like
        Any shape; NaN entries are ignored (they stay NaN and do not count as tests).
    method : {"bonferroni", "holm", "fdr_bh", None}
        ``"bonferroni"``: ``p * m``. ``"holm"``: Holm's step-down (family-wise error, uniformly more
        powerful than Bonferroni). ``"fdr_bh"``: Benjamini–Hochberg step-up (false discovery rate
        under independence or positive dependence). ``None``: unchanged.

    Returns
    -------
    adjusted : ndarray, same shape
        Adjusted p-values, capped at 1; compare them with the nominal alpha.
    """
    check_option("method", method, CORRECTIONS)
    p = np.array(p_values, dtype=np.float64)  # a copy
    if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
        raise ValueError(
            f"'p_values' must lie in [0, 1], got values from {np.nanmin(p)} to {np.nanmax(p)}."
        )
    if method is None:
        return p
    flat = p.reshape(-1)
    ok = np.flatnonzero(~np.isnan(flat))
    m = ok.size
    if m == 0:
        return p
    vals = flat[ok]
    if method == "bonferroni":
        adj = vals * m
    elif method == "holm":
        order = np.argsort(vals, kind="stable")
        stepped = np.maximum.accumulate(vals[order] * (m - np.arange(m)))
        adj = np.empty(m)
        adj[order] = stepped
    else:
        order = np.argsort(vals, kind="stable")
        ranked = vals[order] * m / np.arange(1, m + 1)
        stepped = np.minimum.accumulate(ranked[::-1])[::-1]
        adj = np.empty(m)
        adj[order] = stepped
    flat[ok] = np.minimum(adj, 1.0)
    return p
