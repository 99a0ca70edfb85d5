"""Spatial attention over sensor positions (Défossez et al. 2023), shared across montages.

Each sensor's 2-D layout position ``(x, y)`` in ``[0, 1]²`` becomes Fourier features
(:func:`fourier_features`); each of ``n_heads`` learned vectors scores every sensor, a softmax
over the sensors turns the scores into weights, and each head outputs the weighted sum of the
sensors: a fixed number of "virtual channels" whatever the montage. Absent sensors (NaN
positions, padding) get no weight and their values are never read. In training, the sensors
within ``dropout_radius`` of a random point of the layout are dropped as well (spatial dropout;
one point per sample).

:func:`sensor_layout` turns 3-D head positions (``Recording.sensor_positions``) into that 2-D
layout, with the azimuthal projection of MNE's topomaps.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["SpatialAttention", "fourier_features", "sensor_layout"]


def sensor_layout(
    positions: np.ndarray,
    *,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: bool = True,
) -> np.ndarray:
    """Project sensor positions to a 2-D layout, min-max scaled to ``[0, 1]`` per axis.

    3-D positions are projected as MNE's ``_find_topomap_coords`` does (azimuthal equidistant
    projection about ``origin``): with ``r``, ``θ`` (polar angle from +z) and ``φ`` (azimuth)
    the spherical coordinates of ``p - origin``::

        (x, y) = (2 / π) · r · θ · (cos φ, sin φ)

    so the vertex maps to the centre and the equator to a circle of radius ``r``. 2-D positions
    are taken as a layout already. Then each axis is scaled to ``[0, 1]`` over the finite rows,
    as brainmagick does with MNE layouts (an axis with no spread is set to 0.5).

    Parameters
    ----------
    positions : ndarray, shape (n_channels, 3) or (n_channels, 2)
        Head coordinates in metres (any unit works: the result is scaled); NaN rows for
        sensors without a position stay NaN.
    origin : tuple of 3 float
        Centre of the projection, in the unit of ``positions`` (MNE's default head sphere:
        the origin of the head frame).
    scale : bool
        Min-max scale the result; ``False`` returns the raw projection (MNE's coordinates,
        minus ``origin[:2]``).

    Returns
    -------
    layout : ndarray, shape (n_channels, 2), float64
        A new array.
    """
    pos = np.array(positions, dtype=np.float64)  # a copy: the caller's array is not touched
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise ValueError(
            f"'positions' must have shape (n_channels, 3) or (n_channels, 2), got {pos.shape}."
        )
    finite = np.isfinite(pos).all(axis=1)
    if not finite.any():
        raise ValueError(
            "Every sensor position is NaN; set a montage on the recording "
            "(mne: raw.set_montage(...)) or pass the positions explicitly."
        )
    out = np.full((len(pos), 2), np.nan)
    if pos.shape[1] == 3:
        p = pos[finite] - np.asarray(origin, dtype=np.float64)
        r = np.linalg.norm(p, axis=1)
        phi = np.arctan2(p[:, 1], p[:, 0])
        theta = np.arccos(np.clip(p[:, 2] / np.where(r > 0, r, 1.0), -1.0, 1.0))
        rho = 2.0 / np.pi * r * theta
        out[finite] = np.column_stack([rho * np.cos(phi), rho * np.sin(phi)])
    else:
        out[finite] = pos[finite]
    if scale:
        lo, hi = out[finite].min(axis=0), out[finite].max(axis=0)
        span = hi - lo
        flat = span <= 0
        out[finite] = (out[finite] - lo) / np.where(flat, 1.0, span)
        out[np.ix_(finite, flat)] = 0.5
    return out


def fourier_features(layout: torch.Tensor, n_freqs: int = 32, margin: float = 0.2) -> torch.Tensor:
    """Fourier features of 2-D positions: ``cos`` and ``sin`` of ``2π (k x' + l y') / w``.

    With ``x' = x + margin``, ``y' = y + margin`` and ``w = 1 + 2 margin`` (positions in
    ``[0, 1]`` sit inside one period with a margin), for every pair ``0 ≤ k, l < n_freqs``
    (``k`` varies slowest).

    Parameters
    ----------
    layout : Tensor, shape (..., 2)
        Finite positions, nominally in ``[0, 1]``.
    n_freqs : int
        Frequencies per axis (brainmagick: 32, so 2 × 32² = 2048 features).
    margin : float
        Margin of the period around ``[0, 1]`` (brainmagick: 0.2).

    Returns
    -------
    Tensor, shape (..., 2 * n_freqs**2)
        ``[cos(...), sin(...)]``.
    """
    freqs = torch.arange(n_freqs, dtype=layout.dtype, device=layout.device)
    omega = 2 * math.pi * freqs / (1 + 2 * margin)
    p = layout + margin
    loc = p[..., 0, None, None] * omega[:, None] + p[..., 1, None, None] * omega[None, :]
    loc = loc.flatten(-2)
    return torch.cat([torch.cos(loc), torch.sin(loc)], dim=-1)


class SpatialAttention(nn.Module):
    """Sensors → ``n_heads`` virtual channels, weighted by their layout position.

    Parameters
    ----------
    n_heads : int
        Virtual channels out (brainmagick: 270).
    n_freqs : int
        Fourier frequencies per axis (brainmagick: 32 → 2048 features).
    margin : float
        See :func:`fourier_features`.
    dropout_radius : float
        Training-time spatial dropout radius in layout units (brainmagick: 0.2; 0 disables).
    """

    def __init__(
        self, n_heads: int, n_freqs: int = 32, margin: float = 0.2, dropout_radius: float = 0.2
    ) -> None:
        super().__init__()
        dim = 2 * n_freqs**2
        self.n_freqs, self.margin, self.dropout_radius = n_freqs, margin, dropout_radius
        self.heads = nn.Parameter(torch.randn(n_heads, dim) / math.sqrt(dim))

    def forward(
        self, x: torch.Tensor, layouts: torch.Tensor, layout_index: torch.Tensor
    ) -> torch.Tensor:
        """Mix the sensors of each row into virtual channels.

        Parameters
        ----------
        x : Tensor, shape (n_samples, n_channels, n_times)
        layouts : Tensor, shape (n_layouts, n_channels, 2)
            Distinct layouts of the batch (one per subject, or one per row); NaN marks an
            absent sensor.
        layout_index : LongTensor, shape (n_samples,)
            Which layout each row uses.

        Returns
        -------
        Tensor, shape (n_samples, n_heads, n_times)
        """
        valid = torch.isfinite(layouts).all(dim=-1)  # (L, C)
        if not bool(valid.any(dim=1).all()):
            raise ValueError("A layout has no sensor with a finite position; check the montage.")
        emb = fourier_features(layouts.nan_to_num(0.0), self.n_freqs, self.margin)
        scores = torch.einsum("lcd,hd->lhc", emb, self.heads.to(emb.dtype))[layout_index]
        keep = valid[layout_index]  # (B, C)
        if self.training and self.dropout_radius > 0:
            centre = torch.rand(len(x), 1, 2, dtype=layouts.dtype, device=layouts.device)
            dist = (layouts[layout_index] - centre).norm(dim=-1)  # NaN for absent sensors
            kept = keep & ~(dist <= self.dropout_radius)
            # never drop every sensor of a row (possible with small montages)
            keep = torch.where(kept.any(dim=1, keepdim=True), kept, keep)
        scores = scores.masked_fill(~keep[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1).to(x.dtype)
        # absent sensors may hold anything (NaN, padding): 0 × NaN would leak into the sum
        x = x.masked_fill(~valid[layout_index][:, :, None], 0.0)
        return torch.bmm(weights, x)
