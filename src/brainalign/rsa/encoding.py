"""Encoding models, the complement of RSA: predict every voxel from a layer's features.

For each layer and region, a ridge regression from the layer's features ``X`` (n_stimuli ×
n_features) to every voxel or sensor ``Y`` (n_stimuli × n_voxels) is fitted on the training folds
and scored on the held-out fold by the Pearson correlation between predicted and measured
responses (out-of-fold predictions, concatenated over folds, as in himalaya and the encoding
literature). Each voxel gets its own penalty ``alpha``, chosen on the training folds by exact
leave-one-out cross-validation (the generalised cross-validation identity, as scikit-learn's
``RidgeCV(alpha_per_target=True)``), so no inner loop refits anything:

with the centred training features ``X = U S Vᵀ`` and ``d_k(α) = s_k² / (s_k² + α)``, the fitted
values are ``Ŷ = ȳ + U diag(d) Uᵀ (Y − ȳ)`` and the hat matrix's diagonal is
``h_i = Σ_k U_ik² d_k + 1/n`` (the ``1/n`` is the unpenalised intercept); the leave-one-out
residual of sample ``i`` is ``(y_i − ŷ_i) / (1 − h_i)``.

One SVD per fold serves every penalty and every voxel; voxels are processed in chunks so memory
stays ``O(n_train × chunk)`` whatever the voxel count. Runs on the GPU when one is present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from brainalign._utils.progress import progress
from brainalign._utils.validation import check_positive
from brainalign.rsa._backend import as_tensor, matmul, origin_of, restore, target_device

__all__ = [
    "DEFAULT_ALPHAS",
    "EncodingResult",
    "encoding_layers_regions",
    "make_folds",
    "ridge_encoding",
]

#: The default grid of penalties: 10^-2 … 10^8, two per decade.
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 8, 21))


@dataclass
class EncodingResult:
    """Out-of-fold predictions and scores of a cross-validated ridge encoding model.

    Attributes
    ----------
    correlation : array or tensor, shape (n_voxels,)
        Pearson correlation between out-of-fold predictions and measured responses per voxel
        (NaN for a constant voxel).
    predictions : array or tensor, shape (n_stimuli, n_voxels)
        Each stimulus predicted by the model fitted without its fold.
    alphas : ndarray, shape (n_folds, n_voxels)
        The penalty chosen for each voxel in each fold.
    folds : ndarray, shape (n_stimuli,)
        The fold of each stimulus.
    """

    correlation: Any
    predictions: Any
    alphas: np.ndarray
    folds: np.ndarray

    @property
    def mean_correlation(self) -> float:
        """Mean correlation over voxels (NaN voxels left out)."""
        return float(np.nanmean(np.asarray(_numpy(self.correlation))))

    def __repr__(self) -> str:
        n_stim, n_vox = self.predictions.shape
        return (
            f"<EncodingResult {n_stim} stimuli × {n_vox} voxels, {self.alphas.shape[0]} folds, "
            f"mean r = {self.mean_correlation:.3f}>"
        )


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_alphas(alphas: Any) -> torch.Tensor:
    values = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            f"'alphas' must be positive finite penalties, got {alphas!r}; e.g. "
            "numpy.logspace(-2, 8, 21)."
        )
    return torch.from_numpy(values)


def make_folds(n: int, n_folds: int, *, groups: Any = None, seed: int = 0) -> np.ndarray:
    """Fold index of each of ``n`` samples.

    Parameters
    ----------
    n : int
        Number of samples.
    n_folds : int
        Number of folds (at least 2, at most ``n`` or the number of groups).
    groups : array-like of shape (n,) | None
        Samples of one group (e.g. a run) always share a fold; groups are dealt to folds in a
        seeded random order. ``None``: samples are dealt individually.
    seed : int
        Seed of the random order.

    Returns
    -------
    folds : ndarray of int, shape (n,)
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        labels = np.arange(n)
    else:
        labels = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(f"'groups' has {labels.shape[0]} entries for {n} stimuli.")
    n_units = int(labels.max()) + 1
    if not 2 <= n_folds <= n_units:
        raise ValueError(
            f"'n_folds' must be between 2 and the number of "
            f"{'groups' if groups is not None else 'stimuli'} ({n_units}), got {n_folds}."
        )
    fold_of_unit = np.empty(n_units, dtype=np.int64)
    fold_of_unit[rng.permutation(n_units)] = np.arange(n_units) % n_folds
    return fold_of_unit[labels]


def _svd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if x.device.type == "cpu":  # NumPy's LAPACK: see _backend on torch's CPU BLAS under load
        u, s, vt = np.linalg.svd(x.numpy(), full_matrices=False)
        return torch.from_numpy(u), torch.from_numpy(s), torch.from_numpy(vt)
    return torch.linalg.svd(x, full_matrices=False)


def _fit_predict_fold(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    alphas: torch.Tensor,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions for ``x_test`` and the chosen alpha index per voxel (LOO on the train fold)."""
    n = x_train.shape[0]
    x_mean = x_train.mean(dim=0)
    u, s, vt = _svd(x_train - x_mean)
    keep = s > s.max() * max(x_train.shape) * torch.finfo(s.dtype).eps
    u, s, vt = u[:, keep], s[:, None][keep, 0], vt[keep]
    s2 = s * s
    alphas = alphas.to(s.device)
    d = s2[None, :] / (s2[None, :] + alphas[:, None])  # (n_alphas, r)
    # hat diagonal per alpha, plus 1/n for the unpenalised intercept
    hat = matmul(u * u, d.T.contiguous()) + 1.0 / n  # (n, n_alphas)
    test_proj = matmul(x_test - x_mean, vt.T.contiguous())  # (m, r)
    n_vox = y_train.shape[1]
    predictions = torch.empty((x_test.shape[0], n_vox), dtype=x_train.dtype, device=x_train.device)
    best = torch.empty(n_vox, dtype=torch.long, device=x_train.device)
    for start in range(0, n_vox, chunk_size):
        stop = min(start + chunk_size, n_vox)
        y_mean = y_train[:, start:stop].mean(dim=0)
        y = y_train[:, start:stop] - y_mean
        uty = matmul(u.T.contiguous(), y)  # (r, c)
        # the part of y outside the features' span is never fitted, whatever alpha
        outside = y - matmul(u, uty)
        # mean squared leave-one-out residual of every voxel under every alpha
        errors = torch.stack(
            [
                (
                    ((outside + matmul(u, (1.0 - d[a])[:, None] * uty)) / (1.0 - hat[:, a, None]))
                    ** 2
                ).mean(dim=0)
                for a in range(alphas.shape[0])
            ]
        )  # (n_alphas, c)
        chosen = torch.argmin(errors, dim=0)  # the first minimum, as scikit-learn
        best[start:stop] = chosen
        for a in torch.unique(chosen).tolist():
            cols = torch.nonzero(chosen == a).reshape(-1)
            shrink = s / (s2 + alphas[a])
            coef = shrink[:, None] * uty[:, cols]
            predictions[:, start + cols] = matmul(test_proj, coef) + y_mean[cols]
    return predictions, best


def _pearson_columns(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(dim=0)
    b = b - b.mean(dim=0)
    num = (a * b).sum(dim=0)
    den = torch.sqrt((a * a).sum(dim=0) * (b * b).sum(dim=0))
    return torch.where(den > 0, num / den, torch.full_like(num, float("nan")))


def ridge_encoding(
    features: Any,
    responses: Any,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_folds: int = 5,
    groups: Any = None,
    seed: int = 0,
    chunk_size: int = 4096,
    device: Any = "auto",
) -> EncodingResult:
    """Cross-validated ridge regression from features to every voxel (per-voxel penalties).

    Parameters
    ----------
    features : array or tensor, shape (n_stimuli, n_features)
        A layer's features of each stimulus.
    responses : array or tensor, shape (n_stimuli, n_voxels)
        Responses to the same stimuli, in the same order (e.g. betas averaged over repetitions).
    alphas : sequence of float
        Penalties tried for every voxel (chosen per voxel and fold by exact leave-one-out on
        the training folds).
    n_folds : int
        Outer folds; every stimulus is predicted once, by the model fitted without its fold.
    groups : array-like of shape (n_stimuli,) | None
        Stimuli of one group (e.g. a run, or the repetitions of one image) stay in one fold.
    seed : int
        Seed of the fold assignment.
    chunk_size : int
        Voxels processed at once: memory stays ``O(n_stimuli × chunk_size)`` per penalty.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``; tensors stay on their device.

    Returns
    -------
    result : EncodingResult
        NumPy in, NumPy out; torch in, torch out.
    """
    origin = origin_of(features, responses)
    dev = target_device(device, features, responses)
    x = as_tensor(features, "features", device=dev, dtype=torch.float64)
    y = as_tensor(responses, "responses", device=dev, dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"'features' must be (n_stimuli, n_features) and 'responses' (n_stimuli, n_voxels); "
            f"got shapes {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"'features' has {x.shape[0]} stimuli but 'responses' has {y.shape[0]}: both must "
            "list the same stimuli in the same order."
        )
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("'features' and 'responses' must be finite (drop or impute NaN first).")
    check_positive("chunk_size", chunk_size)
    grid = _check_alphas(alphas)
    folds = make_folds(x.shape[0], n_folds, groups=groups, seed=seed)
    predictions = torch.empty_like(y)
    chosen = np.empty((n_folds, y.shape[1]), dtype=np.float64)
    for k in range(n_folds):
        test = torch.from_numpy(np.flatnonzero(folds == k)).to(dev)
        train = torch.from_numpy(np.flatnonzero(folds != k)).to(dev)
        pred, best = _fit_predict_fold(x[train], y[train], x[test], grid, int(chunk_size))
        predictions[test] = pred
        chosen[k] = grid.numpy()[best.cpu().numpy()]
    correlation = _pearson_columns(predictions, y)
    return EncodingResult(
        correlation=restore(correlation, origin),
        predictions=restore(predictions, origin),
        alphas=chosen,
        folds=folds,
    )


def encoding_layers_regions(
    layer_features: Mapping[str, Any],
    region_responses: Mapping[str, Any],
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_folds: int = 5,
    groups: Any = None,
    seed: int = 0,
    device: Any = "auto",
    verbose: bool = True,
) -> pd.DataFrame:
    """Encoding-model comparison of every layer with every region (and subject).

    Parameters
    ----------
    layer_features : mapping of str to array, each (n_stimuli, n_features_layer)
        Features of each layer, rows in the stimulus order of the responses.
    region_responses : mapping of str to array or list of arrays
        Per region, ``(n_stimuli, n_voxels)`` for one subject, a list of such arrays (one per
        subject; voxel counts may differ) or a mapping subject → array.
    alphas, n_folds, groups, seed, device
        See :func:`ridge_encoding` (the same folds for every layer and region).
    verbose : bool
        Progress bar over the (layer, region, subject) fits.

    Returns
    -------
    table : DataFrame
        One row per (layer, region, subject): ``layer``, ``region``, ``subject``,
        ``mean_r`` and ``median_r`` (over voxels of the out-of-fold prediction correlation),
        ``n_voxels``.
    """
    if not layer_features or not region_responses:
        raise ValueError("'layer_features' and 'region_responses' must not be empty.")
    per_region: dict[str, dict[str, Any]] = {}
    for region, value in region_responses.items():
        if isinstance(value, Mapping):
            per_region[region] = {str(k): v for k, v in value.items()}
        elif isinstance(value, list | tuple):
            per_region[region] = {f"{i + 1:02d}": v for i, v in enumerate(value)}
        else:
            per_region[region] = {"01": value}
    jobs = [
        (layer, region, subject)
        for layer in layer_features
        for region, subjects in per_region.items()
        for subject in subjects
    ]
    rows = []
    for layer, region, subject in progress(jobs, desc="encoding models", verbose=verbose):
        result = ridge_encoding(
            layer_features[layer],
            per_region[region][subject],
            alphas=alphas,
            n_folds=n_folds,
            groups=groups,
            seed=seed,
            device=device,
        )
        r = np.asarray(_numpy(result.correlation))
        rows.append(
            {
                "layer": layer,
                "region": region,
                "subject": subject,
                "mean_r": float(np.nanmean(r)),
                "median_r": float(np.nanmedian(r)),
                "n_voxels": int(r.shape[0]),
            }
        )
    return pd.DataFrame(rows)
