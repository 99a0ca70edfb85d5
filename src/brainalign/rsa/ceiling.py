"""Noise ceiling of a model comparison: how well the best possible model could do.

Given one RDM per subject, the upper bound compares each subject's RDM with the average RDM of all
subjects (itself included: no model can beat it), the lower bound with the average of the *other*
subjects (a model that can be reached). Averages are taken in the space each comparison method is
insensitive to (rsatoolbox's ``pool_rdm``): RDMs scaled to unit root-mean-square for cosine,
z-scored for correlation, ranked for rank correlations. Equals rsatoolbox's ``boot_noise_ceiling``
(its plain leave-one-RDM-out ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from brainalign._utils.validation import check_option
from brainalign.rsa._backend import target_device, threads_for
from brainalign.rsa._ranks import rankdata
from brainalign.rsa.compare import (
    COMPARE_METHODS,
    _compare_prepared_numpy,
    as_rdm_vectors,
    compare_rdms,
    has_nan,
)

__all__ = ["NoiseCeiling", "noise_ceiling", "pool_rdms"]


@dataclass(frozen=True)
class NoiseCeiling:
    """Lower and upper noise ceiling (means over subjects) and their per-subject values.

    Attributes
    ----------
    lower, upper : float
    lower_per_subject, upper_per_subject : (n_subjects,) float arrays
    """

    lower: float
    upper: float
    lower_per_subject: np.ndarray
    upper_per_subject: np.ndarray


def pool_rdms(rdms: torch.Tensor, method: str) -> torch.Tensor:
    """Each RDM in the space where averaging suits ``method`` (rsatoolbox's ``pool_rdm``).

    Parameters
    ----------
    rdms : tensor, shape (n_rdms, n_pairs)
        NaN entries stay NaN.
    method : str
        A comparison method.

    Returns
    -------
    transformed : tensor, shape (n_rdms, n_pairs)
        Their mean is the pooled RDM.
    """
    if method in ("cosine", "cosine_cov"):
        return rdms / torch.sqrt(torch.nanmean(rdms * rdms, dim=1, keepdim=True))
    if method in ("corr", "corr_cov"):
        centred = rdms - torch.nanmean(rdms, dim=1, keepdim=True)
        std = torch.sqrt(torch.nanmean(centred * centred, dim=1, keepdim=True))
        return centred / std
    # rank methods: ranks of the non-NaN entries
    nan = rdms.isnan()
    if not bool(nan.any()):
        return rankdata(rdms).to(rdms.dtype)
    out = torch.full_like(rdms, float("nan"))
    if bool((nan == nan[:1]).all()):  # NaN at the same pairs (e.g. resampled stimuli): one call
        keep = ~nan[0]
        out[:, keep] = rankdata(rdms[:, keep]).to(rdms.dtype)
        return out
    for r in range(rdms.shape[0]):
        keep = ~nan[r]
        out[r, keep] = rankdata(rdms[r, keep]).to(rdms.dtype)
    return out


def noise_ceiling(rdms: Any, method: str = "spearman", *, device: Any = "auto") -> NoiseCeiling:
    """Leave-one-subject-out lower and all-subjects upper noise ceiling.

    Parameters
    ----------
    rdms : array or tensor, shape (n_subjects, n_pairs) or (n_subjects, n, n)
        One RDM per subject (same stimuli).
    method : str
        The comparison method the models are evaluated with (:func:`compare_rdms`).
    device : str or torch.device
        Where to compute.

    Returns
    -------
    NoiseCeiling
        ``lower = mean_s compare(mean of the others, s)``,
        ``upper = mean_s compare(mean of all, s)``.
    """
    check_option("method", method, COMPARE_METHODS)
    dev = target_device(device, rdms)
    v = as_rdm_vectors(rdms, "rdms", device=dev)
    n = v.shape[0]
    if n < 2:
        raise ValueError(
            f"A leave-one-subject-out noise ceiling needs at least 2 subjects' RDMs, got {n}."
        )
    with threads_for(v.numel(), v.device):
        lower, upper = _ceilings(v, method)
    lower_np = lower.cpu().numpy().astype(np.float64)
    upper_np = upper.cpu().numpy().astype(np.float64)
    return NoiseCeiling(float(lower_np.mean()), float(upper_np.mean()), lower_np, upper_np)


def _ceilings(
    v: torch.Tensor, method: str, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower (leave one out) and upper (all) ceilings of each subject's RDM, (n_subjects,).

    ``weights`` (n_subjects,), e.g. how often each subject was drawn in a bootstrap sample (at
    least two subjects with positive weights): the pooled RDMs are weighted means.
    """
    n = v.shape[0]
    t = pool_rdms(v, method)
    if weights is None:
        total = t.sum(dim=0, keepdim=True)
        pooled = total / n
        loo = (total - t) / (n - 1)
    else:
        w = weights.to(device=t.device, dtype=t.dtype)[:, None]
        total = (w * t).sum(dim=0, keepdim=True)
        pooled = total / w.sum()
        loo = (total - w * t) / (w.sum() - w)
    if method in ("tau-a", "kendall", "tau-b"):
        upper = compare_rdms(pooled, v, method)[0]
        lower = torch.stack([compare_rdms(loo[s], v[s], method)[0, 0] for s in range(n)])
    else:
        # every RDM compared in one call: the upper bounds are its first row, the lower ones
        # the diagonal of the rest
        pred = torch.cat([pooled, loo])
        keep = _common_pairs(v) if v.device.type == "cpu" else None
        if method in ("spearman", "rho-a") and keep is not None:
            # t holds the ranks of v's pairs already
            if not bool(keep.all()):
                t, pred = t[:, keep], pred[:, keep]
            both = torch.from_numpy(
                _compare_prepared_numpy(rankdata(pred).numpy(), t.numpy(), method)
            )
            if v.dtype == torch.float32:
                both = both.to(torch.float32)  # as compare_rdms returns for float32 RDMs
        else:
            both = compare_rdms(pred, v, method)
        upper = both[0]
        lower = torch.diagonal(both[1:]).clone()
    return lower, upper


def _common_pairs(v: torch.Tensor) -> torch.Tensor | None:
    """The pairs that are not NaN, (n_pairs,) bool, when every RDM of ``v`` has its NaNs at the
    same pairs (e.g. stimuli drawn with their copies), else None."""
    if not has_nan(v):
        return torch.ones(v.shape[1], dtype=torch.bool)
    nan = v.isnan()
    return ~nan[0] if bool((nan == nan[:1]).all()) else None
