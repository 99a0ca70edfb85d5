"""Representational dissimilarity matrices from response patterns, batched and chunked.

One call computes the RDMs of many regions, layers or subjects at once (a batch, or a list of
pattern arrays with different feature counts), on the GPU when there is one. The stimulus axis is
processed in blocks of rows, so that beyond the output itself memory stays bounded whatever the
number of stimuli. Results equal rsatoolbox's ``calc_rdm`` (same normalisations; see
:func:`compute_rdms`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from brainalign._utils.validation import check_option, check_positive
from brainalign.rsa._backend import as_tensor, origin_of, restore, target_device, threads_for
from brainalign.rsa.condensed import to_square

__all__ = ["METRICS", "compute_rdms"]

#: Accepted values of ``metric`` in :func:`compute_rdms`.
METRICS = (
    "correlation",
    "cosine",
    "euclidean",
    "sqeuclidean",
    "mahalanobis",
    "crossnobis",
    "poisson",
    "poisson_cv",
)
_CROSS_VALIDATED = ("crossnobis", "poisson_cv")
_REMOVE_MEAN_OK = ("cosine", "euclidean", "sqeuclidean", "mahalanobis", "crossnobis")
#: Elements of one block of dissimilarities (rows x columns x RDMs) when chunk_size is None.
_BLOCK_ELEMENTS = 1 << 24


def compute_rdms(
    patterns: Any,
    metric: str = "correlation",
    *,
    descriptors: Any = None,
    noise: Any = None,
    folds: Any = None,
    remove_mean: bool = False,
    prior_lambda: float = 1.0,
    prior_weight: float = 0.1,
    chunk_size: int | None = None,
    device: Any = "auto",
    condensed: bool = True,
) -> Any:
    """Compute RDMs from response patterns.

    Parameters
    ----------
    patterns : array or tensor, or list of them
        ``(n_stimuli, n_features)`` for one RDM; ``(n_rdms, n_stimuli, n_features)`` for a batch
        (e.g. subjects of one region); or a list of ``(n_stimuli, n_features_k)`` arrays whose
        feature counts differ (layers, regions), all with the same stimuli. For ``"crossnobis"``
        and ``"poisson_cv"`` the rows are observations ``(n_observations, n_features)``.
    metric : str
        The dissimilarity, with rsatoolbox's normalisations (``P`` = number of features):

        ============== ==============================================================
        ``correlation`` ``1 - pearson(x_i, x_j)`` (patterns centred over features)
        ``cosine``      ``1 - cos(x_i, x_j)``
        ``euclidean``   ``||x_i - x_j||^2 / P`` (rsatoolbox's ``"euclidean"``)
        ``sqeuclidean`` ``||x_i - x_j||^2`` (scipy's, not normalised)
        ``mahalanobis`` ``(x_i - x_j)' W (x_i - x_j) / P``, ``W`` = ``noise`` precision
        ``crossnobis``  ``(a_i - a_j)' W (b_i - b_j) / P`` averaged over leave-one-fold-out
                        splits: ``a`` = mean of the training folds, ``b`` = held-out fold
        ``poisson``     symmetrised KL divergence of Poisson rates
                        ``sum_k (m_ik - m_jk)(log m_ik - log m_jk) / P``, with
                        ``m = (x + prior_lambda * prior_weight) / (1 + prior_weight)``
        ``poisson_cv``  the same, ``m`` from the training folds and ``log m`` from the
                        held-out fold, averaged over folds
        ============== ==============================================================
    descriptors : array-like, shape (n_observations,), optional
        The condition of every row. Rows of the same condition are averaged first, and the RDM's
        stimuli are the conditions in sorted order (``numpy.unique``), as rsatoolbox does.
        Required by the cross-validated metrics.
    noise : array or tensor, optional
        Noise precision for ``"mahalanobis"`` and ``"crossnobis"``: ``(n_features,
        n_features)``, or ``(n_features,)`` for a diagonal precision, or a list with one per RDM.
        Default: the identity (then mahalanobis equals euclidean). Estimate one with
        :func:`~brainalign.rsa.noise_precision`.
    folds : array-like, shape (n_observations,), optional
        The run/fold of every observation, for the cross-validated metrics. Default:
        rsatoolbox's: the k-th occurrence of each condition is in fold k (needs the same number of
        repetitions of every condition). Every condition must occur in every fold.
    remove_mean : bool
        Subtract each pattern's mean over features first (cosine, euclidean, sqeuclidean,
        mahalanobis, crossnobis; correlation always does).
    prior_lambda, prior_weight : float
        The prior of the Poisson metrics (rsatoolbox's defaults).
    chunk_size : int, optional
        Stimuli (rows of the RDM) per block. Default: blocks of about 16 M values.
    device : str or torch.device
        ``"auto"``: the device of torch inputs; for NumPy inputs CUDA when present, else CPU.
    condensed : bool
        Return condensed vectors (``squareform`` order) or square matrices.

    Returns
    -------
    rdms : array or tensor
        ``(n_pairs,)`` for one 2-D input, ``(n_rdms, n_pairs)`` for a batch or a list;
        ``(…, n_stimuli, n_stimuli)`` when ``condensed=False``. NumPy in, NumPy out; torch in,
        torch out on the input's device. The dtype follows the input (integers become float64).

    Notes
    -----
    rsatoolbox's ``calc_rdm_poisson_cv`` returns only the last fold's RDM (its loop overwrites the
    result); ``"poisson_cv"`` here averages the folds, as crossnobis does. Correlation and cosine
    dissimilarities of a constant pattern are NaN.
    """
    check_option("metric", metric, METRICS)
    items, batched, is_list = _split_patterns(patterns)
    origin = origin_of(*items)
    dev = target_device(device, *items)
    if chunk_size is not None:
        check_positive("chunk_size", chunk_size)
    if remove_mean and metric not in (*_REMOVE_MEAN_OK, "correlation"):
        raise ValueError(
            f"remove_mean=True has no meaning for metric={metric!r}; it applies to "
            f"{', '.join(repr(m) for m in _REMOVE_MEAN_OK)}."
        )
    if metric in ("poisson", "poisson_cv"):
        check_positive("prior_weight", prior_weight, strict=False)
    tensors = [as_tensor(x, "patterns", device=dev) for x in items]
    dtype = _promote([t.dtype for t in tensors])
    tensors = [t.to(dtype) for t in tensors]
    n_rdms = sum(t.shape[0] for t in tensors) if batched else len(tensors)
    noises = _split_noise(noise, n_rdms, metric, dev, dtype)

    with threads_for(sum(t.numel() for t in tensors), dev):
        if metric in _CROSS_VALIDATED:
            out = _cross_validated(
                tensors,
                batched,
                metric,
                descriptors,
                folds,
                noises,
                remove_mean,
                prior_lambda,
                prior_weight,
                chunk_size,
            )
        else:
            if descriptors is not None:
                tensors = [_average_by(t, descriptors)[0] for t in tensors]
            out = _plain(
                tensors,
                batched,
                metric,
                noises,
                remove_mean,
                prior_lambda,
                prior_weight,
                chunk_size,
            )
    if not (batched or is_list):
        out = out[0]
    if not condensed:
        out = to_square(out)
    return restore(out, origin)


# ---------------------------------------------------------------------------------------------
# input parsing


def _split_patterns(patterns: Any) -> tuple[list[Any], bool, bool]:
    """Return (items, batched, is_list): a list of 2-D inputs, or one 3-D input (batched)."""
    if isinstance(patterns, Sequence) and not isinstance(patterns, str):
        items = list(patterns)
        if not items:
            raise ValueError("'patterns' is an empty list; give at least one pattern array.")
        if all(_ndim(x) == 1 for x in items) or any(np.isscalar(x) for x in items):
            items = [patterns]  # a nested list of numbers: one 2-D array
        else:
            for k, x in enumerate(items):
                if _ndim(x) != 2:
                    raise ValueError(
                        f"'patterns' item {k} must have shape (n_stimuli, n_features), got "
                        f"{tuple(x.shape) if hasattr(x, 'shape') else np.shape(x)}."
                    )
            return items, False, True
    ndim = _ndim(patterns)
    if ndim == 2:
        return [patterns], False, False
    if ndim == 3:
        return [patterns], True, False
    raise ValueError(
        "'patterns' must have shape (n_stimuli, n_features), (n_rdms, n_stimuli, n_features), or "
        f"be a list of (n_stimuli, n_features) arrays; got {ndim} dimensions."
    )


def _ndim(x: Any) -> int:
    return int(x.ndim) if hasattr(x, "ndim") else int(np.ndim(x))


def _promote(dtypes: list[torch.dtype]) -> torch.dtype:
    dtype = dtypes[0]
    for d in dtypes[1:]:
        dtype = torch.promote_types(dtype, d)
    return dtype


def _split_noise(
    noise: Any, n_rdms: int, metric: str, device: torch.device, dtype: torch.dtype
) -> list[torch.Tensor | None]:
    """One precision (or None) per RDM."""
    if noise is None:
        return [None] * n_rdms
    if metric not in ("mahalanobis", "crossnobis"):
        raise ValueError(
            f"'noise' is used by metric='mahalanobis' or 'crossnobis' only, not {metric!r}; "
            "remove it or change the metric."
        )
    if isinstance(noise, Sequence):
        if len(noise) != n_rdms:
            raise ValueError(
                f"'noise' is a list of {len(noise)} precisions but there are {n_rdms} RDMs; give "
                "one precision per RDM or a single one for all."
            )
        return [as_tensor(w, "noise", device=device, dtype=dtype) for w in noise]
    w = as_tensor(noise, "noise", device=device, dtype=dtype)
    if w.ndim == 3:
        if w.shape[0] != n_rdms:
            raise ValueError(f"'noise' holds {w.shape[0]} precisions but there are {n_rdms} RDMs.")
        return list(w.unbind(0))
    return [w] * n_rdms


def _check_noise(w: torch.Tensor | None, n_features: int) -> torch.Tensor | None:
    if w is None:
        return None
    if w.shape not in ((n_features, n_features), (n_features,)):
        raise ValueError(
            f"'noise' must be a precision of shape ({n_features}, {n_features}) or a diagonal of "
            f"shape ({n_features},) for patterns with {n_features} features, got {tuple(w.shape)}."
        )
    return w


def _labels(values: Any, n_obs: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted labels and the inverse index of each observation."""
    arr = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if arr.ndim != 1 or arr.shape[0] != n_obs:
        raise ValueError(
            f"{name!r} must be a 1-D sequence with one label per observation ({n_obs}), got shape "
            f"{arr.shape}."
        )
    unique, inverse = np.unique(arr, return_inverse=True)
    return unique, inverse.reshape(-1)


def _average_by(x: torch.Tensor, descriptors: Any) -> tuple[torch.Tensor, np.ndarray]:
    """Average rows (last-but-one axis) by condition, conditions in sorted order."""
    unique, inverse = _labels(descriptors, x.shape[-2], "descriptors")
    sums = _group_sums(_native(x.movedim(-2, 0)), inverse, len(unique))
    counts = np.bincount(inverse, minlength=len(unique)).astype(np.float64)
    means = _to_tensor(sums).movedim(0, -2)
    return means / torch.from_numpy(counts).to(means.device, means.dtype)[:, None], unique


# ---------------------------------------------------------------------------------------------
# array helpers: the kernels below run on NumPy arrays on the CPU and on tensors elsewhere.
# NumPy's single-threaded passes and OpenBLAS products do not stall when the cores are shared,
# where torch's threaded CPU kernels wait milliseconds per operation; only operators, slicing and
# the helpers below are used, so one code serves both.

Array = Any  # numpy.ndarray on the CPU, torch.Tensor elsewhere


def _native(t: torch.Tensor) -> Array:
    return t.numpy() if t.device.type == "cpu" else t


def _to_tensor(a: Array) -> torch.Tensor:
    return torch.from_numpy(a) if isinstance(a, np.ndarray) else a


def _empty(shape: tuple[int, ...], like: Array) -> Array:
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype=like.dtype)
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _sumsq(x: Array) -> Array:
    """Sum of squares over the last axis (no temporary on the CPU)."""
    if isinstance(x, np.ndarray):
        return np.einsum("...i,...i->...", x, x)
    return (x * x).sum(-1)


def _log(x: Array) -> Array:
    return np.log(x) if isinstance(x, np.ndarray) else torch.log(x)


def _group_sums(x: Array, index: np.ndarray, n_groups: int) -> Array:
    """Sums of the rows (first axis) of ``x`` that share an index: (n_groups, ...)."""
    if isinstance(x, np.ndarray):
        sums = np.zeros((n_groups, *x.shape[1:]), dtype=x.dtype)
        np.add.at(sums, index, x)
        return sums
    sums_t = torch.zeros((n_groups, *x.shape[1:]), dtype=x.dtype, device=x.device)
    # index_put_ with accumulation (index_add_ has a large fixed cost)
    return sums_t.index_put_((torch.from_numpy(index).to(x.device),), x, accumulate=True)


# ---------------------------------------------------------------------------------------------
# blocked pairwise kernels


def _row_start(i: int, n: int) -> int:
    """Condensed index of the pair (i, i + 1)."""
    return i * n - i * (i + 1) // 2


def _blocked(
    n: int,
    n_batch: int,
    chunk_size: int | None,
    block: Callable[[int, int], Array],
    out: Array,
) -> Array:
    """Fill ``out`` (n_batch, n_pairs) block by block of RDM rows.

    ``block(s, e)`` returns the dissimilarities of rows ``s:e`` with columns ``s:n`` as a
    (n_batch, e - s, n - s) array; its strict upper triangle is the condensed segment of those
    rows.
    """
    if chunk_size is None:
        chunk_size = max(1, _BLOCK_ELEMENTS // max(1, n * n_batch))
    for s in range(0, n - 1, chunk_size):
        e = min(s + chunk_size, n)  # the last row (no pairs) completes a symmetric product
        values = block(s, e)
        mask: Array
        if isinstance(out, np.ndarray):
            mask = np.triu(np.ones((e - s, n - s), dtype=bool), 1)
        else:
            mask = torch.ones((e - s, n - s), dtype=torch.bool, device=out.device).triu_(1)
        out[:, _row_start(s, n) : _row_start(e, n)] = values[:, mask]
    return out


def _mm(a: Array, b: Array) -> Array:
    """``a @ b``; CPU tensors through NumPy (torch's CPU BLAS stalls on shared cores, see
    :mod:`brainalign.rsa._backend`)."""
    if isinstance(a, torch.Tensor) and a.device.type == "cpu" and not a.requires_grad:
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return a @ b


def _gram_rdms(x: Array, finish: Callable[[Array, int, int], Array], chunk: int | None) -> Array:
    """RDMs whose block is ``finish(x[:, s:e] @ x[:, s:].T, s, e)``."""
    n_batch, n = x.shape[0], x.shape[1]
    out = _empty((n_batch, n * (n - 1) // 2), x)
    return _blocked(n, n_batch, chunk, lambda s, e: finish(_mm(x[:, s:e], x[:, s:].mT), s, e), out)


def _cross_rdms(a: Array, b: Array, scale: Array, chunk: int | None) -> Array:
    """``(k_ii + k_jj - k_ij - k_ji) * scale`` with ``k = a b'``, without forming k at once."""
    n_batch, n = a.shape[0], a.shape[1]
    k_diag = (a * b).sum(-1)
    out = _empty((n_batch, n * (n - 1) // 2), a)
    scale = scale.reshape(-1, 1, 1)

    def block(s: int, e: int) -> Array:
        k = _mm(a[:, s:e], b[:, s:].mT) + _mm(b[:, s:e], a[:, s:].mT)
        return ((k_diag[:, s:e, None] + k_diag[:, None, s:]) - k) * scale

    return _blocked(n, n_batch, chunk, block, out)


def _plain(
    tensors: list[torch.Tensor],
    batched: bool,
    metric: str,
    noises: list[torch.Tensor | None],
    remove_mean: bool,
    prior_lambda: float,
    prior_weight: float,
    chunk: int | None,
) -> torch.Tensor:
    """Non-cross-validated metrics; returns (n_rdms, n_pairs)."""
    n_stimuli = {t.shape[-2] for t in tensors}
    if len(n_stimuli) != 1:
        raise ValueError(
            "Every pattern array must have the same number of stimuli (rows) to form RDMs of the "
            f"same size, got {sorted(n_stimuli)}."
        )
    if (n := n_stimuli.pop()) < 2:
        raise ValueError(f"An RDM needs at least 2 stimuli, got {n}.")
    kw: dict[str, Any] = {
        "remove_mean": remove_mean,
        "prior_lambda": prior_lambda,
        "prior_weight": prior_weight,
        "chunk": chunk,
    }
    if metric == "mahalanobis":
        # one precision per RDM
        xs = list(tensors[0].unbind(0)) if batched else tensors
        return _cat([_one_batch(x[None], metric, w, **kw) for x, w in zip(xs, noises)])
    if batched:
        return _one_batch(tensors[0], metric, None, **kw)
    return _cat(
        [
            _one_batch(x, metric, None, n_features=n_features, **kw)
            for x, n_features in _pad_groups(tensors, metric, remove_mean)
        ]
    )


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along the first axis, without a copy for a single part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _pad_groups(
    tensors: list[torch.Tensor], metric: str, remove_mean: bool
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Stack 2-D arrays into batches, padding feature counts with zeros where exact and cheap.

    Zero features change neither inner products nor squared distances, so correlation, cosine and
    (sq)euclidean RDMs of different feature counts share one batched product (patterns are
    centred on their true features first); the true counts are kept for the normalisation.
    Returns (batch, true feature counts or None) pairs.
    """
    sizes = [t.shape[-1] for t in tensors]
    if len(set(sizes)) == 1:
        # one array: a view, not a copy (a copy of a large input costs more than the RDM)
        stacked = tensors[0][None] if len(tensors) == 1 else torch.stack(tensors)
        return [(stacked, None)]
    total = sum(t.numel() for t in tensors)
    padded = len(tensors) * tensors[0].shape[0] * max(sizes)
    if metric not in ("correlation", "cosine", "euclidean", "sqeuclidean") or padded > 2 * total:
        return [(t[None], None) for t in tensors]
    out = torch.zeros(
        (len(tensors), tensors[0].shape[0], max(sizes)),
        dtype=tensors[0].dtype,
        device=tensors[0].device,
    )
    for k, t in enumerate(tensors):
        if metric == "correlation" or remove_mean:
            t = t - t.mean(dim=-1, keepdim=True)
        out[k, :, : t.shape[1]] = t
    return [(out, torch.tensor(sizes, dtype=out.dtype, device=out.device))]


def _one_batch(
    x: torch.Tensor,
    metric: str,
    noise: torch.Tensor | None,
    *,
    remove_mean: bool,
    prior_lambda: float,
    prior_weight: float,
    chunk: int | None,
    n_features: torch.Tensor | None = None,
) -> torch.Tensor:
    """RDMs of a (n_batch, n_stimuli, n_features) tensor, (n_batch, n_pairs).

    ``n_features`` is given for zero-padded batches (already centred where needed).
    """
    p = x.shape[-1]
    counts = None if n_features is None else _native(n_features)
    x = _native(x)
    w = _check_noise(noise, p)
    w = None if w is None else _native(w)
    if counts is None:
        if not isinstance(x, np.ndarray):
            counts = torch.full((x.shape[0],), float(p), dtype=x.dtype, device=x.device)
        else:
            counts = np.full(x.shape[0], float(p), dtype=x.dtype)
        if metric == "correlation" or remove_mean:
            x = x - x.mean(-1)[..., None]
    if metric in ("correlation", "cosine"):
        u = x / _sumsq(x)[..., None] ** 0.5
        return _to_tensor(_gram_rdms(u, lambda g, s, e: 1 - g, chunk))
    if metric in ("euclidean", "sqeuclidean"):
        sq = _sumsq(x)
        scale = (1.0 / counts if metric == "euclidean" else counts * 0 + 1)[:, None, None]
        return _to_tensor(
            _gram_rdms(
                x, lambda g, s, e: (sq[:, s:e, None] + sq[:, None, s:] - 2 * g) * scale, chunk
            )
        )
    if metric == "mahalanobis":
        y = x if w is None else (x * w if w.ndim == 1 else _mm(x, w.mT))
        k_diag = (x * y).sum(-1)
        n = x.shape[1]

        def block(s: int, e: int) -> Array:
            k = _mm(x[:, s:e], y[:, s:].mT)
            return ((k_diag[:, s:e, None] + k_diag[:, None, s:]) - 2 * k) / p

        return _to_tensor(
            _blocked(n, x.shape[0], chunk, block, _empty((x.shape[0], n * (n - 1) // 2), x))
        )
    # poisson
    m = (x + prior_lambda * prior_weight) / (1 + prior_weight)
    return _to_tensor(_cross_rdms(m, _log(m), 1.0 / counts, chunk))


# ---------------------------------------------------------------------------------------------
# cross-validated metrics


def _cross_validated(
    tensors: list[torch.Tensor],
    batched: bool,
    metric: str,
    descriptors: Any,
    folds: Any,
    noises: list[torch.Tensor | None],
    remove_mean: bool,
    prior_lambda: float,
    prior_weight: float,
    chunk: int | None,
) -> torch.Tensor:
    if descriptors is None:
        raise ValueError(
            f"metric={metric!r} needs 'descriptors' (the condition of every observation) to "
            "cross-validate over repeated measurements of each condition."
        )
    n_obs = tensors[0].shape[-2]
    for t in tensors:
        if t.shape[-2] != n_obs:
            raise ValueError(
                "Every pattern array must have the same observations (rows) as 'descriptors', got "
                f"{n_obs} and {t.shape[-2]}."
            )
    conditions, cond = _labels(descriptors, n_obs, "descriptors")
    fold_labels, fold = _fold_index(folds, cond, n_obs)
    n_cond, n_folds = len(conditions), int(fold.max()) + 1
    if n_cond < 2:
        raise ValueError(f"'descriptors' has {n_cond} condition; an RDM needs at least 2.")
    if n_folds < 2:
        raise ValueError(
            f"metric={metric!r} needs at least 2 folds to cross-validate, got {n_folds}; give "
            "'folds' (run labels) or repeat every condition."
        )
    counts = np.zeros((n_folds, n_cond), dtype=np.int64)
    np.add.at(counts, (fold, cond), 1)
    missing = np.argwhere(counts == 0)
    if missing.size:
        f, c = missing[0]
        more = f" (and {len(missing) - 1} more such gaps)" if len(missing) > 1 else ""
        raise ValueError(
            f"Condition {conditions.tolist()[c]!r} has no observation in fold "
            f"{fold_labels.tolist()[f]!r}{more}: with leave-one-fold-out cross-validation every "
            "condition must occur in every fold. Drop the incomplete folds or conditions."
        )
    out = []
    k = 0
    for t in tensors:
        for x in t.unbind(0) if batched else [t]:
            out.append(
                _cv_one(
                    x,
                    metric,
                    cond,
                    fold,
                    counts,
                    noises[k],
                    remove_mean,
                    prior_lambda,
                    prior_weight,
                    chunk,
                )
            )
            k += 1
    return _cat(out)


def _fold_index(folds: Any, cond: np.ndarray, n_obs: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold labels and the fold index of every observation."""
    if folds is not None:
        return _labels(folds, n_obs, "folds")
    reps = np.bincount(cond)
    if np.any(reps != reps[0]):
        raise ValueError(
            "Without 'folds', the k-th repetition of each condition forms fold k, which needs the "
            f"same number of repetitions of every condition; got between {reps.min()} and "
            f"{reps.max()}. Pass 'folds' (e.g. the run of every observation)."
        )
    fold = np.empty(n_obs, dtype=np.int64)
    for c in range(len(reps)):
        idx = np.flatnonzero(cond == c)
        fold[idx] = np.arange(idx.size)
    return np.arange(reps[0]), fold


def _cv_one(
    x: torch.Tensor,
    metric: str,
    cond: np.ndarray,
    fold: np.ndarray,
    counts: np.ndarray,
    noise: torch.Tensor | None,
    remove_mean: bool,
    prior_lambda: float,
    prior_weight: float,
    chunk: int | None,
) -> torch.Tensor:
    """One cross-validated RDM of (n_obs, n_features) observations, shape (1, n_pairs)."""
    n_folds, n_cond = counts.shape
    p = x.shape[-1]
    w = _check_noise(noise, p)
    w = None if w is None else _native(w)
    xn = _native(x)
    sums = _group_sums(xn, fold * n_cond + cond, n_folds * n_cond).reshape(n_folds, n_cond, p)
    cnt: Array = counts[:, :, None]
    if isinstance(xn, np.ndarray):
        cnt = cnt.astype(xn.dtype)
    else:
        cnt = torch.from_numpy(cnt).to(x.device, x.dtype)
    test = sums / cnt  # mean of the held-out fold
    train = (sums.sum(0) - sums) / (cnt.sum(0) - cnt)  # mean of all other observations
    if metric == "crossnobis":
        if remove_mean:
            train = train - train.mean(-1)[..., None]
            test = test - test.mean(-1)[..., None]
        if w is not None:
            test = test * w if w.ndim == 1 else _mm(test, w.mT)
        a, b = train, test
    else:
        a = (train + prior_lambda * prior_weight) / (1 + prior_weight)
        b = _log((test + prior_lambda * prior_weight) / (1 + prior_weight))
    # sum over folds of a_f b_f' as one product over concatenated features
    a = _swap01(a).reshape(1, n_cond, n_folds * p)
    b = _swap01(b).reshape(1, n_cond, n_folds * p)
    scale = a[:, 0, 0] * 0 + 1.0 / (p * n_folds)
    return _to_tensor(_cross_rdms(a, b, scale, chunk))


def _swap01(a: Array) -> Array:
    return a.transpose(1, 0, 2) if isinstance(a, np.ndarray) else a.permute(1, 0, 2)
