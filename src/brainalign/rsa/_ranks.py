"""Rank statistics for many vectors at once: average ranks, ties, Kendall's tau in O(n log n).

Kendall's tau counts discordant pairs as the inversions of one vector read in the order of the
other. On the CPU every vector is sorted once (its order and dense ranks are shared by all the
comparisons it takes part in) and the discordant pairs of each pair of vectors are counted by
scipy's compiled Fenwick-tree counter (``scipy.stats._stats._kendall_dis``, the one
``scipy.stats.kendalltau`` and rsatoolbox use, without their two sorts per comparison). Off the
CPU, and on the CPU if scipy ever stops providing that counter, the inversions of all vectors of
a batch are counted together by a bottom-up merge sort: at each level every pair of sorted
neighbouring blocks is merged by one batched sort in which the right-hand elements carry a flag
bit; the merged positions of the flagged elements give the number of left-hand elements greater
than each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

try:  # compiled discordant-pair count (private to scipy; rsatoolbox imports it the same way)
    from scipy.stats._stats import _kendall_dis as _scipy_kendall_dis
except ImportError:  # pragma: no cover - depends on the scipy version; the merge sort counts
    _scipy_kendall_dis = None

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
    if n > _ROW_BY_ROW:
        return _rankdata_long_rows(x, dtype)
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


def _rankdata_long_rows(x: np.ndarray, dtype: Any) -> np.ndarray:
    """Average ranks of long rows, one row at a time from its dense ranks (whose sort avoids the
    argsort: see :func:`_dense_ranks_numpy`): a level's average rank is the number of values
    below it plus ``(count + 1) / 2``."""
    ranks = np.empty(x.shape, dtype=dtype)
    n = x.shape[1]
    for r in range(x.shape[0]):
        info = _dense_ranks_numpy(x[r : r + 1], need_order=False)
        dense = info.dense[0]
        if info.levels[0] == n:  # no ties: the dense ranks are the ranks
            ranks[r] = dense
            continue
        counts = np.bincount(dense)[1:]
        average = np.cumsum(counts) - (counts - 1) / 2
        ranks[r] = np.take(average, dense - 1)
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
        Values without NaN. Passing the same tensor twice (``b is a``) computes each unordered
        pair of rows once.
    variant : {"a", "b"}
        ``"a"``: (concordant - discordant) / (n (n - 1) / 2). ``"b"``: divided by
        ``sqrt((n0 - n1) (n0 - n2))`` with ``n1``, ``n2`` the pairs tied in ``a``, ``b``
        (scipy's default; NaN when either vector is constant).

    Returns
    -------
    tau : float64 tensor, shape (n_a, n_b)
        On the device of ``a``.

    Notes
    -----
    ``concordant - discordant = n0 - n1 - n2 + n3 - 2 * discordant`` with ``n3`` the pairs tied in
    both, all counted exactly in integers. On the CPU each row is sorted once and the discordant
    pairs of each pair of rows are counted in O(n log n) by scipy's compiled Fenwick tree; on
    other devices by the batched merge sort of :func:`count_inversions`.
    """
    n = a.shape[-1]
    n0 = n * (n - 1) // 2
    if a.device.type == "cpu" and _scipy_kendall_dis is not None:
        counts = _kendall_counts_numpy(a.numpy(), b.numpy(), same=b is a)
        diff, ties_a, ties_b = (torch.from_numpy(c) for c in counts)
    else:
        diff, ties_a, ties_b = _kendall_counts_merge(a, b)
    s = diff.to(torch.float64)
    if variant == "a":
        return s / n0 if n0 > 0 else torch.full_like(s, float("nan"))
    denom = torch.sqrt(
        (n0 - ties_a[:, None]).to(torch.float64) * (n0 - ties_b[None, :]).to(torch.float64)
    )
    return (s / denom).clamp(-1.0, 1.0)


@dataclass(frozen=True)
class _DenseRanks:
    """Each row of a (n_rows, n) array sorted once: what every Kendall comparison reuses.

    Attributes
    ----------
    order : (n_rows, n) intp, argsort of each row.
    dense : (n_rows, n) intp, 1-based dense rank of each element (ties share a rank).
    levels : (n_rows,) int64, number of distinct values.
    tie_pairs : (n_rows,) int64, tied pairs ``sum_g t_g (t_g - 1) / 2``.
    """

    order: np.ndarray
    dense: np.ndarray
    levels: np.ndarray
    tie_pairs: np.ndarray


#: Rows longer than this are ranked one at a time (shorter ones in one batched sort; the
#: crossover measured between 2,000 and 3,000 values).
_ROW_BY_ROW = 2500
#: A long row whose strided sample of about 1,000 values has at most this many distinct values
#: (a categorical model RDM, say) is ranked by binary search among its sorted distinct values.
_FEW_DISTINCT = 256


def _dense_ranks_numpy(x: np.ndarray, *, need_order: bool = True) -> _DenseRanks:
    """Dense ranks of each row of ``x`` (n_rows, n): one sort per row.

    ``need_order=False`` leaves ``order`` empty (0, n) when only the ranks are used. Long rows
    with few distinct values avoid the argsort: their values are sorted (several times faster
    than an argsort), the ranks found by binary search among the distinct values, and the order,
    when needed, by NumPy's radix sort of the small integer ranks.
    """
    rows, n = x.shape
    if n <= _ROW_BY_ROW:
        order = np.argsort(x, axis=1)
        dense, levels, tie_pairs = _dense_from_order(x, order)
        return _DenseRanks(order, dense, levels, tie_pairs)
    order = np.empty((rows if need_order else 0, n), dtype=np.intp)
    dense = np.empty((rows, n), dtype=np.intp)
    levels = np.empty(rows, dtype=np.int64)
    tie_pairs = np.empty(rows, dtype=np.int64)
    step = max(1, n // 1024)
    for r in range(rows):
        row = x[r]
        few = np.unique(row[::step]).size <= _FEW_DISTINCT
        o = None
        if few:
            values = np.sort(row)
        else:
            o, values = _argsort_row(row)
        new = np.ones(n, dtype=bool)
        np.not_equal(values[1:], values[:-1], out=new[1:])
        if few:
            distinct = values[new]
            dense[r] = np.searchsorted(distinct, row)
            dense[r] += 1
            levels[r] = distinct.size
        elif bool(new.all()):
            dense[r][o] = np.arange(1, n + 1)
            levels[r] = n
        else:
            dense_sorted = np.empty(n, dtype=np.intp)
            np.cumsum(new, out=dense_sorted)
            dense[r][o] = dense_sorted
            levels[r] = dense_sorted[-1]
        if levels[r] == n:
            tie_pairs[r] = 0
        else:
            counts = np.diff(np.flatnonzero(np.r_[new, True]))
            tie_pairs[r] = int((counts * (counts - 1) // 2).sum())
        if need_order:
            if o is None:
                small = np.uint16 if levels[r] < 1 << 16 else np.intp
                o = np.argsort(dense[r].astype(small), kind="stable")  # radix sort
            order[r] = o
    return _DenseRanks(order, dense, levels, tie_pairs)


def _argsort_row(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argsort of a long float row without NaN, and the sorted values.

    Sorting 64-bit integers is about twice as fast as an argsort: each value becomes an
    order-preserving integer whose lowest ``ceil(log2(n))`` bits are replaced by its index, so that
    one integer sort gives the order. Values that differ only in those bits may come out of order;
    the sorted values are checked and such a row is argsorted instead.
    """
    n = row.size
    shift = max(1, (n - 1).bit_length())
    if shift > 32:  # pragma: no cover - rows of more than 4e9 values
        o = np.argsort(row)
        return o, np.take(row, o)
    bits = (row.astype(np.float64) + 0.0).view(np.uint64)  # a copy; -0.0 becomes +0.0
    sign = np.uint64(1 << 63)
    key = np.where(bits >= sign, ~bits, bits | sign)  # negatives reversed, below positives
    key >>= np.uint64(shift)
    key <<= np.uint64(shift)
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    key &= np.uint64((1 << shift) - 1)
    o = key.astype(np.intp)
    values = np.take(row, o)
    if bool((values[1:] < values[:-1]).any()):
        o = np.argsort(row)
        values = np.take(row, o)
    return o, values


def _dense_from_order(
    x: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-based dense ranks, numbers of distinct values and tied pairs of the rows of ``x``
    (n_rows, n) given their argsort ``order``."""
    rows, n = x.shape
    values = np.take_along_axis(x, order, axis=1)
    new = np.ones((rows, n), dtype=bool)
    new[:, 1:] = values[:, 1:] != values[:, :-1]
    dense_sorted = np.empty((rows, n), dtype=np.intp)
    np.cumsum(new, axis=1, out=dense_sorted)
    dense = np.empty_like(dense_sorted)
    np.put_along_axis(dense, order, dense_sorted, axis=1)
    levels = dense_sorted[:, -1].astype(np.int64) if n else np.zeros(rows, dtype=np.int64)
    tie_pairs = np.zeros(rows, dtype=np.int64)
    tied = np.flatnonzero(levels < n)
    if tied.size:
        # each element adds its position within its tie group: t (t - 1) / 2 per group
        pos = np.arange(n)
        group_start = np.maximum.accumulate(np.where(new[tied], pos, 0), axis=1)
        tie_pairs[tied] = (pos - group_start).sum(axis=1)
    return dense, levels, tie_pairs


def _kendall_counts_numpy(
    a: np.ndarray, b: np.ndarray, *, same: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``concordant - discordant`` (n_a, n_b) and the tied pairs of each row of ``a`` and ``b``.

    ``b`` is read in the sorted order of each row of ``a`` (one gather for a chunk of rows of
    ``b``); scipy's ``_kendall_dis(x, y)`` counts the pairs with ``x_i < x_j`` and ``y_i > y_j``
    for ``x`` sorted (pairs tied in ``x`` are not counted) and ``y >= 1``.
    """
    count_discordant = _scipy_kendall_dis
    if count_discordant is None:  # pragma: no cover - the caller checks
        raise RuntimeError("scipy.stats._stats._kendall_dis is not available.")
    n = a.shape[1]
    n0 = n * (n - 1) // 2
    ra = _dense_ranks_numpy(a)
    rb = ra if same else _dense_ranks_numpy(b, need_order=False)
    n_a, n_b = a.shape[0], b.shape[0]
    diff = np.empty((n_a, n_b), dtype=np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    ties_a, ties_b = ra.tie_pairs.tolist(), rb.tie_pairs.tolist()
    levels_a, levels_b = ra.levels.tolist(), rb.levels.tolist()
    for i in range(n_a):
        order = ra.order[i]
        # a_i's dense ranks in its sorted order: 1, 1, 2, 3, 3, ...
        x = np.arange(1, n + 1) if levels_a[i] == n else np.take(ra.dense[i], order)
        for c in range(i if same else 0, n_b, chunk):
            ys = np.take(rb.dense[c : c + chunk], order, axis=1)  # b_j in a_i's order
            for k, y in enumerate(ys):
                j = c + k
                s = n0 - ties_a[i] - ties_b[j] - 2 * int(count_discordant(x, y))
                if ties_a[i] and ties_b[j]:
                    s += _joint_tie_pairs(x, y, levels_a[i], levels_b[j])
                diff[i, j] = s
    if same:
        lower = np.tril_indices(n_a, -1)
        diff[lower] = diff.T[lower]
    return diff, ra.tie_pairs, rb.tie_pairs


def _joint_tie_pairs(x: np.ndarray, y: np.ndarray, levels_x: int, levels_y: int) -> int:
    """Pairs tied in both ``x`` and ``y`` (1-based dense ranks, (n,))."""
    key = (x - 1) * levels_y + (y - 1)
    if levels_x * levels_y <= max(4 * key.size, 1 << 16):
        counts = np.bincount(key)  # few (x, y) combinations: e.g. categorical models
    else:
        key = np.sort(key)
        bounds = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
        counts = np.diff(bounds)
    return int((counts * (counts - 1) // 2).sum())


def _kendall_counts_merge(
    a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As :func:`_kendall_counts_numpy`, by the batched merge sort (any device).

    The vector without ties gives the order, so that pairs tied in it need no care. When both
    have ties, each pair of vectors is sorted lexicographically (one integer sort).
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
    return diff, ia.tie_pairs, ib.tie_pairs


def _tied_pairs_sorted(same: torch.Tensor) -> torch.Tensor:
    """Tied pairs per row from ``same[k] = sorted[k + 1] == sorted[k]`` (runs of equal values)."""
    # a run of t equal values has t - 1 consecutive "same" flags and t (t - 1) / 2 pairs:
    # sum over each flag of its position within the run (1, 2, ..., t - 1)
    s = same.to(torch.int64)
    c = s.cumsum(dim=-1)
    reset = torch.where(s == 0, c, 0).cummax(dim=-1).values
    return (c - reset).mul(s).sum(dim=-1)
