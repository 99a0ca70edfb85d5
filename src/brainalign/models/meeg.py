"""M/EEG → speech or image encoder: spatial attention, subject layers, dilated convs (brainmagick).

::

    x (n_samples, n_channels, n_times)
      ──► SpatialAttention over the sensors' 2-D layout ──► n_heads virtual channels (270)
      ──► Conv1d 1×1 (270 → 270) ──► subject layer (one 270 × 270 matrix per subject)
      ──► depth conv layers (320 channels, kernel 3, dilation 2^(k mod 5); BatchNorm, GELU,
          residual when shapes match; after every 2nd layer Conv1d(320 → 640) + GLU)
      ──► Conv1d 1×1 (320 → 640), GELU, Conv1d 1×1 (640 → target_dim)
      ──► to n_target_times: average pooling (fewer), linear interpolation (more), or the
          mean over time for a vector target (n_target_times=None)

Sensor positions: 3-D head positions (``Recording.sensor_positions``) are projected to 2-D with
MNE's topomap projection and min-max scaled per montage (:func:`~.spatial.sensor_layout`).

Defaults are the published brainmagick recipe (Défossez et al. 2023; PAPERS.md). Differences,
all parameters: the subject layers start at the identity (brainmagick's config draws them
random, ``subject_init="random"``); the spatial dropout draws one centre per sample rather than
per batch and never drops every sensor of a sample; the final 1×1 transposed conv is written as
the equivalent 1×1 conv. The model has no separate projector: ``projected`` is ``backbone``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from brainalign.models.adapters import SubjectLinear
from brainalign.models.base import (
    BrainEncoder,
    EncoderOutput,
    ModelConfig,
    check_subject_id,
    missing_error,
)
from brainalign.models.spatial import SpatialAttention, sensor_layout

__all__ = ["MEEGEncoder", "MEEGEncoderConfig"]

Layout = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class MEEGEncoderConfig(ModelConfig):
    """Architecture of :class:`MEEGEncoder` (everything needed to rebuild it, no weights)."""

    n_channels: int  # input channels: the largest montage (smaller ones are padded)
    n_times: int  # samples per window (brainmagick: 360 = 3 s at 120 Hz)
    sfreq: float  # sampling frequency of the windows, Hz
    target_dim: int  # target channels (wav2vec 2.0 large: 1024) or vector size (CLIP: 768)
    n_target_times: int | None  # target samples per window; None: a vector (mean over time)
    # subject -> its 2-D sensor layout in [0, 1]² (from sensor_layout), or None when the
    # positions come with each batch; the keys are the subjects, in index order
    sensor_positions: dict[str, Layout | None]
    spatial_attention: bool = True  # False: a 1×1 conv from n_channels (one montage only)
    n_heads: int = 270  # virtual channels of the spatial attention
    n_freqs: int = 32  # Fourier frequencies per axis: 2 × 32² = 2048 features
    fourier_margin: float = 0.2  # period margin of the Fourier features
    spatial_dropout: float = 0.2  # radius of the training-time sensor dropout (0: off)
    subject_init: str = "identity"  # subject layers: "identity" or "random" (randn / √C)
    hidden: int = 320  # channels of the conv stack
    depth: int = 10  # conv layers
    kernel_size: int = 3  # odd
    dilation_period: int = 5  # dilations 1, 2, 4, 8, 16, then again
    glu_every: int = 2  # a Conv1d + GLU after every glu_every-th layer (0: none)
    glu_kernel: int = 3  # odd; brainmagick's glu_context=1
    conv_dropout: float = 0.0  # dropout after each conv's activation

    def __post_init__(self) -> None:
        layouts = {
            check_subject_id(str(s)): None
            if v is None
            else tuple((float(a), float(b)) for a, b in v)
            for s, v in self.sensor_positions.items()
        }
        object.__setattr__(self, "sensor_positions", layouts)
        if not layouts:
            raise ValueError("The model needs at least one subject.")
        positive = ("n_channels", "n_times", "target_dim", "n_heads", "n_freqs", "hidden", "depth")
        for name in (*positive, "dilation_period"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"{name!r} must be a positive integer, got {getattr(self, name)!r}."
                )
        if self.n_target_times is not None and self.n_target_times < 1:
            raise ValueError(f"'n_target_times' must be positive, got {self.n_target_times!r}.")
        if not 0 <= self.conv_dropout < 1 or self.spatial_dropout < 0:
            raise ValueError(
                f"'conv_dropout' must lie in [0, 1) and 'spatial_dropout' (a radius) be >= 0, got "
                f"{self.conv_dropout!r} and {self.spatial_dropout!r}."
            )
        if self.sfreq <= 0:
            raise ValueError(f"'sfreq' must be positive (Hz), got {self.sfreq!r}.")
        for name in ("kernel_size", "glu_kernel"):
            if getattr(self, name) % 2 != 1:
                raise ValueError(
                    f"{name!r} must be odd (same-length padding), got {getattr(self, name)}."
                )
        if self.subject_init not in ("identity", "random"):
            raise ValueError(
                f"subject_init must be 'identity' or 'random', got {self.subject_init!r}."
            )
        too_long = {
            s: len(v) for s, v in layouts.items() if v is not None and len(v) > self.n_channels
        }
        if too_long:
            raise ValueError(
                f"Sensor layouts {too_long} have more channels than n_channels={self.n_channels}."
            )


class ConvStack(nn.Module):
    """brainmagick's dilated residual convolutions with GLUs (see the module docstring)."""

    def __init__(self, c: MEEGEncoderConfig) -> None:
        super().__init__()
        self.layers, self.glus = nn.ModuleList(), nn.ModuleList()
        chin = c.n_heads
        for k in range(c.depth):
            d = 2 ** (k % c.dilation_period)
            conv = nn.Conv1d(
                chin, c.hidden, c.kernel_size, padding=c.kernel_size // 2 * d, dilation=d
            )
            layer = [conv, nn.BatchNorm1d(c.hidden), nn.GELU()]
            layer += [nn.Dropout(c.conv_dropout)] if c.conv_dropout else []
            self.layers.append(nn.Sequential(*layer))
            if c.glu_every and (k + 1) % c.glu_every == 0:
                glu_conv = nn.Conv1d(
                    c.hidden, 2 * c.hidden, c.glu_kernel, padding=c.glu_kernel // 2
                )
                self.glus.append(nn.Sequential(glu_conv, nn.GLU(dim=1)))
            else:
                self.glus.append(nn.Identity())
            chin = c.hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, glu in zip(self.layers, self.glus):
            y = layer(x)
            x = glu(y + x if y.shape == x.shape else y)
        return x


class MEEGEncoder(BrainEncoder):
    """Spatial attention, subject layers and a dilated conv stack (brainmagick).

    Parameters
    ----------
    n_channels : int | None
        Input channels (the largest montage); inferred from ``sensor_positions``.
    n_times : int | None
        Samples per window; or give ``sfreq`` and ``window_duration``.
    sfreq : float | None
        Sampling frequency in Hz; or give ``n_times`` and ``window_duration``.
    target_dim : int
        Target channels (wav2vec 2.0 large: 1024) or vector size (CLIP: 768).
    n_target_times : int | None
        Target samples per window; ``None`` (and no ``target_sfreq``): one vector per window.
    n_subjects : int | None
        Subjects named ``"0"``, ``"1"``, … when ``sensor_positions`` is not a dict (default 1).
    sensor_positions : ndarray (n_channels, 3 or 2) | dict of str to ndarray or None | None
        One montage for every subject, or one per subject id (``None``: that subject's
        positions come with each batch). 3-D head positions are projected by
        :func:`~brainalign.models.spatial.sensor_layout`; NaN rows are absent sensors.
    window_duration : float | None
        Window length in seconds, to infer ``n_times`` or ``sfreq``.
    target_sfreq : float | None
        Sampling rate of the target in Hz, to infer ``n_target_times``.
    **options
        The other fields of :class:`MEEGEncoderConfig` (``n_heads``, ``hidden``, ``depth``,
        ``spatial_dropout``, …).

    Notes
    -----
    ``forward(x, subject, positions=None)`` takes ``x`` of shape ``(n_samples, n_channels,
    n_times)`` (smaller montages padded at the end to the largest of the batch) and returns an
    :class:`EncoderOutput` of shape ``(n_samples, target_dim, n_target_times)`` or
    ``(n_samples, target_dim)``. ``positions`` ``(n_samples or 1, n_channels, 2)``, a layout in
    ``[0, 1]²`` with NaN for absent sensors, overrides the subjects' stored layouts.
    """

    config_class = MEEGEncoderConfig
    family = "meeg"
    config: MEEGEncoderConfig
    layouts: torch.Tensor  # (n_subjects, n_channels, 2) stored layouts, NaN where absent

    def __init__(
        self,
        n_channels: int | None = None,
        n_times: int | None = None,
        sfreq: float | None = None,
        *,
        target_dim: int | None = None,
        n_target_times: int | None = None,
        n_subjects: int | None = None,
        sensor_positions: Any = None,
        window_duration: float | None = None,
        target_sfreq: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if isinstance(sensor_positions, Mapping):
            if n_subjects is not None and n_subjects != len(sensor_positions):
                raise ValueError(
                    f"n_subjects={n_subjects} but sensor_positions has {len(sensor_positions)} "
                    "subjects; drop n_subjects (it is inferred from the dict)."
                )
            layouts = {s: _layout(v, s) for s, v in sensor_positions.items()}
        else:
            layout = _layout(sensor_positions, "every subject")
            layouts = {str(i): layout for i in range(1 if n_subjects is None else n_subjects)}
        known = [len(v) for v in layouts.values() if v is not None]
        n_channels = n_channels if n_channels is not None or not known else max(known)
        if window_duration is not None:
            if n_times is None and sfreq is not None:
                n_times = round(window_duration * sfreq)
            elif sfreq is None and n_times is not None:
                sfreq = n_times / window_duration
        if n_target_times is None and target_sfreq is not None and n_times and sfreq:
            n_target_times = round(n_times * target_sfreq / sfreq)
        missing = {}
        if n_channels is None:
            missing["n_channels"] = (
                "pass n_channels, or sensor_positions (n_channels, 3) from Recording."
                "sensor_positions, or build with MEEGEncoder.from_recordings(recordings, ...)"
            )
        if n_times is None:
            missing["n_times"] = "pass n_times, or sfreq and window_duration (seconds)"
        if sfreq is None:
            missing["sfreq"] = "pass sfreq (Hz), or n_times and window_duration (seconds)"
        if target_dim is None:
            missing["target_dim"] = (
                "pass target_dim=1024 for wav2vec 2.0 large activations (with n_target_times), "
                "or 768 for a CLIP vector"
            )
        if missing:
            raise missing_error("MEEGEncoder", missing)
        c = self.config = MEEGEncoderConfig(
            n_channels=int(n_channels),  # type: ignore[arg-type]
            n_times=int(n_times),  # type: ignore[arg-type]
            sfreq=float(sfreq),  # type: ignore[arg-type]
            target_dim=int(target_dim),  # type: ignore[arg-type]
            n_target_times=n_target_times,
            sensor_positions=layouts,
            **options,
        )
        n_in = c.n_heads
        if c.spatial_attention:
            self.attention = SpatialAttention(
                c.n_heads, c.n_freqs, c.fourier_margin, c.spatial_dropout
            )
        else:
            n_in = c.n_channels
        self.register_buffer("layouts", torch.empty(0, c.n_channels, 2), persistent=False)
        self._n_channels: list[int] = []
        self.initial = nn.Conv1d(n_in, c.n_heads, 1)
        init = "identity" if c.subject_init == "identity" else "default"
        self.adapter = SubjectLinear({}, c.n_heads, bias=False, init=init)
        for subject, layout in c.sensor_positions.items():
            self._add_subject(subject, layout)
        self.encoder = ConvStack(c)
        self.head = nn.Sequential(
            nn.Conv1d(c.hidden, 2 * c.hidden, 1),
            nn.GELU(),
            nn.Conv1d(2 * c.hidden, c.target_dim, 1),
        )

    def _add_subject(self, subject: str, layout: Layout | None) -> None:
        c = self.config
        layer = self.adapter.add_subject(subject, c.n_heads)
        if c.subject_init == "random":
            with torch.no_grad():
                layer.weight.copy_(torch.randn_like(layer.weight) / c.n_heads**0.5)
        row = torch.full((1, c.n_channels, 2), float("nan"), dtype=self.layouts.dtype)
        if layout is not None:
            row[0, : len(layout)] = torch.tensor(layout, dtype=row.dtype)
        self.layouts = torch.cat([self.layouts, row.to(self.layouts.device)])
        self._n_channels.append(c.n_channels if layout is None else len(layout))

    def add_subject(self, subject: str, sensor_positions: Any = None) -> nn.Linear:
        """Add a subject: its subject layer (identity) and its montage (3-D or 2-D positions).

        Train it alone first with ``freeze_except_adapter``. ``None``: its positions come with
        each batch.
        """
        layout = _layout(sensor_positions, subject)
        layouts = {**self.config.sensor_positions, subject: layout}
        self.config = dataclasses.replace(self.config, sensor_positions=layouts)
        self._add_subject(subject, self.config.sensor_positions[subject])
        return self.adapter.layer(subject)

    def forward(self, x: torch.Tensor, subject: Any = None, positions: Any = None) -> EncoderOutput:
        """Encode ``x`` (n_samples, n_channels, n_times); see the class notes."""
        c = self.config
        if x.ndim != 3 or x.shape[2] != c.n_times:
            hint = (
                " (it looks transposed: use x.transpose(1, 2))"
                if x.ndim == 3 and x.shape[1] == c.n_times
                else ""
            )
            raise ValueError(
                f"x must have shape (n_samples, n_channels, {c.n_times}) (n_times={c.n_times}), "
                f"got {tuple(x.shape)}{hint}."
            )
        index = self.subject_index(subject, x.shape[0], x.device)
        if c.spatial_attention:
            x = self.attention(x, *self._batch_layouts(x, index, positions))
        elif x.shape[1] != c.n_channels:
            raise ValueError(f"x has {x.shape[1]} channels; this model takes {c.n_channels}.")
        x = self.initial(x)
        x = self.adapter(x.transpose(1, 2), index).transpose(1, 2)
        out = self.head(self.encoder(x))  # (n_samples, target_dim, n_times)
        if c.n_target_times is None:
            out = out.mean(dim=2)
        elif c.n_target_times < c.n_times:
            out = F.adaptive_avg_pool1d(out, c.n_target_times)
        elif c.n_target_times > c.n_times:
            out = F.interpolate(out, size=c.n_target_times, mode="linear", align_corners=False)
        return EncoderOutput(out, out)

    def _batch_layouts(self, x: torch.Tensor, index: torch.Tensor, positions: Any) -> tuple:
        n_samples, n_ch = x.shape[:2]
        if positions is not None:
            pos = torch.as_tensor(positions, dtype=x.dtype, device=x.device)
            if pos.ndim == 2:
                pos = pos[None]
            if pos.ndim != 3 or pos.shape[1:] != (n_ch, 2) or pos.shape[0] not in (1, n_samples):
                raise ValueError(
                    f"'positions' must have shape ({n_samples} or 1, {n_ch}, 2) (a layout in "
                    f"[0, 1]², see sensor_layout), got {tuple(pos.shape)}."
                )
            # Fourier features once per distinct layout of the batch, not once per row
            flat = torch.nan_to_num(pos.flatten(1), nan=float("inf"))
            layouts, rows = torch.unique(flat, dim=0, return_inverse=True)
            layouts = layouts.unflatten(1, (n_ch, 2))
            layouts = layouts.masked_fill(~torch.isfinite(layouts), float("nan"))
            return layouts, rows.expand(n_samples) if len(pos) == 1 else rows
        present, inverse = torch.unique(index, return_inverse=True)
        present_list = present.tolist()
        lacking = [
            self.subjects[k]
            for k in present_list
            if self.config.sensor_positions[self.subjects[k]] is None
        ]
        if lacking:
            raise ValueError(
                f"Subjects {lacking} have no stored sensor positions; pass positions=... to "
                "forward, or add them with sensor_positions when building the model."
            )
        width = max(self._n_channels[k] for k in present_list)
        if n_ch != width:
            found = {self.subjects[k]: self._n_channels[k] for k in present_list}
            raise ValueError(
                f"x has {n_ch} channels but the batch's subjects have {found}; it must have "
                f"{width} (the largest montage, smaller ones padded at the end)."
            )
        return self.layouts[present, :n_ch].to(x.dtype), inverse

    @classmethod
    def from_recordings(cls, recordings: Any, **kwargs: Any) -> MEEGEncoder:
        """Build the model for M/EEG :class:`~brainalign.io.Recording` s.

        Infers the sensor positions of each subject, ``n_channels``, ``sfreq`` and, for
        recordings of kind ``"epochs"``, ``n_times`` (otherwise pass ``n_times`` or
        ``window_duration``). ``kwargs`` are the other constructor arguments (``target_dim``).
        """
        from brainalign.io.recording import Recording

        recs = [recordings] if isinstance(recordings, Recording) else list(recordings)
        if not recs:
            raise ValueError("'recordings' is empty; pass at least one Recording.")
        positions: dict[str, np.ndarray] = {}
        found: dict[str, set] = {"sfreq": set(), "n_times": set()}
        for rec in recs:
            if not isinstance(rec, Recording) or rec.modality not in ("meg", "eeg"):
                raise ValueError(
                    f"MEEGEncoder.from_recordings takes MEG/EEG Recordings, got {rec!r}."
                )
            if rec.sensor_positions is None and kwargs.get("spatial_attention", True):
                raise ValueError(
                    f"The recording of sub-{rec.subject} has no sensor positions; set a montage "
                    "when reading it, or pass spatial_attention=False (one montage only)."
                )
            pos = (
                rec.sensor_positions
                if rec.sensor_positions is not None
                else np.zeros((rec.n_features, 3))
            )
            prev = positions.setdefault(rec.subject, pos)
            if prev.shape != pos.shape or not np.allclose(prev, pos, equal_nan=True):
                raise ValueError(
                    f"Subject {rec.subject!r} has recordings with different montages; select the "
                    "same channels in each (Recording.select(features=...))."
                )
            if rec.sfreq is not None:
                found["sfreq"].add(float(rec.sfreq))
            if rec.kind == "epochs":
                found["n_times"].add(int(rec.data.shape[2]))
        for name, values in found.items():
            if len(values) > 1:
                raise ValueError(
                    f"The recordings have different {name} {sorted(values)}; resample or crop them."
                )
            if values and name not in kwargs:
                kwargs[name] = values.pop()
        if not kwargs.get("spatial_attention", True):
            counts = {len(p) for p in positions.values()}
            if len(counts) > 1:
                raise ValueError(
                    f"Without spatial attention every montage needs as many channels; got {counts}."
                )
            kwargs.setdefault("n_channels", counts.pop())
            positions = {s: None for s in positions}  # type: ignore[misc]
        return cls(sensor_positions=positions, **kwargs)


def _layout(positions: Any, subject: str) -> Layout | None:
    if positions is None:
        return None
    arr = np.asarray(positions, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(
            f"Sensor positions of {subject} must have shape (n_channels, 3) or (n_channels, 2), "
            f"got {arr.shape}."
        )
    return tuple((float(a), float(b)) for a, b in sensor_layout(arr))
