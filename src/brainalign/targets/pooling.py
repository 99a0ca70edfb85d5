"""Pooling of layer activations to a fixed size, as the field does it.

Activations of one batch arrive as a tensor ``(n_stimuli, ...)``. Convolutional layers give
``(n, channels, height, width)``; transformer blocks give ``(n, n_tokens, channels)`` (tokens
first, channels last, the convention of timm and open_clip with ``batch_first``).

========  ======================================================================================
method    output per stimulus
========  ======================================================================================
none      the activation unchanged, e.g. ``(channels, height, width)``
avg       global average: ``(channels,)`` — over height × width, or over tokens
grid      adaptive average pooling to ``grid_size × grid_size``: ``(channels · g · g,)``
          (channel-major, as ``torch.flatten`` of ``(channels, g, g)``)
random    Gaussian random projection of the flattened activation to ``n_components``:
          ``x @ R`` with ``R[i, j] ~ N(0, 1 / n_components)`` drawn from a seeded CPU generator
          (Johnson–Lindenstrauss scaling: squared norms and distances are preserved in expectation)
pca       principal components of the flattened activation, ``n_components`` of them, fitted on
          the stimulus set itself with incremental PCA (scikit-learn's ``IncrementalPCA``,
          batch by batch, so memory stays bounded); not whitened
========  ======================================================================================

``pca`` needs a first pass over the stimuli to fit and a second to transform (the extraction
engine runs the model twice for it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from brainalign._utils.validation import check_option, check_positive

__all__ = [
    "POOLING_METHODS",
    "Pooling",
    "make_pooling",
]

POOLING_METHODS = ("none", "avg", "grid", "random", "pca")

#: Largest random projection matrix (bytes, float32) built before asking for a smaller size.
MAX_PROJECTION_BYTES = 2 * 1024**3


class Pooling:
    """Base class: ``transform`` maps a batch ``(n, ...)`` to pooled features.

    Attributes
    ----------
    method : str
        One of :data:`POOLING_METHODS`.
    needs_fit : bool
        Whether :meth:`partial_fit` must see every stimulus before :meth:`transform` is used.
    """

    method = "none"
    needs_fit = False

    def spec(self) -> dict[str, Any]:
        """What the pooled features depend on (part of the cache key)."""
        return {"method": self.method}

    def partial_fit(self, x: Any) -> None:  # pragma: no cover - only pca fits
        """Update the fit with one batch (no-op unless :attr:`needs_fit`)."""

    def finish_fit(self) -> None:  # pragma: no cover - only pca fits
        """Complete the fit after the last batch."""

    def transform(self, x: Any) -> Any:
        """Pool a batch ``(n, ...)`` of activations (a torch tensor)."""
        return x

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "method")
        return f"{type(self).__name__}({args})"


class _Avg(Pooling):
    method = "avg"

    def transform(self, x: Any) -> Any:
        if x.ndim >= 4:
            return x.flatten(2).mean(dim=2)
        if x.ndim == 3:
            return x.mean(dim=1)
        return x.reshape(x.shape[0], -1)


class _Grid(Pooling):
    method = "grid"

    def __init__(self, grid_size: int) -> None:
        self.grid_size = int(check_positive("grid_size", grid_size))

    def spec(self) -> dict[str, Any]:
        return {"method": self.method, "grid_size": self.grid_size}

    def transform(self, x: Any) -> Any:
        import torch.nn.functional as F

        if x.ndim != 4:
            raise ValueError(
                f"pooling='grid' needs activations (n, channels, height, width), but this layer "
                f"gives shape {tuple(x.shape)}. Use pooling='avg', 'random' or 'pca', or pick a "
                "convolutional layer."
            )
        return F.adaptive_avg_pool2d(x, self.grid_size).flatten(1)


class _Random(Pooling):
    method = "random"

    def __init__(self, n_components: int, seed: int) -> None:
        self.n_components = int(check_positive("n_components", n_components))
        self.seed = int(seed)
        self._matrix: Any = None

    def spec(self) -> dict[str, Any]:
        return {"method": self.method, "n_components": self.n_components, "seed": self.seed}

    def matrix(self, n_features: int, device: Any = "cpu") -> Any:
        """The projection matrix ``(n_features, n_components)``, N(0, 1/n_components) entries."""
        import torch

        if self._matrix is None or self._matrix.shape[0] != n_features:
            n_bytes = 4 * n_features * self.n_components
            if n_bytes > MAX_PROJECTION_BYTES:
                raise ValueError(
                    f"A random projection from {n_features} to {self.n_components} features "
                    f"needs a {n_bytes / 1024**3:.1f} GiB matrix. Pool first (pooling='grid' or "
                    "'avg'), pick a later layer, or lower 'n_components'."
                )
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            mat = torch.randn(n_features, self.n_components, generator=gen, dtype=torch.float32)
            self._matrix = mat / math.sqrt(self.n_components)
        if self._matrix.device != torch.device(device):
            self._matrix = self._matrix.to(device)
        return self._matrix

    def transform(self, x: Any) -> Any:
        flat = x.reshape(x.shape[0], -1).float()
        return flat @ self.matrix(flat.shape[1], flat.device)


class _PCA(Pooling):
    method = "pca"
    needs_fit = True

    def __init__(self, n_components: int) -> None:
        self.n_components = int(check_positive("n_components", n_components))
        self._pca: Any = None
        self._buffer: list[np.ndarray] = []
        self._n_buffered = 0
        self._n_seen = 0
        self._mean: Any = None
        self._components: Any = None

    def spec(self) -> dict[str, Any]:
        return {"method": self.method, "n_components": self.n_components}

    def partial_fit(self, x: Any) -> None:
        from sklearn.decomposition import IncrementalPCA

        flat = x.reshape(x.shape[0], -1).float().cpu().numpy().astype(np.float64)
        if self._pca is None:
            if self.n_components > flat.shape[1]:
                raise ValueError(
                    f"pooling='pca' with n_components={self.n_components}, but the layer has "
                    f"only {flat.shape[1]} features per stimulus; lower 'n_components'."
                )
            self._pca = IncrementalPCA(n_components=self.n_components)
        self._buffer.append(flat)
        self._n_buffered += flat.shape[0]
        self._n_seen += flat.shape[0]
        k = self.n_components
        if self._n_buffered >= 2 * k:  # fit all but the last k rows, keep them for later
            stacked = np.concatenate(self._buffer)
            self._pca.partial_fit(stacked[:-k])
            self._buffer = [stacked[-k:]]
            self._n_buffered = k

    def finish_fit(self) -> None:
        import torch

        if self._n_seen < self.n_components:
            raise ValueError(
                f"pooling='pca' with n_components={self.n_components} needs at least that many "
                f"stimuli, got {self._n_seen}; lower 'n_components'."
            )
        if self._n_buffered:
            self._pca.partial_fit(np.concatenate(self._buffer))
        self._buffer, self._n_buffered = [], 0
        self._mean = torch.from_numpy(self._pca.mean_.astype(np.float32))
        self._components = torch.from_numpy(self._pca.components_.T.astype(np.float32))

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        """Fraction of the variance each component explains (after fitting)."""
        if self._pca is None or self._components is None:
            raise RuntimeError("The PCA pooling has not been fitted yet.")
        return self._pca.explained_variance_ratio_

    def transform(self, x: Any) -> Any:
        if self._components is None:
            raise RuntimeError("pooling='pca' must be fitted on the stimulus set first.")
        flat = x.reshape(x.shape[0], -1).float()
        if self._components.device != flat.device:
            self._mean = self._mean.to(flat.device)
            self._components = self._components.to(flat.device)
        return (flat - self._mean) @ self._components


def make_pooling(
    method: str = "avg", *, grid_size: int = 2, n_components: int = 256, seed: int = 0
) -> Pooling:
    """Build a pooling operator.

    Parameters
    ----------
    method : {"none", "avg", "grid", "random", "pca"}
        See the module docstring.
    grid_size : int
        Side ``g`` of the output grid for ``"grid"``.
    n_components : int
        Output size for ``"random"`` and ``"pca"``.
    seed : int
        Seed of the random projection.

    Returns
    -------
    pooling : Pooling
        A fresh operator (``pca`` holds its own fit, so build one per layer).
    """
    check_option("pooling", method, POOLING_METHODS)
    if method == "none":
        return Pooling()
    if method == "avg":
        return _Avg()
    if method == "grid":
        return _Grid(grid_size)
    if method == "random":
        return _Random(n_components, seed)
    return _PCA(n_components)
