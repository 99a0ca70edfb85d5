"""The linear baseline: one linear map per subject from its flattened response to the target.

``backbone = W_s · vec(x) + b_s`` reshaped to ``target_shape``; ``projected`` is ``backbone``.
It takes the fMRI family's signature (``n_voxels``); for M/EEG windows ``n_voxels`` is
``n_channels × n_times`` and ``forward`` flattens ``(n_samples, n_channels, n_times)`` inputs.
This is MindEye2's "ridge" stage trained directly on the target (closed-form ridge with
cross-validated penalties belongs to the sklearn-style decoders).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from brainalign.models.adapters import SubjectLinear
from brainalign.models.base import (
    TARGET_HINT,
    BrainEncoder,
    EncoderOutput,
    ModelConfig,
    missing_error,
    n_elements,
    resolve_counts,
    resolve_target_shape,
)
from brainalign.models.fmri import VOXELS_HINT, counts_from_recordings

__all__ = ["LinearEncoder", "LinearEncoderConfig"]


@dataclass(frozen=True)
class LinearEncoderConfig(ModelConfig):
    """Architecture of :class:`LinearEncoder`."""

    n_voxels: dict[str, int]  # flattened input size of each subject, in index order
    target_shape: tuple[int, ...]  # one target: (768,), (257, 768), (1024, 360), ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_voxels", {str(k): int(v) for k, v in self.n_voxels.items()})
        object.__setattr__(self, "target_shape", tuple(int(n) for n in self.target_shape))


class LinearEncoder(BrainEncoder):
    """Per-subject linear map from the (flattened) response to the target.

    Parameters
    ----------
    n_voxels : int | dict of str to int
        Input size of each subject (voxels, or channels × times); see :class:`FMRIEncoder`.
    target_dim, target_shape, n_subjects
        As for :class:`~brainalign.models.fmri.FMRIEncoder`.

    Notes
    -----
    ``forward(x, subject)`` takes ``(n_samples, ...)`` (trailing axes flattened) and returns an
    :class:`EncoderOutput` of shape ``(n_samples, *target_shape)`` whose ``projected`` is
    ``backbone``.
    """

    config_class = LinearEncoderConfig
    family = "fmri"
    config: LinearEncoderConfig

    def __init__(
        self,
        n_voxels: int | Mapping[str, int] | None = None,
        *,
        target_dim: int | None = None,
        target_shape: Sequence[int] | None = None,
        n_subjects: int | None = None,
    ) -> None:
        super().__init__()
        shape = resolve_target_shape(target_dim, target_shape)
        if n_voxels is None or shape is None:
            missing = {}
            if n_voxels is None:
                missing["n_voxels"] = VOXELS_HINT
            if shape is None:
                missing["target_dim or target_shape"] = TARGET_HINT
            raise missing_error(type(self).__name__, missing)
        self.config = LinearEncoderConfig(resolve_counts("n_voxels", n_voxels, n_subjects), shape)
        self.adapter = SubjectLinear(self.config.n_voxels, n_elements(shape))

    def forward(self, x: torch.Tensor, subject: Any = None) -> EncoderOutput:
        """Map ``x`` (n_samples, ...) to ``(n_samples, *target_shape)``."""
        if x.ndim < 2:
            raise ValueError(
                f"x must have shape (n_samples, n_features, ...), got {tuple(x.shape)}."
            )
        index = self.subject_index(subject, x.shape[0], x.device)
        out = self.adapter(x.flatten(1), index).unflatten(1, self.config.target_shape)
        return EncoderOutput(out, out)

    def add_subject(self, subject: str, n_voxels: int) -> nn.Linear:
        """Add a subject's linear map."""
        layer = self.adapter.add_subject(subject, n_voxels)
        voxels = {**self.config.n_voxels, subject: int(n_voxels)}
        self.config = dataclasses.replace(self.config, n_voxels=voxels)
        return layer

    @classmethod
    def from_recordings(cls, recordings: Any, **kwargs: Any) -> LinearEncoder:
        """Build the model for :class:`~brainalign.io.Recording` s of any modality.

        The input size of a subject is its voxels, or channels × times for epochs.
        """
        counts = counts_from_recordings(recordings, ("fmri", "meg", "eeg"), flatten=True)
        return cls(counts, **kwargs)
