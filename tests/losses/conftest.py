"""Fixtures for the loss tests: seeded, L2-normalised float64 embedding pairs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

TOL = {"atol": 1e-10, "rtol": 1e-10}


@pytest.fixture
def make_pair() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """Factory of a seeded pair ``(x, y)`` of unit-norm rows, shape ``(n, d)``, requiring grad."""

    def make(
        n: int,
        d: int = 9,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        x = torch.nn.functional.normalize(torch.randn(n, d, generator=gen, dtype=dtype), dim=1)
        y = torch.nn.functional.normalize(torch.randn(n, d, generator=gen, dtype=dtype), dim=1)
        return x.to(device).requires_grad_(), y.to(device).requires_grad_()

    return make


@pytest.fixture
def assert_same() -> Callable[..., None]:
    """Compare a loss and its gradients with a reference (float64, 1e-10)."""

    def check(
        value: torch.Tensor,
        reference: torch.Tensor,
        inputs: tuple[torch.Tensor, ...],
    ) -> None:
        torch.testing.assert_close(value, reference, **TOL)
        grads = torch.autograd.grad(value, inputs, retain_graph=True)
        ref_grads = torch.autograd.grad(reference, inputs, retain_graph=True)
        for grad, ref_grad in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(grad, ref_grad, **TOL)

    return check
