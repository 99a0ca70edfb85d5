"""SoftCLIP (MindEye, Scotti et al. 2023): soft targets from the target-target similarities.

With brain logits ``B = x yᵀ / τ`` and target logits ``C = y yᵀ / τ_t``::

    loss = 1/2 [ mean_i  -Σ_j softmax_j(C_i,:) · log_softmax_j(B_i,:)
               + mean_j  -Σ_i softmax_i(C_:,j) · log_softmax_i(B_:,j) ]

so that near-duplicate images are not pushed apart as pure negatives. This is MindEye's
``soft_clip_loss(preds, targs, temp)`` with ``τ = τ_t = temp`` (its default 0.125; the training
recipe anneals it from 0.004 to 0.0075, see :mod:`brainalign.losses.schedule`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from brainalign.losses._common import as_scalar, check_embeddings, make_layout
from brainalign.losses.output import LossOutput

__all__ = ["SoftClipLoss", "soft_clip_loss"]


def soft_clip_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    temperature: float | torch.Tensor = 0.125,
    *,
    target_temperature: float | torch.Tensor | None = None,
    distributed: bool = False,
    return_output: bool = False,
) -> torch.Tensor | LossOutput:
    """SoftCLIP loss (MindEye's ``soft_clip_loss``).

    Parameters
    ----------
    x : torch.Tensor, shape (n_samples, n_features)
        Predicted (brain) embeddings, normally L2-normalised.
    y : torch.Tensor, shape (n_samples, n_features)
        Target (e.g. CLIP) embeddings, normally L2-normalised.
    temperature : float | torch.Tensor
        ``τ`` of the brain logits (MindEye's ``temp``; logit scale ``1 / τ``).
    target_temperature : float | torch.Tensor | None
        ``τ_t`` of the target-target logits; ``None`` uses ``temperature`` (MindEye).
    distributed : bool
        Use the samples of every rank (both ``x`` and ``y`` are gathered; see
        :mod:`brainalign.losses.distributed` for the convention).
    return_output : bool
        Return a :class:`~brainalign.losses.LossOutput` (``align`` = minus the soft-target-
        weighted logits, ``uniform`` = the log-sum-exp terms, top-1 accuracies both ways).

    Returns
    -------
    loss : torch.Tensor, shape () | LossOutput
    """
    x, y = check_embeddings(x, y)
    inv_tau = 1.0 / as_scalar(temperature, "temperature", x, positive=True)
    if target_temperature is None:
        inv_tau_t = inv_tau
    else:
        inv_tau_t = 1.0 / as_scalar(target_temperature, "target_temperature", x, positive=True)
    layout = make_layout(x.shape[0], x.device, distributed)
    x_all, y_all = layout.gather(x), layout.gather(y)
    index = torch.arange(layout.n_local, device=x.device)
    own = index + layout.offset
    # rows: local brain queries against every target; columns: local targets against every
    # brain embedding. C is symmetric, so the softmax over i of C[:, j] is row j of y yᵀ.
    brain_rows = (x @ y_all.T) * inv_tau
    if layout.distributed:
        brain_cols = (y @ x_all.T) * inv_tau
    else:
        brain_cols = brain_rows.T
    soft_targets = torch.softmax((y @ y_all.T) * inv_tau_t, dim=1)
    lse_rows = torch.logsumexp(brain_rows, dim=1)
    lse_cols = torch.logsumexp(brain_cols, dim=1)
    align = -((soft_targets * brain_rows).sum() + (soft_targets * brain_cols).sum())
    uniform = lse_rows.sum() + lse_cols.sum()
    factor = layout.share / 2
    loss = factor * (align + uniform)
    if not return_output:
        return loss
    with torch.no_grad():
        hits_xy = brain_rows[index, own] >= brain_rows.amax(1)
        hits_yx = brain_cols[index, own] >= brain_cols.amax(1)
    return LossOutput(
        loss,
        (factor * align).detach(),
        (factor * uniform).detach(),
        layout.share * hits_xy.sum().to(loss.dtype),
        layout.share * hits_yx.sum().to(loss.dtype),
    )


class SoftClipLoss(nn.Module):
    """SoftCLIP loss module (fixed temperatures; set ``.temperature`` to follow a schedule).

    Parameters
    ----------
    temperature, target_temperature, distributed
        As in :func:`soft_clip_loss`.
    """

    def __init__(
        self,
        temperature: float = 0.125,
        *,
        target_temperature: float | None = None,
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.target_temperature = target_temperature
        self.distributed = distributed

    def forward(self, x: torch.Tensor, y: torch.Tensor, return_output: bool = False) -> Any:
        """Compute :func:`soft_clip_loss` (shapes as there)."""
        return soft_clip_loss(
            x,
            y,
            self.temperature,
            target_temperature=self.target_temperature,
            distributed=self.distributed,
            return_output=return_output,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, target_temperature={self.target_temperature}"
