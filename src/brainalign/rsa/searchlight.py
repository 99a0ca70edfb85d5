"""Searchlight RSA: model RDMs compared with the RDM of every small neighbourhood.

Volumes: a sphere of ``radius`` millimetres around every voxel (or a chosen set of centres),
found with a k-d tree on the voxel coordinates. M/EEG: the sensors within ``radius`` metres of
every sensor, crossed with sliding time windows. Each neighbourhood's patterns (stimuli ×
features in the neighbourhood) give one RDM; RDMs of a chunk of neighbourhoods are computed as
one batch (:func:`~brainalign.rsa.compute_rdms` with a list of patterns of different widths)
and compared with every model RDM at once (:func:`~brainalign.rsa.compare_rdms`), so memory is
bounded by the chunk size, whatever the number of neighbourhoods, and the work runs on the GPU
when one is present.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from brainalign._utils.progress import progress
from brainalign._utils.validation import check_positive
from brainalign.rsa._backend import as_tensor, origin_of, restore, target_device
from brainalign.rsa.compare import compare_rdms
from brainalign.rsa.rdm import compute_rdms

__all__ = [
    "neighbourhoods",
    "searchlight_meeg",
    "searchlight_rsa",
    "time_windows",
]


def neighbourhoods(
    coords: Any, radius: float, *, centres: Any = None, min_size: int = 1
) -> list[np.ndarray]:
    """Indices of the points within ``radius`` of every centre (the centre included).

    Parameters
    ----------
    coords : array-like, shape (n_points, n_dims)
        Voxel coordinates (mm) or sensor positions (m).
    radius : float
        Sphere radius, in the unit of ``coords``.
    centres : array-like of int | None
        Indices of the points used as centres; default every point.
    min_size : int
        Neighbourhoods with fewer points raise an error naming the centre: enlarge ``radius``
        or drop such centres.

    Returns
    -------
    spheres : list of ndarray of int
        One sorted index array per centre.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(coords, dtype=np.float64)
    if points.ndim != 2 or not np.isfinite(points).all():
        raise ValueError(
            f"'coords' must be a finite (n_points, n_dims) array, got shape {points.shape}."
        )
    check_positive("radius", radius)
    check_positive("min_size", min_size)
    idx = np.arange(len(points)) if centres is None else np.asarray(centres, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(points)):
        raise ValueError(
            f"'centres' must index the {len(points)} points, got {idx.min()}..{idx.max()}."
        )
    tree = cKDTree(points)
    spheres = [
        np.sort(np.asarray(s, dtype=np.int64)) for s in tree.query_ball_point(points[idx], r=radius)
    ]
    small = [int(c) for c, s in zip(idx, spheres) if len(s) < min_size]
    if small:
        raise ValueError(
            f"{len(small)} neighbourhoods have fewer than min_size={min_size} points (centres "
            f"{small[:5]}{'...' if len(small) > 5 else ''}); enlarge 'radius' ({radius}) or pass "
            "'centres' without them."
        )
    return spheres


def time_windows(n_times: int, width: int, step: int | None = None) -> list[slice]:
    """Sliding windows of ``width`` samples every ``step`` samples (default ``width``)."""
    check_positive("width", width)
    step = width if step is None else step
    check_positive("step", step)
    if width > n_times:
        raise ValueError(f"'width' ({width} samples) is longer than the epochs ({n_times}).")
    return [slice(t, t + width) for t in range(0, n_times - width + 1, step)]


def _model_rdms(model_rdms: Any, n_stimuli: int, dev: torch.device) -> torch.Tensor:
    models = as_tensor(model_rdms, "model_rdms", device=dev, dtype=torch.float64)
    if models.ndim == 1:
        models = models[None]
    n_pairs = n_stimuli * (n_stimuli - 1) // 2
    if models.ndim != 2 or models.shape[1] != n_pairs:
        raise ValueError(
            f"'model_rdms' must be condensed RDMs (n_models, {n_pairs}) for {n_stimuli} stimuli, "
            f"got shape {tuple(models.shape)}; convert square RDMs with "
            "brainalign.rsa.to_condensed."
        )
    return models


def _run(
    pieces: list[Any],
    models: torch.Tensor,
    *,
    metric: str,
    method: str,
    chunk_size: int,
    device: torch.device,
    verbose: bool,
    desc: str,
) -> torch.Tensor:
    out = torch.empty((len(pieces), models.shape[0]), dtype=torch.float64, device=device)
    starts = range(0, len(pieces), chunk_size)
    for start in progress(starts, desc=desc, total=len(starts), verbose=verbose):
        chunk = [p() for p in pieces[start : start + chunk_size]]
        rdms = compute_rdms(chunk, metric, device=device)
        out[start : start + len(chunk)] = compare_rdms(rdms, models, method=method, device=device)
    return out


def searchlight_rsa(
    patterns: Any,
    coords: Any,
    model_rdms: Any,
    *,
    radius: float = 6.0,
    centres: Any = None,
    min_size: int = 2,
    metric: str = "correlation",
    method: str = "spearman",
    chunk_size: int = 256,
    device: Any = "auto",
    verbose: bool = True,
) -> Any:
    """Volumetric searchlight: compare model RDMs with the RDM of a sphere around every voxel.

    Parameters
    ----------
    patterns : array or tensor, shape (n_stimuli, n_voxels)
        Responses (e.g. betas averaged over repetitions).
    coords : array-like, shape (n_voxels, 3)
        Voxel coordinates in millimetres (e.g. ``Recording.voxel_coords``).
    model_rdms : array or tensor, shape (n_models, n_pairs) or (n_pairs,)
        Condensed model RDMs over the same stimuli.
    radius : float
        Sphere radius, millimetres.
    centres : array-like of int | None
        Voxels used as centres; default all.
    min_size : int
        Smallest sphere allowed (voxels).
    metric : str
        RDM metric (see :func:`~brainalign.rsa.compute_rdms`).
    method : str
        Comparison (see :func:`~brainalign.rsa.compare_rdms`).
    chunk_size : int
        Spheres per batch (bounds memory).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    verbose : bool
        Progress bar.

    Returns
    -------
    similarity : array or tensor, shape (n_centres, n_models)
        NumPy in, NumPy out; torch in, torch out.
    """
    origin = origin_of(patterns, model_rdms)
    dev = target_device(device, patterns, model_rdms)
    x = as_tensor(patterns, "patterns", device=dev)
    if x.ndim != 2:
        raise ValueError(f"'patterns' must be (n_stimuli, n_voxels), got shape {tuple(x.shape)}.")
    points = np.asarray(coords)
    if points.shape[0] != x.shape[1]:
        raise ValueError(
            f"'coords' has {points.shape[0]} voxels but 'patterns' has {x.shape[1]} columns."
        )
    check_positive("chunk_size", chunk_size)
    models = _model_rdms(model_rdms, x.shape[0], dev)
    spheres = neighbourhoods(points, radius, centres=centres, min_size=min_size)
    index = [torch.from_numpy(s).to(dev) for s in spheres]
    pieces = [lambda i=i: x[:, i] for i in index]
    out = _run(
        pieces,
        models,
        metric=metric,
        method=method,
        chunk_size=int(chunk_size),
        device=dev,
        verbose=verbose,
        desc="searchlight",
    )
    return restore(out, origin)


def searchlight_meeg(
    epochs: Any,
    positions: Any,
    model_rdms: Any,
    *,
    radius: float = 0.04,
    width: int = 10,
    step: int | None = None,
    metric: str = "correlation",
    method: str = "spearman",
    chunk_size: int = 256,
    device: Any = "auto",
    verbose: bool = True,
) -> Any:
    """Sensor × time searchlight on M/EEG epochs.

    Parameters
    ----------
    epochs : array or tensor, shape (n_stimuli, n_channels, n_times)
        Responses per stimulus (e.g. averaged over repetitions).
    positions : array-like, shape (n_channels, 3)
        Sensor positions in metres (``Recording.sensor_positions``).
    model_rdms : array or tensor, shape (n_models, n_pairs) or (n_pairs,)
        Condensed model RDMs over the same stimuli.
    radius : float
        Neighbourhood radius, metres (sensors within it, the centre included).
    width, step : int
        Window length and hop, samples (default hop: ``width``, non-overlapping).
    metric, method, chunk_size, device, verbose
        As in :func:`searchlight_rsa`.

    Returns
    -------
    similarity : array or tensor, shape (n_channels, n_windows, n_models)
        Model similarity of each sensor neighbourhood in each window; the windows start at
        samples ``0, step, 2·step, …``.
    """
    origin = origin_of(epochs, model_rdms)
    dev = target_device(device, epochs, model_rdms)
    x = as_tensor(epochs, "epochs", device=dev)
    if x.ndim != 3:
        raise ValueError(
            f"'epochs' must be (n_stimuli, n_channels, n_times), got shape {tuple(x.shape)}."
        )
    points = np.asarray(positions)
    if points.shape[0] != x.shape[1]:
        raise ValueError(
            f"'positions' has {points.shape[0]} sensors but 'epochs' has {x.shape[1]} channels."
        )
    check_positive("chunk_size", chunk_size)
    models = _model_rdms(model_rdms, x.shape[0], dev)
    groups = [torch.from_numpy(s).to(dev) for s in neighbourhoods(points, radius)]
    windows = time_windows(x.shape[2], width, step)
    pieces = [lambda g=g, w=w: x[:, g, w].reshape(x.shape[0], -1) for g in groups for w in windows]
    out = _run(
        pieces,
        models,
        metric=metric,
        method=method,
        chunk_size=int(chunk_size),
        device=dev,
        verbose=verbose,
        desc="sensor x time searchlight",
    )
    return restore(out.reshape(len(groups), len(windows), models.shape[0]), origin)
