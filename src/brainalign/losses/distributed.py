"""Collectives that carry gradients, so contrastive losses see the negatives of every rank.

The convention every loss of :mod:`brainalign.losses` follows under ``distributed=True``
--------------------------------------------------------------------------------------
With ``k`` ranks holding ``n_r`` samples each (``N = sum(n_r)``), the value a rank returns is
its *share* of the full-batch loss multiplied by ``k``, so that

* the **mean over ranks** of the returned losses equals the loss of one process on the
  concatenated batch of ``N`` samples, and
* after ``loss.backward()`` the gradient a rank holds for its *own* embeddings is ``k`` times the
  full-batch gradient for those rows (the gathers below sum, in backward, the gradients that
  every rank's loss sends to a slice), while replicated parameters (a learnable logit scale) get
  the rank's share.

:class:`torch.nn.parallel.DistributedDataParallel` averages parameter gradients over ranks, so
the model's gradients after DDP's all-reduce are exactly those of one process on the full
batch. A loss module's learnable scale must be averaged too: keep the loss module inside the
DDP-wrapped module (or all-reduce and divide its gradient by ``k`` yourself).

Nothing is computed twice: a rank scores its local queries against all gathered keys, and the
per-column statistics of the other direction are combined with an all-reduce of ``N`` numbers.
The gathers' backward is an all-reduce of the full gradient followed by a slice (tested with
gloo; NCCL's reduce-scatter would move half the data).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_tensor",
    "all_reduce_with_grad",
    "check_distributed",
    "gather_sizes",
    "gather_with_grad",
    "get_rank",
    "get_world_size",
]


def check_distributed(distributed: bool) -> bool:
    """Check that ``torch.distributed`` is initialised when ``distributed=True``.

    Parameters
    ----------
    distributed : bool
        Whether the caller asked for the gathered (multi-process) loss.

    Returns
    -------
    distributed : bool
        The value, so the call can be used inline.
    """
    if not isinstance(distributed, bool):
        raise TypeError(f"'distributed' must be True or False, got {distributed!r}.")
    if distributed and not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "distributed=True but torch.distributed is not initialised; call "
            "torch.distributed.init_process_group (torchrun does it for you) or pass "
            "distributed=False."
        )
    return distributed


def get_world_size() -> int:
    """Number of ranks in the default process group (1 when not initialised)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def get_rank() -> int:
    """Rank of this process in the default process group (0 when not initialised)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def gather_sizes(n_local: int, device: torch.device | str = "cpu") -> list[int]:
    """Gather the local batch size of every rank.

    Parameters
    ----------
    n_local : int
        The number of samples on this rank.
    device : torch.device
        Where the small exchange tensor lives (CUDA for NCCL).

    Returns
    -------
    sizes : list of int, length ``world_size``
        ``sizes[r]`` is the batch size of rank ``r``.
    """
    if get_world_size() == 1:
        return [int(n_local)]
    size = torch.tensor([int(n_local)], dtype=torch.long, device=device)
    out = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(out, size)
    return [int(s.item()) for s in out]


def _all_gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All-gather along dim 0 with per-rank sizes (padded to the largest, then trimmed)."""
    n_max = max(sizes)
    tensor = tensor.contiguous()
    if tensor.shape[0] < n_max:
        pad = tensor.new_zeros((n_max - tensor.shape[0], *tensor.shape[1:]))
        tensor = torch.cat([tensor, pad])
    parts = [torch.empty_like(tensor) for _ in sizes]
    dist.all_gather(parts, tensor)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather forward; backward sums every rank's gradient and keeps this rank's slice."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        rank = dist.get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _all_gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # d(sum over ranks of loss_r)/d(own slice) = sum over ranks of their gradient for it.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop], None


def gather_with_grad(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, keeping the gradient.

    Forward: an all-gather (ranks may hold different batch sizes). Backward: each rank receives
    the sum over ranks of the gradient with respect to its own slice, i.e. the gradient of
    ``sum_r loss_r`` (see the module docstring for why this is the DDP-consistent choice).

    Parameters
    ----------
    tensor : torch.Tensor, shape (n_local, ...)
        This rank's rows.
    sizes : list of int | None
        Every rank's ``n_local`` (from :func:`gather_sizes`); gathered when ``None``.

    Returns
    -------
    gathered : torch.Tensor, shape (sum(sizes), ...)
        Rank 0's rows first. Without an initialised process group (or with one rank) the input
        itself is returned.
    """
    if get_world_size() == 1:
        return tensor
    if sizes is None:
        sizes = gather_sizes(tensor.shape[0], tensor.device)
    return _GatherWithGrad.apply(tensor, sizes)


def all_gather_tensor(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """All-gather along dim 0 without gradient (labels, indices).

    Parameters
    ----------
    tensor : torch.Tensor, shape (n_local, ...)
        This rank's rows.
    sizes : list of int | None
        Every rank's ``n_local``; gathered when ``None``.

    Returns
    -------
    gathered : torch.Tensor, shape (sum(sizes), ...)
    """
    if get_world_size() == 1:
        return tensor
    if sizes is None:
        sizes = gather_sizes(tensor.shape[0], tensor.device)
    with torch.no_grad():
        return _all_gather_padded(tensor.detach(), sizes)


class _AllReduceWithGrad(torch.autograd.Function):
    """Sum over ranks forward; the adjoint (also a sum over ranks) backward."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks, with the gradient of ``sum_r loss_r`` in backward.

    Parameters
    ----------
    tensor : torch.Tensor
        Any shape, the same on every rank.

    Returns
    -------
    total : torch.Tensor
        Same shape; the input itself without a process group.
    """
    if get_world_size() == 1:
        return tensor
    return _AllReduceWithGrad.apply(tensor)
