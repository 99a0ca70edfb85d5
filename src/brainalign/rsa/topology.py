"""Topological RSA (Lin & Kriegeskorte, "The Topology and Geometry of Neural Representations").

The geo-topological (GT) transform of a dissimilarity ``d`` with thresholds ``l <= u``::

    GT(d) = 0                    if d <= l
            (d - l) / (u - l)    if l < d < u
            1                    if d >= u          (for l == u: 0 if d <= l, else 1)

``l = min``, ``u = max`` keeps the geometry (a min-max rescaling); ``l = u`` gives a binary
neighbourhood graph (pure topology); in between, small dissimilarities collapse to 0 (noise) and
large ones saturate at 1 (a neighbourhood graph with a local geometry). ``l`` and ``u`` are
quantiles of *each* RDM's own dissimilarities (rsatoolbox's ``geotopological_transform`` pools the
quantiles over all RDMs of the object, and also mutates its input; this module does neither).

The geodesic variant (RGDM) replaces each GT dissimilarity by the length of the shortest path
between the two stimuli in the graph whose edges are the pairs with ``GT < 1``, weighted by GT
(rsatoolbox's ``geodesic_transform``: rescale to [0, 1], drop the edges of weight 1, all-pairs
shortest paths). Pairs in different components get ``inf``.

Model selection (:func:`topological_model_selection`) transforms the data RDMs and the candidate
model RDMs with each ``(l, u)`` of a grid, compares every data RDM with every model, and reports
which model wins at each grid point (and, given the true models, how often the true one wins:
the identification accuracy the paper uses to choose ``l`` and ``u``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from brainalign._utils.validation import check_option
from brainalign.rsa._backend import as_tensor, origin_of, restore, target_device
from brainalign.rsa._ranks import rankdata
from brainalign.rsa.compare import (
    COMPARE_METHODS,
    _is_square_rdm,
    as_rdm_vectors,
    compare_rdms,
    has_nan,
)
from brainalign.rsa.condensed import n_stimuli_from_pairs, pair_indices, to_square

__all__ = [
    "TopologicalSelection",
    "default_grid",
    "geodesic",
    "geotopological",
    "rdm_quantiles",
    "topological_model_selection",
]

TRANSFORMS = ("geotopological", "geodesic")


def rdm_quantiles(vectors: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """Quantiles of each row, NaNs ignored, with numpy's default linear interpolation.

    Uses two order statistics per quantile and row: one ``numpy.partition`` call (a selection,
    not a sort) on the CPU, ``torch.kthvalue`` elsewhere (``torch.quantile`` sorts).

    Parameters
    ----------
    vectors : tensor, shape (n_rdms, n_pairs)
    qs : sequence of float in [0, 1]

    Returns
    -------
    quantiles : tensor, shape (n_rdms, len(qs))
    """
    out = torch.empty((vectors.shape[0], len(qs)), dtype=vectors.dtype, device=vectors.device)
    nan_rows = vectors.isnan().any(dim=1) if has_nan(vectors) else None
    if nan_rows is None:
        return _quantile_rows(vectors, qs)
    clean = (~nan_rows).nonzero().flatten()
    if clean.numel():
        out[clean] = _quantile_rows(vectors[clean] if bool(nan_rows.any()) else vectors, qs)
    for r in nan_rows.nonzero().flatten().tolist():
        row = vectors[r][~vectors[r].isnan()]
        out[r] = _quantile_rows(row[None], qs)[0] if row.numel() else float("nan")
    return out


def _quantile_rows(x: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    n = x.shape[1]
    plan = []
    for q in qs:
        h = (n - 1) * q
        lo = int(np.floor(h))
        plan.append((lo, min(lo + 1, n - 1), h - lo))
    if x.device.type == "cpu":
        stat = _order_statistics_numpy(x.numpy(), sorted({lo for lo, _, _ in plan}))
    else:
        stat = _order_statistics_torch(x, sorted({k for lo, hi, _ in plan for k in (lo, hi)}))
    cols = []
    for lo, hi, t in plan:
        below, above = stat[lo], stat[hi]
        diff = above - below
        # numpy's _lerp: a + (b - a) t, or b - (b - a)(1 - t) for t >= 0.5
        cols.append(above - diff * (1 - t) if t >= 0.5 else below + diff * t)
    return torch.stack(cols, dim=1)


def _order_statistics_torch(x: torch.Tensor, ks: list[int]) -> dict[int, torch.Tensor]:
    """The order statistics ``k`` (0-based) of each row, for every ``k`` in ``ks``."""
    return {k: torch.kthvalue(x, k + 1, dim=1).values for k in ks}


def _order_statistics_numpy(
    xn: np.ndarray, lows: list[int], block_elements: int = 1 << 21
) -> dict[int, torch.Tensor]:
    """The order statistics ``k`` and ``k + 1`` (0-based) of each row, for every ``k`` in the
    sorted list ``lows``.

    The lower ones are selected in blocks of rows in one reused buffer (fresh copies of large
    arrays cost more in page faults than the selection); the next order statistic is the minimum
    of the segment up to the next selected position.
    """
    n_rows, n = xn.shape
    rows = max(1, min(n_rows, block_elements // max(n, 1)))
    buf = np.empty((rows, n), dtype=xn.dtype)
    found = np.empty((n_rows, 2 * len(lows)), dtype=xn.dtype)
    bounds = [*lows[1:], n - 1]
    for r in range(0, n_rows, rows):
        b = buf[: min(rows, n_rows - r)]
        np.copyto(b, xn[r : r + rows])
        b.partition(lows, axis=1)
        for c, (lo, nxt) in enumerate(zip(lows, bounds)):
            found[r : r + rows, 2 * c] = b[:, lo]
            found[r : r + rows, 2 * c + 1] = (
                b[:, lo + 1 : nxt + 1].min(axis=1) if lo + 1 < n else b[:, lo]
            )
    stat: dict[int, torch.Tensor] = {}
    for c, lo in enumerate(lows):
        stat[lo] = torch.from_numpy(found[:, 2 * c])
        stat.setdefault(lo + 1, torch.from_numpy(found[:, 2 * c + 1]))
    return stat


def geotopological(
    rdms: Any,
    lower: float = 0.0,
    upper: float = 1.0,
    *,
    quantiles: bool = True,
    rank: bool = False,
    device: Any = "auto",
) -> Any:
    """Geo-topological transform of each RDM with its own thresholds.

    Parameters
    ----------
    rdms : array or tensor
        Condensed ``(n_pairs,)`` / ``(n_rdms, n_pairs)`` or square ``(n, n)`` / ``(n_rdms, n, n)``.
        Not modified.
    lower, upper : float
        Thresholds ``l <= u``: quantiles in [0, 1] of each RDM's dissimilarities
        (``quantiles=True``, numpy's linear interpolation, NaNs ignored) or dissimilarity values.
    quantiles : bool
        Whether ``lower``/``upper`` are quantiles (per RDM) or values.
    rank : bool
        Rank-transform and min-max scale each RDM before thresholding, as the paper's code does
        (then the geometry kept between ``l`` and ``u`` is that of the ranks).
    device : str or torch.device
        ``"auto"``: the device of torch inputs; for NumPy inputs CUDA when present, else CPU.

    Returns
    -------
    transformed : array or tensor
        Same shape and form as ``rdms``, values in [0, 1] (NaN stays NaN; a square input keeps a
        zero diagonal).
    """
    origin = origin_of(rdms)
    v, square = _vectors(rdms, device)
    out = _gt(v, lower, upper, quantiles, rank)
    return _restore_form(out, square, rdms, origin)


def geodesic(
    rdms: Any,
    lower: float = 0.0,
    upper: float = 1.0,
    *,
    quantiles: bool = True,
    rank: bool = False,
    keep_zero_edges: bool = True,
    device: Any = "auto",
) -> Any:
    """Geodesic (shortest-path) distances on the graph of geo-topologically transformed RDMs.

    Parameters
    ----------
    rdms, lower, upper, quantiles, rank, device
        As :func:`geotopological`, applied first. ``lower=0, upper=1`` is rsatoolbox's
        ``geodesic_transform`` (a min-max rescaling). RDMs must be NaN-free.
    keep_zero_edges : bool
        Pairs transformed to 0 (``d <= l``) are edges of length 0: the two stimuli are identified.
        rsatoolbox and the paper's code build the graph with networkx's ``from_numpy_array``,
        which drops zero weights: ``False`` reproduces that (those pairs are then linked only
        through other stimuli).

    Returns
    -------
    distances : array or tensor
        Same shape and form as ``rdms``: the shortest-path length between every pair through
        edges of weight < 1; ``inf`` between disconnected stimuli.

    Notes
    -----
    CPU: :func:`scipy.sparse.csgraph.shortest_path` per RDM (Dijkstra on sparse graphs). CUDA: a
    batched Floyd–Warshall over all RDMs at once.
    """
    origin = origin_of(rdms)
    v, square = _vectors(rdms, device)
    if has_nan(v):
        raise ValueError(
            "'rdms' contains NaN; shortest paths need every dissimilarity. Fill or drop the "
            "missing pairs first."
        )
    gt = _gt(v, lower, upper, quantiles, rank)
    n = n_stimuli_from_pairs(v.shape[1])
    out = _shortest_paths(gt, n, keep_zero_edges)
    return _restore_form(out, square, rdms, origin)


def _vectors(rdms: Any, device: Any) -> tuple[torch.Tensor, bool]:
    dev = target_device(device, rdms)
    t = as_tensor(rdms, "rdms", device=dev)
    square = t.ndim == 3 or (t.ndim == 2 and t.shape[0] == t.shape[1] and _is_square_rdm(t))
    return as_rdm_vectors(t, "rdms"), square


def _restore_form(out: torch.Tensor, square: bool, rdms: Any, origin: Any) -> Any:
    ndim = rdms.ndim if hasattr(rdms, "ndim") else np.ndim(rdms)
    if square:
        out = to_square(out)
        return restore(out if ndim == 3 else out[0], origin)
    return restore(out if ndim == 2 else out[0], origin)


def _check_thresholds(lower: float, upper: float, quantiles: bool) -> None:
    if not lower <= upper:
        raise ValueError(f"'lower' must not exceed 'upper', got lower={lower} and upper={upper}.")
    if quantiles and not (0.0 <= lower <= 1.0 and 0.0 <= upper <= 1.0):
        raise ValueError(
            f"With quantiles=True, 'lower' and 'upper' are quantiles in [0, 1]; got lower={lower}, "
            f"upper={upper}. Pass quantiles=False for dissimilarity values."
        )


def _gt(v: torch.Tensor, lower: float, upper: float, quantiles: bool, rank: bool) -> torch.Tensor:
    """The GT transform of each row of ``v`` (n_rdms, n_pairs); a new tensor."""
    _check_thresholds(lower, upper, quantiles)
    if rank:
        v = _minmax_ranks(v)
    if quantiles:
        lo, hi = rdm_quantiles(v, (lower, upper)).unbind(dim=1)
        lo, hi = lo[:, None], hi[:, None]
    else:
        lo = torch.full((v.shape[0], 1), lower, dtype=v.dtype, device=v.device)
        hi = torch.full((v.shape[0], 1), upper, dtype=v.dtype, device=v.device)
    width = hi - lo
    safe = torch.where(width > 0, width, 1)
    if v.device.type == "cpu":  # NumPy's in-place passes: no threads to wait for
        out_np = np.subtract(v.numpy(), lo.numpy())
        out_np /= safe.numpy()
        np.clip(out_np, 0, 1, out=out_np)
        out = torch.from_numpy(out_np)
    else:
        out = torch.sub(v, lo).div_(safe).clamp_(0, 1)
    binary = (width <= 0).flatten()
    if bool(binary.any()):
        out[binary] = torch.where(
            v[binary].isnan(), float("nan"), (v[binary] > lo[binary]).to(v.dtype)
        )
    return out


def _minmax_ranks(v: torch.Tensor) -> torch.Tensor:
    if has_nan(v):
        raise ValueError("rank=True needs NaN-free RDMs.")
    r = rankdata(v).to(v.dtype)
    lo = r.min(dim=1, keepdim=True).values
    hi = r.max(dim=1, keepdim=True).values
    return (r - lo) / torch.where(hi > lo, hi - lo, 1)


def _shortest_paths(gt: torch.Tensor, n: int, keep_zero_edges: bool) -> torch.Tensor:
    i, j = pair_indices(n, gt.device)
    if gt.device.type != "cpu":
        return _floyd_warshall(gt, i, j, n, keep_zero_edges)
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    g = gt.numpy()
    ii, jj = i.numpy(), j.numpy()
    out = np.empty(g.shape, dtype=np.float64)
    for r in range(g.shape[0]):
        w = g[r]
        edge = w < 1 if keep_zero_edges else (w < 1) & (w > 0)
        # explicit zeros in a sparse graph are edges of length 0 for csgraph
        graph = csr_matrix((w[edge].astype(np.float64), (ii[edge], jj[edge])), shape=(n, n))
        dist = shortest_path(graph, directed=False)
        out[r] = dist[ii, jj]
    return torch.from_numpy(out).to(gt.dtype)


def _floyd_warshall(
    gt: torch.Tensor, i: torch.Tensor, j: torch.Tensor, n: int, keep_zero_edges: bool
) -> torch.Tensor:
    edge = gt < 1 if keep_zero_edges else (gt < 1) & (gt > 0)
    w = torch.where(edge, gt, torch.full_like(gt, float("inf")))
    d = torch.full((gt.shape[0], n, n), float("inf"), dtype=gt.dtype, device=gt.device)
    d[:, i, j] = w
    d[:, j, i] = w
    d.diagonal(dim1=1, dim2=2).zero_()
    for k in range(n):
        torch.minimum(d, d[:, :, k : k + 1] + d[:, k : k + 1, :], out=d)
    return d[:, i, j]


# ---------------------------------------------------------------------------------------------
# model selection


@dataclass(frozen=True)
class TopologicalSelection:
    """Result of :func:`topological_model_selection` (NumPy arrays).

    Attributes
    ----------
    grid : (n_grid, 2) float array
        The ``(lower, upper)`` quantile pairs.
    similarity : (n_grid, n_data, n_models) float array
        Comparison of every transformed data RDM with every transformed model RDM.
    best_model : (n_grid, n_data) int array
        Index of the most similar model per grid point and data RDM.
    accuracy : (n_grid,) float array or None
        Fraction of data RDMs whose true model wins (when ``truth`` was given).
    best : int or None
        Grid index with the highest accuracy (the first one on ties), when ``truth`` was given.
    """

    grid: np.ndarray
    similarity: np.ndarray
    best_model: np.ndarray
    accuracy: np.ndarray | None
    best: int | None


def default_grid(step: float = 0.1, *, include_equal: bool = False) -> np.ndarray:
    """All ``(lower, upper)`` quantile pairs on a regular grid with ``lower < upper``.

    Parameters
    ----------
    step : float
        Grid spacing in (0, 1]; ``1 / step`` should be an integer.
    include_equal : bool
        Also include ``lower == upper`` (binary neighbourhood graphs) for ``0 < lower < 1``.

    Returns
    -------
    grid : (n_grid, 2) float array
    """
    if not 0 < step <= 1:
        raise ValueError(f"'step' must be in (0, 1], got {step}.")
    values = np.round(np.arange(0, 1 + step / 2, step), 10)
    pairs = [
        (lo, up)
        for lo in values
        for up in values
        if lo < up or (include_equal and lo == up and 0 < lo < 1)
    ]
    return np.array(pairs, dtype=np.float64)


def topological_model_selection(
    data_rdms: Any,
    model_rdms: Any,
    *,
    grid: Any = None,
    method: str = "spearman",
    transform: str = "geotopological",
    truth: Any = None,
    rank: bool = False,
    device: Any = "auto",
) -> TopologicalSelection:
    """Compare data RDMs with model RDMs under each geo-topological transform of a grid.

    Parameters
    ----------
    data_rdms : array or tensor, (n_data, n_pairs) or squares
        E.g. one region in several subjects, or several noisy measurements.
    model_rdms : array or tensor, (n_models, n_pairs) or squares
        The candidates (layers, regions of other subjects, …), same stimuli.
    grid : array-like of shape (n_grid, 2), optional
        ``(lower, upper)`` quantile pairs; default :func:`default_grid` (step 0.1, lower < upper).
    method : str
        Comparison method of :func:`~brainalign.rsa.compare_rdms`.
    transform : {"geotopological", "geodesic"}
        Compare the GT matrices (RGTM) or their geodesic distances (RGDM). Infinite geodesic
        distances (disconnected stimuli) are replaced by each RDM's largest finite one, as the
        paper's code does.
    truth : array-like of int, shape (n_data,), optional
        Index of the true model of each data RDM; gives the identification accuracy per grid point.
    rank : bool
        Rank-transform first (see :func:`geotopological`).
    device : str or torch.device
        Where to compute.

    Returns
    -------
    TopologicalSelection
    """
    check_option("transform", transform, TRANSFORMS)
    check_option("method", method, COMPARE_METHODS)
    dev = target_device(device, data_rdms, model_rdms)
    data = as_rdm_vectors(data_rdms, "data_rdms", device=dev)
    models = as_rdm_vectors(model_rdms, "model_rdms", device=dev)
    if data.shape[1] != models.shape[1]:
        raise ValueError(
            f"'data_rdms' ({data.shape[1]} pairs) and 'model_rdms' ({models.shape[1]} pairs) must "
            "describe the same stimuli."
        )
    grid_arr = default_grid() if grid is None else np.asarray(grid, dtype=np.float64)
    if grid_arr.ndim != 2 or grid_arr.shape[1] != 2 or grid_arr.shape[0] == 0:
        raise ValueError(
            f"'grid' must be a non-empty (n_grid, 2) array of (lower, upper) pairs, got shape "
            f"{grid_arr.shape}."
        )
    truth_arr = None
    if truth is not None:
        truth_arr = np.asarray(truth, dtype=np.int64).reshape(-1)
        if (
            truth_arr.shape[0] != data.shape[0]
            or truth_arr.min() < 0
            or truth_arr.max() >= models.shape[0]
        ):
            raise ValueError(
                f"'truth' must give, for each of the {data.shape[0]} data RDMs, a model index in "
                f"[0, {models.shape[0] - 1}]; got {truth_arr.tolist()[:10]}."
            )
    n = n_stimuli_from_pairs(data.shape[1])
    both = torch.cat([data, models])
    sims = np.empty((grid_arr.shape[0], data.shape[0], models.shape[0]))
    for g, (lo, up) in enumerate(grid_arr):
        t = _gt(both, float(lo), float(up), True, rank)
        if transform == "geodesic":
            t = _finite(_shortest_paths(t, n, True))
        sims[g] = compare_rdms(t[: data.shape[0]], t[data.shape[0] :], method).cpu().numpy()
    best_model = np.argmax(np.nan_to_num(sims, nan=-np.inf), axis=2)
    accuracy = best = None
    if truth_arr is not None:
        accuracy = (best_model == truth_arr[None, :]).mean(axis=1)
        best = int(np.argmax(accuracy))
    return TopologicalSelection(grid_arr, sims, best_model, accuracy, best)


def _finite(v: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(v)
    top = torch.where(finite, v, torch.full_like(v, -float("inf"))).max(dim=1, keepdim=True).values
    return torch.where(finite, v, top)
