"""Retrieval metrics and the field's retrieval protocols, exact and memory-bounded.

A *query* (a brain embedding, or a stimulus embedding in the other direction) is scored against a
*gallery* of candidates; the true candidate's **rank** is one plus the number of candidates that
score higher. From the ranks come the top-k accuracy, the mean reciprocal rank (MRR), the median
and mean rank, and 2-way identification. Everything is computed by a streaming engine that reads
the gallery in blocks and never holds the ``n_queries × n_gallery`` similarity matrix, so 10,000
queries against 1,000,000 candidates run in a few hundred MB, with results identical to the naive
full-matrix computation.

Definitions
-----------
similarity
    ``"cosine"``: ``x·y / (‖x‖‖y‖)``; ``"dot"``: ``x·y``; ``"correlation"``: Pearson r, i.e. the
    cosine of the row-centred vectors (what MindEye's 2-way identification uses). Scores are
    computed in float32, or in float64 when an input is float64 (or integer).
rank and ties
    For a query with ``g`` competitors scoring strictly higher than the true item and ``e``
    competitors scoring exactly the same (floating-point equality of the computed scores):

    * ``ties="optimistic"``: the true item wins every tie: rank ``1 + g``.
    * ``ties="pessimistic"``: it loses every tie: rank ``1 + g + e`` (MindEye's 2-way
      identification counts ties as failures: ``r < r_true``).
    * ``ties="average"`` (default): the expectation over a uniformly random order of the tied
      items, which is what an arbitrary tie-break (``torch.topk``, ``argsort``) gives on
      average: rank ``1 + g + e/2``; top-k accuracy ``clip((k - g) / (e + 1), 0, 1)`` (the
      probability that the true item lands in the top k); reciprocal rank
      ``(H(g + e + 1) - H(g)) / (e + 1)`` with ``H`` the harmonic numbers. A constant embedding
      therefore scores exactly chance, not 100 % (optimistic) or 0 % (pessimistic).

    Without ties the three coincide. Identical embeddings give identical scores; the scores of
    different rows are computed by the same matrix product, but some BLAS and GPU kernels round
    differently for different matrix shapes, so in float32 two identical gallery rows scored in
    different blocks can differ in the last bit: use float64, or deduplicate the gallery, when
    exact duplicates must tie.
top-k accuracy
    The fraction of queries whose rank is at most ``k``.
2-way identification
    For each query, the fraction of the other candidates that score lower than the true item,
    ``(n_gallery - 1 - g - e) / (n_gallery - 1)`` with pessimistic ties (as in MindEye and Ozcelik
    et al., who use Pearson correlations of features), averaged over queries; chance is 0.5.
repetitions (several brain samples of one stimulus)
    ``"average"``: the brain embeddings of a stimulus are averaged (as given, before any
    normalisation) and the averages are evaluated one per stimulus (MindEye averages the three
    NSD repetitions). ``"per-sample"``: every brain sample is a query against the gallery of
    unique stimuli (brain → stimulus). In the stimulus → brain direction the brain gallery holds
    one sample per stimulus: the r-th repetition of every stimulus (in the order of the brain
    rows) forms the r-th gallery, each stimulus is the query against every gallery that holds one
    of its samples, and its target is that sample. Both directions then have one query per brain
    sample and the same chance level.

Protocols
---------
:func:`retrieval_metrics`
    All metrics against the whole gallery, both directions.
:func:`n_way_retrieval`
    MindEye's protocol: ``n_draws`` random subsets of ``n_way`` test items (drawn without
    replacement within a draw), top-1 within each subset, averaged (300-way × 30 draws).
:func:`two_way_identification`
    The pairwise identification accuracy over the whole test set.
:func:`full_gallery_retrieval`
    brainmagick's protocol: every test window is ranked against all distinct test segments;
    top-10 accuracy.
:func:`accuracy_vs_gallery_size`
    The N-way accuracy as a function of N (a curve, with chance level).

Confidence intervals are percentile bootstraps over queries (over stimuli when a stimulus has
several queries), seeded; see :mod:`brainalign.evaluate.statistics`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from brainalign._utils.device import resolve_device
from brainalign._utils.errors import BrainAlignWarning
from brainalign._utils.progress import progress
from brainalign._utils.seeding import check_random_state
from brainalign._utils.validation import check_option
from brainalign.evaluate.statistics import _check_ci, _check_n_bootstrap, bootstrap_ci

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DIRECTIONS",
    "SIMILARITIES",
    "TIES",
    "GallerySizeCurve",
    "RetrievalResult",
    "accuracy_vs_gallery_size",
    "bootstrap_ci",
    "full_gallery_retrieval",
    "mean_reciprocal_rank",
    "median_rank",
    "n_way_retrieval",
    "ranks",
    "retrieval_metrics",
    "search_topk",
    "topk_accuracy",
    "two_way_identification",
]

SIMILARITIES = ("cosine", "dot", "correlation")
TIES = ("average", "optimistic", "pessimistic")
DIRECTIONS = ("both", "brain_to_stimulus", "stimulus_to_brain")
REPETITIONS = ("average", "per-sample")
BACKENDS = ("auto", "numpy", "torch")

_DIRECTION_NAMES = {
    "brain_to_stimulus": "brain → stimulus",
    "stimulus_to_brain": "stimulus → brain",
}

# Default memory budget of one block of scores (queries × gallery items), in bytes.
_SCORE_BLOCK_BYTES = 64 * 2**20
_DEFAULT_QUERY_CHUNK = 4096
# Default memory budget of one block of gallery rows, in bytes.
_GALLERY_BLOCK_BYTES = 256 * 2**20
# Columns of the true-score products (bounds their memory to query_chunk × this).
_TRUE_SCORE_CHUNK = 1024
# Columns per group in the candidate scan of the CPU top-k.
_GROUP = 64
_EMPTY = np.empty(0, dtype=np.int64)

# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------

Array = Any  # numpy.ndarray | torch.Tensor


def _as_2d(x: Any, name: str, what: str) -> Array:
    """Return ``x`` as a 2-D numpy array or torch tensor (never copied), after validation."""
    if isinstance(x, torch.Tensor):
        arr: Array = x.detach()
        ok = not (arr.is_complex() or arr.dtype == torch.bool)
        dtype = str(arr.dtype)
    else:
        arr = x if isinstance(x, np.ndarray) else np.asarray(x)
        ok = arr.dtype.kind in "fiu"
        dtype = str(arr.dtype)
    if not ok:
        raise TypeError(
            f"{name!r} must hold real numbers (float or integer embeddings), got dtype {dtype}."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"{name!r} must be a 2-D array of shape ({what}, n_features), got shape "
            f"{tuple(arr.shape)}; flatten the other axes first, e.g. x.reshape(len(x), -1)."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name!r} is empty (shape {tuple(arr.shape)}); pass at least one row.")
    return arr


def _check_same_features(a: Array, b: Array, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a!r} has {a.shape[1]} features per row but {name_b!r} has {b.shape[1]}; both "
            "embeddings must live in the same space (project them to a common dimension first)."
        )


def _np_dtype(x: Array) -> np.dtype:
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.float64:
            return np.dtype(np.float64)
        return np.dtype(np.float32 if x.is_floating_point() else np.int64)
    return x.dtype


def _compute_dtype(*xs: Array) -> np.dtype:
    """float64 when any input is float64 or integer, float32 otherwise (float16 → float32)."""
    for x in xs:
        dt = _np_dtype(x)
        if dt == np.float64 or dt.kind in "iu":
            return np.dtype(np.float64)
    return np.dtype(np.float32)


_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _rows(x: Array, sel: slice | np.ndarray, dtype: np.dtype, backend: str, device: Any) -> Array:
    """Rows ``sel`` of ``x`` as a C-contiguous ``dtype`` array on the backend (copy if needed)."""
    if isinstance(x, torch.Tensor):
        part = x[sel] if isinstance(sel, slice) else x[torch.as_tensor(sel, device=x.device)]
        if backend == "numpy":
            return np.ascontiguousarray(part.to("cpu", _TORCH_DTYPES[dtype]).numpy())
        return part.to(device=device, dtype=_TORCH_DTYPES[dtype]).contiguous()
    if backend == "numpy":
        return np.ascontiguousarray(x[sel], dtype=dtype)
    return torch.from_numpy(np.array(x[sel], dtype=dtype)).to(device)


def _take(x: Array, idx: np.ndarray) -> Array:
    """Rows ``idx`` of a numpy array or tensor, in its own container and device."""
    if isinstance(x, torch.Tensor):
        return x[torch.as_tensor(idx, device=x.device)]
    return x[idx]


def _check_finite_queries(q: Array, name: str, offset: int) -> None:
    if isinstance(q, np.ndarray):
        bad = np.flatnonzero(~np.isfinite(q).all(axis=1))
    else:
        bad = np.flatnonzero(~q.isfinite().all(dim=1).cpu().numpy())
    if bad.size:
        raise ValueError(
            f"{name!r} rows {(bad[:5] + offset).tolist()} contain NaN or infinite values; "
            "remove or fix them."
        )


def _resolve(device: Any, *xs: Array) -> torch.device:
    if device is None:
        for x in xs:
            if isinstance(x, torch.Tensor) and x.device.type != "cpu":
                return x.device
        return torch.device("cpu")
    return resolve_device(device)


def _check_int(name: str, value: Any, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name!r} must be an int, got {type(value).__name__} ({value!r:.80}).")
    if value < minimum:
        raise ValueError(f"{name!r} must be at least {minimum}, got {value}; {fix}")
    return int(value)


def _check_ks(ks: Any, n_gallery: int, what: str) -> tuple[int, ...]:
    values = [ks] if isinstance(ks, int | np.integer) and not isinstance(ks, bool) else ks
    try:
        values = list(values)
    except TypeError as err:
        raise TypeError(f"'ks' must be an int or a sequence of ints, got {ks!r}.") from err
    if not values:
        raise ValueError("'ks' is empty; pass at least one k, e.g. ks=(1, 5, 10).")
    out = []
    for k in values:
        k = _check_int("k", k, 1, "k counts the top candidates, e.g. 1, 5 or 10.")
        if k > n_gallery:
            raise ValueError(
                f"k={k} is larger than the {what} ({n_gallery} items); use k <= {n_gallery}."
            )
        out.append(k)
    return tuple(sorted(set(out)))


# ---------------------------------------------------------------------------------------------
# Scores of blocks
# ---------------------------------------------------------------------------------------------


def _blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _inv_norms(x: Array, similarity: str, name: str, offset: int) -> Array | None:
    """1/‖row‖ (after centring for correlation) or ``None`` for the dot product.

    Each row's norm is computed by the same reduction whatever the block it sits in, so equal
    rows get bit-identical norms.
    """
    if similarity == "dot":
        return None
    if isinstance(x, np.ndarray):
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        zero = np.flatnonzero(norms == 0)
    else:
        norms = torch.linalg.vector_norm(x, dim=1)
        zero = np.flatnonzero((norms == 0).cpu().numpy())
    if zero.size:
        after = " after centring" if similarity == "correlation" else ""
        raise ValueError(
            f"{name!r} rows {(zero[:5] + offset).tolist()} have zero norm{after}; {similarity} "
            "similarity is undefined for them. Remove those rows or use similarity='dot'."
        )
    return 1.0 / norms


def _centre(x: Array, similarity: str) -> Array:
    if similarity != "correlation":
        return x
    if isinstance(x, np.ndarray):
        return x - x.mean(axis=1, keepdims=True)
    return x - x.mean(dim=1, keepdim=True)


def _prepare_queries(x: Array, similarity: str, name: str, offset: int) -> Array:
    """Centre (correlation) and normalise (cosine, correlation) a block of queries."""
    x = _centre(x, similarity)
    inv = _inv_norms(x, similarity, name, offset)
    if inv is None:
        return x
    return x * inv[:, None]


def _prepare_gallery(
    x: Array, similarity: str, name: str, offset: int, normalize_rows: bool
) -> tuple[Array, Array | None]:
    """Centre (correlation) a gallery block; return it with the inverse norms of its rows.

    With ``normalize_rows`` the rows are scaled here (cheaper when a query block has more rows
    than there are features); otherwise the inverse norms are returned and the scores scaled.
    """
    x = _centre(x, similarity)
    inv = _inv_norms(x, similarity, name, offset)
    if inv is not None and normalize_rows:
        return x * inv[:, None], None
    return x, inv


def _check_finite_scores(first_row: Array, start: int, name: str) -> None:
    """Scores of the first query: a NaN or inf gallery row makes its column non-finite."""
    if isinstance(first_row, np.ndarray):
        bad = np.flatnonzero(~np.isfinite(first_row))
    else:
        bad = np.flatnonzero(~first_row.isfinite().cpu().numpy())
    if bad.size:
        raise ValueError(
            f"{name!r} rows {(bad[:5] + start).tolist()} contain NaN or infinite values (or "
            "their similarities overflow the float type); remove or fix them."
        )


@dataclass
class _Engine:
    """The streaming engine: blocks of queries × blocks of gallery, one product per pair."""

    similarity: str = "cosine"
    chunk_size: int | None = None
    query_chunk_size: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = "numpy"
    verbose: bool = False
    gallery_name: str = "gallery"
    query_name: str = "queries"

    @classmethod
    def create(
        cls,
        similarity: str,
        chunk_size: Any,
        query_chunk_size: Any,
        device: Any,
        backend: str,
        xs: Sequence[Array],
        verbose: bool = False,
        names: tuple[str, str] = ("queries", "gallery"),
    ) -> _Engine:
        check_option("similarity", similarity, SIMILARITIES)
        check_option("backend", backend, BACKENDS)
        if chunk_size is not None:
            chunk_size = _check_int("chunk_size", chunk_size, 1, "it counts gallery rows.")
        if query_chunk_size is not None:
            query_chunk_size = _check_int(
                "query_chunk_size", query_chunk_size, 1, "it counts query rows."
            )
        dev = _resolve(device, *xs)
        if backend == "auto":
            backend = "numpy" if dev.type == "cpu" else "torch"
        elif backend == "numpy" and dev.type != "cpu":
            raise ValueError(
                f"backend='numpy' runs on the CPU but device={str(dev)!r}; use backend='auto' "
                "or 'torch' for GPU inputs."
            )
        return cls(
            similarity, chunk_size, query_chunk_size, dev, backend, verbose, names[1], names[0]
        )

    # -- sizes --------------------------------------------------------------------------------
    def _chunks(self, n_queries: int, gallery: Array, dtype: np.dtype) -> tuple[int, int]:
        n_gallery, n_features = gallery.shape
        qcs = self.query_chunk_size or min(n_queries, _DEFAULT_QUERY_CHUNK)
        qcs = min(qcs, n_queries)
        if self.chunk_size is not None:
            return qcs, min(self.chunk_size, n_gallery)
        gcs = max(1024, _SCORE_BLOCK_BYTES // (dtype.itemsize * qcs))
        if self._copies_blocks(gallery, dtype, qcs):
            # Blocks are copied (converted, centred, normalised, moved): bound them too.
            gcs = min(gcs, max(1024, _GALLERY_BLOCK_BYTES // (dtype.itemsize * n_features)))
        return qcs, min(gcs, n_gallery)

    def _copies_blocks(self, gallery: Array, dtype: np.dtype, n_queries: int) -> bool:
        if self.backend != "numpy" or _np_dtype(gallery) != dtype:
            return True
        contiguous = (
            gallery.is_contiguous()
            if isinstance(gallery, torch.Tensor)
            else gallery.flags.c_contiguous
        )
        normalized = self.similarity == "cosine" and n_queries > gallery.shape[1]
        return not contiguous or self.similarity == "correlation" or normalized

    # -- scores -------------------------------------------------------------------------------
    def _queries(self, queries: Array, start: int, stop: int, dtype: np.dtype) -> Array:
        q = _rows(queries, slice(start, stop), dtype, self.backend, self.device)
        _check_finite_queries(q, self.query_name, start)
        return _prepare_queries(q, self.similarity, self.query_name, start)

    def _scores(self, q: Array, g: Array, inv: Array | None, out: np.ndarray | None) -> Array:
        """``q @ g.T`` scaled by the gallery inverse norms, into ``out`` (numpy) when given."""
        if isinstance(q, np.ndarray):
            s = np.matmul(q, g.T, out=out)
            if inv is not None:
                np.multiply(s, inv[None, :], out=s)
            return s
        s = q @ g.T
        if inv is not None:
            s.mul_(inv[None, :])
        return s

    def _gallery_blocks(
        self, gallery: Array, n_queries: int, dtype: np.dtype, gcs: int
    ) -> Iterator[tuple[int, int, Array, Array | None]]:
        blocks = list(_blocks(len(gallery), gcs))
        it = progress(
            blocks, desc="retrieval", verbose=self.verbose and len(blocks) > 1, unit="block"
        )
        normalize_rows = n_queries > gallery.shape[1]
        for gs, ge in it:
            g = _rows(gallery, slice(gs, ge), dtype, self.backend, self.device)
            g, inv = _prepare_gallery(g, self.similarity, self.gallery_name, gs, normalize_rows)
            yield gs, ge, g, inv

    def _true_scores(self, q: Array, gallery: Array, targets: np.ndarray, dtype: np.dtype) -> Array:
        """Score of each query's true item, with the same product (same number of rows)."""
        m = len(targets)
        out = np.empty(m, dtype=dtype) if self.backend == "numpy" else None
        parts = []
        for cs, ce in _blocks(m, _TRUE_SCORE_CHUNK):
            rows = targets[cs:ce]
            g = _rows(gallery, rows, dtype, self.backend, self.device)
            g, inv = _prepare_gallery(
                g, self.similarity, self.gallery_name, 0, normalize_rows=m > gallery.shape[1]
            )
            diag = self._scores(q, g, inv, None).diagonal(offset=-cs)
            if out is not None:
                out[cs:ce] = diag
            else:
                parts.append(diag)
        return out if out is not None else torch.cat(parts)

    # -- rank counts --------------------------------------------------------------------------
    @torch.no_grad()
    def counts(
        self, queries: Array, gallery: Array, targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per query: number of competitors scoring above / exactly at the true item."""
        n_q = len(queries)
        dtype = _compute_dtype(queries, gallery)
        qcs, gcs = self._chunks(n_q, gallery, dtype)
        n_greater = np.zeros(n_q, dtype=np.int64)
        n_equal = np.zeros(n_q, dtype=np.int64)
        for qs, qe in _blocks(n_q, qcs):
            q = self._queries(queries, qs, qe, dtype)
            t = targets[qs:qe]
            s_true = self._true_scores(q, gallery, t, dtype)
            m = qe - qs
            gt: Any
            eq: Any
            if self.backend == "numpy":
                sbuf = np.empty(m * gcs, dtype=dtype)
                mbuf = np.empty(m * gcs, dtype=bool)
                gt = np.zeros(m, dtype=np.int64)
                eq = np.zeros(m, dtype=np.int64)
            else:
                gt = torch.zeros(m, dtype=torch.int64, device=self.device)
                eq = torch.zeros(m, dtype=torch.int64, device=self.device)
            for gs, ge, g, inv in self._gallery_blocks(gallery, m, dtype, gcs):
                w = ge - gs
                if self.backend == "numpy":
                    s = self._scores(q, g, inv, sbuf[: m * w].reshape(m, w))
                    _check_finite_scores(s[0], gs, self.gallery_name)
                    mask = mbuf[: m * w].reshape(m, w)
                    gt += np.count_nonzero(np.greater(s, s_true[:, None], out=mask), axis=1)
                    eq += np.count_nonzero(np.equal(s, s_true[:, None], out=mask), axis=1)
                else:
                    s = self._scores(q, g, inv, None)
                    _check_finite_scores(s[0], gs, self.gallery_name)
                    gt += (s > s_true[:, None]).sum(dim=1)
                    eq += (s == s_true[:, None]).sum(dim=1)
                # The true item is not its own competitor: undo what it added, whatever its score.
                inside = np.flatnonzero((t >= gs) & (t < ge))
                if inside.size and self.backend == "numpy":
                    own = s[inside, t[inside] - gs]
                    gt[inside] -= own > s_true[inside]
                    eq[inside] -= own == s_true[inside]
                elif inside.size:
                    idx = torch.as_tensor(inside, device=self.device)
                    own = s[idx, torch.as_tensor(t[inside] - gs, device=self.device)]
                    gt[idx] -= (own > s_true[idx]).long()
                    eq[idx] -= (own == s_true[idx]).long()
            if self.backend == "numpy":
                n_greater[qs:qe], n_equal[qs:qe] = gt, eq
            else:
                n_greater[qs:qe], n_equal[qs:qe] = gt.cpu().numpy(), eq.cpu().numpy()
        return n_greater, n_equal

    # -- top-k --------------------------------------------------------------------------------
    @torch.no_grad()
    def topk(self, queries: Array, gallery: Array, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best gallery items per query: scores and indices, (score ↓, index ↑)."""
        n_q = len(queries)
        dtype = _compute_dtype(queries, gallery)
        qcs, gcs = self._chunks(n_q, gallery, dtype)
        out_s = np.empty((n_q, k), dtype=dtype)
        out_i = np.empty((n_q, k), dtype=np.int64)
        for qs, qe in _blocks(n_q, qcs):
            q = self._queries(queries, qs, qe, dtype)
            if self.backend == "numpy":
                top_s, top_i = self._topk_numpy(q, gallery, k, dtype, gcs)
            else:
                top_s, top_i = self._topk_torch(q, gallery, k, dtype, gcs)
            out_s[qs:qe], out_i[qs:qe] = top_s, top_i
        return out_s, out_i

    def _topk_numpy(
        self, q: np.ndarray, gallery: Array, k: int, dtype: np.dtype, gcs: int
    ) -> tuple[np.ndarray, np.ndarray]:
        m, n_g = len(q), len(gallery)
        sbuf = np.empty(m * gcs, dtype=dtype)
        top_s = np.full((m, k), -np.inf, dtype=dtype)
        top_i = np.full((m, k), n_g, dtype=np.int64)  # sentinel: after every real index
        for gs, ge, g, inv in self._gallery_blocks(gallery, m, dtype, gcs):
            w = ge - gs
            s = self._scores(q, g, inv, sbuf[: m * w].reshape(m, w))
            _check_finite_scores(s[0], gs, self.gallery_name)
            tau = top_s[:, -1]
            if not np.isneginf(tau).any():
                # Later items win no ties (their indices are larger): strictly above the k-th.
                status, rows, cols = _np_candidates(s, tau, max_hits=max(64, (m * w) // 256))
                if status == "none":  # nothing beats the current top-k in this block
                    continue
                if status == "sparse":
                    _np_merge_sparse(top_s, top_i, rows, s.reshape(-1)[rows * w + cols], cols + gs)
                    continue
            vals, cols = _np_block_topk(s, min(k, w))
            top_s, top_i = _np_merge_dense(top_s, top_i, vals, cols + gs, k)
        return top_s, top_i

    def _topk_torch(
        self, q: torch.Tensor, gallery: Array, k: int, dtype: np.dtype, gcs: int
    ) -> tuple[np.ndarray, np.ndarray]:
        m, n_g = len(q), len(gallery)
        top_s = torch.full((m, k), -math.inf, dtype=q.dtype, device=q.device)
        top_i = torch.full((m, k), n_g, dtype=torch.int64, device=q.device)
        for gs, ge, g, inv in self._gallery_blocks(gallery, m, dtype, gcs):
            s = self._scores(q, g, inv, None)
            _check_finite_scores(s[0], gs, self.gallery_name)
            vals, cols = _torch_block_topk(s, min(k, ge - gs))
            both_s = torch.cat([top_s, vals], dim=1)
            both_i = torch.cat([top_i, cols + gs], dim=1)
            # Stable sort: equal scores keep their order, i.e. smaller indices first.
            order = torch.sort(both_s, dim=1, descending=True, stable=True).indices[:, :k]
            top_s, top_i = both_s.gather(1, order), both_i.gather(1, order)
        return top_s.cpu().numpy(), top_i.cpu().numpy()


def _np_candidates(
    s: np.ndarray, tau: np.ndarray, max_hits: int
) -> tuple[str, np.ndarray, np.ndarray]:
    """Positions ``(rows, cols)`` of the scores strictly above each row's threshold ``tau``.

    Returns ``(status, rows, cols)``: status ``'sparse'`` with the positions sorted by row then
    column, ``'none'`` when there are none, or ``'dense'`` when more than ``max_hits`` groups
    hold one (the caller then takes the block's exact top-k). The maximum of every group of 64
    consecutive columns is compared first, so only the few groups that can hold a candidate are
    read again; this costs about one pass over the block, less than a boolean mask and
    ``nonzero``.
    """
    m, w = s.shape
    w64 = w - w % _GROUP
    rows_parts, cols_parts = [], []
    if w64:
        n_groups = w64 // _GROUP
        grouped = torch.as_strided(torch.from_numpy(s), (m, n_groups, _GROUP), (w, _GROUP, 1))
        hits = np.flatnonzero(grouped.amax(dim=2).numpy() > tau[:, None])
        if hits.size > max_hits:
            return "dense", _EMPTY, _EMPTY
        if hits.size:
            r, gi = np.divmod(hits, n_groups)
            cols = gi[:, None] * _GROUP + np.arange(_GROUP)
            vals = s[r[:, None], cols]
            wi, bj = np.nonzero(vals > tau[r][:, None])
            rows_parts.append(r[wi])
            cols_parts.append(cols[wi, bj])
    if w64 < w:
        r, c = np.nonzero(s[:, w64:] > tau[:, None])
        rows_parts.append(r)
        cols_parts.append(c + w64)
    if not rows_parts:
        return "none", _EMPTY, _EMPTY
    rows, cols = np.concatenate(rows_parts), np.concatenate(cols_parts)
    if rows.size == 0:
        return "none", _EMPTY, _EMPTY
    if len(rows_parts) > 1:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
    return "sparse", rows, cols


def _np_block_topk(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each row ordered by (score ↓, column ↑), ties included."""
    vals_t, cols_t = torch.topk(torch.from_numpy(s), k, dim=1)
    vals, cols = vals_t.numpy(), cols_t.numpy()
    n_ge = (s >= vals[:, -1:]).sum(axis=1)
    ambiguous = np.flatnonzero(n_ge > k)  # ties straddle the k-th place: take lowest columns
    if ambiguous.size:
        order = np.argsort(-s[ambiguous], axis=1, kind="stable")[:, :k]
        cols[ambiguous] = order
        vals[ambiguous] = np.take_along_axis(s[ambiguous], order, axis=1)
    order = np.lexsort((cols, -vals), axis=1)
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(cols, order, axis=1)


def _np_merge_dense(
    top_s: np.ndarray, top_i: np.ndarray, vals: np.ndarray, idx: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    both_s = np.concatenate([top_s, vals], axis=1)
    both_i = np.concatenate([top_i, idx], axis=1)
    order = np.lexsort((both_i, -both_s), axis=1)[:, :k]
    return np.take_along_axis(both_s, order, axis=1), np.take_along_axis(both_i, order, axis=1)


def _np_merge_sparse(
    top_s: np.ndarray, top_i: np.ndarray, rows: np.ndarray, vals: np.ndarray, idx: np.ndarray
) -> None:
    """Merge candidates (sorted by row) into the running top-k of their rows, in place."""
    k = top_s.shape[1]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    urows = rows[starts]
    n_cand = np.diff(np.r_[starts, rows.size])
    all_rows = np.concatenate([np.repeat(urows, k), rows])
    all_s = np.concatenate([top_s[urows].reshape(-1), vals])
    all_i = np.concatenate([top_i[urows].reshape(-1), idx])
    order = np.lexsort((all_i, -all_s, all_rows))
    group_start = np.cumsum(np.r_[0, (n_cand + k)[:-1]])
    pick = order[(group_start[:, None] + np.arange(k)).reshape(-1)]
    top_s[urows] = all_s[pick].reshape(-1, k)
    top_i[urows] = all_i[pick].reshape(-1, k)


def _torch_block_topk(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    vals, cols = torch.topk(s, k, dim=1)
    n_ge = (s >= vals[:, -1:]).sum(dim=1)
    ambiguous = torch.nonzero(n_ge > k).flatten()
    if ambiguous.numel():
        sv, si = torch.sort(s[ambiguous], dim=1, descending=True, stable=True)
        vals[ambiguous], cols[ambiguous] = sv[:, :k], si[:, :k]
    order = torch.argsort(cols, dim=1)
    vals, cols = vals.gather(1, order), cols.gather(1, order)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return vals.gather(1, order), cols.gather(1, order)


# ---------------------------------------------------------------------------------------------
# Per-query values of the metrics
# ---------------------------------------------------------------------------------------------


def _harmonic(n: np.ndarray) -> np.ndarray:
    from scipy.special import digamma

    return digamma(n + 1.0) + np.euler_gamma


def _rank_values(n_greater: np.ndarray, n_equal: np.ndarray, ties: str) -> np.ndarray:
    g, e = n_greater.astype(np.float64), n_equal.astype(np.float64)
    if ties == "optimistic":
        return 1.0 + g
    if ties == "pessimistic":
        return 1.0 + g + e
    return 1.0 + g + e / 2.0


def _hit_values(n_greater: np.ndarray, n_equal: np.ndarray, k: int, ties: str) -> np.ndarray:
    g, e = n_greater.astype(np.float64), n_equal.astype(np.float64)
    if ties == "optimistic":
        return (1.0 + g <= k).astype(np.float64)
    if ties == "pessimistic":
        return (1.0 + g + e <= k).astype(np.float64)
    return np.clip((k - g) / (e + 1.0), 0.0, 1.0)


def _reciprocal_values(n_greater: np.ndarray, n_equal: np.ndarray, ties: str) -> np.ndarray:
    if ties != "average":
        return 1.0 / _rank_values(n_greater, n_equal, ties)
    g, e = n_greater.astype(np.float64), n_equal.astype(np.float64)
    out = 1.0 / (1.0 + g)
    tied = e > 0
    if tied.any():
        gt, et = g[tied], e[tied]
        out[tied] = (_harmonic(gt + et + 1.0) - _harmonic(gt)) / (et + 1.0)
    return out


def _two_way_values(
    n_greater: np.ndarray, n_equal: np.ndarray, n_candidates: np.ndarray, ties: str
) -> np.ndarray:
    g, e = n_greater.astype(np.float64), n_equal.astype(np.float64)
    others = n_candidates.astype(np.float64) - 1.0
    lost = {"optimistic": g, "pessimistic": g + e, "average": g + e / 2.0}[ties]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(others > 0, (others - lost) / np.maximum(others, 1.0), np.nan)


# ---------------------------------------------------------------------------------------------
# Low-level public functions
# ---------------------------------------------------------------------------------------------


def _check_targets(targets: Any, n_queries: int, n_gallery: int) -> np.ndarray:
    if targets is None:
        if n_queries > n_gallery:
            raise ValueError(
                f"Without 'targets', query i must match gallery row i, but there are "
                f"{n_queries} queries and only {n_gallery} gallery rows; pass targets (the "
                "gallery index of each query's true item)."
            )
        return np.arange(n_queries)
    t = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    if t.shape != (n_queries,):
        raise ValueError(
            f"'targets' must have one gallery index per query, shape ({n_queries},), got "
            f"shape {t.shape}."
        )
    if t.dtype.kind not in "iu":
        raise TypeError(f"'targets' must hold integer gallery indices, got dtype {t.dtype}.")
    bad = np.flatnonzero((t < 0) | (t >= n_gallery))
    if bad.size:
        raise ValueError(
            f"'targets' must be gallery row indices in [0, {n_gallery}), got "
            f"{t[bad[:5]].tolist()} at positions {bad[:5].tolist()}."
        )
    return t.astype(np.int64)


def search_topk(
    queries: Any,
    gallery: Any,
    k: int = 10,
    *,
    similarity: str = "cosine",
    chunk_size: int | None = None,
    query_chunk_size: int | None = None,
    device: Any = None,
    backend: str = "auto",
    verbose: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar gallery items of every query, streaming over the gallery.

    Queries are processed in blocks of ``query_chunk_size`` rows and the gallery in blocks of
    ``chunk_size`` rows: one matrix product per pair of blocks, then a streaming top-k that merges
    each block's best items into a running top-k. On the CPU the product is NumPy's BLAS and only
    the scores above each query's current k-th best are extracted, so the selection costs one
    comparison pass per block. Memory: ``query_chunk_size × chunk_size`` scores (64 MiB by
    default) plus, when blocks must be copied, one block of the gallery (256 MiB), whatever the
    gallery size; a ``numpy.memmap`` gallery is read block by block.

    Parameters
    ----------
    queries : array-like or torch.Tensor, shape (n_queries, n_features)
        The queries.
    gallery : array-like or torch.Tensor, shape (n_gallery, n_features)
        The candidates; never copied as a whole.
    k : int
        Number of items to return, ``1 <= k <= n_gallery``.
    similarity : {'cosine', 'dot', 'correlation'}
        The score (see the module's docstring). ``'dot'`` on unit vectors is what FAISS's
        ``IndexFlatIP`` computes.
    chunk_size : int | None
        Gallery rows per block; by default the largest block whose scores fit in 64 MiB (and,
        when blocks are copied, e.g. converted from float16, whose rows fit in 256 MiB).
    query_chunk_size : int | None
        Query rows per block (default ``min(n_queries, 4096)``).
    device : str | torch.device | None
        ``None`` follows the inputs (a CUDA tensor runs on its GPU), ``'auto'`` picks CUDA when
        present; NumPy inputs are moved to the device block by block.
    backend : {'auto', 'numpy', 'torch'}
        ``'auto'`` uses NumPy on the CPU (its BLAS is faster there) and torch elsewhere.
    verbose : bool
        Show a progress bar over gallery blocks.

    Returns
    -------
    scores : ndarray, shape (n_queries, k)
        The scores, best first (float32, or float64 for float64 inputs).
    indices : ndarray of int64, shape (n_queries, k)
        Their gallery rows. Equal scores are ordered by increasing gallery index, so the result
        equals a stable descending sort of the full score matrix.

    Examples
    --------
    >>> import numpy as np
    >>> gallery = np.eye(4)
    >>> scores, indices = search_topk(gallery[[2, 0]], gallery, k=1)
    >>> indices.ravel().tolist()
    [2, 0]
    """
    q = _as_2d(queries, "queries", "n_queries")
    g = _as_2d(gallery, "gallery", "n_gallery")
    _check_same_features(q, g, "queries", "gallery")
    k = _check_int("k", k, 1, "k counts the items to return, e.g. 10.")
    if k > len(g):
        raise ValueError(f"k={k} is larger than the gallery ({len(g)} items); use k <= {len(g)}.")
    engine = _Engine.create(similarity, chunk_size, query_chunk_size, device, backend, (q, g))
    engine.verbose = verbose
    return engine.topk(q, g, k)


def ranks(
    queries: Any,
    gallery: Any,
    targets: Any = None,
    *,
    similarity: str = "cosine",
    ties: str = "average",
    chunk_size: int | None = None,
    query_chunk_size: int | None = None,
    device: Any = None,
    backend: str = "auto",
) -> np.ndarray:
    """Rank of each query's true item among the gallery (1 = best), computed blockwise.

    The rank is one plus the number of gallery items scoring higher than the true item (ties
    resolved by ``ties``, see the module's docstring). It is counted block by block against
    the true item's score, so the ``n_queries × n_gallery`` matrix is never held.

    Parameters
    ----------
    queries : array-like or torch.Tensor, shape (n_queries, n_features)
        The queries.
    gallery : array-like or torch.Tensor, shape (n_gallery, n_features)
        The candidates.
    targets : array-like of int, shape (n_queries,) | None
        Gallery row of each query's true item; ``None`` means row ``i`` for query ``i``.
    similarity : {'cosine', 'dot', 'correlation'}
        The score.
    ties : {'average', 'optimistic', 'pessimistic'}
        How exact ties with the true item count.
    chunk_size, query_chunk_size, device, backend
        As in :func:`search_topk`.

    Returns
    -------
    ranks : ndarray of float64, shape (n_queries,)
        Integers, or halves with ``ties='average'``.
    """
    check_option("ties", ties, TIES)
    q = _as_2d(queries, "queries", "n_queries")
    g = _as_2d(gallery, "gallery", "n_gallery")
    _check_same_features(q, g, "queries", "gallery")
    t = _check_targets(targets, len(q), len(g))
    engine = _Engine.create(similarity, chunk_size, query_chunk_size, device, backend, (q, g))
    n_greater, n_equal = engine.counts(q, g, t)
    return _rank_values(n_greater, n_equal, ties)


def _low_level_counts(
    queries: Any, gallery: Any, targets: Any, kw: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, int]:
    q = _as_2d(queries, "queries", "n_queries")
    g = _as_2d(gallery, "gallery", "n_gallery")
    _check_same_features(q, g, "queries", "gallery")
    t = _check_targets(targets, len(q), len(g))
    engine = _Engine.create(
        kw["similarity"], kw["chunk_size"], kw["query_chunk_size"], kw["device"], kw["backend"],
        (q, g),
    )  # fmt: skip
    n_greater, n_equal = engine.counts(q, g, t)
    return n_greater, n_equal, len(g)


def topk_accuracy(
    queries: Any,
    gallery: Any,
    targets: Any = None,
    *,
    k: int | Sequence[int] = 1,
    similarity: str = "cosine",
    ties: str = "average",
    chunk_size: int | None = None,
    query_chunk_size: int | None = None,
    device: Any = None,
    backend: str = "auto",
) -> float | dict[int, float]:
    """Fraction of queries whose true item is among the ``k`` best-scoring gallery items.

    Parameters
    ----------
    queries, gallery, targets, similarity, ties, chunk_size, query_chunk_size, device, backend
        As in :func:`ranks`.
    k : int or sequence of int
        One k, or several (e.g. ``(1, 5, 10)``), each at most the gallery size.

    Returns
    -------
    accuracy : float or dict of {int: float}
        A float for an int ``k``; ``{k: accuracy}`` for a sequence.
    """
    check_option("ties", ties, TIES)
    kw = {"similarity": similarity, "chunk_size": chunk_size}
    kw |= {"query_chunk_size": query_chunk_size, "device": device, "backend": backend}
    n_gallery = len(_as_2d(gallery, "gallery", "n_gallery"))
    ks = _check_ks(k, n_gallery, "gallery")
    n_greater, n_equal, _ = _low_level_counts(queries, gallery, targets, kw)
    acc = {kk: float(_hit_values(n_greater, n_equal, kk, ties).mean()) for kk in ks}
    if isinstance(k, int | np.integer):
        return acc[int(k)]
    return acc


def mean_reciprocal_rank(
    queries: Any,
    gallery: Any,
    targets: Any = None,
    *,
    similarity: str = "cosine",
    ties: str = "average",
    chunk_size: int | None = None,
    query_chunk_size: int | None = None,
    device: Any = None,
    backend: str = "auto",
) -> float:
    """Mean over queries of ``1 / rank`` of the true item (see :func:`ranks`)."""
    check_option("ties", ties, TIES)
    kw = {"similarity": similarity, "chunk_size": chunk_size}
    kw |= {"query_chunk_size": query_chunk_size, "device": device, "backend": backend}
    n_greater, n_equal, _ = _low_level_counts(queries, gallery, targets, kw)
    return float(_reciprocal_values(n_greater, n_equal, ties).mean())


def median_rank(
    queries: Any,
    gallery: Any,
    targets: Any = None,
    *,
    similarity: str = "cosine",
    ties: str = "average",
    chunk_size: int | None = None,
    query_chunk_size: int | None = None,
    device: Any = None,
    backend: str = "auto",
) -> float:
    """Median over queries of the rank of the true item (see :func:`ranks`)."""
    r = ranks(
        queries, gallery, targets, similarity=similarity, ties=ties, chunk_size=chunk_size,
        query_chunk_size=query_chunk_size, device=device, backend=backend,
    )  # fmt: skip
    return float(np.median(r))


# ---------------------------------------------------------------------------------------------
# Pairing brain samples with stimuli, repetitions, tasks
# ---------------------------------------------------------------------------------------------


def _ids(ids: Any, name: str, n: int, what: str) -> np.ndarray:
    arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids)
    if arr.shape != (n,):
        raise ValueError(
            f"{name!r} must have one id per row of {what!r} (shape ({n},)), got shape {arr.shape}."
        )
    return arr


def _stimulus_index(brain: Array, stimuli: Array, brain_ids: Any, stimulus_ids: Any) -> np.ndarray:
    """For each brain row, the row of ``stimuli`` it responds to."""
    n_b, n_s = len(brain), len(stimuli)
    if brain_ids is None:
        if stimulus_ids is not None:
            raise ValueError(
                "'stimulus_ids' was given without 'brain_ids'; pass brain_ids (the stimulus id "
                "of each brain row), or drop stimulus_ids when the rows are paired one to one."
            )
        if n_b != n_s:
            raise ValueError(
                f"'brain' has {n_b} rows but 'stimuli' has {n_s}; without 'brain_ids', row i of "
                "brain must be the response to row i of stimuli. Pass brain_ids (the stimulus id "
                "of each brain row) for repetitions or a gallery with extra stimuli."
            )
        return np.arange(n_b)
    b = _ids(brain_ids, "brain_ids", n_b, "brain")
    if stimulus_ids is None:
        if b.dtype.kind not in "iu":
            raise TypeError(
                f"Without 'stimulus_ids', 'brain_ids' must be integer rows of 'stimuli', got "
                f"dtype {b.dtype}; pass stimulus_ids (the id of each stimulus row) as well."
            )
        bad = np.flatnonzero((b < 0) | (b >= n_s))
        if bad.size:
            raise ValueError(
                f"'brain_ids' must be rows of 'stimuli' in [0, {n_s}) when 'stimulus_ids' is not "
                f"given, got {b[bad[:5]].tolist()}; pass stimulus_ids to use other ids."
            )
        return b.astype(np.int64)
    s = _ids(stimulus_ids, "stimulus_ids", n_s, "stimuli")
    lookup: dict[Any, int] = {}
    duplicates = []
    for i, key in enumerate(s.tolist()):
        if key in lookup:
            duplicates.append(key)
        lookup[key] = i
    if duplicates:
        raise ValueError(
            f"'stimulus_ids' must be unique (one gallery row per stimulus), but {duplicates[:5]} "
            "occur more than once; deduplicate the stimuli first, or use full_gallery_retrieval "
            "for paired rows whose stimuli repeat."
        )
    keys = b.tolist()
    missing = sorted({key for key in keys if key not in lookup}, key=str)
    if missing:
        raise ValueError(
            f"'brain_ids' contains ids absent from 'stimulus_ids': {missing[:5]}"
            f"{' …' if len(missing) > 5 else ''}; every brain row needs its stimulus in the "
            "gallery."
        )
    return np.fromiter((lookup[key] for key in keys), dtype=np.int64, count=len(keys))


def _average_repetitions(brain: Array, index: np.ndarray, backend: str) -> tuple[Array, np.ndarray]:
    """One averaged brain row per stimulus with data (sorted by stimulus row)."""
    items, inverse, counts = np.unique(index, return_inverse=True, return_counts=True)
    if counts.max() == 1 and np.array_equal(items, index):
        return brain, items  # nothing to average, rows already in stimulus order
    dtype = _compute_dtype(brain)
    if isinstance(brain, torch.Tensor) and backend == "torch":
        x = brain.to(_TORCH_DTYPES[dtype])
        inv = torch.as_tensor(inverse, device=x.device)
        sums = torch.zeros((len(items), x.shape[1]), dtype=x.dtype, device=x.device)
        sums.index_add_(0, inv, x)
        return sums / torch.as_tensor(counts, dtype=x.dtype, device=x.device)[:, None], items
    arr = _rows(brain, slice(None), dtype, "numpy", None)
    order = np.argsort(inverse, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    totals = np.add.reduceat(arr[order], starts, axis=0)
    return totals / counts[:, None].astype(dtype), items


def _occurrence(values: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries have the same value (0 for the first)."""
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    new = np.r_[True, sorted_vals[1:] != sorted_vals[:-1]]
    group_start = np.maximum.accumulate(np.where(new, np.arange(len(values)), 0))
    occ = np.empty(len(values), dtype=np.int64)
    occ[order] = np.arange(len(values)) - group_start
    return occ


@dataclass
class _Task:
    queries: Array
    gallery: Array
    targets: np.ndarray
    groups: np.ndarray  # stimulus of each query, for the cluster bootstrap


def _tasks(
    brain: Array,
    stimuli: Array,
    index: np.ndarray,
    direction: str,
    subset: np.ndarray | None = None,
) -> dict[str, list[_Task]]:
    """The retrieval problems of each direction (see the module's docstring, repetitions)."""
    if subset is None:
        gallery, rows, pos = stimuli, np.arange(len(index)), index
        brain_rows = brain
    else:
        gallery = _take(stimuli, subset)
        rows = np.flatnonzero(np.isin(index, subset))
        pos = np.searchsorted(subset, index[rows])
        brain_rows = _take(brain, rows)
    out: dict[str, list[_Task]] = {}
    if direction in ("both", "brain_to_stimulus"):
        out["brain_to_stimulus"] = [_Task(brain_rows, gallery, pos, index[rows])]
    if direction in ("both", "stimulus_to_brain"):
        occ = _occurrence(pos)
        tasks = []
        for r in range(int(occ.max()) + 1):
            sel = np.flatnonzero(occ == r)
            tasks.append(
                _Task(
                    _take(gallery, pos[sel]),
                    _take(brain_rows, sel),
                    np.arange(len(sel)),
                    index[rows[sel]],
                )
            )
        out["stimulus_to_brain"] = tasks
    return out


@dataclass
class _Records:
    """Per-query outcome: competitors above and tied with the true item, gallery size, group."""

    n_greater: np.ndarray
    n_equal: np.ndarray
    n_candidates: np.ndarray
    groups: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[_Records]) -> _Records:
        names = [f.name for f in fields(cls)]
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in names))


def _run(tasks: dict[str, list[_Task]], engine: _Engine) -> dict[str, _Records]:
    out = {}
    for direction, task_list in tasks.items():
        engine.query_name, engine.gallery_name = (
            ("brain", "stimuli") if direction == "brain_to_stimulus" else ("stimuli", "brain")
        )
        parts = []
        for task in task_list:
            n_greater, n_equal = engine.counts(task.queries, task.gallery, task.targets)
            n_cand = np.full(len(task.targets), len(task.gallery), dtype=np.int64)
            parts.append(_Records(n_greater, n_equal, n_cand, task.groups))
        out[direction] = _Records.concat(parts)
    return out


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

_STATISTIC = {"median_rank": "median"}


def _metric_values(rec: _Records, metrics: Sequence[str], ties: str) -> dict[str, np.ndarray]:
    out = {}
    for name in metrics:
        if name.startswith("top"):
            out[name] = _hit_values(rec.n_greater, rec.n_equal, int(name[3:]), ties)
        elif name == "mrr":
            out[name] = _reciprocal_values(rec.n_greater, rec.n_equal, ties)
        elif name in ("mean_rank", "median_rank"):
            out[name] = _rank_values(rec.n_greater, rec.n_equal, ties)
        elif name == "two_way":
            out[name] = _two_way_values(rec.n_greater, rec.n_equal, rec.n_candidates, ties)
    return out


@dataclass(frozen=True, repr=False)
class RetrievalResult:
    """Retrieval metrics of one protocol, per direction, with bootstrap confidence intervals.

    Attributes
    ----------
    protocol : str
        ``'full'``, ``'n-way'``, ``'2-way'`` or ``'full-gallery'``.
    metrics : dict of {str: dict of {str: float}}
        ``metrics[direction][metric]``: ``'top1'``, ``'top5'`` … (fractions in [0, 1]),
        ``'mrr'``, ``'mean_rank'``, ``'median_rank'`` (1 = best), ``'two_way'`` (fraction).
    ci : dict of {str: dict of {str: tuple of float}}
        Percentile bootstrap interval of each metric (empty without a bootstrap).
    n_queries : dict of {str: int}
        Queries per direction (summed over draws for ``'n-way'``).
    n_gallery : dict of {str: int}
        Candidates per query: the gallery size (``n_way`` for ``'n-way'``; with
        ``repetitions='per-sample'`` in the stimulus → brain direction, the largest gallery).
    ranks : dict of {str: ndarray}
        Per-query ranks of the true item (ties as requested), in query order (draw by draw for
        ``'n-way'``).
    per_draw : dict of {str: ndarray} | None
        ``'n-way'`` only: the mean of each metric per draw, shape ``(n_draws, n_metrics)``, in
        the order of ``metrics[direction]``.
    subsets : ndarray of int, shape (n_draws, n_way) | None
        ``'n-way'`` only: the rows of ``stimuli`` drawn in each draw (sorted).
    params : dict
        The settings (similarity, ties, repetitions, n_way, n_draws, seed, …).
    """

    protocol: str
    metrics: dict[str, dict[str, float]]
    ci: dict[str, dict[str, tuple[float, float]]]
    n_queries: dict[str, int]
    n_gallery: dict[str, int]
    ranks: dict[str, np.ndarray]
    per_draw: dict[str, np.ndarray] | None = None
    subsets: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, direction: str) -> dict[str, float]:
        """``result['brain_to_stimulus']`` → ``{'top1': …, 'mrr': …}``."""
        if direction not in self.metrics:
            check_option("direction", direction, list(self.metrics))
        return self.metrics[direction]

    @property
    def directions(self) -> list[str]:
        """The evaluated directions."""
        return list(self.metrics)

    def _title(self) -> str:
        p = self.params
        what = {
            "full": "retrieval against the whole gallery",
            "n-way": f"{p.get('n_way')}-way retrieval, {p.get('n_draws')} draws",
            "2-way": "2-way identification",
            "full-gallery": "full-gallery retrieval (all distinct segments)",
        }.get(self.protocol, self.protocol)
        settings = ", ".join(
            f"{key}={p[key]}" for key in ("similarity", "ties", "repetitions") if key in p
        )
        return f"RetrievalResult: {what} ({settings})"

    def __str__(self) -> str:
        names = list(next(iter(self.metrics.values())))
        header = ["direction", "n_queries", "n_gallery", *names]
        lines = []
        for direction, values in self.metrics.items():
            row = [
                _DIRECTION_NAMES.get(direction, direction),
                str(self.n_queries[direction]),
                str(self.n_gallery[direction]),
            ]
            for name in names:
                cell = _fmt(values[name])
                if name in self.ci.get(direction, {}):
                    low, high = self.ci[direction][name]
                    cell += f" [{_fmt(low)}, {_fmt(high)}]"
                row.append(cell)
            lines.append(row)
        widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        body = [fmt.format(*header), *(fmt.format(*r) for r in lines)]
        if self.ci:
            level = self.params.get("ci", 0.95)
            body.append(
                f"[…] {level:.0%} bootstrap CI over {self.params.get('ci_over', 'queries')}"
            )
        return "\n".join([self._title(), *body])

    def __repr__(self) -> str:
        parts = []
        for direction, values in self.metrics.items():
            inner = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
            parts.append(f"{direction}: {inner}")
        return f"<RetrievalResult {self.protocol} | {'; '.join(parts)}>"

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (for JSON): metrics, ci, n_queries, n_gallery, params."""
        return {
            "protocol": self.protocol,
            "metrics": self.metrics,
            "ci": {d: {m: list(v) for m, v in c.items()} for d, c in self.ci.items()},
            "n_queries": self.n_queries,
            "n_gallery": self.n_gallery,
            "params": dict(self.params),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per (direction, metric).

        Columns: ``protocol``, ``direction``, ``metric``, ``value``, ``ci_low``, ``ci_high``
        (NaN without a bootstrap), ``n_queries``, ``n_gallery``. For a wide table use
        ``result.to_frame().pivot(index="direction", columns="metric", values="value")``.
        """
        import pandas as pd

        rows = []
        for direction, values in self.metrics.items():
            for name, value in values.items():
                low, high = self.ci.get(direction, {}).get(name, (math.nan, math.nan))
                rows.append(
                    {
                        "protocol": self.protocol,
                        "direction": direction,
                        "metric": name,
                        "value": value,
                        "ci_low": low,
                        "ci_high": high,
                        "n_queries": self.n_queries[direction],
                        "n_gallery": self.n_gallery[direction],
                    }
                )
        return pd.DataFrame(rows)


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "nan"
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.1f}"


def _summarize(
    records: dict[str, _Records],
    metrics: Sequence[str],
    ties: str,
    n_bootstrap: int,
    ci: float,
    seed: int,
) -> tuple[dict, dict, dict, dict]:
    values_out: dict[str, dict[str, float]] = {}
    ci_out: dict[str, dict[str, tuple[float, float]]] = {}
    ranks_out: dict[str, np.ndarray] = {}
    n_queries: dict[str, int] = {}
    for direction, rec in records.items():
        vals = _metric_values(rec, metrics, ties)
        values_out[direction] = {}
        ci_out[direction] = {}
        one_per_group = len(np.unique(rec.groups)) == len(rec.groups)
        groups = None if one_per_group else rec.groups
        for name in metrics:
            stat = _STATISTIC.get(name, "mean")
            v = vals[name]
            point = float(np.median(v)) if stat == "median" else float(v.mean())
            values_out[direction][name] = point
            if n_bootstrap and not np.isnan(point):
                ci_out[direction][name] = bootstrap_ci(
                    v, statistic=stat, n_bootstrap=n_bootstrap, ci=ci, seed=seed, groups=groups
                )
        ranks_out[direction] = _rank_values(rec.n_greater, rec.n_equal, ties)
        n_queries[direction] = len(rec.n_greater)
    if not n_bootstrap:
        ci_out = {}
    return values_out, ci_out, ranks_out, n_queries


def _boot_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


def _metric_names(ks: Sequence[int], extra: Sequence[str]) -> list[str]:
    return [f"top{k}" for k in ks] + list(extra)


# ---------------------------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------------------------


def _prepare_pair(
    brain: Any,
    stimuli: Any,
    brain_ids: Any,
    stimulus_ids: Any,
    repetitions: str,
    direction: str,
    similarity: str,
    ties: str,
    engine_kw: dict[str, Any],
) -> tuple[Array, Array, np.ndarray, _Engine]:
    check_option("direction", direction, DIRECTIONS)
    check_option("repetitions", repetitions, REPETITIONS)
    check_option("ties", ties, TIES)
    b = _as_2d(brain, "brain", "n_brain_samples")
    s = _as_2d(stimuli, "stimuli", "n_stimuli")
    _check_same_features(b, s, "brain", "stimuli")
    index = _stimulus_index(b, s, brain_ids, stimulus_ids)
    engine = _Engine.create(
        similarity, engine_kw.get("chunk_size"), engine_kw.get("query_chunk_size"),
        engine_kw.get("device"), engine_kw.get("backend", "auto"), (b, s),
        verbose=engine_kw.get("verbose", False),
    )  # fmt: skip
    if repetitions == "average":
        b, index = _average_repetitions(b, index, engine.backend)
    return b, s, index, engine


def _n_gallery(tasks: dict[str, list[_Task]]) -> dict[str, int]:
    return {d: max(len(t.gallery) for t in ts) for d, ts in tasks.items()}


def retrieval_metrics(
    brain: Any,
    stimuli: Any,
    *,
    ks: int | Sequence[int] = (1, 5, 10),
    similarity: str = "cosine",
    direction: str = "both",
    brain_ids: Any = None,
    stimulus_ids: Any = None,
    repetitions: str = "average",
    ties: str = "average",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    chunk_size: int | None = None,
    query_chunk_size: int | None = None,
    device: Any = None,
    backend: str = "auto",
    verbose: bool = False,
) -> RetrievalResult:
    """Top-k accuracy, MRR, mean and median rank and 2-way identification, in both directions.

    Parameters
    ----------
    brain : array-like or torch.Tensor, shape (n_brain_samples, n_features)
        Brain embeddings (the model's outputs).
    stimuli : array-like or torch.Tensor, shape (n_stimuli, n_features)
        Stimulus embeddings (e.g. CLIP image embeddings): the gallery of brain → stimulus.
    ks : int or sequence of int
        The k of the top-k accuracies.
    similarity : {'cosine', 'dot', 'correlation'}
        The score.
    direction : {'both', 'brain_to_stimulus', 'stimulus_to_brain'}
        Which retrievals to evaluate.
    brain_ids : array-like, shape (n_brain_samples,) | None
        The stimulus of each brain row: an id from ``stimulus_ids``, or a row of ``stimuli`` when
        ``stimulus_ids`` is None. ``None``: brain row ``i`` responds to stimulus row ``i``.
    stimulus_ids : array-like, shape (n_stimuli,) | None
        Unique id of each stimulus row. Stimuli without brain samples stay in the brain →
        stimulus gallery as distractors and are not queries of stimulus → brain.
    repetitions : {'average', 'per-sample'}
        How several brain samples of one stimulus are evaluated (see the module's docstring).
    ties : {'average', 'optimistic', 'pessimistic'}
        How exact ties count (see the module's docstring).
    n_bootstrap : int
        Resamples of the confidence intervals; ``0`` skips them.
    ci : float
        Coverage of the intervals.
    seed : int | numpy.random.Generator | None
        Seed of the bootstrap.
    chunk_size, query_chunk_size, device, backend, verbose
        The streaming engine's settings (see :func:`search_topk`).

    Returns
    -------
    result : RetrievalResult
        ``result['brain_to_stimulus']['top1']`` …; ``print(result)`` shows a table,
        ``result.to_frame()`` a DataFrame.
    """
    n_bootstrap = _check_bootstrap(n_bootstrap, ci)
    b, s, index, engine = _prepare_pair(
        brain, stimuli, brain_ids, stimulus_ids, repetitions, direction, similarity, ties,
        {"chunk_size": chunk_size, "query_chunk_size": query_chunk_size, "device": device,
         "backend": backend, "verbose": verbose},
    )  # fmt: skip
    n_items = len(np.unique(index))
    ks = _check_ks(ks, n_items, "number of stimuli with brain samples")
    tasks = _tasks(b, s, index, direction)
    records = _run(tasks, engine)
    metrics = _metric_names(ks, ("mrr", "mean_rank", "median_rank", "two_way"))
    rng = check_random_state(seed)
    values, cis, rks, n_q = _summarize(records, metrics, ties, n_bootstrap, ci, _boot_seed(rng))
    params = _params(similarity, ties, repetitions, ci, index, records)
    return RetrievalResult("full", values, cis, n_q, _n_gallery(tasks), rks, params=params)


def _params(
    similarity: str,
    ties: str,
    repetitions: str,
    ci: float,
    index: np.ndarray,
    records: dict[str, _Records],
    **extra: Any,
) -> dict[str, Any]:
    grouped = any(len(np.unique(r.groups)) < len(r.groups) for r in records.values())
    return {
        "similarity": similarity,
        "ties": ties,
        "repetitions": repetitions,
        "ci": ci,
        "ci_over": "stimuli (cluster bootstrap)" if grouped else "queries",
        **extra,
    }


def _check_bootstrap(n_bootstrap: Any, ci: Any) -> int:
    is_int = isinstance(n_bootstrap, int | np.integer) and not isinstance(n_bootstrap, bool)
    if is_int and n_bootstrap == 0:
        return 0
    n_bootstrap = _check_n_bootstrap(n_bootstrap)
    _check_ci(ci)
    return n_bootstrap


def n_way_retrieval(
    brain: Any,
    stimuli: Any,
    n_way: int = 300,
    n_draws: int = 30,
    *,
    ks: int | Sequence[int] = (1,),
    similarity: str = "cosine",
    direction: str = "both",
    brain_ids: Any = None,
    stimulus_ids: Any = None,
    repetitions: str = "average",
    ties: str = "average",
    seed: int | np.random.Generator | None = 0,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    device: Any = None,
    backend: str = "auto",
) -> RetrievalResult:
    """MindEye's N-way retrieval: top-k among ``n_way`` random test items, over ``n_draws`` draws.

    Each draw picks ``n_way`` of the test items (stimuli with brain samples) without replacement;
    every drawn item's brain embedding is a query against the drawn stimuli (brain → stimulus)
    and every drawn stimulus a query against the drawn brain embeddings (stimulus → brain). The
    metrics are averaged over all queries of all draws, which with one query per item is the
    mean over draws of the per-draw accuracies (MindEye: 300-way, 30 draws, top-1; chance
    ``1 / n_way``).

    Parameters
    ----------
    brain, stimuli, similarity, direction, brain_ids, stimulus_ids, repetitions, ties
        As in :func:`retrieval_metrics`; with ``stimulus_ids``, only stimuli with brain samples
        are drawn.
    n_way : int
        Items per draw, ``2 <= n_way <= n_items``.
    n_draws : int
        Number of draws. When ``n_way`` equals the number of items every draw is the same and
        it is computed once.
    ks : int or sequence of int
        The k of the top-k accuracies, at most ``n_way``.
    seed : int | numpy.random.Generator | None
        Seed of the draws and of the bootstrap.
    n_bootstrap, ci
        Bootstrap over test items (stimuli): a drawn stimulus brings all its queries of all
        draws; ``n_bootstrap=0`` skips it.
    device, backend
        As in :func:`search_topk`.

    Returns
    -------
    result : RetrievalResult
        Metrics ``top{k}`` and ``mrr``; ``result.per_draw`` holds the per-draw means.
    """
    n_bootstrap = _check_bootstrap(n_bootstrap, ci)
    b, s, index, engine = _prepare_pair(
        brain, stimuli, brain_ids, stimulus_ids, repetitions, direction, similarity, ties,
        {"device": device, "backend": backend},
    )  # fmt: skip
    items = np.unique(index)
    n_items = len(items)
    n_way = _check_int("n_way", n_way, 2, "N-way retrieval needs at least 2 candidates.")
    if n_way > n_items:
        raise ValueError(
            f"n_way={n_way} is larger than the number of test items ({n_items} stimuli with "
            f"brain samples); use n_way <= {n_items}."
        )
    n_draws = _check_int("n_draws", n_draws, 1, "use e.g. 30 (MindEye).")
    ks = _check_ks(ks, n_way, "N-way gallery (n_way)")
    metrics = _metric_names(ks, ("mrr",))
    rng = check_random_state(seed)
    n_eff = 1 if n_way == n_items else n_draws
    per_dir: dict[str, list[_Records]] = {}
    per_draw: dict[str, list[list[float]]] = {}
    subsets = []
    for _ in range(n_eff):
        subset = items[np.sort(rng.choice(n_items, size=n_way, replace=False))]
        subsets.append(subset)
        records = _run(_tasks(b, s, index, direction, subset), engine)
        for d, rec in records.items():
            per_dir.setdefault(d, []).append(rec)
            vals = _metric_values(rec, metrics, ties)
            per_draw.setdefault(d, []).append([float(vals[m].mean()) for m in metrics])
    records = {d: _Records.concat(parts) for d, parts in per_dir.items()}
    values, cis, rks, n_q = _summarize(records, metrics, ties, n_bootstrap, ci, _boot_seed(rng))
    draws = {d: np.repeat(np.asarray(v), n_draws // n_eff, axis=0) for d, v in per_draw.items()}
    if n_eff == 1:
        n_q = {d: n * n_draws for d, n in n_q.items()}
    params = _params(
        similarity, ties, repetitions, ci, index, records, n_way=n_way, n_draws=n_draws
    )
    n_gallery = dict.fromkeys(records, n_way)
    drawn = np.repeat(np.asarray(subsets), n_draws // n_eff, axis=0)
    return RetrievalResult("n-way", values, cis, n_q, n_gallery, rks, draws, drawn, params)


def two_way_identification(
    brain: Any,
    stimuli: Any,
    *,
    similarity: str = "correlation",
    direction: str = "brain_to_stimulus",
    brain_ids: Any = None,
    stimulus_ids: Any = None,
    repetitions: str = "average",
    ties: str = "average",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    chunk_size: int | None = None,
    device: Any = None,
    backend: str = "auto",
) -> RetrievalResult:
    """2-way identification: how often the true item beats another candidate (chance 0.5).

    For each query (a brain embedding, or a reconstruction's features), the fraction of the
    other candidates whose similarity to the query is lower than the true item's, averaged over
    queries. This is MindEye's ``two_way_identification`` (and Ozcelik et al.'s) with
    ``similarity='correlation'`` and ``ties='pessimistic'`` (they count ``r < r_true``; ties only
    matter for degenerate features). Computed exactly over all pairs, blockwise.

    Parameters
    ----------
    brain, stimuli, direction, brain_ids, stimulus_ids, repetitions, ties, n_bootstrap, ci, seed
        As in :func:`retrieval_metrics` (default direction: brain → stimulus, as in the field).
    similarity : {'correlation', 'cosine', 'dot'}
        Pearson correlation by default, as in MindEye.
    chunk_size, device, backend
        As in :func:`search_topk`.

    Returns
    -------
    result : RetrievalResult
        Metric ``two_way`` (a fraction), e.g. ``result['brain_to_stimulus']['two_way']``.
    """
    n_bootstrap = _check_bootstrap(n_bootstrap, ci)
    b, s, index, engine = _prepare_pair(
        brain, stimuli, brain_ids, stimulus_ids, repetitions, direction, similarity, ties,
        {"chunk_size": chunk_size, "device": device, "backend": backend},
    )  # fmt: skip
    tasks = _tasks(b, s, index, direction)
    for d, ts in tasks.items():
        if min(len(t.gallery) for t in ts) < 2:
            raise ValueError(
                f"2-way identification needs at least 2 candidates per query, but a "
                f"{_DIRECTION_NAMES[d]} gallery has 1; evaluate more stimuli."
            )
    records = _run(tasks, engine)
    rng = check_random_state(seed)
    values, cis, rks, n_q = _summarize(records, ["two_way"], ties, n_bootstrap, ci, _boot_seed(rng))
    params = _params(similarity, ties, repetitions, ci, index, records)
    return RetrievalResult("2-way", values, cis, n_q, _n_gallery(tasks), rks, params=params)


def full_gallery_retrieval(
    brain: Any,
    stimuli: Any,
    *,
    ks: int | Sequence[int] = (10,),
    stimulus_ids: Any = None,
    similarity: str = "cosine",
    direction: str = "brain_to_stimulus",
    ties: str = "average",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    chunk_size: int | None = None,
    query_chunk_size: int | None = None,
    device: Any = None,
    backend: str = "auto",
    verbose: bool = False,
) -> RetrievalResult:
    """brainmagick's protocol: each test window ranked against all distinct test segments.

    ``brain[i]`` and ``stimuli[i]`` are the embeddings of the same test window (e.g. 3 s of MEG
    and of wav2vec 2.0). Rows with the same ``stimulus_ids`` are one segment: the gallery keeps
    one row per segment (the first) and every window is a query against it (per-sample, so a
    segment heard twice gives two queries with the same target). Top-10 accuracy by default, as
    reported by Défossez et al. (2023).

    Parameters
    ----------
    brain : array-like or torch.Tensor, shape (n_windows, n_features)
        Brain embeddings of the test windows.
    stimuli : array-like or torch.Tensor, shape (n_windows, n_features)
        Stimulus embeddings of the same windows.
    ks : int or sequence of int
        The k of the top-k accuracies (default 10).
    stimulus_ids : array-like, shape (n_windows,) | None
        Segment id of each window; ``None``: every window is a distinct segment. Rows of one
        segment should have identical stimulus embeddings (a ``BrainAlignWarning`` says when
        they do not; the first row is used).
    similarity, direction, ties, n_bootstrap, ci, seed
        As in :func:`retrieval_metrics` (default direction brain → stimulus; with
        ``'stimulus_to_brain'`` the repetition rule of ``repetitions='per-sample'`` applies).
    chunk_size, query_chunk_size, device, backend, verbose
        As in :func:`search_topk`.

    Returns
    -------
    result : RetrievalResult
        Metrics ``top{k}``, ``mrr``, ``mean_rank``, ``median_rank``; CIs resample segments.
    """
    n_bootstrap = _check_bootstrap(n_bootstrap, ci)
    b = _as_2d(brain, "brain", "n_windows")
    s = _as_2d(stimuli, "stimuli", "n_windows")
    if len(b) != len(s):
        raise ValueError(
            f"'brain' has {len(b)} rows but 'stimuli' has {len(s)}; full_gallery_retrieval "
            "takes paired windows (row i of both is the same window). Use retrieval_metrics "
            "with brain_ids for other layouts."
        )
    brain_ids = None
    if stimulus_ids is not None:
        ids = _ids(stimulus_ids, "stimulus_ids", len(s), "stimuli")
        _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if len(first) < len(ids):
            dup = np.flatnonzero(np.isin(np.arange(len(ids)), first, invert=True))
            ref = _rows(s, first[inverse[dup]], np.dtype(np.float64), "numpy", None)
            got = _rows(s, dup, np.dtype(np.float64), "numpy", None)
            if not np.array_equal(ref, got):
                warnings.warn(
                    "Some windows with the same 'stimulus_ids' have different stimulus "
                    "embeddings; the gallery uses the first window of each id.",
                    BrainAlignWarning,
                    stacklevel=2,
                )
            s = _take(s, first)
            brain_ids = inverse
    b, s, index, engine = _prepare_pair(
        b, s, brain_ids, None, "per-sample", direction, similarity, ties,
        {"chunk_size": chunk_size, "query_chunk_size": query_chunk_size, "device": device,
         "backend": backend, "verbose": verbose},
    )  # fmt: skip
    ks = _check_ks(ks, len(s), "number of distinct segments")
    tasks = _tasks(b, s, index, direction)
    records = _run(tasks, engine)
    metrics = _metric_names(ks, ("mrr", "mean_rank", "median_rank"))
    rng = check_random_state(seed)
    values, cis, rks, n_q = _summarize(records, metrics, ties, n_bootstrap, ci, _boot_seed(rng))
    params = _params(similarity, ties, "per-sample", ci, index, records)
    return RetrievalResult("full-gallery", values, cis, n_q, _n_gallery(tasks), rks, params=params)


@dataclass(frozen=True, repr=False)
class GallerySizeCurve:
    """Top-k accuracy as a function of the number of candidates (N-way for several N).

    Attributes
    ----------
    gallery_sizes : ndarray of int, shape (n_sizes,)
        The N of each point.
    k : int
        The k of the top-k accuracy.
    accuracy, ci_low, ci_high : dict of {str: ndarray}, each of shape (n_sizes,)
        Per direction: the mean accuracy and its bootstrap interval (NaN without a bootstrap).
    chance : ndarray, shape (n_sizes,)
        ``k / N``.
    params : dict
        The settings.
    """

    gallery_sizes: np.ndarray
    k: int
    accuracy: dict[str, np.ndarray]
    ci_low: dict[str, np.ndarray]
    ci_high: dict[str, np.ndarray]
    chance: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        p = self.params
        lines = [
            f"GallerySizeCurve: top-{self.k} accuracy vs gallery size ({p.get('n_draws')} draws, "
            f"similarity={p.get('similarity')}, ties={p.get('ties')})"
        ]
        header = ["N", "chance", *(_DIRECTION_NAMES[d] for d in self.accuracy)]
        rows = []
        for i, n in enumerate(self.gallery_sizes):
            row = [str(n), _fmt(float(self.chance[i]))]
            for d, acc in self.accuracy.items():
                cell = _fmt(float(acc[i]))
                low, high = float(self.ci_low[d][i]), float(self.ci_high[d][i])
                if not np.isnan(low):
                    cell += f" [{_fmt(low)}, {_fmt(high)}]"
                row.append(cell)
            rows.append(row)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines += [fmt.format(*header), *(fmt.format(*r) for r in rows)]
        return "\n".join(lines)

    __repr__ = __str__

    def to_frame(self) -> pd.DataFrame:
        """One row per (direction, gallery size): accuracy, ci_low, ci_high, chance, k."""
        import pandas as pd

        rows = []
        for d, acc in self.accuracy.items():
            for i, n in enumerate(self.gallery_sizes):
                rows.append(
                    {
                        "direction": d,
                        "gallery_size": int(n),
                        "k": self.k,
                        "accuracy": float(acc[i]),
                        "ci_low": float(self.ci_low[d][i]),
                        "ci_high": float(self.ci_high[d][i]),
                        "chance": float(self.chance[i]),
                    }
                )
        return pd.DataFrame(rows)


def _default_sizes(n_items: int, k: int) -> list[int]:
    steps = [2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000, 20000, 50000]
    return [n for n in steps if max(k, 2) <= n < n_items] + [n_items]


def accuracy_vs_gallery_size(
    brain: Any,
    stimuli: Any,
    gallery_sizes: Sequence[int] | None = None,
    *,
    k: int = 1,
    n_draws: int = 30,
    similarity: str = "cosine",
    direction: str = "both",
    brain_ids: Any = None,
    stimulus_ids: Any = None,
    repetitions: str = "average",
    ties: str = "average",
    seed: int | np.random.Generator | None = 0,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    device: Any = None,
    backend: str = "auto",
) -> GallerySizeCurve:
    """Top-k accuracy of N-way retrieval as a function of N (for plotting).

    Parameters
    ----------
    brain, stimuli, similarity, direction, brain_ids, stimulus_ids, repetitions, ties
        As in :func:`retrieval_metrics`.
    gallery_sizes : sequence of int | None
        The values of N, each in ``[max(k, 2), n_items]``; default 2, 5, 10, 20, 50, 100, …
        up to the number of test items (included).
    k : int
        The k of the top-k accuracy.
    n_draws : int
        Draws per gallery size (see :func:`n_way_retrieval`).
    seed, n_bootstrap, ci
        Seed of the draws and bootstrap, and the bootstrap's settings (over stimuli).
    device, backend
        As in :func:`search_topk`.

    Returns
    -------
    curve : GallerySizeCurve
        ``curve.to_frame()`` gives one row per (direction, N).
    """
    n_bootstrap = _check_bootstrap(n_bootstrap, ci)
    k = _check_int("k", k, 1, "k counts the top candidates, e.g. 1, 5 or 10.")
    b, s, index, _ = _prepare_pair(
        brain, stimuli, brain_ids, stimulus_ids, repetitions, direction, similarity, ties,
        {"device": device, "backend": backend},
    )  # fmt: skip
    n_items = len(np.unique(index))
    if gallery_sizes is None:
        sizes = _default_sizes(n_items, k)
    else:
        sizes = sorted({_check_int("gallery_sizes", int(n), 2, "N-way needs N >= 2.")
                        for n in np.atleast_1d(np.asarray(gallery_sizes))})  # fmt: skip
        if not sizes:
            raise ValueError("'gallery_sizes' is empty; pass e.g. (2, 10, 100).")
    too_big = [n for n in sizes if n > n_items]
    if too_big:
        raise ValueError(
            f"'gallery_sizes' has {too_big[:5]} larger than the number of test items "
            f"({n_items}); use sizes <= {n_items}."
        )
    too_small = [n for n in sizes if n < k]
    if too_small:
        raise ValueError(
            f"'gallery_sizes' has {too_small[:5]} smaller than k={k}; top-{k} needs at least "
            f"{k} candidates."
        )
    rng = check_random_state(seed)
    acc: dict[str, list[float]] = {}
    lo: dict[str, list[float]] = {}
    hi: dict[str, list[float]] = {}
    name = f"top{k}"
    for n in sizes:
        # Already averaged: pass the averaged rows with their stimulus rows as brain_ids.
        res = n_way_retrieval(
            b, s, n, n_draws, ks=(k,), similarity=similarity, direction=direction,
            brain_ids=index, repetitions="per-sample", ties=ties, seed=rng,
            n_bootstrap=n_bootstrap, ci=ci, device=device, backend=backend,
        )  # fmt: skip
        for d in res.metrics:
            acc.setdefault(d, []).append(res.metrics[d][name])
            low, high = res.ci.get(d, {}).get(name, (math.nan, math.nan))
            lo.setdefault(d, []).append(low)
            hi.setdefault(d, []).append(high)
    arr = np.asarray(sizes, dtype=np.int64)
    params = {
        "similarity": similarity,
        "ties": ties,
        "repetitions": repetitions,
        "n_draws": n_draws,
        "ci": ci,
    }
    return GallerySizeCurve(
        arr,
        k,
        {d: np.asarray(v) for d, v in acc.items()},
        {d: np.asarray(v) for d, v in lo.items()},
        {d: np.asarray(v) for d, v in hi.items()},
        k / arr.astype(np.float64),
        params,
    )
