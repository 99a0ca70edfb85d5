"""MindEye's loss schedule: BiMixCo for the first part of training, then SoftCLIP.

MindEye (Scotti et al. 2023, and MindEye2) trains with BiMixCo (:func:`~brainalign.losses.mixco`
on the voxels, :func:`~brainalign.losses.mixco_loss` at temperature 0.006) for the first
``int(mix_fraction · n_epochs)`` epochs, then SoftCLIP (:func:`~brainalign.losses.soft_clip_loss`)
with a temperature rising from 0.004 to 0.0075 on a half cosine over the remaining epochs::

    τ_k = end + (start - end) / 2 · (1 + cos(π k / (n_soft - 1))),   k = 0 … n_soft - 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch

from brainalign.losses.bimixco import mixco_loss
from brainalign.losses.output import LossOutput
from brainalign.losses.softclip import soft_clip_loss

__all__ = ["LossSchedule", "LossStage", "cosine_anneal", "mindeye_loss_schedule"]


def cosine_anneal(start: float, end: float, n_steps: int) -> np.ndarray:
    """Half-cosine from ``start`` (step 0) to ``end`` (last step), MindEye's ``cosine_anneal``.

    Parameters
    ----------
    start, end : float
        First and last values.
    n_steps : int
        Number of values; with 1 the single value is ``start`` (MindEye divides by zero there).

    Returns
    -------
    values : numpy.ndarray, shape (n_steps,)
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"'n_steps' must be a positive int, got {n_steps!r}.")
    if n_steps == 1:
        return np.array([float(start)])
    k = np.arange(n_steps)
    return end + (start - end) / 2 * (1 + np.cos(np.pi * k / (n_steps - 1)))


@dataclass(frozen=True)
class LossStage:
    """The loss to use at one epoch.

    Attributes
    ----------
    loss : {"bimixco", "softclip"}
        Which loss.
    temperature : float
        Its temperature ``τ``.
    mix_inputs : bool
        Whether to mix the brain inputs with :func:`~brainalign.losses.mixco` this epoch.
    """

    loss: str
    temperature: float
    mix_inputs: bool

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        perm: torch.Tensor | None = None,
        betas: torch.Tensor | None = None,
        distributed: bool = False,
        return_output: bool = False,
    ) -> torch.Tensor | LossOutput:
        """Compute this stage's loss; ``perm`` and ``betas`` come from ``mixco`` (BiMixCo)."""
        if self.loss == "bimixco":
            return mixco_loss(
                x,
                y,
                self.temperature,
                perm=perm,
                betas=betas,
                distributed=distributed,
                return_output=return_output,
            )
        if perm is not None or betas is not None:
            raise ValueError(
                "The SoftCLIP stage does not mix inputs; pass perm=None and betas=None (check "
                "stage.mix_inputs before calling mixco)."
            )
        return soft_clip_loss(
            x, y, self.temperature, distributed=distributed, return_output=return_output
        )


def _check_positive_number(value: Any, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not (math.isfinite(float(value)) and float(value) > 0)
    ):
        raise ValueError(f"{name!r} must be a positive number, got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class LossSchedule:
    """BiMixCo → SoftCLIP over ``n_epochs`` (MindEye's defaults).

    Parameters
    ----------
    n_epochs : int
        Total number of epochs.
    mix_fraction : float in [0, 1]
        Fraction of the epochs trained with BiMixCo; the first ``int(mix_fraction · n_epochs)``
        (MindEye's ``mixup_pct``, 0.33 in its configs).
    mix_temperature : float
        BiMixCo temperature (0.006).
    soft_temperature_start, soft_temperature_end : float
        SoftCLIP temperatures at its first and last epoch (0.004 and 0.0075).
    """

    n_epochs: int
    mix_fraction: float = 1 / 3
    mix_temperature: float = 0.006
    soft_temperature_start: float = 0.004
    soft_temperature_end: float = 0.0075

    def __post_init__(self) -> None:
        if (
            isinstance(self.n_epochs, bool)
            or not isinstance(self.n_epochs, int)
            or self.n_epochs < 1
        ):
            raise ValueError(f"'n_epochs' must be a positive int, got {self.n_epochs!r}.")
        fraction = self.mix_fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, Real)
            or not 0 <= float(fraction) <= 1
        ):
            raise ValueError(f"'mix_fraction' must lie in [0, 1], got {fraction!r}.")
        for name in ("mix_temperature", "soft_temperature_start", "soft_temperature_end"):
            _check_positive_number(getattr(self, name), name)

    @property
    def n_mix_epochs(self) -> int:
        """Number of BiMixCo epochs, ``int(mix_fraction · n_epochs)``."""
        return int(self.mix_fraction * self.n_epochs)

    def soft_temperatures(self) -> np.ndarray:
        """SoftCLIP temperature of each SoftCLIP epoch, shape ``(n_epochs - n_mix_epochs,)``."""
        n_soft = self.n_epochs - self.n_mix_epochs
        if n_soft == 0:
            return np.zeros(0)
        return cosine_anneal(self.soft_temperature_start, self.soft_temperature_end, n_soft)

    def at(self, epoch: int) -> LossStage:
        """The :class:`LossStage` of ``epoch`` (0-based)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer):
            raise TypeError(f"'epoch' must be an int, got {epoch!r}.")
        if not 0 <= epoch < self.n_epochs:
            raise ValueError(f"'epoch' must lie in [0, {self.n_epochs - 1}], got {epoch!r}.")
        if epoch < self.n_mix_epochs:
            return LossStage("bimixco", float(self.mix_temperature), True)
        temperature = float(self.soft_temperatures()[epoch - self.n_mix_epochs])
        return LossStage("softclip", temperature, False)

    def __call__(self, epoch: int) -> LossStage:
        """Same as :meth:`at`."""
        return self.at(epoch)


def mindeye_loss_schedule(epoch: int, n_epochs: int, mix_fraction: float = 1 / 3) -> LossStage:
    """The MindEye loss stage of ``epoch``: ``LossSchedule(n_epochs, mix_fraction).at(epoch)``.

    Parameters
    ----------
    epoch : int
        0-based epoch.
    n_epochs : int
        Total number of epochs.
    mix_fraction : float
        Fraction of the epochs trained with BiMixCo.

    Returns
    -------
    stage : LossStage

    Examples
    --------
    >>> from brainalign.losses import mindeye_loss_schedule
    >>> mindeye_loss_schedule(0, 240)
    LossStage(loss='bimixco', temperature=0.006, mix_inputs=True)
    >>> mindeye_loss_schedule(80, 240)
    LossStage(loss='softclip', temperature=0.004, mix_inputs=False)
    """
    return LossSchedule(n_epochs, mix_fraction).at(epoch)
