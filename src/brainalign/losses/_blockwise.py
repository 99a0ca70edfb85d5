"""Reductions over the logit matrix ``s · x yᵀ`` in blocks, with hand-written backward passes.

Two reductions cover every contrastive loss of the package:

* :func:`block_logsumexp` — the log-sum-exp of each row and of each column (InfoNCE, its
  multi-positive, decoupled and MixCo forms). Rows stream over column blocks and columns over
  row blocks with the running-maximum update, so the ``n × m`` matrix never exists at once
  when ``chunk_size`` is set; backward recomputes each block (one matrix product) and
  accumulates ``gx = s·G y`` and ``gy = s·Gᵀ x`` with
  ``G = g_row·softmax_row + g_col·softmax_col``.
* :func:`block_softplus` — the sum of ``softplus(s · x_i·y_j + b)`` over each row (SigLIP).

With ``chunk_size=None`` the logits are computed by a single matrix product used for both
directions and kept for backward (the reductions walk over it 1,024 rows at a time, so their
temporaries stay small); backward needs two more products (``G y`` and ``Gᵀ x``), while
open_clip's ``ClipLoss`` computes the product twice forward and four times backward.
Under ``distributed=True`` the column statistics are combined over ranks with an all-reduce
of ``m`` numbers (forward) and the column gradients likewise (backward).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

__all__ = ["BlockLSE", "BlockSoftplus", "block_logsumexp", "block_softplus"]


class _Options(NamedTuple):
    chunk_size: int | None
    columns: bool
    exclude_positives: bool
    track_positives: bool
    distributed: bool


class BlockLSE(NamedTuple):
    """Outputs of :func:`block_logsumexp`.

    Attributes
    ----------
    row : torch.Tensor, shape (n,)
        ``log sum_j exp(L_ij)`` (positives left out with ``exclude_positives``).
    col : torch.Tensor, shape (m,) | None
        ``log sum_i exp(L_ij)`` over the rows of *every* rank.
    row_max, col_max : torch.Tensor | None
        Detached maxima over the same entries.
    row_pos_max, col_pos_max : torch.Tensor | None
        Detached maxima over the positive entries (``track_positives``).
    """

    row: torch.Tensor
    col: torch.Tensor | None
    row_max: torch.Tensor
    col_max: torch.Tensor | None
    row_pos_max: torch.Tensor | None
    col_pos_max: torch.Tensor | None


class BlockSoftplus(NamedTuple):
    """Outputs of :func:`block_softplus`: per-row sums and detached maxima (see BlockLSE)."""

    row: torch.Tensor
    row_max: torch.Tensor
    row_pos_max: torch.Tensor | None


def _spans(n: int, chunk_size: int | None) -> list[tuple[int, int]]:
    step = n if chunk_size is None else chunk_size
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _finite_or_zero(values: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(values), values, torch.zeros_like(values))


def _online_logsumexp_(
    run_max: torch.Tensor, run_sum: torch.Tensor, block: torch.Tensor, dim: int
) -> None:
    """Fold ``block`` into the running (max, scaled sum) pair along ``dim``, in place."""
    new_max = torch.maximum(run_max, block.amax(dim))
    shift = _finite_or_zero(new_max)
    run_sum.mul_(torch.exp(run_max - shift))
    run_sum.add_((block - shift.unsqueeze(dim)).exp_().sum(dim))
    run_max.copy_(new_max)


def _positives_mask(
    row_labels: torch.Tensor, col_labels: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]
) -> torch.Tensor:
    return row_labels[rows[0] : rows[1], None] == col_labels[None, cols[0] : cols[1]]


def _softplus(t: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(t))`` without a linear cut-off (exact for every ``t``)."""
    return t.abs().neg_().exp_().log1p_().add_(t.clamp_min(0))


def _scale_grads(
    ctx: Any,
    x: torch.Tensor,
    scale: torch.Tensor,
    gx_un: torch.Tensor | None,
    gy_un: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``x``, ``y`` and ``scale`` from the accumulated ``G y`` and ``Gᵀ x``.

    ``∂/∂s = Σ_ij G_ij x_i·y_j = <x, G y>``; both accumulators are scaled in place, so backward
    holds no more than two ``(n, d)`` buffers.
    """
    gs = None
    if ctx.needs_input_grad[2] and gx_un is not None:
        gs = torch.dot(gx_un.flatten(), x.flatten())
    gx = gx_un.mul_(scale) if (gx_un is not None and ctx.needs_input_grad[0]) else None
    gy = gy_un.mul_(scale) if gy_un is not None else None
    return gx, gy, gs


_SLAB_ROWS = 1024  # rows reduced at a time when the whole logit matrix is kept


def _blocks(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    acc: torch.dtype,
    chunk_size: int | None,
    cache: list[torch.Tensor],
    bias: torch.Tensor | None = None,
) -> Iterator[tuple[tuple[int, int], tuple[int, int], torch.Tensor]]:
    """Yield ``(rows, cols, logits)`` over the blocks of ``scale · x yᵀ (+ bias)``.

    ``chunk_size=None``: the whole matrix is computed by one product (or taken from ``cache``,
    where it is stored the first time) and handed out in slabs of rows, so that the temporaries
    of the reductions stay at a slab's size. Otherwise every ``chunk_size²`` block is computed
    on the fly (and recomputed in backward).
    """
    n, m = x.shape[0], y.shape[0]
    if chunk_size is None:
        if not cache:
            full = (x * scale) @ y.T
            full = full.to(acc) if full.dtype != acc else full
            cache.append(full if bias is None else full.add_(bias))
        for rows in _spans(n, _SLAB_ROWS):
            yield rows, (0, m), cache[0][rows[0] : rows[1]]
        return
    for rows in _spans(n, chunk_size):
        xs = x[rows[0] : rows[1]] * scale  # cheaper than scaling the logits
        for cols in _spans(m, chunk_size):
            logits = (xs @ y[cols[0] : cols[1]].T).to(acc)
            yield rows, cols, (logits if bias is None else logits.add_(bias))


class _BlockLSEFunction(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        scale: torch.Tensor,
        row_labels: torch.Tensor,
        col_labels: torch.Tensor,
        opts: _Options,
    ) -> tuple[torch.Tensor, ...]:
        acc = _acc_dtype(x.dtype)
        n, m = x.shape[0], y.shape[0]
        neg_inf = float("-inf")
        row_max = torch.full((n,), neg_inf, dtype=acc, device=x.device)
        row_sum = torch.zeros(n, dtype=acc, device=x.device)
        empty = row_max.new_empty(0)
        col_max = torch.full((m,), neg_inf, dtype=acc, device=x.device) if opts.columns else empty
        col_sum = torch.zeros(m, dtype=acc, device=x.device) if opts.columns else empty
        track = opts.track_positives
        row_pos = torch.full((n,), neg_inf, dtype=acc, device=x.device) if track else empty
        col_pos = (
            torch.full((m,), neg_inf, dtype=acc, device=x.device)
            if track and opts.columns
            else empty
        )
        cache: list[torch.Tensor] = []
        for rows, cols, logits in _blocks(x, y, scale, acc, opts.chunk_size, cache):
            (r0, r1), (c0, c1) = rows, cols
            if track or opts.exclude_positives:
                mask = _positives_mask(row_labels, col_labels, rows, cols)
                if track:
                    pos = logits.masked_fill(~mask, neg_inf)
                    row_pos[r0:r1] = torch.maximum(row_pos[r0:r1], pos.amax(1))
                    if opts.columns:
                        col_pos[c0:c1] = torch.maximum(col_pos[c0:c1], pos.amax(0))
                    del pos
                if opts.exclude_positives:  # in place: the kept matrix is masked too
                    logits.masked_fill_(mask, neg_inf)
            _online_logsumexp_(row_max[r0:r1], row_sum[r0:r1], logits, 1)
            if opts.columns:
                _online_logsumexp_(col_max[c0:c1], col_sum[c0:c1], logits, 0)
        lse_row = _finite_or_zero(row_max) + torch.log(row_sum)
        lse_col = empty
        if opts.columns:
            local_shift = _finite_or_zero(col_max)
            if opts.distributed:
                dist.all_reduce(col_max, op=dist.ReduceOp.MAX)
                shift = _finite_or_zero(col_max)
                positive = col_sum > 0
                col_sum = torch.where(
                    positive, col_sum * torch.exp(local_shift - shift), torch.zeros_like(col_sum)
                )
                dist.all_reduce(col_sum, op=dist.ReduceOp.SUM)
                if track:
                    dist.all_reduce(col_pos, op=dist.ReduceOp.MAX)
                local_shift = shift
            lse_col = local_shift + torch.log(col_sum)
        ctx.opts = opts
        ctx.cache = cache
        ctx.save_for_backward(x, y, scale, row_labels, col_labels, lse_row, lse_col)
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(row_max, col_max, row_pos, col_pos)
        return lse_row, lse_col, row_max, col_max, row_pos, col_pos

    @staticmethod
    def backward(ctx: Any, g_row: torch.Tensor | None, g_col: torch.Tensor | None, *_: Any):  # type: ignore[override]
        x, y, scale, row_labels, col_labels, lse_row, lse_col = ctx.saved_tensors
        opts: _Options = ctx.opts
        if not opts.columns:
            g_col = None
        elif opts.distributed:
            # every rank takes part in the collective; the gradient of sum_r loss_r w.r.t. the
            # global column statistics is the sum of what each rank's loss sends them
            g_col = (g_col if g_col is not None else torch.zeros_like(lse_col)).contiguous().clone()
            dist.all_reduce(g_col, op=dist.ReduceOp.SUM)
        need_x = ctx.needs_input_grad[0] or ctx.needs_input_grad[2]
        need_y = ctx.needs_input_grad[1]
        if (g_row is None and g_col is None) or not (need_x or need_y):
            return None, None, None, None, None, None
        gx_un = torch.zeros_like(x) if need_x else None
        gy_un = torch.zeros_like(y) if need_y else None
        for rows, cols, logits in _blocks(x, y, scale, lse_row.dtype, opts.chunk_size, ctx.cache):
            (r0, r1), (c0, c1) = rows, cols
            if opts.exclude_positives and opts.chunk_size is not None:
                logits.masked_fill_(_positives_mask(row_labels, col_labels, rows, cols), -math.inf)
            grad = None
            if g_row is not None:
                grad = (logits - lse_row[r0:r1, None]).exp_().mul_(g_row[r0:r1, None])
            if g_col is not None:
                part = (logits - lse_col[None, c0:c1]).exp_().mul_(g_col[None, c0:c1])
                grad = part if grad is None else grad.add_(part)
                del part
            if grad is None:
                continue
            grad = grad.to(x.dtype)
            if gx_un is not None:
                gx_un[r0:r1].addmm_(grad, y[c0:c1])
            if gy_un is not None:
                gy_un[c0:c1].addmm_(grad.T, x[r0:r1])
            del grad
        gx, gy, gs = _scale_grads(ctx, x, scale, gx_un, gy_un)
        return gx, gy, gs, None, None, None


def block_logsumexp(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    row_labels: torch.Tensor,
    col_labels: torch.Tensor,
    *,
    chunk_size: int | None = None,
    columns: bool = True,
    exclude_positives: bool = False,
    track_positives: bool = False,
    distributed: bool = False,
) -> BlockLSE:
    """Row and column log-sum-exp of ``L = scale · x yᵀ``, differentiable, in blocks.

    Parameters
    ----------
    x : torch.Tensor, shape (n, d)
        This rank's queries.
    y : torch.Tensor, shape (m, d)
        All keys (gathered over ranks when distributed).
    scale : torch.Tensor, shape ()
        The logit scale ``s`` (gradient returned when it requires one).
    row_labels, col_labels : torch.Tensor of int, shapes (n,) and (m,)
        Entry ``(i, j)`` is a positive when ``row_labels[i] == col_labels[j]``.
    chunk_size : int | None
        Block side; ``None`` computes the whole ``n × m`` matrix once and keeps it for backward.
    columns : bool
        Also compute the column log-sum-exp (symmetric losses).
    exclude_positives : bool
        Leave positives out of both sums (decoupled contrastive loss).
    track_positives : bool
        Also return the maxima over positives (for accuracies).
    distributed : bool
        Combine the column statistics over ranks (the rows of every rank form the columns).

    Returns
    -------
    out : BlockLSE
    """
    opts = _Options(chunk_size, columns, exclude_positives, track_positives, distributed)
    lse_row, lse_col, row_max, col_max, row_pos, col_pos = _BlockLSEFunction.apply(
        x, y, scale, row_labels, col_labels, opts
    )
    return BlockLSE(
        lse_row,
        lse_col if columns else None,
        row_max,
        col_max if columns else None,
        row_pos if track_positives else None,
        col_pos if (track_positives and columns) else None,
    )


class _BlockSoftplusFunction(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor,
        row_labels: torch.Tensor,
        col_labels: torch.Tensor,
        opts: _Options,
    ) -> tuple[torch.Tensor, ...]:
        acc = _acc_dtype(x.dtype)
        n = x.shape[0]
        neg_inf = float("-inf")
        row_sum = torch.zeros(n, dtype=acc, device=x.device)
        row_max = torch.full((n,), neg_inf, dtype=acc, device=x.device)
        row_pos = (
            torch.full((n,), neg_inf, dtype=acc, device=x.device)
            if opts.track_positives
            else row_sum.new_empty(0)
        )
        cache: list[torch.Tensor] = []
        for rows, cols, logits in _blocks(x, y, scale, acc, opts.chunk_size, cache, bias):
            r0, r1 = rows
            row_max[r0:r1] = torch.maximum(row_max[r0:r1], logits.amax(1))
            if opts.track_positives:
                mask = _positives_mask(row_labels, col_labels, rows, cols)
                pos = logits.masked_fill(~mask, neg_inf).amax(1)
                row_pos[r0:r1] = torch.maximum(row_pos[r0:r1], pos)
            row_sum[r0:r1] += _softplus(logits).sum(1)
        ctx.opts = opts
        ctx.cache = cache
        ctx.save_for_backward(x, y, scale, bias)
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(row_max, row_pos)
        return row_sum, row_max, row_pos

    @staticmethod
    def backward(ctx: Any, g_row: torch.Tensor | None, *_: Any):  # type: ignore[override]
        x, y, scale, bias = ctx.saved_tensors
        opts: _Options = ctx.opts
        need_x = ctx.needs_input_grad[0] or ctx.needs_input_grad[2]
        need_y = ctx.needs_input_grad[1]
        need_b = ctx.needs_input_grad[3]
        if g_row is None or not (need_x or need_y or need_b):
            return None, None, None, None, None, None, None
        acc = g_row.dtype
        gx_un = torch.zeros_like(x) if need_x else None
        gy_un = torch.zeros_like(y) if need_y else None
        gb = torch.zeros((), dtype=acc, device=x.device)
        for rows, cols, logits in _blocks(x, y, scale, acc, opts.chunk_size, ctx.cache, bias):
            (r0, r1), (c0, c1) = rows, cols
            grad = torch.sigmoid(logits).mul_(g_row[r0:r1, None])
            if need_b:
                gb += grad.sum()
            grad = grad.to(x.dtype)
            if gx_un is not None:
                gx_un[r0:r1].addmm_(grad, y[c0:c1])
            if gy_un is not None:
                gy_un[c0:c1].addmm_(grad.T, x[r0:r1])
            del grad
        gx, gy, gs = _scale_grads(ctx, x, scale, gx_un, gy_un)
        return gx, gy, gs, (gb.to(bias.dtype) if need_b else None), None, None, None


def block_softplus(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    row_labels: torch.Tensor,
    col_labels: torch.Tensor,
    *,
    chunk_size: int | None = None,
    track_positives: bool = False,
) -> BlockSoftplus:
    """Per-row sums of ``softplus(scale · x_i·y_j + bias)``, differentiable, in blocks.

    Parameters
    ----------
    x : torch.Tensor, shape (n, d)
    y : torch.Tensor, shape (m, d)
    scale, bias : torch.Tensor, shape ()
    row_labels, col_labels : torch.Tensor of int, shapes (n,) and (m,)
        Define the positives, used only for ``track_positives``.
    chunk_size : int | None
        Block side; ``None`` keeps the whole logit matrix for backward.
    track_positives : bool
        Also return the maxima over positives.

    Returns
    -------
    out : BlockSoftplus
    """
    opts = _Options(chunk_size, False, False, track_positives, False)
    row, row_max, row_pos = _BlockSoftplusFunction.apply(
        x, y, scale, bias, row_labels, col_labels, opts
    )
    return BlockSoftplus(row, row_max, row_pos if track_positives else None)
