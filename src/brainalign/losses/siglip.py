"""SigLIP: the pairwise sigmoid loss with a learnable scale and bias (Zhai et al., ICCV 2023).

For logits ``L_ij = s · x_i·y_j + b`` and ``z_ij = +1`` for positives, ``-1`` otherwise::

    loss = -1/N · Σ_i Σ_j log σ(z_ij · L_ij)

i.e. summed over candidates and averaged over the ``N`` queries, as in the paper and in
``open_clip.loss.SigLipLoss`` (PAPERS.md's "mean over all pairs" differs by the factor ``N``;
we follow the paper so that values match open_clip). Because ``-log σ(-t) = softplus(t)`` and
``-log σ(t) = softplus(t) - t``, the loss is ``1/N [Σ_ij softplus(L_ij) - Σ_positives L_ij]``:
a streamed softplus sum plus a linear term, which makes chunked and distributed versions exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from brainalign.losses._blockwise import block_softplus
from brainalign.losses._common import (
    ScaledLoss,
    as_scalar,
    check_chunk_size,
    check_embeddings,
    group_reduce,
    make_layout,
    register_logit_scale,
)
from brainalign.losses.infonce import positive_labels
from brainalign.losses.output import LossOutput

__all__ = ["SigLipLoss", "siglip_loss"]


def siglip_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    logit_scale: float | torch.Tensor,
    logit_bias: float | torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    chunk_size: int | None = None,
    distributed: bool = False,
    return_output: bool = False,
) -> torch.Tensor | LossOutput:
    """Sigmoid (SigLIP) loss between paired embeddings.

    Equal to ``open_clip.loss.SigLipLoss()(x, y, logit_scale, logit_bias)``.

    Parameters
    ----------
    x, y : torch.Tensor, shape (n_samples, n_features)
        Paired, normally L2-normalised embeddings.
    logit_scale : float | torch.Tensor
        The multiplier ``s`` (already exponentiated); SigLIP starts at 10.
    logit_bias : float | torch.Tensor
        The bias ``b``; SigLIP starts at -10.
    labels : torch.Tensor of int, shape (n_samples,) | None
        Stimulus ids; pairs sharing a label are positives (``z = +1``).
    chunk_size : int | None
        Stream the logits in ``chunk_size × chunk_size`` blocks (memory linear in the batch).
    distributed : bool
        Score the local queries against the keys of every rank (see
        :mod:`brainalign.losses.distributed`). The loss is a sum over pairs, so each rank
        sums the rows of its own queries: only the keys are gathered.
    return_output : bool
        Return a :class:`~brainalign.losses.LossOutput` (``align`` = minus the positive logits
        per sample, ``uniform`` = the softplus sum per sample, ``accuracy_xy``).

    Returns
    -------
    loss : torch.Tensor, shape () | LossOutput
    """
    x, y = check_embeddings(x, y)
    scale = as_scalar(logit_scale, "logit_scale", x)
    bias = as_scalar(logit_bias, "logit_bias", x)
    chunk_size = check_chunk_size(chunk_size)
    layout = make_layout(x.shape[0], x.device, distributed)
    y_all = layout.gather(y)
    row_labels, col_labels = positive_labels(layout, labels, x.device)
    sums = block_softplus(
        x,
        y_all,
        scale,
        bias,
        row_labels,
        col_labels,
        chunk_size=chunk_size,
        track_positives=return_output,
    )
    if labels is None:
        positive = scale * (x * y).sum(1) + bias
    else:
        y_sum, inverse = group_reduce(y_all, col_labels, mean=False)
        counts = torch.bincount(inverse).to(x.dtype)
        local = layout.local(inverse)
        positive = scale * (x * y_sum[local]).sum(1) + bias * counts[local]
    uniform = layout.share * sums.row.sum()
    align = -layout.share * positive.sum()
    loss = uniform + align
    if not return_output:
        return loss
    accuracy = None
    if sums.row_pos_max is not None:
        hits = sums.row_pos_max >= sums.row_max
        accuracy = layout.share * hits.sum().to(loss.dtype)
    return LossOutput(loss, align.detach(), uniform.detach(), accuracy, None)


class SigLipLoss(ScaledLoss):
    """SigLIP loss with learnable ``logit_scale`` (log space) and ``logit_bias``.

    Parameters
    ----------
    init_logit_scale : float
        Initial ``log s``; SigLIP's ``log(10)``.
    init_logit_bias : float
        Initial ``b``; SigLIP's -10.
    learnable : bool
        Make both parameters (else buffers).
    max_logit_scale : float | None
        Upper bound of ``s`` applied to the stored ``log s`` before every forward (open_clip
        clamps every model's scale at 100). ``None``: no clamp.
    chunk_size, distributed
        As in :func:`siglip_loss`.
    """

    logit_scale: torch.Tensor
    logit_bias: torch.Tensor

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        *,
        learnable: bool = True,
        max_logit_scale: float | None = 100.0,
        chunk_size: int | None = None,
        distributed: bool = False,
    ) -> None:
        super().__init__(init_logit_scale, learnable=learnable, max_logit_scale=max_logit_scale)
        register_logit_scale(self, "logit_bias", init_logit_bias, learnable=learnable)
        self.chunk_size = chunk_size
        self.distributed = distributed

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_output: bool = False,
    ) -> Any:
        """Compute :func:`siglip_loss` with the current scale and bias."""
        return siglip_loss(
            x,
            y,
            self.scale(),
            self.logit_bias,
            labels=labels,
            chunk_size=self.chunk_size,
            distributed=self.distributed,
            return_output=return_output,
        )

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}, distributed={self.distributed}"
