"""fMRI → CLIP encoder: per-subject adapters, a residual MLP, a head and a projector (MindEye).

::

    voxels of subject s ──Linear(n_voxels_s → hidden)──► [LN, GELU, Dropout]  (the adapter)
        ──► n_blocks residual blocks at ``hidden``
        ──► Linear(hidden → prod(target_shape)) ──► backbone  (n_samples, *target_shape)
        ──► per-token projector (LN, GELU, Linear) × 3 ──► projected (same shape)

Two published recipes (Scotti et al. 2023, 2024), selected by ``block`` and the stem options:

* MindEye1 (``build_model("mindeye1")``): hidden 4096; stem LN, GELU, Dropout(0.5); blocks
  ``x + Dropout(GELU(LN(Linear(x))))`` ("mlp"); projector 768 → 2048 → 2048 → 768.
* MindEye2 (``build_model("mindeye2")``, the defaults here): per-subject "ridge" adapter to
  hidden 1024 (the authors' code default; the paper's shared space is 4096), no stem; MLP-Mixer
  style blocks ``x + Linear(Dropout(GELU(Linear(LN(x)))))`` ("mixer"); projector as wide as a
  token. MindEye2's second mixer (across its ``seq_len`` axis) is omitted: with one repetition
  per sample (``seq_len=1``) it adds a learned constant and nothing else.

Dropout 0.15 in the blocks in both. MindEye2's low-level (blurry image) branch is not here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
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

__all__ = ["VOXELS_HINT", "FMRIEncoder", "FMRIEncoderConfig", "counts_from_recordings"]

BLOCKS = ("mixer", "mlp")
VOXELS_HINT = (
    "pass n_voxels=15724 (one subject) or {'01': 15724, '02': 14278}, the number of columns of "
    "each subject's betas; or build the model with .from_recordings(recordings, ...)"
)


@dataclass(frozen=True)
class FMRIEncoderConfig(ModelConfig):
    """Architecture of :class:`FMRIEncoder` (everything needed to rebuild it, no weights)."""

    n_voxels: dict[str, int]  # voxels of each subject, in index order: {"01": 15724, ...}
    target_shape: tuple[int, ...]  # one target: (768,) pooled CLIP, (257, 768) CLIP tokens
    hidden: int = 1024  # shared space width (MindEye1 4096, MindEye2 code 1024 / paper 4096)
    n_blocks: int = 4  # residual blocks (both MindEyes: 4)
    dropout: float = 0.15  # dropout inside the blocks (both MindEyes: 0.15)
    block: str = "mixer"  # "mixer": pre-LN MLP (MindEye2); "mlp": post-LN (MindEye1)
    input_norm: bool = False  # LN + GELU after the adapter (MindEye1: True)
    input_dropout: float = 0.0  # dropout after the adapter (MindEye1: 0.5)
    projector_hidden: int | None = None  # projector width; None: the token size (MindEye2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_voxels", {str(k): int(v) for k, v in self.n_voxels.items()})
        object.__setattr__(self, "target_shape", tuple(int(n) for n in self.target_shape))
        if self.block not in BLOCKS:
            raise ValueError(
                f"Invalid value for the 'block' parameter. Allowed values are 'mixer', 'mlp', "
                f"but got {self.block!r} instead."
            )
        for name in ("hidden", "projector_hidden"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name!r} must be a positive integer, got {value!r}.")
        if self.n_blocks < 0:
            raise ValueError(f"'n_blocks' must be >= 0, got {self.n_blocks!r}.")
        for name in ("dropout", "input_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name!r} must lie in [0, 1), got {getattr(self, name)!r}.")


class ResidualBlock(nn.Module):
    """``x + f(x)`` with ``f`` MindEye2's pre-LN MLP ("mixer") or MindEye1's post-LN ("mlp")."""

    def __init__(self, width: int, dropout: float, kind: str) -> None:
        super().__init__()
        if kind == "mixer":  # LN, Linear, GELU, Dropout, Linear
            layers = [nn.LayerNorm(width), nn.Linear(width, width), nn.GELU()]
            layers += [nn.Dropout(dropout), nn.Linear(width, width)]
        else:  # Linear, LN, GELU, Dropout
            layers = [nn.Linear(width, width), nn.LayerNorm(width), nn.GELU(), nn.Dropout(dropout)]
        self.f = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


def projector(dim: int, hidden: int) -> nn.Sequential:
    """MindEye's contrastive projector on the last axis: (LN, GELU, Linear) three times."""
    return nn.Sequential(
        nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, hidden),
        nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, hidden),
        nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, dim),
    )  # fmt: skip


class FMRIEncoder(BrainEncoder):
    """Per-subject linear adapters, a shared residual MLP, a head and a projector (MindEye).

    Parameters
    ----------
    n_voxels : int | dict of str to int
        Voxels of each subject (``{"01": 15724, "02": 14278}``); an int gives ``n_subjects``
        subjects (default 1) named ``"0"``, ``"1"``, … with that many voxels each.
    target_dim : int | None
        Size of a pooled target vector (CLIP ViT-L/14: 768). Or give ``target_shape``.
    target_shape : tuple of int | None
        Shape of one target, e.g. ``(257, 768)`` CLIP ViT-L/14 tokens, ``(256, 1664)``
        OpenCLIP ViT-bigG/14 tokens.
    n_subjects : int | None
        Number of subjects when ``n_voxels`` is an int.
    hidden, n_blocks, dropout, block, input_norm, input_dropout, projector_hidden
        See :class:`FMRIEncoderConfig` (defaults: MindEye2).

    Notes
    -----
    ``forward(x, subject)`` takes ``x`` of shape ``(n_samples, n_voxels)`` and ``subject`` (one
    id for the batch, or one per row; see :meth:`BrainEncoder.subject_index`) and returns an
    :class:`EncoderOutput` whose two tensors have shape ``(n_samples, *target_shape)``. In a
    batch mixing subjects, rows are padded at the end to the largest voxel count among them.
    """

    config_class = FMRIEncoderConfig
    family = "fmri"
    config: FMRIEncoderConfig

    def __init__(
        self,
        n_voxels: int | Mapping[str, int] | None = None,
        *,
        target_dim: int | None = None,
        target_shape: Sequence[int] | None = None,
        n_subjects: int | None = None,
        hidden: int = 1024,
        n_blocks: int = 4,
        dropout: float = 0.15,
        block: str = "mixer",
        input_norm: bool = False,
        input_dropout: float = 0.0,
        projector_hidden: int | None = None,
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
        c = self.config = FMRIEncoderConfig(
            n_voxels=resolve_counts("n_voxels", n_voxels, n_subjects),
            target_shape=shape,
            hidden=hidden,
            n_blocks=n_blocks,
            dropout=dropout,
            block=block,
            input_norm=input_norm,
            input_dropout=input_dropout,
            projector_hidden=projector_hidden,
        )
        stem: list[nn.Module] = [nn.LayerNorm(c.hidden), nn.GELU()] if c.input_norm else []
        if c.input_dropout:
            stem.append(nn.Dropout(c.input_dropout))
        self.adapter = SubjectLinear(c.n_voxels, c.hidden)
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.Sequential(
            *[ResidualBlock(c.hidden, c.dropout, c.block) for _ in range(c.n_blocks)]
        )
        self.head = nn.Linear(c.hidden, n_elements(c.target_shape))
        token = c.target_shape[-1]
        self.projector = projector(token, c.projector_hidden or token)

    def forward(self, x: torch.Tensor, subject: Any = None) -> EncoderOutput:
        """Encode ``x`` (n_samples, n_voxels); see the class notes."""
        if x.ndim != 2:
            raise ValueError(
                f"x must have shape (n_samples, n_voxels), got {tuple(x.shape)}; flatten the "
                "voxels of each sample (Recording.data of kind 'trials')."
            )
        index = self.subject_index(subject, x.shape[0], x.device)
        h = self.blocks(self.stem(self.adapter(x, index)))
        backbone = self.head(h).unflatten(1, self.config.target_shape)
        return EncoderOutput(backbone, self.projector(backbone))

    def add_subject(self, subject: str, n_voxels: int) -> nn.Linear:
        """Add a subject's adapter (trained alone first with ``freeze_except_adapter``)."""
        layer = self.adapter.add_subject(subject, n_voxels)
        voxels = {**self.config.n_voxels, subject: int(n_voxels)}
        self.config = dataclasses.replace(self.config, n_voxels=voxels)
        return layer

    @classmethod
    def from_recordings(cls, recordings: Any, **kwargs: Any) -> FMRIEncoder:
        """Build the model for fMRI :class:`~brainalign.io.Recording` s (voxels per subject).

        Parameters
        ----------
        recordings : Recording | iterable of Recording
            Of modality ``"fmri"``; several recordings of one subject must have as many voxels.
        **kwargs
            The other constructor arguments (``target_dim`` or ``target_shape`` at least).
        """
        return cls(counts_from_recordings(recordings, ("fmri",), flatten=False), **kwargs)


def counts_from_recordings(
    recordings: Any, modalities: Iterable[str], *, flatten: bool
) -> dict[str, int]:
    """Features per subject of some Recordings (``flatten``: channels × times of epochs)."""
    from brainalign.io.recording import Recording

    recs = [recordings] if isinstance(recordings, Recording) else list(recordings)
    if not recs:
        raise ValueError("'recordings' is empty; pass at least one Recording.")
    counts: dict[str, int] = {}
    for rec in recs:
        if not isinstance(rec, Recording):
            raise TypeError(f"'recordings' must hold Recording objects, got {type(rec).__name__}.")
        if rec.modality not in modalities:
            raise ValueError(
                f"Recording of sub-{rec.subject} has modality {rec.modality!r}; this model "
                f"takes {list(modalities)}."
            )
        shape = rec.data.shape
        n = n_elements(shape[1:]) if flatten and rec.kind != "timeseries" else shape[1]
        if counts.setdefault(rec.subject, n) != n:
            raise ValueError(
                f"Subject {rec.subject!r} has recordings with {counts[rec.subject]} and {n} "
                "features; give every recording of a subject the same voxels/channels "
                "(Recording.select(features=...))."
            )
    return counts
