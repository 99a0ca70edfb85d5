"""Rank statistics for many vectors at once: average ranks, ties, Kendall's tau in O(n log n).

Kendall's tau counts discordant pairs as the inversions of one vector read in the order of the
other. The inversions of all vectors of a batch are counted together by a bottom-up merge sort: at
each level every pair of sorted neighbouring blocks is merged by one batched sort in which the
right-hand elements carry a flag bit; the merged positions of the flagged elements give the number
of left-hand elements greater than each of them. ``log2(n)`` batched sorts (SIMD sorts of short
rows, linear-time timsort merges of long ones) replace scipy/rsatoolbox's per-pair compiled merge
sort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["SortInfo", "count_inversions", "kendall_tau", "rankdata", "sort_info"]

#: Elements processed per chunk (bounds temporary memory to about 100 MB).
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class SortInfo:
    """Sorting information of each row of a (n_rows, n) tensor.

    Attributes
    ----------
    order : (n_rows, n) int64, argsort of each row.
    start, end : (n_rows, n) int64, first and last sorted position of the tie group of each
        sorted position.
    dense : (n_rows, n) int64, 0-based dense rank of each element (ties share a rank).
    tie_pairs : (n_rows,) int64, number of tied pairs ``sum_g t_g (t_g - 1) / 2``.
    """

    order: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    dense: torch.Tensor
    tie_pairs: torch.Tensor


def sort_info(x: torch.Tensor) -> SortInfo:
    """Sort each row of ``x`` (n_rows, n) once and describe its tie groups.

    On the CPU in NumPy (single-threaded sorts; torch's threaded CPU sort stalls on shared cores).
    """
    if x.device.type == "cpu":
        return _sort_info_numpy(x.numpy())
    return _sort_info_torch(x)


def _sort_info_torch(x: torch.Tensor) -> SortInfo:
    values, order = torch.sort(x, dim=-1)
    n = x.shape[-1]
    pos = torch.arange(n, device=x.device).expand_as(order)
    new = torch.ones_like(order, dtype=torch.bool)
    new[..., 1:] = values[..., 1:] != values[..., :-1]
    if bool(new.all()):
        start = end = pos
        dense_sorted = pos
    else:
        start = torch.where(new, pos, 0).cummax(dim=-1).values
        last = torch.ones_like(new)
        last[..., :-1] = new[..., 1:]
        end = torch.where(last, pos, n - 1).flip(-1).cummin(dim=-1).values.flip(-1)
        dense_sorted = new.to(torch.int64).cumsum(dim=-1) - 1
    dense = torch.empty_like(order).scatter_(-1, order, dense_sorted)
    tie_pairs = (end - start).sum(dim=-1) // 2
    return SortInfo(order=order, start=start, end=end, dense=dense, tie_pairs=tie_pairs)


def _sort_info_numpy(x: np.ndarray) -> SortInfo:
    order = np.argsort(x, axis=-1)
    values = np.take_along_axis(x, order, axis=-1)
    n = x.shape[-1]
    pos = np.broadcast_to(np.arange(n), order.shape)
    new = np.ones(order.shape, dtype=bool)
    new[..., 1:] = values[..., 1:] != values[..., :-1]
    if new.all():
        start = end = dense_sorted = pos
        tie_pairs = np.zeros(order.shape[:-1], dtype=np.int64)
    else:
        start = np.maximum.accumulate(np.where(new, pos, 0), axis=-1)
        last = np.ones_like(new)
        last[..., :-1] = new[..., 1:]
        end = np.minimum.accumulate(np.where(last, pos, n - 1)[..., ::-1], axis=-1)[..., ::-1]
        dense_sorted = np.cumsum(new, axis=-1) - 1
        tie_pairs = (end - start).sum(axis=-1) // 2
    dense = np.empty_like(order)
    np.put_along_axis(dense, order, dense_sorted, axis=-1)

    def tensor(a: np.ndarray) -> torch.Tensor:
        if a is pos:  # read-only broadcast view: expand a tensor instead of copying
            return torch.arange(n).expand(order.shape)
        return torch.from_numpy(np.ascontiguousarray(a))

    return SortInfo(
        order=torch.from_numpy(order),
        start=tensor(start),
        end=tensor(end),
        dense=torch.from_numpy(dense),
        tie_pairs=torch.from_numpy(tie_pairs),
    )


def rankdata(x: torch.Tensor, info: SortInfo | None = None) -> torch.Tensor:
    """Average ranks (1-based) along the last dimension, as ``scipy.stats.rankdata``.

    Parameters
    ----------
    x : tensor, shape (..., n)
        Values without NaN.
    info : SortInfo, optional
        The result of :func:`sort_info` for ``x`` when already computed.

    Returns
    -------
    ranks : tensor, shape (..., n)
        Float64 when ``x`` is float64 or ``n > 2**23``, else float32.
    """
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    dtype = torch.float64 if (x.dtype == torch.float64 or shape[-1] > 1 << 23) else torch.float32
    if info is None and x.device.type == "cpu":
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        return torch.from_numpy(_rankdata_numpy(x2.numpy(), np_dtype)).reshape(shape)
    if info is None:
        info = sort_info(x2)
    if x.device.type == "cpu":
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        ranks_np = np.empty(x2.shape, dtype=np_dtype)
        ranks_sorted_np = (info.start.numpy() + info.end.numpy()).astype(np_dtype) / 2 + 1
        np.put_along_axis(ranks_np, info.order.numpy(), ranks_sorted_np, axis=-1)
        return torch.from_numpy(ranks_np).reshape(shape)
    return _ranks_torch(info, dtype).reshape(shape)


def _rankdata_numpy(x: np.ndarray, dtype: Any) -> np.ndarray:
    """Average ranks of each row of ``x`` (n_rows, n): one sort per row; tie groups located only
    in the rows that have ties."""
    n = x.shape[-1]
    order = np.argsort(x, axis=-1)
    ranks = np.empty(x.shape, dtype=dtype)
    if n < 2:
        ranks[...] = 1
        return ranks
    values = np.take_along_axis(x, order, axis=-1)
    new = values[:, 1:] != values[:, :-1]
    tied = np.flatnonzero(~new.all(axis=1))
    positions = np.arange(1, n + 1, dtype=dtype)
    if tied.size == 0:
        np.put_along_axis(ranks, order, positions[None], axis=-1)
        return ranks
    ranks_sorted = np.empty(x.shape, dtype=dtype)
    ranks_sorted[:] = positions
    pos = np.arange(n)
    first = np.ones((tied.size, n), dtype=bool)
    first[:, 1:] = new[tied]
    last = np.ones((tied.size, n), dtype=bool)
    last[:, :-1] = new[tied]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=-1)
    end = np.minimum.accumulate(np.where(last, pos, n - 1)[:, ::-1], axis=-1)[:, ::-1]
    ranks_sorted[tied] = (start + end).astype(dtype) / 2 + 1
    np.put_along_axis(ranks, order, ranks_sorted, axis=-1)
    return ranks


def _ranks_torch(info: SortInfo, dtype: torch.dtype) -> torch.Tensor:
    """Average ranks from ``info`` with torch kernels (used off the CPU), (n_rows, n)."""
    ranks_sorted = (info.start + info.end).to(dtype) / 2 + 1
    ranks = torch.empty(info.order.shape, dtype=dtype, device=info.order.device)
    return ranks.scatter_(-1, info.order, ranks_sorted)


# ---------------------------------------------------------------------------------------------
# inversion counting


def count_inversions(v: torch.Tensor) -> torch.Tensor:
    """Number of strict inversions ``#{i < j : v[i] > v[j]}`` of each row.

    Parameters
    ----------
    v : tensor, shape (n_rows, n)
        Non-negative integers (e.g. dense ranks).

    Returns
    -------
    counts : int64 tensor, shape (n_rows,)
        On the CPU the merge sort runs in NumPy (its stable sort of two runs is linear time and
        about 3x faster than torch's on CPU); on other devices in torch.
    """
    if v.ndim != 2:
        raise ValueError(f"count_inversions expects a 2-D tensor, got shape {tuple(v.shape)}.")
    if v.shape[0] == 0 or v.shape[1] < 2:
        return torch.zeros(v.shape[0], dtype=torch.int64, device=v.device)
    if v.device.type == "cpu":
        return torch.from_numpy(_inversions_numpy(v.numpy()))
    return _inversions_torch(v)


def _padded_length(n: int) -> int:
    return 1 << max(int(n - 1).bit_length(), 1)


def _right_sum(w: int) -> int:
    # sum over the w right-hand elements j of (w - merged position + j), before subtracting the
    # merged positions: w * w + w * (w - 1) / 2
    return w * w + w * (w - 1) // 2


#: Rows with at most this many distinct values are counted level by level (linear passes).
_FEW_LEVELS = 24


def _inversions_numpy(v: np.ndarray) -> np.ndarray:
    top = v.max(axis=1)
    few = top < _FEW_LEVELS
    if few.all():
        return _inversions_few_levels(v, int(top.max()) + 1)
    if not few.any():
        return _inversions_merge_numpy(v)
    inv = np.empty(v.shape[0], dtype=np.int64)
    inv[few] = _inversions_few_levels(v[few], int(top[few].max()) + 1)
    inv[~few] = _inversions_merge_numpy(v[~few])
    return inv


def _inversions_few_levels(v: np.ndarray, levels: int) -> np.ndarray:
    """Inversions of rows of values in ``[0, levels)``: for each level, the elements at that level
    times the number of greater elements before them (one cumulative count per level)."""
    inv = np.zeros(v.shape[0], dtype=np.int64)
    count_dtype = np.int32 if v.shape[1] < 2**31 else np.int64
    for level in range(levels - 1):
        greater_before = np.cumsum(v > level, axis=1, dtype=count_dtype)
        inv += np.where(v == level, greater_before, 0).sum(axis=1, dtype=np.int64)
    return inv


def _inversions_merge_numpy(v: np.ndarray) -> np.ndarray:
    rows, n = v.shape
    m = _padded_length(n)
    top = int(v.max()) + 1  # padding: larger than every value and at the end: never inverted
    dtype = np.int32 if 2 * top + 1 < 2**31 else np.int64
    a = np.full((rows, m), top, dtype=dtype)
    a[:, :n] = v
    # level 1: pairs of neighbours
    pairs = a.reshape(-1, 2)
    inv = (pairs[:, 0] > pairs[:, 1]).reshape(rows, -1).sum(axis=1, dtype=np.int64)
    low = np.minimum(pairs[:, 0], pairs[:, 1])
    np.maximum(pairs[:, 0], pairs[:, 1], out=pairs[:, 1])
    pairs[:, 0] = low
    flags = np.empty(rows * m, dtype=np.float64)
    w = 2
    while w < m:
        b = a.reshape(-1, 2 * w)
        b <<= 1
        b[:, w:] |= 1  # right-hand run: odd keys, so equal values keep left before right
        # short rows: SIMD quicksort; long rows: timsort merges the two runs in linear time
        b.sort(axis=1, kind="quicksort" if w <= 256 else "stable")
        f = flags.reshape(-1, 2 * w)
        np.bitwise_and(b, 1, out=f, casting="unsafe")
        positions = f @ np.arange(2 * w, dtype=np.float64)  # exact: below 2**53
        inv += (_right_sum(w) - positions.astype(np.int64)).reshape(rows, -1).sum(axis=1)
        b >>= 1
        w *= 2
    return inv


def _inversions_torch(v: torch.Tensor) -> torch.Tensor:
    rows, n = v.shape
    m = _padded_length(n)
    top = int(v.max()) + 1
    dtype = torch.int32 if 2 * top + 1 < 2**31 else torch.int64
    a = torch.full((rows, m), top, dtype=dtype, device=v.device)
    a[:, :n] = v
    inv = torch.zeros(rows, dtype=torch.int64, device=v.device)
    w = 1
    while w < m:
        b = a.reshape(-1, 2 * w) << 1
        b[:, w:] |= 1
        b = torch.sort(b, dim=1).values
        positions = ((b & 1).to(torch.int64) * torch.arange(2 * w, device=v.device)).sum(dim=1)
        inv += (_right_sum(w) - positions).reshape(rows, -1).sum(dim=1)
        a = (b >> 1).reshape(rows, m)
        w *= 2
    return inv


# ---------------------------------------------------------------------------------------------
# Kendall's tau


def kendall_tau(a: torch.Tensor, b: torch.Tensor, variant: str = "a") -> torch.Tensor:
    """Kendall's tau-a or tau-b between every row of ``a`` and every row of ``b``.

    Parameters
    ----------
    a : tensor, shape (n_a, n)
    b : tensor, shape (n_b, n)
        Values without NaN.
    variant : {"a", "b"}
        ``"a"``: (concordant - discordant) / (n (n - 1) / 2). ``"b"``: divided by
        ``sqrt((n0 - n1) (n0 - n2))`` with ``n1``, ``n2`` the pairs tied in ``a``, ``b``
        (scipy's default; NaN when either vector is constant).

    Returns
    -------
    tau : float64 tensor, shape (n_a, n_b)

    Notes
    -----
    ``concordant - discordant = n0 - n1 - n2 + n3 - 2 * discordant`` with ``n3`` the pairs tied in
    both. Discordant pairs are the inversions of one vector read in the order of the other; the
    vector without ties gives the order, so that pairs tied in it need no care. When both have
    ties, each pair of vectors is sorted lexicographically (one integer sort).
    """
    n = a.shape[-1]
    ia, ib = sort_info(a), sort_info(b)
    n0 = n * (n - 1) // 2
    diff = torch.empty((a.shape[0], b.shape[0]), dtype=torch.int64, device=a.device)
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    b_untied = (ib.tie_pairs == 0).nonzero().flatten()
    b_tied = (ib.tie_pairs > 0).nonzero().flatten()
    n_levels_b = int(ib.dense.max()) + 1 if b.numel() else 1
    for i in range(a.shape[0]):
        if int(ia.tie_pairs[i]) == 0:
            # read every b in the order of a_i
            for c in range(0, b.shape[0], chunk):
                seq = ib.dense[c : c + chunk][:, ia.order[i]]
                diff[i, c : c + chunk] = -2 * count_inversions(seq)
            continue
        for c in range(0, b_untied.numel(), chunk):
            js = b_untied[c : c + chunk]
            seq = ia.dense[i][ib.order[js]]  # a_i read in the order of each untied b_j
            diff[i, js] = -2 * count_inversions(seq)
        for c in range(0, b_tied.numel(), chunk):
            js = b_tied[c : c + chunk]
            key = ia.dense[i] * n_levels_b + ib.dense[js]  # (a, b) lexicographic
            key = torch.sort(key, dim=-1).values
            seq = key % n_levels_b
            same = key[:, 1:] == key[:, :-1]
            joint = _tied_pairs_sorted(same)
            diff[i, js] = joint - 2 * count_inversions(seq)
    diff += n0 - ia.tie_pairs[:, None] - ib.tie_pairs[None, :]
    s = diff.to(torch.float64)
    if variant == "a":
        return s / n0 if n0 > 0 else torch.full_like(s, float("nan"))
    denom = torch.sqrt(
        (n0 - ia.tie_pairs[:, None]).to(torch.float64)
        * (n0 - ib.tie_pairs[None, :]).to(torch.float64)
    )
    return (s / denom).clamp(-1.0, 1.0)


def _tied_pairs_sorted(same: torch.Tensor) -> torch.Tensor:
    """Tied pairs per row from ``same[k] = sorted[k + 1] == sorted[k]`` (runs of equal values)."""
    # a run of t equal values has t - 1 consecutive "same" flags and t (t - 1) / 2 pairs:
    # sum over each flag of its position within the run (1, 2, ..., t - 1)
    s = same.to(torch.int64)
    c = s.cumsum(dim=-1)
    reset = torch.where(s == 0, c, 0).cummax(dim=-1).values
    return (c - reset).mul(s).sum(dim=-1)
