"""Decoupled contrastive loss (DCL, Yeh et al., ECCV 2022) and its weighted variant (DCLW).

The positive pair is removed from the InfoNCE denominator::

    DCL_i = -w_i · s x_i·y_i + log Σ_{j ≠ i} exp(s x_i·y_j)

with ``w_i = 1`` (DCL) or the negative von Mises-Fisher weight of DCLW::

    w_i = 2 - N · exp(x_i·y_i / σ) / Σ_k exp(x_k·y_k / σ)        (σ = 0.5 in the paper)

which up-weights the hard positives (mean weight 1; the weight is differentiated through, as
in the reference implementation). The symmetric form averages the ``x → y`` and ``y → x``
directions. This is the cross-modal form (negatives are the other modality only; Yeh et al.'s
SimCLR setting also counts the same-view embeddings as negatives). With ``labels``, every
sample sharing a label is left out of the denominator and the positive term is the mean
positive logit.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from brainalign.losses._blockwise import block_logsumexp
from brainalign.losses._common import (
    ScaledLoss,
    as_scalar,
    check_chunk_size,
    check_embeddings,
    group_reduce,
    make_layout,
)
from brainalign.losses.distributed import all_reduce_with_grad
from brainalign.losses.infonce import finish_lse_loss, positive_labels
from brainalign.losses.output import LossOutput

__all__ = ["DCLLoss", "dcl_loss"]


def _vmf_weights(
    cosine: torch.Tensor, sigma: float, n_total: int, distributed: bool
) -> torch.Tensor:
    """``2 - N softmax(cosine / σ)`` with the softmax taken over the gathered batch."""
    logits = cosine / sigma
    shift = logits.detach().max()
    if distributed:
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    numerator = torch.exp(logits - shift)
    denominator = numerator.sum()
    if distributed:
        denominator = all_reduce_with_grad(denominator)
    return 2 - n_total * numerator / denominator


def dcl_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    logit_scale: float | torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    symmetric: bool = True,
    weight_sigma: float | None = None,
    chunk_size: int | None = None,
    distributed: bool = False,
    return_output: bool = False,
) -> torch.Tensor | LossOutput:
    """Decoupled contrastive loss (DCL), or DCLW with ``weight_sigma``.

    Parameters
    ----------
    x, y : torch.Tensor, shape (n_samples, n_features)
        Paired, L2-normalised embeddings.
    logit_scale : float | torch.Tensor
        ``s = 1 / temperature``.
    labels : torch.Tensor of int, shape (n_samples,) | None
        Stimulus ids; samples sharing one are positives, removed from the denominator.
    symmetric : bool
        Average the two directions.
    weight_sigma : float | None
        ``σ`` of DCLW's von Mises-Fisher weighting of the positive term (0.5 in the paper);
        ``None``: unweighted DCL. With ``labels`` the weight uses the mean positive cosine.
    chunk_size : int | None
        Stream the logits in blocks (see :func:`~brainalign.losses.clip_loss`).
    distributed : bool
        Use the samples of every rank (see :mod:`brainalign.losses.distributed`).
    return_output : bool
        Return a :class:`~brainalign.losses.LossOutput` (``uniform`` is the log-sum-exp over
        the negatives; accuracies count a query correct when a positive beats every negative).

    Returns
    -------
    loss : torch.Tensor, shape () | LossOutput
    """
    x, y = check_embeddings(x, y)
    scale = as_scalar(logit_scale, "logit_scale", x)
    if weight_sigma is not None:
        weight_sigma = float(as_scalar(weight_sigma, "weight_sigma", x, positive=True))
    chunk_size = check_chunk_size(chunk_size)
    layout = make_layout(x.shape[0], x.device, distributed)
    y_all = layout.gather(y)
    row_labels, col_labels = positive_labels(layout, labels, x.device)
    if torch.unique(col_labels).numel() < 2:
        raise ValueError(
            "dcl_loss needs at least one negative per sample, but the batch holds "
            f"{layout.n_total} sample(s) and they all share one label; use a larger batch or "
            "more than one stimulus per batch."
        )
    lse = block_logsumexp(
        x,
        y_all,
        scale,
        row_labels,
        col_labels,
        chunk_size=chunk_size,
        columns=symmetric,
        exclude_positives=True,
        track_positives=return_output,
        distributed=layout.distributed,
    )
    if labels is None:
        cos_row = (x * y).sum(1)
        cos_col = cos_row
    else:
        y_mean, inverse = group_reduce(y_all, col_labels, mean=True)
        cos_row = (x * y_mean[layout.local(inverse)]).sum(1)
        cos_col = None
        if symmetric:
            x_mean, _ = group_reduce(layout.gather(x), col_labels, mean=True)
            cos_col = (y * x_mean[layout.local(inverse)]).sum(1)
    target_row = scale * cos_row
    target_col = scale * cos_col if (symmetric and cos_col is not None) else None
    if weight_sigma is not None:
        target_row = target_row * _vmf_weights(
            cos_row, weight_sigma, layout.n_total, layout.distributed
        )
        if target_col is not None and cos_col is not None:
            target_col = target_col * _vmf_weights(
                cos_col, weight_sigma, layout.n_total, layout.distributed
            )
    return finish_lse_loss(layout, lse, target_row, target_col, return_output=return_output)


class DCLLoss(ScaledLoss):
    """Decoupled contrastive loss with a (learnable) logit scale.

    Parameters
    ----------
    init_logit_scale : float
        Initial ``log s`` (default ``log(1 / 0.1)``, the paper's temperature 0.1).
    learnable : bool
        Make ``logit_scale`` a parameter (else a buffer).
    max_logit_scale : float | None
        Upper bound of ``s`` (clamped in place before every forward).
    symmetric, weight_sigma, chunk_size, distributed
        As in :func:`dcl_loss`.
    """

    logit_scale: torch.Tensor

    def __init__(
        self,
        init_logit_scale: float = math.log(1 / 0.1),
        *,
        learnable: bool = True,
        max_logit_scale: float | None = 100.0,
        symmetric: bool = True,
        weight_sigma: float | None = None,
        chunk_size: int | None = None,
        distributed: bool = False,
    ) -> None:
        super().__init__(init_logit_scale, learnable=learnable, max_logit_scale=max_logit_scale)
        self.symmetric = symmetric
        self.weight_sigma = weight_sigma
        self.chunk_size = chunk_size
        self.distributed = distributed

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_output: bool = False,
    ) -> Any:
        """Compute :func:`dcl_loss` with the current scale."""
        return dcl_loss(
            x,
            y,
            self.scale(),
            labels=labels,
            symmetric=self.symmetric,
            weight_sigma=self.weight_sigma,
            chunk_size=self.chunk_size,
            distributed=self.distributed,
            return_output=return_output,
        )

    def extra_repr(self) -> str:
        return f"symmetric={self.symmetric}, weight_sigma={self.weight_sigma}"
