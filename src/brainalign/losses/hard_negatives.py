"""Hard negative mixing (MoCHi, Kalantidis et al., NeurIPS 2020), for in-batch negatives.

For each query ``q`` the negatives are ranked by similarity and the ``n_hard`` hardest kept.
Synthetic negatives are added to its InfoNCE denominator:

* ``n_mix`` convex mixes of two hard negatives, ``h = normalize(α n_a + (1 - α) n_b)``,
  ``α ~ U(0, 1)``, ``a, b`` drawn uniformly (with replacement) among the hardest;
* ``n_query_mix`` mixes of the query with a hard negative,
  ``h' = normalize(β q + (1 - β) n_c)``, ``β ~ U(0, max_query_weight)`` (0.5: the query never
  dominates, so ``h'`` stays a negative).

As in MoCHi the synthetic points are constants (no gradient flows through their synthesis).
Draw order (numpy generator from ``seed``), per direction: the pair indices
``(n, n_mix, 2)``, then ``α`` ``(n, n_mix)``, then the query-mix indices ``(n, n_query_mix)``,
then ``β`` ``(n, n_query_mix)``; the ``x → y`` direction draws first.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from brainalign._utils.seeding import check_random_state
from brainalign.losses._common import (
    BatchLayout,
    ScaledLoss,
    as_scalar,
    check_embeddings,
    check_fraction,
    make_layout,
)
from brainalign.losses.infonce import positive_labels
from brainalign.losses.output import LossOutput

__all__ = ["HardNegativeLoss", "hard_negative_loss", "hard_negative_mixing"]


def _check_counts(n_hard: Any, n_mix: Any, n_query_mix: Any) -> None:
    for name, value in (("n_hard", n_hard), ("n_mix", n_mix), ("n_query_mix", n_query_mix)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name!r} must be a non-negative int, got {value!r}.")
    if n_hard == 0 and n_mix + n_query_mix > 0:
        raise ValueError("'n_hard' must be at least 1 to synthesise negatives from the hardest.")


def _synthesize(
    queries: torch.Tensor,
    keys: torch.Tensor,
    row_labels: torch.Tensor,
    col_labels: torch.Tensor,
    *,
    n_hard: int,
    n_mix: int,
    n_query_mix: int,
    max_query_weight: float,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Synthetic negatives ``(n, n_mix + n_query_mix, d)`` for ``queries`` among ``keys``."""
    n, d = queries.shape
    with torch.no_grad():
        queries = queries.detach()
        keys = keys.detach()
        if n_mix + n_query_mix == 0:
            return queries.new_zeros((n, 0, d))
        positives = row_labels[:, None] == col_labels[None, :]
        n_negatives = int((~positives).sum(1).min())
        if n_hard > n_negatives:
            raise ValueError(
                f"'n_hard'={n_hard} exceeds the number of negatives a query has in this batch "
                f"({n_negatives}); lower n_hard or use larger batches (drop_last=True avoids a "
                "small last batch)."
            )
        scores = (queries @ keys.T).masked_fill_(positives, float("-inf"))
        hard = keys[scores.topk(n_hard, dim=1).indices]  # (n, n_hard, d)
        pairs = torch.from_numpy(rng.integers(0, n_hard, size=(n, n_mix, 2))).to(keys.device)
        alpha = torch.from_numpy(rng.random((n, n_mix, 1))).to(keys)
        picks = torch.from_numpy(rng.integers(0, n_hard, size=(n, n_query_mix))).to(keys.device)
        beta = torch.from_numpy(rng.random((n, n_query_mix, 1)) * max_query_weight).to(keys)
        rows = torch.arange(n, device=keys.device)[:, None]
        mixes = alpha * hard[rows, pairs[..., 0]] + (1 - alpha) * hard[rows, pairs[..., 1]]
        query_mixes = beta * queries[:, None, :] + (1 - beta) * hard[rows, picks]
        synthetic = torch.cat([mixes, query_mixes], dim=1)
        return torch.nn.functional.normalize(synthetic, dim=-1)


def hard_negative_mixing(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    n_hard: int = 16,
    n_mix: int = 16,
    n_query_mix: int = 8,
    max_query_weight: float = 0.5,
    seed: int | np.random.Generator | None = None,
) -> torch.Tensor:
    """Synthesise MoCHi hard negatives for each query ``x[i]`` among the candidates ``y``.

    Parameters
    ----------
    x : torch.Tensor, shape (n_samples, n_features)
        Queries, L2-normalised.
    y : torch.Tensor, shape (n_samples, n_features)
        Candidates, L2-normalised; ``y[i]`` (or every ``y[j]`` sharing ``labels[i]``) is the
        positive of ``x[i]`` and never used as a negative.
    labels : torch.Tensor of int, shape (n_samples,) | None
        Stimulus ids (multi-positive batches).
    n_hard : int
        How many of the hardest negatives to mix from.
    n_mix : int
        Number of negative-negative mixes per query.
    n_query_mix : int
        Number of query-negative mixes per query.
    max_query_weight : float in [0, 0.5]
        Upper bound of the query's weight ``β`` in its mixes.
    seed : int | numpy.random.Generator | None
        Source of the draws (order in the module docstring).

    Returns
    -------
    negatives : torch.Tensor, shape (n_samples, n_mix + n_query_mix, n_features)
        Unit-norm synthetic negatives, detached; the negative-negative mixes first.
    """
    x, y = check_embeddings(x, y)
    _check_counts(n_hard, n_mix, n_query_mix)
    max_query_weight = check_fraction(max_query_weight, "max_query_weight")
    if max_query_weight > 0.5:
        raise ValueError(
            f"'max_query_weight' must be at most 0.5 (MoCHi), got {max_query_weight!r}; "
            "above it a synthetic point is closer to the query than to the negatives."
        )
    layout = make_layout(x.shape[0], x.device, False)
    row_labels, col_labels = positive_labels(layout, labels, x.device)
    return _synthesize(
        x,
        y,
        row_labels,
        col_labels,
        n_hard=n_hard,
        n_mix=n_mix,
        n_query_mix=n_query_mix,
        max_query_weight=max_query_weight,
        rng=check_random_state(seed),
    )


def _direction(
    queries: torch.Tensor,
    keys: torch.Tensor,
    scale: torch.Tensor,
    row_labels: torch.Tensor,
    col_labels: torch.Tensor,
    **mixing: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-query log-sum-exp (real and synthetic negatives), target logit and top-1 hit."""
    logits = scale * (queries @ keys.T)
    synthetic = _synthesize(queries, keys, row_labels, col_labels, **mixing)
    synthetic_logits = scale * torch.einsum("nd,nsd->ns", queries, synthetic)
    lse = torch.logsumexp(torch.cat([logits, synthetic_logits], dim=1), dim=1)
    positives = row_labels[:, None] == col_labels[None, :]
    target = (logits * positives).sum(1) / positives.sum(1)
    with torch.no_grad():
        best_positive = logits.masked_fill(~positives, float("-inf")).amax(1)
        hits = best_positive >= logits.amax(1)
    return lse, target, hits


def hard_negative_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    logit_scale: float | torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    n_hard: int = 16,
    n_mix: int = 16,
    n_query_mix: int = 8,
    max_query_weight: float = 0.5,
    symmetric: bool = True,
    seed: int | np.random.Generator | None = None,
    distributed: bool = False,
    return_output: bool = False,
) -> torch.Tensor | LossOutput:
    """InfoNCE with MoCHi synthetic hard negatives added to every denominator.

    Parameters
    ----------
    x, y : torch.Tensor, shape (n_samples, n_features)
        Paired, L2-normalised embeddings.
    logit_scale : float | torch.Tensor
        ``s = 1 / temperature``.
    labels : torch.Tensor of int, shape (n_samples,) | None
        Stimulus ids (multi-positive; the target is the mean positive logit).
    n_hard, n_mix, n_query_mix, max_query_weight, seed
        As in :func:`hard_negative_mixing`.
    symmetric : bool
        Also score ``y`` queries against ``x`` candidates (negatives synthesised from ``x``).
    distributed : bool
        Candidates and hard negatives come from every rank (see
        :mod:`brainalign.losses.distributed`).
    return_output : bool
        Return a :class:`~brainalign.losses.LossOutput` (accuracies among the real candidates).

    Returns
    -------
    loss : torch.Tensor, shape () | LossOutput

    Notes
    -----
    The logit matrix is held whole (the top-k needs every score); for very large batches use
    :func:`~brainalign.losses.clip_loss` with ``chunk_size``.
    """
    x, y = check_embeddings(x, y)
    scale = as_scalar(logit_scale, "logit_scale", x)
    _check_counts(n_hard, n_mix, n_query_mix)
    max_query_weight = check_fraction(max_query_weight, "max_query_weight")
    if max_query_weight > 0.5:
        raise ValueError(
            f"'max_query_weight' must be at most 0.5 (MoCHi), got {max_query_weight!r}."
        )
    layout: BatchLayout = make_layout(x.shape[0], x.device, distributed)
    row_labels, col_labels = positive_labels(layout, labels, x.device)
    mixing = {
        "n_hard": n_hard,
        "n_mix": n_mix,
        "n_query_mix": n_query_mix,
        "max_query_weight": max_query_weight,
        "rng": check_random_state(seed),
    }
    lse, target, hits = _direction(x, layout.gather(y), scale, row_labels, col_labels, **mixing)
    uniform, align, hits_xy, hits_yx = lse.sum(), -target.sum(), hits.sum(), None
    if symmetric:
        lse_c, target_c, hits_c = _direction(
            y, layout.gather(x), scale, row_labels, col_labels, **mixing
        )
        uniform, align, hits_yx = uniform + lse_c.sum(), align - target_c.sum(), hits_c.sum()
    factor = layout.share / (2.0 if symmetric else 1.0)
    loss = factor * (uniform + align)
    if not return_output:
        return loss
    return LossOutput(
        loss,
        (factor * align).detach(),
        (factor * uniform).detach(),
        layout.share * hits_xy.to(loss.dtype),
        None if hits_yx is None else layout.share * hits_yx.to(loss.dtype),
    )


class HardNegativeLoss(ScaledLoss):
    """InfoNCE with MoCHi hard negatives and a (learnable) logit scale.

    Parameters
    ----------
    init_logit_scale : float
        Initial ``log s`` (CLIP's ``log(1 / 0.07)``).
    learnable : bool
        Make ``logit_scale`` a parameter (else a buffer).
    max_logit_scale : float | None
        Upper bound of ``s`` (clamped in place before every forward).
    n_hard, n_mix, n_query_mix, max_query_weight, symmetric, distributed
        As in :func:`hard_negative_loss`.
    seed : int | numpy.random.Generator | None
        Generator for the draws, created once and advanced at every call.
    """

    logit_scale: torch.Tensor

    def __init__(
        self,
        init_logit_scale: float = math.log(1 / 0.07),
        *,
        learnable: bool = True,
        max_logit_scale: float | None = 100.0,
        n_hard: int = 16,
        n_mix: int = 16,
        n_query_mix: int = 8,
        max_query_weight: float = 0.5,
        symmetric: bool = True,
        seed: int | np.random.Generator | None = None,
        distributed: bool = False,
    ) -> None:
        super().__init__(init_logit_scale, learnable=learnable, max_logit_scale=max_logit_scale)
        self.n_hard = n_hard
        self.n_mix = n_mix
        self.n_query_mix = n_query_mix
        self.max_query_weight = max_query_weight
        self.symmetric = symmetric
        self.rng = check_random_state(seed)
        self.distributed = distributed

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_output: bool = False,
    ) -> Any:
        """Compute :func:`hard_negative_loss` with the current scale."""
        return hard_negative_loss(
            x,
            y,
            self.scale(),
            labels=labels,
            n_hard=self.n_hard,
            n_mix=self.n_mix,
            n_query_mix=self.n_query_mix,
            max_query_weight=self.max_query_weight,
            symmetric=self.symmetric,
            seed=self.rng,
            distributed=self.distributed,
            return_output=return_output,
        )

    def extra_repr(self) -> str:
        return f"n_hard={self.n_hard}, n_mix={self.n_mix}, n_query_mix={self.n_query_mix}"
