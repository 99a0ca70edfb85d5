"""The chunked losses never hold a batch × batch matrix, forward or backward."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from brainalign.losses import clip_loss, dcl_loss, mixco_loss, siglip_loss


class _LargestTensor(TorchDispatchMode):
    """Record the largest tensor any aten operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.largest = max(self.largest, leaf.numel())
        return out


N, D, CHUNK = 300, 4, 32

LOSSES = {
    "clip": lambda x, y, chunk: clip_loss(x, y, 10.0, chunk_size=chunk),
    "clip-labels": lambda x, y, chunk: clip_loss(
        x, y, 10.0, chunk_size=chunk, labels=torch.arange(N) // 3, label_smoothing=0.1
    ),
    "siglip": lambda x, y, chunk: siglip_loss(x, y, 10.0, -5.0, chunk_size=chunk),
    "dcl": lambda x, y, chunk: dcl_loss(x, y, 10.0, chunk_size=chunk, weight_sigma=0.5),
    "mixco": lambda x, y, chunk: mixco_loss(
        x,
        y,
        0.1,
        perm=torch.roll(torch.arange(N), 1),
        betas=torch.full((N,), 0.3),
        chunk_size=chunk,
    ),
}


def _largest(loss_name: str, chunk_size: int | None) -> int:
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(N, D, generator=gen), dim=1).requires_grad_()
    y = torch.nn.functional.normalize(torch.randn(N, D, generator=gen), dim=1).requires_grad_()
    with _LargestTensor() as mode:
        value = LOSSES[loss_name](x, y, chunk_size)
        value.backward()
    return mode.largest


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_chunked_memory_is_linear_in_batch(loss_name):
    assert _largest(loss_name, None) >= N * N  # the detector sees the full matrix
    assert _largest(loss_name, CHUNK) <= max(N * D, CHUNK * CHUNK)
