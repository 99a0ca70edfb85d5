"""What a loss returns with ``return_output=True``: the loss and the terms worth logging."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["LossOutput"]


class LossOutput(NamedTuple):
    """A loss value with its logging terms (CEBRA-style decomposition).

    Every contrastive loss here is a *target term* plus a *partition term*; they are returned
    as ``align`` and ``uniform`` (as CEBRA's InfoNCE does), so that ``loss == align + uniform``
    up to rounding, whatever the variant:

    * InfoNCE / CLIP, multi-positive, DCL, MixCo: ``align`` is minus the mean target-weighted
      logit (with label smoothing: the smoothed target), ``uniform`` the mean log-sum-exp over
      the denominators (for DCL: the negatives only).
    * SigLIP: ``align`` is minus the positive logits summed per sample, ``uniform`` the softplus
      of every logit summed per sample.
    * Wang & Isola's :func:`~brainalign.losses.align_uniform_loss`: ``align`` and ``uniform``
      are the alignment and uniformity losses before weighting.

    Attributes
    ----------
    loss : torch.Tensor, shape ()
        The differentiable loss (what :meth:`torch.Tensor.backward` is called on).
    align : torch.Tensor, shape () | None
        Detached target (alignment) term.
    uniform : torch.Tensor, shape () | None
        Detached partition (uniformity) term.
    accuracy_xy : torch.Tensor, shape () | None
        Detached in-batch top-1 accuracy of ``x`` queries among the ``y`` candidates (a query is
        correct when its best-scoring candidate is a positive; ties count as correct).
    accuracy_yx : torch.Tensor, shape () | None
        The same for ``y`` queries among ``x``; ``None`` for one-directional losses.

    Notes
    -----
    Under ``distributed=True`` every term is this rank's share scaled like the loss (see
    :mod:`brainalign.losses.distributed`): its mean over ranks is the full-batch value.
    """

    loss: torch.Tensor
    align: torch.Tensor | None = None
    uniform: torch.Tensor | None = None
    accuracy_xy: torch.Tensor | None = None
    accuracy_yx: torch.Tensor | None = None
