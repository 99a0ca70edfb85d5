"""NumPy/torch at the edges: inputs become tensors, results go back in the caller's type.

Every public function of :mod:`brainalign.rsa` accepts NumPy arrays (returns NumPy) or torch
tensors (returns tensors on the same device). Inputs are never written to: when a kernel needs to
change an array it works on a copy.

Small problems on the CPU run on one thread (:func:`threads_for`): their parallel regions last
microseconds, and when the cores are shared the BLAS and OpenMP worker threads that wait for one
another stall for milliseconds each time.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from brainalign._utils.device import resolve_device

__all__ = [
    "Origin",
    "as_tensor",
    "inverse",
    "matmul",
    "matrix_rank",
    "origin_of",
    "restore",
    "single_thread",
    "solve",
    "solve_spd",
    "target_device",
    "threads_for",
]

#: CPU problems holding at most this many values (16 MB of float64: e.g. 100 RDMs of 200
#: stimuli, or 1,000 RDMs of 65 stimuli) run on one thread. Measured on a shared 2-core machine:
#: one thread was 1.1-10x faster (median of 7 runs) for RDMs, comparisons, permutation tests,
#: bootstraps and noise ceilings of 20-200 stimuli; at 500 stimuli, one RDM against 100, two
#: threads were faster.
SMALL_PROBLEM_VALUES = 1 << 21


@dataclass(frozen=True)
class Origin:
    """What the caller gave: a NumPy array or a torch tensor (and on which device)."""

    is_torch: bool
    device: torch.device


def origin_of(*values: Any) -> Origin:
    """The output convention for ``values``: torch (first tensor's device) if any is a tensor."""
    for value in values:
        if isinstance(value, torch.Tensor):
            return Origin(True, value.device)
    return Origin(False, torch.device("cpu"))


def target_device(device: Any, *values: Any) -> torch.device:
    """Where to compute: the tensors' device, or ``device`` (``"auto"``: CUDA when present)."""
    origin = origin_of(*values)
    if device is None or (isinstance(device, str) and device == "auto"):
        return origin.device if origin.is_torch else resolve_device("auto")
    return resolve_device(device)


def as_tensor(
    x: Any,
    name: str,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    float_only: bool = True,
) -> torch.Tensor:
    """Convert ``x`` (array-like or tensor) to a floating tensor on ``device`` without copying.

    Integer and boolean inputs become float64; ``dtype`` forces a dtype. The result may share
    memory with ``x``: callers must not write into it.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name!r} must be a NumPy array or a torch tensor, got {type(x).__name__}."
            ) from err
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{name!r} must hold numbers, got an array of dtype {arr.dtype} "
                "(ragged lists become object arrays; pass a list of arrays instead)."
            )
        if not arr.dtype.isnative or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
        with warnings.catch_warnings():
            # read-only arrays are fine: nothing here writes into the tensor
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(arr)
    if dtype is not None:
        t = t.to(dtype)
    elif float_only and not t.is_floating_point():
        t = t.to(torch.float64)
    if device is not None and t.device != device:
        t = t.to(device)
    return t


def restore(t: torch.Tensor, origin: Origin) -> Any:
    """Return ``t`` as the caller's type: a tensor on the caller's device, or a NumPy array."""
    if origin.is_torch:
        return t.to(origin.device) if t.device != origin.device else t
    return t.detach().cpu().numpy()


# Dense linear algebra: on the CPU through NumPy/SciPy. torch's CPU BLAS/LAPACK (MKL with its own
# threads) stalls for milliseconds per call when the cores are shared, even for 5 x 55 products,
# while NumPy's OpenBLAS does not, and it was ~15 % faster for large products on the development
# machine. Other devices use torch.


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` (batched like ``numpy.matmul``)."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return a @ b


def solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a^-1 b`` for a square, invertible ``a``."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.linalg.solve(a.numpy(), b.numpy()))
    return torch.linalg.solve(a, b)


def solve_spd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a^-1 b`` for a symmetric positive definite ``a`` (Cholesky)."""
    if a.device.type == "cpu":
        from scipy.linalg import cho_factor, cho_solve

        return torch.from_numpy(cho_solve(cho_factor(a.numpy()), b.numpy()))
    return torch.cholesky_solve(b, torch.linalg.cholesky(a))


def matrix_rank(a: torch.Tensor) -> int:
    """Numerical rank of ``a``."""
    if a.device.type == "cpu":
        return int(np.linalg.matrix_rank(a.numpy()))
    return int(torch.linalg.matrix_rank(a))


def inverse(a: torch.Tensor) -> torch.Tensor:
    """The inverse of a square, invertible ``a``."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.linalg.inv(a.numpy()))
    return torch.linalg.inv(a)


# ---------------------------------------------------------------------------------------------
# threads

_controller: Any = None


def _thread_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS and OpenMP libraries (built once: it scans
    the process's libraries, which takes milliseconds)."""
    global _controller
    if _controller is None:
        import scipy.linalg  # noqa: F401 - load scipy's BLAS so that the controller sees it
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one BLAS thread, one OpenMP thread and one torch thread.

    The previous settings are restored on exit, also when the block raises. The settings are
    process-wide: other threads of the process are limited while the block runs.
    """
    before = torch.get_num_threads()
    with _thread_controller().limit(limits=1):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def threads_for(n_values: int, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """:func:`single_thread` for a CPU problem of at most :data:`SMALL_PROBLEM_VALUES` values,
    else a context that changes nothing.

    Parameters
    ----------
    n_values : int
        Size of the problem: the number of values of its inputs (e.g. ``n_rdms * n_pairs``).
    device : torch.device
        Where it runs; other devices than the CPU are left alone.
    """
    if device.type == "cpu" and n_values <= SMALL_PROBLEM_VALUES:
        return single_thread()
    return contextlib.nullcontext()
