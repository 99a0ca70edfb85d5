"""Condensed and square RDMs.

A condensed RDM is the upper triangle of the square matrix read row by row, the order of
:func:`scipy.spatial.distance.squareform`: pairs ``(0, 1), (0, 2), …, (0, n-1), (1, 2), …``.
Every function of :mod:`brainalign.rsa` uses this order.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from brainalign.rsa._backend import as_tensor, origin_of, restore

__all__ = ["condensed_index", "n_stimuli_from_pairs", "pair_indices", "to_condensed", "to_square"]


def n_stimuli_from_pairs(n_pairs: int, name: str = "rdms") -> int:
    """The number of stimuli ``n`` with ``n * (n - 1) / 2 == n_pairs``.

    Raises a ``ValueError`` naming ``name`` when ``n_pairs`` is not such a number.
    """
    n = round((1 + math.sqrt(1 + 8 * int(n_pairs))) / 2)
    if n * (n - 1) // 2 != n_pairs or n_pairs < 1:
        raise ValueError(
            f"{name!r} has {n_pairs} dissimilarities per RDM, which is not n * (n - 1) / 2 for any "
            "number of stimuli n >= 2. Pass condensed RDMs (the upper triangle, as "
            "scipy.spatial.distance.squareform makes) or square (n, n) matrices."
        )
    return n


def pair_indices(n: int, device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index of every pair, in condensed order: two int64 tensors (n_pairs,)."""
    ij = torch.triu_indices(n, n, offset=1, device=device)
    return ij[0], ij[1]


def condensed_index(i: torch.Tensor, j: torch.Tensor, n: int) -> torch.Tensor:
    """Position of the pair ``(i, j)`` (``i != j``, any order) in a condensed vector."""
    lo = torch.minimum(i, j)
    hi = torch.maximum(i, j)
    return lo * n - lo * (lo + 1) // 2 + hi - lo - 1


def to_condensed(rdms: Any, *, check: bool = True, atol: float = 1e-8) -> Any:
    """Square RDMs to condensed vectors (upper triangle, row by row).

    Parameters
    ----------
    rdms : array or tensor, shape (n_stimuli, n_stimuli) or (n_rdms, n_stimuli, n_stimuli)
        Square dissimilarity matrices.
    check : bool
        Check that every matrix is symmetric (within ``atol``; NaN equals NaN). The diagonal is
        ignored.
    atol : float
        Absolute tolerance of the symmetry check.

    Returns
    -------
    condensed : array or tensor, shape (n_pairs,) or (n_rdms, n_pairs)
        NumPy in, NumPy out; torch in, torch out on the same device.
    """
    origin = origin_of(rdms)
    t = as_tensor(rdms, "rdms", float_only=False)
    if t.ndim not in (2, 3) or t.shape[-1] != t.shape[-2]:
        raise ValueError(
            "'rdms' must be square matrices of shape (n_stimuli, n_stimuli) or (n_rdms, "
            f"n_stimuli, n_stimuli), got shape {tuple(t.shape)}."
        )
    n = t.shape[-1]
    if n < 2:
        raise ValueError(f"'rdms' must have at least 2 stimuli, got {n}.")
    if check and t.is_floating_point():
        asym = (t - t.transpose(-1, -2)).abs()
        bad = (asym > atol) & ~(t.isnan() & t.transpose(-1, -2).isnan())
        if bool(bad.any()):
            raise ValueError(
                "'rdms' is not symmetric: |d[i, j] - d[j, i]| reaches "
                f"{float(asym.nan_to_num().max())} (atol={atol}). Symmetrise it first "
                "((d + d.T) / 2) or pass check=False to read the upper triangle only."
            )
    i, j = pair_indices(n, t.device)
    return restore(t[..., i, j], origin)


def to_square(rdms: Any, *, diagonal: float = 0.0) -> Any:
    """Condensed RDMs to square symmetric matrices.

    Parameters
    ----------
    rdms : array or tensor, shape (n_pairs,) or (n_rdms, n_pairs)
        Condensed RDMs (squareform order).
    diagonal : float
        Value written on the diagonal.

    Returns
    -------
    square : array or tensor, shape (n_stimuli, n_stimuli) or (n_rdms, n_stimuli, n_stimuli)
    """
    origin = origin_of(rdms)
    t = as_tensor(rdms, "rdms", float_only=False)
    if t.ndim not in (1, 2):
        raise ValueError(
            "'rdms' must be condensed vectors of shape (n_pairs,) or (n_rdms, n_pairs), got shape "
            f"{tuple(t.shape)}; use to_condensed for square matrices."
        )
    n = n_stimuli_from_pairs(t.shape[-1])
    i, j = pair_indices(n, t.device)
    out = torch.full((*t.shape[:-1], n, n), diagonal, dtype=t.dtype, device=t.device)
    out[..., i, j] = t
    out[..., j, i] = t
    return restore(out, origin)
