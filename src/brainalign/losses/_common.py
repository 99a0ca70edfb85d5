"""Input checks and the batch layout (local rows inside the gathered batch) shared by the losses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import torch

from brainalign.losses.distributed import (
    all_gather_tensor,
    check_distributed,
    gather_sizes,
    gather_with_grad,
    get_rank,
    get_world_size,
)

__all__ = [
    "BatchLayout",
    "as_scalar",
    "check_chunk_size",
    "check_embeddings",
    "check_fraction",
    "check_labels",
    "check_max_scale",
    "clamped_exp",
    "group_reduce",
    "make_layout",
    "register_logit_scale",
]


def check_embeddings(
    x: Any, y: Any, name_x: str = "x", name_y: str = "y"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a pair of embedding batches: 2-D float tensors of the same shape, dtype and device."""
    for name, value in ((name_x, x), (name_y, y)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{name!r} must be a torch.Tensor of shape (n_samples, n_features), "
                f"got {type(value).__name__}. Convert with torch.as_tensor."
            )
        if value.ndim != 2:
            raise ValueError(
                f"{name!r} must have shape (n_samples, n_features), got shape "
                f"{tuple(value.shape)}. Flatten token axes or pool them first."
            )
        if not value.is_floating_point():
            raise TypeError(f"{name!r} must be a floating-point tensor, got dtype {value.dtype}.")
        if value.shape[0] == 0:
            raise ValueError(f"{name!r} is an empty batch (shape {tuple(value.shape)}).")
    if x.shape != y.shape:
        raise ValueError(
            f"{name_x!r} and {name_y!r} must have the same shape (one row per paired sample), "
            f"got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.dtype != y.dtype or x.device != y.device:
        raise ValueError(
            f"{name_x!r} and {name_y!r} must share dtype and device, got {x.dtype} on {x.device} "
            f"and {y.dtype} on {y.device}."
        )
    return x, y


def as_scalar(value: Any, name: str, like: torch.Tensor, *, positive: bool = False) -> torch.Tensor:
    """Turn a float or a one-element tensor into a 0-d tensor on ``like``'s device and dtype.

    A tensor keeps its autograd history, so a learnable scale gets its gradient.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name!r} must be a scalar or a one-element tensor, got shape "
                f"{tuple(value.shape)}."
            )
        out = value.reshape(()).to(device=like.device, dtype=like.dtype)
        check_value = float(value.detach().reshape(()).item()) if positive else 1.0
    elif isinstance(value, Real) and not isinstance(value, bool):
        check_value = float(value)
        if not math.isfinite(check_value):
            raise ValueError(f"{name!r} must be finite, got {value!r}.")
        out = torch.tensor(check_value, device=like.device, dtype=like.dtype)
    else:
        raise TypeError(f"{name!r} must be a number or a one-element tensor, got {value!r:.80}.")
    if positive and not check_value > 0:
        raise ValueError(f"{name!r} must be positive, got {check_value!r}.")
    return out


def check_fraction(
    value: Any, name: str, *, low_open: bool = False, high_open: bool = False
) -> float:
    """Check a number in [0, 1] (optionally open at either end)."""
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{name!r} must be a number, got {value!r}.")
    value = float(value)
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name!r} must lie in {interval}, got {value!r}.")
    return value


def check_chunk_size(chunk_size: Any) -> int | None:
    """``None`` (whole logit matrix at once) or a positive block size."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"'chunk_size' must be None or a positive int (rows/columns per block), got "
            f"{chunk_size!r}."
        )
    return chunk_size


def check_labels(labels: Any, n_samples: int) -> torch.Tensor:
    """Check stimulus labels: one integer per sample."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"'labels' must be a torch.Tensor of integer stimulus ids, got {type(labels).__name__}."
        )
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise ValueError(
            f"'labels' must have shape ({n_samples},) (one stimulus id per sample), got "
            f"{tuple(labels.shape)}."
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"'labels' must hold integers (stimulus ids), got dtype {labels.dtype}.")
    return labels.to(torch.long)


@dataclass(frozen=True)
class BatchLayout:
    """Where this rank's rows sit in the gathered batch.

    Attributes
    ----------
    sizes : list of int
        Batch size of every rank (``[n]`` without distribution).
    offset : int
        Index of this rank's first row in the gathered batch.
    n_local : int
        This rank's batch size.
    n_total : int
        The gathered batch size ``N``.
    world_size : int
        Number of ranks ``k``.
    distributed : bool
        Whether collectives are used.
    """

    sizes: list[int]
    offset: int
    n_local: int
    n_total: int
    world_size: int
    distributed: bool

    @property
    def share(self) -> float:
        """``k / N``: multiplies a sum over local rows into this rank's loss (module docs)."""
        return self.world_size / self.n_total

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-gather with gradient (identity without distribution)."""
        return gather_with_grad(tensor, self.sizes) if self.distributed else tensor

    def gather_no_grad(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-gather without gradient (identity without distribution)."""
        return all_gather_tensor(tensor, self.sizes) if self.distributed else tensor

    def local(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a gathered tensor."""
        return tensor[self.offset : self.offset + self.n_local]


def make_layout(n_local: int, device: torch.device, distributed: bool) -> BatchLayout:
    """Build the :class:`BatchLayout` (one small all-gather of the sizes when distributed)."""
    distributed = check_distributed(distributed) and get_world_size() > 1
    if not distributed:
        return BatchLayout([n_local], 0, n_local, n_local, 1, False)
    sizes = gather_sizes(n_local, device)
    rank = get_rank()
    return BatchLayout(sizes, sum(sizes[:rank]), n_local, sum(sizes), len(sizes), True)


def group_reduce(
    values: torch.Tensor, labels: torch.Tensor, *, mean: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum (or mean) of ``values`` rows per label, and each row's group index.

    Parameters
    ----------
    values : torch.Tensor, shape (n, d)
    labels : torch.Tensor, shape (n,)
    mean : bool
        Divide each group's sum by its count.

    Returns
    -------
    per_group : torch.Tensor, shape (n_groups, d)
    inverse : torch.Tensor, shape (n,)
        Group index of each row.
    """
    _, inverse = torch.unique(labels, return_inverse=True)
    n_groups = int(inverse.max().item()) + 1
    sums = values.new_zeros((n_groups, values.shape[1])).index_add(0, inverse, values)
    if mean:
        counts = torch.bincount(inverse, minlength=n_groups).to(values.dtype)
        sums = sums / counts[:, None]
    return sums, inverse


def register_logit_scale(
    module: torch.nn.Module, name: str, init: float, *, learnable: bool
) -> None:
    """Store a log-space scalar on ``module``: a parameter when learnable, else a buffer."""
    if isinstance(init, bool) or not isinstance(init, Real) or not math.isfinite(float(init)):
        raise ValueError(f"'init_{name}' must be a finite number, got {init!r}.")
    value = torch.tensor(float(init))
    if learnable:
        module.register_parameter(name, torch.nn.Parameter(value))
    else:
        module.register_buffer(name, value)


def clamped_exp(log_value: torch.Tensor, max_value: float | None) -> torch.Tensor:
    """``exp(log_value)`` after clamping the stored log value in place to ``log(max_value)``.

    Clamping the parameter itself before each use gives the same trajectory as open_clip, which
    clamps it after every optimiser step (``logit_scale.clamp_(0, log(100))``), and, unlike a
    clamp inside the graph, never leaves a parameter stuck above the limit with a zero gradient.
    """
    if max_value is not None:
        with torch.no_grad():
            log_value.clamp_(max=math.log(max_value))
    return log_value.exp()


def check_max_scale(max_value: Any, name: str) -> float | None:
    """``None`` or a positive number."""
    if max_value is None:
        return None
    if isinstance(max_value, bool) or not isinstance(max_value, Real) or not float(max_value) > 0:
        raise ValueError(f"{name!r} must be None or a positive number, got {max_value!r}.")
    return float(max_value)


class ScaledLoss(torch.nn.Module):
    """Base of the loss modules with a CLIP-style temperature.

    Holds ``logit_scale`` (the log of the multiplier ``s``; a parameter when ``learnable``, else
    a buffer) and its upper limit ``max_logit_scale`` (``None``: no limit), and gives the
    multiplier through :meth:`scale`.
    """

    def __init__(
        self, init_logit_scale: float, *, learnable: bool, max_logit_scale: float | None
    ) -> None:
        super().__init__()
        register_logit_scale(self, "logit_scale", init_logit_scale, learnable=learnable)
        self.max_logit_scale = check_max_scale(max_logit_scale, "max_logit_scale")

    def scale(self) -> torch.Tensor:
        """The multiplier ``s = exp(logit_scale)``, after the in-place clamp."""
        return clamped_exp(self.logit_scale, self.max_logit_scale)
