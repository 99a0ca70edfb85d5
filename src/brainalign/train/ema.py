"""Exponential moving average of a model's weights (Polyak averaging)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """``θ̄ ← d θ̄ + (1 - d) θ`` after every optimizer step, for every floating tensor.

    Integer buffers (BatchNorm's ``num_batches_tracked``) are copied.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose state dict is averaged (the average starts at its current weights).
    decay : float in (0, 1)
        ``d``; 0.999 averages over about the last 1000 steps.

    Attributes
    ----------
    shadow : dict of str to torch.Tensor
        The averaged state dict, on the model's device.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"'decay' must lie in (0, 1), got {decay!r}.")
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average."""
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if shadow.is_floating_point():
                shadow.lerp_(value.detach().to(shadow.dtype), 1.0 - self.decay)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (a reference, not a copy)."""
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Replace the average by ``state`` (same keys as the model's state dict)."""
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise KeyError(
                f"The EMA state does not match the model; differing keys: {sorted(missing)[:5]}."
            )
        for key, value in state.items():
            self.shadow[key].copy_(value)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.shadow)

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block, ``model`` holds the averaged weights; its own come back after."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            model.load_state_dict(backup)
