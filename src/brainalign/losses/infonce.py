"""InfoNCE / CLIP loss: symmetric or one-directional, label smoothing, multi-positive labels.

For L2-normalised ``x`` and ``y`` of shape ``(N, d)`` and logits ``L = s · x yᵀ``::

    loss = 1/2 [ mean_i CE(L_i,:, targets_i) + mean_j CE(L_:,j, targets_j) ]

with the diagonal as the targets (CLIP, Radford et al. 2021). With ``labels`` (stimulus ids;
e.g. several repetitions of the same image), every sample sharing a label is a positive and the
target distribution is uniform over the positives (the supervised / multi-positive form,
Khosla et al. 2020, with the cross-modal denominator over every candidate)::

    CE_i = logsumexp_j L_ij - mean_{p : label_p = label_i} L_ip

The logit matrix is computed once and used for both directions; with ``chunk_size`` it is never
held whole (see :mod:`brainalign.losses._blockwise`), and with ``distributed=True`` the keys of
every rank are negatives (see :mod:`brainalign.losses.distributed` for the exact convention).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from brainalign.losses._blockwise import BlockLSE, block_logsumexp
from brainalign.losses._common import (
    BatchLayout,
    ScaledLoss,
    as_scalar,
    check_chunk_size,
    check_embeddings,
    check_fraction,
    check_labels,
    group_reduce,
    make_layout,
)
from brainalign.losses.distributed import all_reduce_with_grad
from brainalign.losses.output import LossOutput

__all__ = ["ClipLoss", "clip_loss"]


def positive_labels(
    layout: BatchLayout, labels: torch.Tensor | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row labels (local) and column labels (gathered); the global index when ``labels`` is None."""
    if labels is None:
        col_labels = torch.arange(layout.n_total, device=device)
        return layout.local(col_labels), col_labels
    labels = check_labels(labels, layout.n_local).to(device)
    return labels, layout.gather_no_grad(labels)


def finish_lse_loss(
    layout: BatchLayout,
    lse: BlockLSE,
    target_row: torch.Tensor,
    target_col: torch.Tensor | None,
    *,
    col_weights: torch.Tensor | None = None,
    return_output: bool = False,
) -> torch.Tensor | LossOutput:
    """Assemble ``share · (Σ_rows (lse - target) [+ Σ_cols (w·lse - target)]) [/ 2]``.

    ``target_row`` holds, per local query, the target-weighted logits; ``target_col`` is summed
    only, so any vector whose sum is the total target of the local columns will do.
    """
    symmetric = lse.col is not None and target_col is not None
    uniform = lse.row.sum()
    align = -target_row.sum()
    if lse.col is not None and target_col is not None:
        lse_col = layout.local(lse.col)
        uniform = uniform + (
            lse_col.sum() if col_weights is None else (col_weights * lse_col).sum()
        )
        align = align - target_col.sum()
    factor = layout.share / (2.0 if symmetric else 1.0)
    loss = factor * (uniform + align)
    if not return_output:
        return loss
    acc_xy = acc_yx = None
    if lse.row_pos_max is not None:
        acc_xy = layout.share * (lse.row_pos_max >= lse.row_max).sum().to(loss.dtype)
        if lse.col_pos_max is not None and lse.col_max is not None:
            hits = layout.local(lse.col_pos_max) >= layout.local(lse.col_max)
            acc_yx = layout.share * hits.sum().to(loss.dtype)
    return LossOutput(
        loss,
        (factor * align).detach(),
        (factor * uniform).detach(),
        acc_xy,
        acc_yx,
    )


def clip_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    logit_scale: float | torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    symmetric: bool = True,
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
    distributed: bool = False,
    return_output: bool = False,
) -> torch.Tensor | LossOutput:
    """InfoNCE / CLIP contrastive loss between paired embeddings.

    Equal to ``open_clip.loss.ClipLoss()(x, y, logit_scale)`` for the default arguments.

    Parameters
    ----------
    x : torch.Tensor, shape (n_samples, n_features)
        Query embeddings (e.g. the brain), normally L2-normalised.
    y : torch.Tensor, shape (n_samples, n_features)
        Key embeddings (e.g. CLIP), row ``i`` paired with ``x[i]``.
    logit_scale : float | torch.Tensor
        The multiplier ``s = 1 / temperature`` (already exponentiated, as open_clip passes it);
        a tensor that requires grad receives its gradient.
    labels : torch.Tensor of int, shape (n_samples,) | None
        Stimulus ids: samples sharing a label are positives of each other (multi-positive
        form) instead of negatives. ``None``: only the pair ``(x[i], y[i])`` is positive.
    symmetric : bool
        Average the ``x → y`` and ``y → x`` cross-entropies (CLIP); ``False`` keeps ``x → y``.
    label_smoothing : float in [0, 1)
        Mix the targets with the uniform distribution, as
        :func:`torch.nn.functional.cross_entropy` does.
    chunk_size : int | None
        Compute the logits in ``chunk_size × chunk_size`` blocks, recomputed in backward, so
        memory grows with the batch instead of its square. Same values and gradients.
    distributed : bool
        Use the keys of every rank as candidates (needs an initialised process group; the
        returned value follows the convention of :mod:`brainalign.losses.distributed`).
    return_output : bool
        Return a :class:`~brainalign.losses.LossOutput` with the alignment / uniformity
        decomposition and the in-batch top-1 accuracies instead of the loss alone.

    Returns
    -------
    loss : torch.Tensor, shape () | LossOutput

    Examples
    --------
    >>> import torch
    >>> from brainalign.losses import clip_loss
    >>> x = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    >>> y = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    >>> loss = clip_loss(x, y, logit_scale=1 / 0.07)
    """
    x, y = check_embeddings(x, y)
    scale = as_scalar(logit_scale, "logit_scale", x)
    eps = check_fraction(label_smoothing, "label_smoothing", high_open=True)
    chunk_size = check_chunk_size(chunk_size)
    layout = make_layout(x.shape[0], x.device, distributed)
    y_all = layout.gather(y)
    row_labels, col_labels = positive_labels(layout, labels, x.device)
    lse = block_logsumexp(
        x,
        y_all,
        scale,
        row_labels,
        col_labels,
        chunk_size=chunk_size,
        columns=symmetric,
        track_positives=return_output,
        distributed=layout.distributed,
    )
    if labels is None:
        target_row = scale * (x * y).sum(1)
        target_col = target_row if symmetric else None
    else:
        y_mean, inverse = group_reduce(y_all, col_labels, mean=True)
        target_row = scale * (x * y_mean[layout.local(inverse)]).sum(1)
        target_col = None
        if symmetric:
            x_mean, _ = group_reduce(layout.gather(x), col_labels, mean=True)
            target_col = scale * (y * x_mean[layout.local(inverse)]).sum(1)
    if eps > 0:
        target_row = (1 - eps) * target_row + eps * scale * (x @ y_all.mean(0))
        if target_col is not None:
            x_sum = all_reduce_with_grad(x.sum(0)) if layout.distributed else x.sum(0)
            target_col = (1 - eps) * target_col + eps * scale * (y @ (x_sum / layout.n_total))
    return finish_lse_loss(layout, lse, target_row, target_col, return_output=return_output)


class ClipLoss(ScaledLoss):
    """InfoNCE / CLIP loss with its (learnable) logit scale, a thin wrapper of :func:`clip_loss`.

    Parameters
    ----------
    init_logit_scale : float
        Initial ``log s``; CLIP's ``log(1 / 0.07)``.
    learnable : bool
        Make ``logit_scale`` a parameter (else a buffer).
    max_logit_scale : float | None
        Upper bound of ``s``: the stored ``log s`` is clamped to ``log(max_logit_scale)``
        before every forward (CLIP's 100). ``None``: no clamp.
    symmetric, label_smoothing, chunk_size, distributed
        As in :func:`clip_loss`.

    Attributes
    ----------
    logit_scale : torch.nn.Parameter, shape ()
        ``log s`` (open_clip's convention); :meth:`scale` gives ``s``.
    """

    logit_scale: torch.Tensor

    def __init__(
        self,
        init_logit_scale: float = math.log(1 / 0.07),
        *,
        learnable: bool = True,
        max_logit_scale: float | None = 100.0,
        symmetric: bool = True,
        label_smoothing: float = 0.0,
        chunk_size: int | None = None,
        distributed: bool = False,
    ) -> None:
        super().__init__(init_logit_scale, learnable=learnable, max_logit_scale=max_logit_scale)
        self.symmetric = symmetric
        self.label_smoothing = label_smoothing
        self.chunk_size = chunk_size
        self.distributed = distributed

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_output: bool = False,
    ) -> Any:
        """Compute :func:`clip_loss` with the current scale (shapes as there)."""
        return clip_loss(
            x,
            y,
            self.scale(),
            labels=labels,
            symmetric=self.symmetric,
            label_smoothing=self.label_smoothing,
            chunk_size=self.chunk_size,
            distributed=self.distributed,
            return_output=return_output,
        )

    def extra_repr(self) -> str:
        return (
            f"symmetric={self.symmetric}, label_smoothing={self.label_smoothing}, "
            f"chunk_size={self.chunk_size}, distributed={self.distributed}"
        )
