"""Seeds and random generators."""

from __future__ import annotations

import random

import numpy as np

__all__ = ["check_random_state", "seed_everything"]


def check_random_state(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from a seed, a generator or ``None``."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, int | np.integer):
        return np.random.default_rng(seed)
    raise TypeError(f"'seed' must be an int, a numpy Generator or None, got {type(seed).__name__}.")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when imported) torch on every device."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - legacy global state used by third-party code
    import sys

    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
