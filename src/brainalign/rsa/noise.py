"""Noise covariance and precision of measurement channels, for Mahalanobis and crossnobis RDMs.

The estimators are rsatoolbox's (``rsatoolbox.data.noise.cov_from_residuals`` and
``prec_from_residuals``), computed with two matrix products instead of a loop over residuals:

``"full"``
    sample covariance ``X'X / dof`` of the demeaned residuals.
``"diag"``
    its diagonal (univariate noise normalisation).
``"shrinkage_eye"``
    Ledoit & Wolf (2004): shrinks towards a multiple of the identity.
``"shrinkage_diag"``
    Schäfer & Strimmer (2005): shrinks the off-diagonal entries towards 0 (towards the diagonal
    covariance).
"""

from __future__ import annotations

from typing import Any

import torch

from brainalign._utils.validation import check_option
from brainalign.rsa._backend import as_tensor, inverse, matmul, matrix_rank, origin_of, restore

__all__ = ["NOISE_METHODS", "noise_covariance", "noise_precision"]

#: Accepted values of ``method``.
NOISE_METHODS = ("shrinkage_diag", "shrinkage_eye", "diag", "full")


def noise_covariance(
    residuals: Any, method: str = "shrinkage_diag", *, dof: int | None = None
) -> Any:
    """Estimate the channel noise covariance from residuals (rsatoolbox's ``cov_from_residuals``).

    Parameters
    ----------
    residuals : array or tensor, shape (n_residuals, n_channels)
        Residuals of a first-level model (e.g. GLM residual time points), or repeated measurements
        minus their condition means. They are demeaned over residuals first.
    method : {"shrinkage_diag", "shrinkage_eye", "diag", "full"}
        The estimator (see the module docstring).
    dof : int, optional
        Degrees of freedom; default ``n_residuals - 1``. Subtract the number of regressors of a
        GLM when the residuals come from one.

    Returns
    -------
    covariance : array or tensor, shape (n_channels, n_channels)
        NumPy in, NumPy out; torch in, torch out (same device).
    """
    check_option("method", method, NOISE_METHODS)
    origin = origin_of(residuals)
    x = as_tensor(residuals, "residuals")
    if x.ndim != 2:
        raise ValueError(
            f"'residuals' must have shape (n_residuals, n_channels), got {tuple(x.shape)}. Stack "
            "the residuals of all runs along the first axis."
        )
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"'residuals' needs at least 2 rows to estimate a covariance, got {n}.")
    if dof is None:
        dof = n - 1
    if dof <= 0:
        raise ValueError(f"'dof' must be positive, got {dof}.")
    x = x - x.mean(dim=0, keepdim=True)
    s_sum = matmul(x.T, x)
    if method == "full":
        cov = s_sum / dof
    elif method == "diag":
        cov = torch.diag((x * x).sum(dim=0) / dof)
    elif method == "shrinkage_eye":
        cov = _shrinkage_eye(x, s_sum, dof)
    else:
        cov = _shrinkage_diag(x, s_sum, dof)
    return restore(cov, origin)


def noise_precision(
    residuals: Any, method: str = "shrinkage_diag", *, dof: int | None = None
) -> Any:
    """The inverse of :func:`noise_covariance` (rsatoolbox's ``prec_from_residuals``).

    Pass it as ``noise=`` to :func:`~brainalign.rsa.compute_rdms` with ``metric="mahalanobis"``
    or ``"crossnobis"``. Parameters as :func:`noise_covariance`; returns (n_channels, n_channels).
    """
    origin = origin_of(residuals)
    cov = as_tensor(noise_covariance(residuals, method, dof=dof), "covariance")
    rank = matrix_rank(cov)
    if rank < cov.shape[0]:
        raise ValueError(
            f"The {method!r} noise covariance is singular (rank {rank} for {cov.shape[0]} "
            "channels: more channels than residuals?) and has no inverse. Use "
            "method='shrinkage_diag' or 'shrinkage_eye', which stay invertible."
        )
    return restore(inverse(cov), origin)


def _shrinkage_eye(x: torch.Tensor, s_sum: torch.Tensor, dof: int) -> torch.Tensor:
    """Ledoit & Wolf shrinkage towards ``m * I`` (rsatoolbox's ``_covariance_eye``)."""
    n, p = x.shape
    x2 = x * x
    s2_sum = matmul(x2.T, x2)  # sum over residuals of (x_j x_k)^2
    s = s_sum / n
    b2 = torch.sum(s2_sum / n - s * s) / n
    m = torch.trace(s) / p
    eye = torch.eye(p, dtype=x.dtype, device=x.device)
    d2 = torch.sum((s - m * eye) ** 2)
    b2 = torch.minimum(d2, b2)
    s_shrink = b2 / d2 * m * eye + (d2 - b2) / d2 * s
    return s_shrink * n / dof


def _shrinkage_diag(x: torch.Tensor, s_sum: torch.Tensor, dof: int) -> torch.Tensor:
    """Schäfer & Strimmer shrinkage towards the diagonal (rsatoolbox's ``_covariance_diag``)."""
    n, p = x.shape
    x2 = x * x
    s2_sum = matmul(x2.T, x2)
    s = s_sum / dof
    var = torch.diag(s)
    std = torch.sqrt(var)
    s_mean = s_sum / std[None, :] / std[:, None] / (n - 1)
    s2_mean = s2_sum / var[None, :] / var[:, None] / (n - 1)
    var_hat = n / dof**2 * (s2_mean - s_mean**2)
    mask = ~torch.eye(p, dtype=torch.bool, device=x.device)
    lamb = torch.sum(var_hat[mask]) / torch.sum(s_mean[mask] ** 2)
    lamb = torch.clamp(lamb, 0.0, 1.0)
    scaling = torch.eye(p, dtype=x.dtype, device=x.device) + (1 - lamb) * mask
    return s * scaling
