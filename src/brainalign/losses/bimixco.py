"""MixCo / BiMixCo (MindEye): mixup of the brain inputs with soft positives.

:func:`mixco` mixes a random subset of the inputs with a shuffled copy,
``x̃_i = β_i x_i + (1 - β_i) x_perm(i)`` (``β ~ Beta(0.15, 0.15)``, each sample mixed with
probability 0.5, ``β = 1`` for the others). The model embeds ``x̃``; :func:`mixco_loss` then
scores each mixed embedding against the targets with soft labels ``β_i`` on its own target and
``1 - β_i`` on the target it was mixed with::

    probs_ij = β_i [j = i] + (1 - β_i) [j = perm(i)]
    loss = 1/2 [ mean_i -Σ_j probs_ij log_softmax_j(L_i,:)
               + mean_j -Σ_i probs_ij log_softmax_i(L_:,j) ]

with ``L = x yᵀ / τ``: MindEye's ``mixco_nce(..., bidirectional=True)`` ("BiMixCo").

Difference from MindEye, on purpose: MindEye builds ``probs`` by assignment
(``probs[i, perm[i]] = 1 - β_i`` after ``probs = diag(β)``), so when ``perm(i) = i`` the row's
target becomes ``1 - β_i`` (0 for an unmixed sample) instead of 1. A fixed point mixes a
sample with itself, so its target is itself with weight 1; we add the two weights. Without
fixed points both definitions agree exactly (the tests check both facts).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from brainalign._utils.seeding import check_random_state
from brainalign.losses._blockwise import block_logsumexp
from brainalign.losses._common import (
    as_scalar,
    check_chunk_size,
    check_embeddings,
    check_fraction,
    make_layout,
)
from brainalign.losses.infonce import clip_loss, finish_lse_loss, positive_labels
from brainalign.losses.output import LossOutput

__all__ = ["MixCoLoss", "MixcoResult", "mixco", "mixco_loss"]


class MixcoResult(NamedTuple):
    """What :func:`mixco` returns (MindEye's ``voxels, perm, betas, select``).

    Attributes
    ----------
    mixed : torch.Tensor, shape (n_samples, ...)
        The mixed inputs (a new tensor; the input is not modified).
    perm : torch.Tensor of int64, shape (n_samples,)
        Sample ``i`` was mixed with sample ``perm[i]`` (indices into this batch).
    betas : torch.Tensor, shape (n_samples,)
        Weight of the sample itself; 1 where it was not mixed.
    select : torch.Tensor of bool, shape (n_samples,)
        Which samples were mixed.
    """

    mixed: torch.Tensor
    perm: torch.Tensor
    betas: torch.Tensor
    select: torch.Tensor


def _check_perm(perm: Any, n: int, device: torch.device) -> torch.Tensor:
    if not isinstance(perm, torch.Tensor) or perm.shape != (n,):
        shape = tuple(perm.shape) if isinstance(perm, torch.Tensor) else type(perm).__name__
        raise ValueError(f"'perm' must be a tensor of shape ({n},), got {shape}.")
    perm = perm.to(device=device, dtype=torch.long)
    if not torch.equal(torch.sort(perm).values, torch.arange(n, device=device)):
        raise ValueError(
            f"'perm' must be a permutation of 0..{n - 1} (indices into this batch), got "
            f"{perm.tolist()!r:.120}."
        )
    return perm


def _check_betas(betas: Any, n: int, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(betas, torch.Tensor) or betas.shape != (n,):
        shape = tuple(betas.shape) if isinstance(betas, torch.Tensor) else type(betas).__name__
        raise ValueError(f"'betas' must be a tensor of shape ({n},), got {shape}.")
    betas = betas.to(device=like.device, dtype=like.dtype)
    if bool(((betas < 0) | (betas > 1)).any()):
        raise ValueError(
            "'betas' must lie in [0, 1] (the weight of each sample in its mix), got values in "
            f"[{float(betas.min()):.3g}, {float(betas.max()):.3g}]."
        )
    return betas


def mixco(
    x: torch.Tensor,
    *,
    beta: float = 0.15,
    mix_probability: float = 0.5,
    perm: torch.Tensor | None = None,
    betas: torch.Tensor | None = None,
    select: torch.Tensor | None = None,
    seed: int | np.random.Generator | None = None,
) -> MixcoResult:
    """Mix a random subset of the inputs with a shuffled copy (MindEye's ``mixco``).

    Parameters
    ----------
    x : torch.Tensor, shape (n_samples, ...)
        Brain inputs (voxels, or sensors × times); any trailing shape.
    beta : float
        Concentration of the symmetric ``Beta(beta, beta)`` the coefficients are drawn from.
    mix_probability : float in [0, 1]
        Probability that a sample is mixed (MindEye's ``s_thresh``).
    perm, betas, select : torch.Tensor | None
        Fix the permutation (int, ``(n_samples,)``), the raw coefficients (``(n_samples,)``) or
        the mixed subset (bool, ``(n_samples,)``) instead of drawing them.
    seed : int | numpy.random.Generator | None
        Source of the draws (permutation, then coefficients, then the subset).

    Returns
    -------
    result : MixcoResult
        ``mixed`` has ``x``'s shape; ``betas`` is 1 for unmixed samples.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] == 0:
        raise ValueError("'x' must be a non-empty tensor of shape (n_samples, ...).")
    if beta <= 0:
        raise ValueError(f"'beta' must be positive (Beta(beta, beta) concentration), got {beta!r}.")
    mix_probability = check_fraction(mix_probability, "mix_probability")
    n = x.shape[0]
    rng = check_random_state(seed)
    if perm is None:
        perm = torch.from_numpy(rng.permutation(n))
    perm = _check_perm(perm, n, x.device)
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    if betas is None:
        betas = torch.from_numpy(rng.beta(beta, beta, size=n))
    betas = _check_betas(betas, n, torch.empty(0, dtype=dtype, device=x.device))
    if select is None:
        select = torch.from_numpy(rng.random(n) <= mix_probability)
    if not isinstance(select, torch.Tensor) or select.shape != (n,):
        raise ValueError(f"'select' must be a boolean tensor of shape ({n},).")
    select = select.to(device=x.device, dtype=torch.bool)
    betas = torch.where(select, betas, torch.ones_like(betas))
    coef = betas.reshape((-1,) + (1,) * (x.ndim - 1))
    mixed = coef * x + (1 - coef) * x[perm]
    return MixcoResult(mixed, perm, betas, select)


def mixco_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    temperature: float | torch.Tensor = 0.1,
    *,
    perm: torch.Tensor | None = None,
    betas: torch.Tensor | None = None,
    bidirectional: bool = True,
    chunk_size: int | None = None,
    distributed: bool = False,
    return_output: bool = False,
) -> torch.Tensor | LossOutput:
    """MixCo contrastive loss with soft positives (MindEye's ``mixco_nce``).

    Parameters
    ----------
    x : torch.Tensor, shape (n_samples, n_features)
        Embeddings of the *mixed* brain inputs, normally L2-normalised.
    y : torch.Tensor, shape (n_samples, n_features)
        Target embeddings of the unmixed stimuli, normally L2-normalised.
    temperature : float | torch.Tensor
        ``τ`` (MindEye trains with 0.006; its function default is 0.1).
    perm, betas : torch.Tensor | None
        From :func:`mixco` (``perm`` indexes this rank's batch). Both ``None``: the plain
        InfoNCE with the diagonal as targets, as MindEye does without mixing.
    bidirectional : bool
        Average both directions (BiMixCo); ``False`` keeps brain → target only.
    chunk_size : int | None
        Stream the logits in blocks (see :func:`~brainalign.losses.clip_loss`).
    distributed : bool
        Use the targets of every rank as candidates (mixing stays within each rank's batch).
    return_output : bool
        Return a :class:`~brainalign.losses.LossOutput`.

    Returns
    -------
    loss : torch.Tensor, shape () | LossOutput
    """
    x, y = check_embeddings(x, y)
    inv_tau = 1.0 / as_scalar(temperature, "temperature", x, positive=True)
    if (perm is None) != (betas is None):
        raise ValueError(
            "'perm' and 'betas' go together (both from mixco(...)) or are both None; got "
            f"perm={'None' if perm is None else 'a tensor'} and "
            f"betas={'None' if betas is None else 'a tensor'}."
        )
    if perm is None:
        return clip_loss(
            x,
            y,
            inv_tau,
            symmetric=bidirectional,
            chunk_size=chunk_size,
            distributed=distributed,
            return_output=return_output,
        )
    n = x.shape[0]
    perm = _check_perm(perm, n, x.device)
    betas = _check_betas(betas, n, x)
    chunk_size = check_chunk_size(chunk_size)
    layout = make_layout(n, x.device, distributed)
    y_all = layout.gather(y)
    row_labels, col_labels = positive_labels(layout, None, x.device)
    lse = block_logsumexp(
        x,
        y_all,
        inv_tau,
        row_labels,
        col_labels,
        chunk_size=chunk_size,
        columns=bidirectional,
        track_positives=return_output,
        distributed=layout.distributed,
    )
    own = inv_tau * (x * y).sum(1)
    mixed_with = inv_tau * (x * y[perm]).sum(1)
    target_row = betas * own + (1 - betas) * mixed_with
    col_weights = None
    if bidirectional:
        # column j collects beta_j from row j and 1 - beta_i from every row i with perm(i) = j
        col_weights = betas + torch.zeros_like(betas).index_add(0, perm, 1 - betas)
    return finish_lse_loss(
        layout,
        lse,
        target_row,
        target_row if bidirectional else None,
        col_weights=col_weights,
        return_output=return_output,
    )


class MixCoLoss(nn.Module):
    """MixCo / BiMixCo loss module (fixed temperature).

    Parameters
    ----------
    temperature, bidirectional, chunk_size, distributed
        As in :func:`mixco_loss`.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        bidirectional: bool = True,
        chunk_size: int | None = None,
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.bidirectional = bidirectional
        self.chunk_size = chunk_size
        self.distributed = distributed

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        perm: torch.Tensor | None = None,
        betas: torch.Tensor | None = None,
        return_output: bool = False,
    ) -> Any:
        """Compute :func:`mixco_loss` (shapes as there)."""
        return mixco_loss(
            x,
            y,
            self.temperature,
            perm=perm,
            betas=betas,
            bidirectional=self.bidirectional,
            chunk_size=self.chunk_size,
            distributed=self.distributed,
            return_output=return_output,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, bidirectional={self.bidirectional}"
