"""Alignment and uniformity on the hypersphere (Wang & Isola, ICML 2020).

::

    L_align   = E_i ‖x_i - y_i‖^α                               (α = 2)
    L_uniform = log E_{i ≠ j} exp(-t ‖x_i - x_j‖²)                (t = 2)

Added to a CLIP loss they close the "contrastive gap" between the two modalities' embeddings
(Fahim et al. 2024). :func:`align_uniform_loss` weights the alignment of the pairs and the mean
uniformity of ``x`` and ``y``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from brainalign.losses._common import as_scalar, check_embeddings, make_layout
from brainalign.losses.distributed import all_reduce_with_grad
from brainalign.losses.output import LossOutput

__all__ = ["AlignUniformLoss", "align_uniform_loss", "alignment_loss", "uniformity_loss"]


def alignment_loss(
    x: torch.Tensor, y: torch.Tensor, *, alpha: float = 2.0, distributed: bool = False
) -> torch.Tensor:
    """Wang & Isola's alignment: the mean ``‖x_i - y_i‖^α`` over pairs.

    Parameters
    ----------
    x, y : torch.Tensor, shape (n_samples, n_features)
        Paired, L2-normalised embeddings.
    alpha : float
        Exponent of the distance (2 in the paper).
    distributed : bool
        Average over the pairs of every rank (see :mod:`brainalign.losses.distributed`).

    Returns
    -------
    loss : torch.Tensor, shape ()
    """
    x, y = check_embeddings(x, y)
    alpha = float(as_scalar(alpha, "alpha", x, positive=True))
    layout = make_layout(x.shape[0], x.device, distributed)
    diff = x - y
    if alpha == 2.0:
        per_pair = diff.pow(2).sum(1)
    else:
        per_pair = diff.norm(dim=1).pow(alpha)
    return layout.share * per_pair.sum()


def uniformity_loss(x: torch.Tensor, *, t: float = 2.0, distributed: bool = False) -> torch.Tensor:
    """Wang & Isola's uniformity: ``log`` of the mean Gaussian potential over distinct pairs.

    Parameters
    ----------
    x : torch.Tensor, shape (n_samples, n_features)
        L2-normalised embeddings (at least 2 over all ranks).
    t : float
        Scale of the Gaussian potential (2 in the paper).
    distributed : bool
        Use the pairs of the gathered batch. Every rank returns the same full-batch value
        (the mean over ranks is then the full-batch loss, as for every loss here).

    Returns
    -------
    loss : torch.Tensor, shape ()
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError("'x' must be a floating-point tensor of shape (n_samples, n_features).")
    t = float(as_scalar(t, "t", x, positive=True))
    layout = make_layout(x.shape[0], x.device, distributed)
    if layout.n_total < 2:
        raise ValueError(
            "uniformity needs at least 2 samples (pairs of distinct samples), got "
            f"{layout.n_total}."
        )
    x_all = layout.gather(x)
    sq_norms = x_all.pow(2).sum(1)
    sq_dist = (layout.local(sq_norms)[:, None] + sq_norms[None, :] - 2 * (x @ x_all.T)).clamp_min(0)
    potential = -t * sq_dist
    own = torch.arange(layout.n_local, device=x.device)
    potential = potential.index_put((own, own + layout.offset), potential.new_tensor(float("-inf")))
    lse = torch.logsumexp(potential.flatten(), dim=0)
    if layout.distributed:
        shift = lse.detach().clone()
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
        lse = shift + torch.log(all_reduce_with_grad(torch.exp(lse - shift)))
    return lse - math.log(layout.n_total * (layout.n_total - 1))


def align_uniform_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    align_weight: float = 1.0,
    uniform_weight: float = 1.0,
    alpha: float = 2.0,
    t: float = 2.0,
    distributed: bool = False,
    return_output: bool = False,
) -> torch.Tensor | LossOutput:
    """``align_weight · L_align(x, y) + uniform_weight · (L_uniform(x) + L_uniform(y)) / 2``.

    Parameters
    ----------
    x, y : torch.Tensor, shape (n_samples, n_features)
        Paired, L2-normalised embeddings.
    align_weight, uniform_weight : float
        Weights of the two terms (1 and 1 in Wang & Isola's best settings).
    alpha, t : float
        As in :func:`alignment_loss` and :func:`uniformity_loss`.
    distributed : bool
        Use every rank's samples.
    return_output : bool
        Return a :class:`~brainalign.losses.LossOutput` with the unweighted terms as
        ``align`` and ``uniform`` (no accuracies).

    Returns
    -------
    loss : torch.Tensor, shape () | LossOutput
    """
    x, y = check_embeddings(x, y)
    align = alignment_loss(x, y, alpha=alpha, distributed=distributed)
    uniform = (
        uniformity_loss(x, t=t, distributed=distributed)
        + uniformity_loss(y, t=t, distributed=distributed)
    ) / 2
    loss = align_weight * align + uniform_weight * uniform
    if not return_output:
        return loss
    return LossOutput(loss, align.detach(), uniform.detach(), None, None)


class AlignUniformLoss(nn.Module):
    """Module form of :func:`align_uniform_loss` (same parameters)."""

    def __init__(
        self,
        *,
        align_weight: float = 1.0,
        uniform_weight: float = 1.0,
        alpha: float = 2.0,
        t: float = 2.0,
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.align_weight = align_weight
        self.uniform_weight = uniform_weight
        self.alpha = alpha
        self.t = t
        self.distributed = distributed

    def forward(self, x: torch.Tensor, y: torch.Tensor, return_output: bool = False) -> Any:
        """Compute :func:`align_uniform_loss` (shapes as there)."""
        return align_uniform_loss(
            x,
            y,
            align_weight=self.align_weight,
            uniform_weight=self.uniform_weight,
            alpha=self.alpha,
            t=self.t,
            distributed=self.distributed,
            return_output=return_output,
        )

    def extra_repr(self) -> str:
        return f"align_weight={self.align_weight}, uniform_weight={self.uniform_weight}"
