"""Helpers of the model tests: tiny models and seeded batches, one recipe per registry family.

Subjects have different sizes (7 and 9 voxels/channels) so that a routing mistake shows, and
the padding of the narrower subject is NaN so that reading it shows too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from brainalign.models import MODELS, build_model

#: the two subjects of every tiny model, with their input sizes
SIZES = {"01": 7, "02": 9}
N_TIMES, SFREQ, N_TARGET_TIMES = 12, 40.0, 6

# small architecture sizes; each model takes the ones its signature has
SMALL = {
    "hidden": 16,
    "n_blocks": 2,
    "projector_hidden": 12,
    "n_heads": 8,
    "n_freqs": 3,
    "depth": 4,
    "dilation_period": 2,
}


def positions_3d(n: int, seed: int = 0) -> np.ndarray:
    """``n`` points on the upper half of a 9 cm sphere (head coordinates, metres)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    v[:, 2] = np.abs(v[:, 2]) + 0.2
    return 0.09 * v / np.linalg.norm(v, axis=1, keepdims=True)


def tiny_kwargs(name: str, sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """Constructor arguments of a tiny version of a registered model."""
    from brainalign.models.registry import _parameters

    sizes = SIZES if sizes is None else sizes
    spec = MODELS[name]
    if spec.family == "fmri":
        kwargs: dict[str, Any] = {"n_voxels": dict(sizes), "target_shape": (3, 5)}
    else:
        kwargs = {
            "n_times": N_TIMES,
            "sfreq": SFREQ,
            "target_dim": 5,
            "n_target_times": N_TARGET_TIMES,
            "sensor_positions": {s: positions_3d(n, i) for i, (s, n) in enumerate(sizes.items())},
        }
    allowed = _parameters(spec.cls)
    kwargs.update({k: v for k, v in SMALL.items() if k in allowed})
    return kwargs


def tiny_model(name: str, device: str = "cpu", seed: int = 0) -> torch.nn.Module:
    """A seeded tiny model with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = build_model(name, **tiny_kwargs(name)).to(device)
    gen = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            module.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=gen))
            module.bias.data.copy_(0.1 * torch.randn(n, generator=gen))
    return model


def sample_shape(family: str, n_features: int) -> tuple[int, ...]:
    return (n_features,) if family == "fmri" else (n_features, N_TIMES)


def make_batch(
    name: str, subjects: list[str], *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A batch padded with NaN to its widest subject, and each row unpadded."""
    family = MODELS[name].family
    gen = torch.Generator().manual_seed(seed)
    rows = [
        torch.randn(sample_shape(family, SIZES[s]), generator=gen, dtype=dtype) for s in subjects
    ]
    width = max(SIZES[s] for s in subjects)
    batch = torch.full((len(subjects), *sample_shape(family, width)), float("nan"), dtype=dtype)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = row
    return batch, rows


def target_shape(name: str) -> tuple[int, ...]:
    return (3, 5) if MODELS[name].family == "fmri" else (5, N_TARGET_TIMES)
