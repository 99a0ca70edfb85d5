"""Compare RDMs: every RDM of one set with every RDM of another, in one call.

Methods (rsatoolbox's names and definitions, so that values equal ``rsatoolbox.rdm.compare``):

``"cosine"``
    cosine similarity of the dissimilarity vectors.
``"corr"``
    Pearson correlation.
``"spearman"``
    Pearson correlation of average ranks (each RDM is ranked once, not once per comparison).
``"rho-a"``
    ``12 sum(r1 r2) / (n^3 - n)`` on centred average ranks (Spearman without tie correction).
``"tau-a"``
    Kendall's tau-a, ``(concordant - discordant) / (n (n - 1) / 2)``: the rank correlation to use
    when models predict tied dissimilarities. Counted in O(n log n) for all pairs of RDMs at once.
``"kendall"``, ``"tau-b"``
    Kendall's tau-b (scipy's and rsatoolbox's ``"kendall"``).
``"cosine_cov"``, ``"corr_cov"``
    cosine (or, after centring, correlation) after whitening by the covariance of the
    dissimilarity estimates: ``d -> -d/2``, double-centred into a second-moment matrix,
    off-diagonal entries times ``sqrt(2)``, diagonal appended. With ``sigma_k`` (the covariance
    of the pattern estimates) the exact ``v1' V^-1 v2`` weighting with
    ``V = (C sigma_k C') o (C sigma_k C')`` is used.

Zero-length (constant) vectors give 0 for cosine, correlation and Spearman, as in rsatoolbox, and
NaN for tau-b (as in scipy).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from brainalign._utils.validation import check_option
from brainalign.rsa._backend import (
    as_tensor,
    matmul,
    origin_of,
    restore,
    solve,
    solve_spd,
    target_device,
    threads_for,
)
from brainalign.rsa._ranks import kendall_tau, rankdata
from brainalign.rsa.condensed import n_stimuli_from_pairs, pair_indices

__all__ = ["COMPARE_METHODS", "NAN_POLICIES", "as_rdm_vectors", "compare_rdms"]

#: Accepted values of ``method``.
COMPARE_METHODS = (
    "cosine",
    "corr",
    "spearman",
    "rho-a",
    "tau-a",
    "kendall",
    "tau-b",
    "cosine_cov",
    "corr_cov",
)
#: Accepted values of ``nan_policy``.
NAN_POLICIES = ("pairwise", "common")
#: Largest number of pairs for which the dense RDM covariance (sigma_k whitening) is formed.
_MAX_V_PAIRS = 4950


def compare_rdms(
    a: Any,
    b: Any = None,
    method: str = "spearman",
    *,
    sigma_k: Any = None,
    nan_policy: str = "pairwise",
    device: Any = "auto",
) -> Any:
    """Similarity of every RDM in ``a`` with every RDM in ``b``.

    Parameters
    ----------
    a, b : array or tensor
        Condensed RDMs ``(n_rdms, n_pairs)`` or one ``(n_pairs,)``, or square matrices
        ``(n_rdms, n_stimuli, n_stimuli)`` or one ``(n_stimuli, n_stimuli)`` (a 2-D array is read as
        one square RDM when it is square, symmetric with a zero or NaN diagonal). ``b=None``
        compares ``a`` with itself.
    method : str
        See the module docstring: ``"cosine"``, ``"corr"``, ``"spearman"``, ``"rho-a"``,
        ``"tau-a"``, ``"kendall"``/``"tau-b"``, ``"cosine_cov"``, ``"corr_cov"``.
    sigma_k : array or tensor, optional
        Covariance of the pattern estimates, ``(n_stimuli,)`` (diagonal) or ``(n_stimuli,
        n_stimuli)``, for the ``*_cov`` methods (at most 100 stimuli).
    nan_policy : {"pairwise", "common"}
        ``"pairwise"``: each comparison drops the pairs that are NaN in either of its two RDMs.
        ``"common"``: every comparison drops the pairs that are NaN in any RDM of ``a`` or ``b``
        (rsatoolbox's behaviour, which requires equal NaN positions). The two agree when all RDMs
        have their NaNs at the same pairs.
    device : str or torch.device
        ``"auto"``: the device of torch inputs; for NumPy inputs CUDA when present, else CPU.

    Returns
    -------
    similarity : array or tensor, shape (n_a, n_b)
        NumPy in, NumPy out; torch in (either input), torch out. Float64 unless both inputs are
        float32.
    """
    check_option("method", method, COMPARE_METHODS)
    check_option("nan_policy", nan_policy, NAN_POLICIES)
    same = b is None
    origin = origin_of(a, b)
    dev = target_device(device, a, b)
    va = as_rdm_vectors(a, "a", device=dev)
    vb = va if same else as_rdm_vectors(b, "b", device=dev)
    if va.shape[1] != vb.shape[1]:
        raise ValueError(
            f"'a' and 'b' must be RDMs of the same stimuli: 'a' has {va.shape[1]} pairs and 'b' "
            f"{vb.shape[1]}."
        )
    dtype = torch.promote_types(va.dtype, vb.dtype)
    va, vb = va.to(dtype), vb.to(dtype)
    n_cond = n_stimuli_from_pairs(va.shape[1], "a")
    sk = None
    if sigma_k is not None:
        if method not in ("cosine_cov", "corr_cov"):
            raise ValueError(
                f"'sigma_k' is used by method='cosine_cov' or 'corr_cov' only, not {method!r}."
            )
        sk = as_tensor(sigma_k, "sigma_k", device=dev, dtype=torch.float64)
        if sk.shape not in ((n_cond,), (n_cond, n_cond)):
            raise ValueError(
                f"'sigma_k' must have shape ({n_cond},) or ({n_cond}, {n_cond}) for RDMs of "
                f"{n_cond} stimuli, got {tuple(sk.shape)}."
            )
        if va.shape[1] > _MAX_V_PAIRS:
            raise ValueError(
                f"Whitening with 'sigma_k' forms the (n_pairs, n_pairs) covariance of the "
                f"dissimilarities, supported up to 100 stimuli; got {n_cond}. Omit sigma_k (the "
                "identity)."
            )
    n_values = (va.shape[0] + (0 if same else vb.shape[0])) * va.shape[1]
    with threads_for(n_values, va.device):
        out = _compare_with_nans(va, vb, method, sk, nan_policy, n_cond)
    if dtype == torch.float32:
        out = out.to(torch.float32)
    return restore(out, origin)


def as_rdm_vectors(x: Any, name: str, *, device: Any = None) -> torch.Tensor:
    """RDMs as a (n_rdms, n_pairs) floating tensor (condensed vectors, squares or one of either).

    A 2-D ``(n, n)`` input is one square RDM when it is symmetric with a zero (or NaN) diagonal,
    else a stack of ``n`` condensed RDMs (possible only when ``n = k (k - 1) / 2``).
    """
    t = as_tensor(x, name, device=device)
    if t.ndim == 1:
        t = t[None]
    elif t.ndim == 2 and t.shape[0] == t.shape[1] and t.shape[0] >= 2:
        if _is_square_rdm(t):
            t = t[None]
        elif not _is_triangular(t.shape[0]):
            raise ValueError(
                f"{name!r} is a square ({t.shape[0]}, {t.shape[0]}) matrix but not a symmetric "
                "RDM with a zero diagonal. Symmetrise it, or pass condensed vectors."
            )
    if t.ndim == 3:
        if t.shape[1] != t.shape[2] or not _is_square_rdm(t):
            raise ValueError(
                f"{name!r} has shape {tuple(t.shape)}: a 3-D input must be symmetric square RDMs "
                "(n_rdms, n_stimuli, n_stimuli)."
            )
        i, j = pair_indices(t.shape[1], t.device)
        t = t[:, i, j]
    if t.ndim != 2:
        raise ValueError(
            f"{name!r} must be condensed RDMs (n_rdms, n_pairs) or (n_pairs,), or square RDMs; got "
            f"shape {tuple(t.shape)}."
        )
    n_stimuli_from_pairs(t.shape[1], name)
    return t


def _is_triangular(n: int) -> bool:
    """Whether ``n = k (k - 1) / 2`` for an integer k (a possible condensed length)."""
    r = math.isqrt(1 + 8 * n)
    return r * r == 1 + 8 * n


def _is_square_rdm(t: torch.Tensor) -> bool:
    tt = t.transpose(-1, -2)
    diag = torch.diagonal(t, dim1=-2, dim2=-1)
    symmetric = ((t == tt) | (t.isnan() & tt.isnan())).all()
    return bool(symmetric and ((diag == 0) | diag.isnan()).all())


# ---------------------------------------------------------------------------------------------
# NaN handling


def _compare_with_nans(
    va: torch.Tensor,
    vb: torch.Tensor,
    method: str,
    sigma_k: torch.Tensor | None,
    nan_policy: str,
    n_cond: int,
) -> torch.Tensor:
    if not (has_nan(va) or has_nan(vb)):
        return _dense(va, vb, method, sigma_k, None, n_cond)
    nan_a, nan_b = va.isnan(), vb.isnan()
    if nan_policy == "common":
        keep = ~(nan_a.any(dim=0) | nan_b.any(dim=0))
        return _dense(va[:, keep], vb[:, keep], method, sigma_k, keep, n_cond)
    # pairwise: group the RDMs by NaN pattern; each pair of groups is one dense comparison
    out = torch.empty((va.shape[0], vb.shape[0]), dtype=torch.float64, device=va.device)
    masks_a, inv_a = torch.unique(nan_a, dim=0, return_inverse=True)
    masks_b, inv_b = torch.unique(nan_b, dim=0, return_inverse=True)
    for ga in range(masks_a.shape[0]):
        rows = (inv_a == ga).nonzero().flatten()
        for gb in range(masks_b.shape[0]):
            cols = (inv_b == gb).nonzero().flatten()
            keep = ~(masks_a[ga] | masks_b[gb])
            block = _dense(va[rows][:, keep], vb[cols][:, keep], method, sigma_k, keep, n_cond)
            out[rows[:, None], cols[None, :]] = block
    return out


# ---------------------------------------------------------------------------------------------
# NaN-free comparisons


def _dense(
    va: torch.Tensor,
    vb: torch.Tensor,
    method: str,
    sigma_k: torch.Tensor | None,
    keep: torch.Tensor | None,
    n_cond: int,
) -> torch.Tensor:
    """Compare NaN-free vectors; ``keep`` marks which pairs of the full RDM the columns are."""
    va = va.to(torch.float64) if va.dtype not in (torch.float32, torch.float64) else va
    vb = vb.to(va.dtype)
    if va.shape[1] == 0:
        return torch.full(
            (va.shape[0], vb.shape[0]), float("nan"), dtype=torch.float64, device=va.device
        )
    if va.device.type == "cpu" and method in _NUMPY_METHODS:
        return torch.from_numpy(_dense_numpy(va, vb, method))
    if method == "cosine":
        return cosine(va, vb)
    if method == "corr":
        return cosine(_centre(va), _centre(vb))
    if method in ("spearman", "rho-a"):
        ra, rb = _centre(rankdata(va)), _centre(rankdata(vb))
        if method == "spearman":
            return cosine(ra, rb)
        n = va.shape[1]
        return matmul(ra.to(torch.float64), rb.to(torch.float64).T) * 12 / (n**3 - n)
    if method in ("tau-a", "kendall", "tau-b"):
        variant = "a" if method == "tau-a" else "b"
        # kendall_tau loops over the rows of its first argument and batches the second; tau is
        # symmetric, so loop over the smaller set (e.g. models vs many permuted data RDMs)
        if va.shape[0] > vb.shape[0]:
            return kendall_tau(vb, va, variant).T
        return kendall_tau(va, vb, variant)
    # whitened
    if method == "corr_cov":
        va, vb = _centre(va), _centre(vb)
    va, vb = va.to(torch.float64), vb.to(torch.float64)
    if sigma_k is not None:
        return _cosine_v_inverse(va, vb, keep, n_cond, sigma_k)
    return cosine(_whiten(va, keep, n_cond), _whiten(vb, keep, n_cond))


def has_nan(v: torch.Tensor) -> bool:
    """Whether ``v`` holds a NaN (on the CPU: one summing pass, no temporary mask)."""
    if v.device.type == "cpu":
        x = v.numpy()
        return False if np.isfinite(np.add.reduce(x, axis=None)) else bool(np.isnan(x).any())
    return bool(v.isnan().any())


#: Methods computed in NumPy on the CPU (memory-bound: NumPy's single-threaded passes beat
#: torch's threaded ones on shared cores).
_NUMPY_METHODS = ("cosine", "corr", "spearman", "rho-a")


def _dense_numpy(va: torch.Tensor, vb: torch.Tensor, method: str) -> np.ndarray:
    if method in ("spearman", "rho-a"):
        a, b = rankdata(va).numpy(), rankdata(vb).numpy()
    else:
        a, b = va.numpy(), vb.numpy()
    return _compare_prepared_numpy(a, b, method)


def _compare_prepared_numpy(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """Cosine, correlation, Spearman or rho-a of NaN-free rows, given the ranks for the last
    two."""
    if method != "cosine":
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
    if method == "rho-a":
        n = a.shape[1]
        return (a.astype(np.float64) @ b.astype(np.float64).T) * 12 / (n**3 - n)
    return _cosine_numpy(a, b)


def _cosine_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.sqrt(np.einsum("ij,ij->i", a, a))
    nb = np.sqrt(np.einsum("ij,ij->i", b, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a @ b.T) / na[:, None] / nb[None, :]
    out[~((na > 0)[:, None] & (nb > 0)[None, :])] = 0.0
    return out


def _centre(v: torch.Tensor) -> torch.Tensor:
    return v - v.mean(dim=1, keepdim=True)


def cosine(va: torch.Tensor, vb: torch.Tensor) -> torch.Tensor:
    """Cosine of every row of ``va`` with every row of ``vb``; 0 where a norm is 0 (rsatoolbox)."""
    na = torch.sqrt((va * va).sum(dim=1))
    nb = torch.sqrt((vb * vb).sum(dim=1))
    out = matmul(va, vb.T) / na[:, None] / nb[None, :]
    ok = (na > 0)[:, None] & (nb > 0)[None, :]
    return torch.where(ok, out, torch.zeros((), dtype=out.dtype, device=out.device))


def _whiten(v: torch.Tensor, keep: torch.Tensor | None, n_cond: int) -> torch.Tensor:
    """rsatoolbox's ``_cov_weighting`` without sigma_k: (n_rdms, n_kept_pairs + n_cond)."""
    i, j = pair_indices(n_cond, v.device)
    half = -0.5 * v
    if keep is None or bool(keep.all()):
        # double centring of the second-moment matrix (zero diagonal before centring)
        rows = torch.zeros((v.shape[0], n_cond), dtype=v.dtype, device=v.device)
        _add_columns(rows, i, half)
        _add_columns(rows, j, half)
        m = rows / n_cond
        mm = 2 * half.sum(dim=1, keepdim=True) / (n_cond * n_cond)
        off = half - m[:, i] - m[:, j] + mm
        diag = -2 * m + mm
    else:
        # missing pairs: remove the row/column effects by weighted least squares (weights 1/2 on
        # the off-diagonal entries, which stand for two entries of the matrix, 1 on the diagonal)
        i, j = i[keep], j[keep]
        eye = torch.eye(n_cond, dtype=v.dtype, device=v.device)
        gram = eye.clone()
        ones = torch.full_like(i, 1, dtype=v.dtype) * 0.5
        gram.index_put_((i, i), ones, accumulate=True)
        gram.index_put_((j, j), ones, accumulate=True)
        gram.index_put_((i, j), ones, accumulate=True)
        gram.index_put_((j, i), ones, accumulate=True)
        # projection of [half, 0] onto the row/column effects: z = (S' W x)
        proj = torch.zeros((v.shape[0], n_cond), dtype=v.dtype, device=v.device)
        _add_columns(proj, i, half)
        _add_columns(proj, j, half)
        coef = solve(gram, proj.T).T
        off = half - 0.5 * (coef[:, i] + coef[:, j])
        diag = -coef
    return torch.cat([off * math.sqrt(2), diag], dim=1)


def _add_columns(out: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> None:
    """``out[:, index[p]] += values[:, p]`` (index_put_ with accumulation: torch's CPU
    ``index_add_`` costs ~0.1 s per call whatever the size)."""
    out.T.index_put_((index,), values.T, accumulate=True)


def _cosine_v_inverse(
    va: torch.Tensor,
    vb: torch.Tensor,
    keep: torch.Tensor | None,
    n_cond: int,
    sigma_k: torch.Tensor,
) -> torch.Tensor:
    """``v1' V^-1 v2 / sqrt(v1' V^-1 v1 v2' V^-1 v2)`` with the dissimilarity covariance V."""
    sk = torch.diag(sigma_k) if sigma_k.ndim == 1 else sigma_k
    i, j = pair_indices(n_cond, va.device)
    if keep is not None:
        i, j = i[keep], j[keep]
    xi = sk[i][:, i] - sk[i][:, j] - sk[j][:, i] + sk[j][:, j]  # C sigma_k C'
    v = xi * xi
    wa = solve_spd(v, va.T).T
    wb = solve_spd(v, vb.T).T
    num = matmul(va, wb.T)
    na = torch.sqrt((va * wa).sum(dim=1))
    nb = torch.sqrt((vb * wb).sum(dim=1))
    return num / na[:, None] / nb[None, :]
