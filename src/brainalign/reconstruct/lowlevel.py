"""Low-level path: brain responses → a blurry image, the img2img start of the decoder.

MindEye predicts the Stable Diffusion VAE latent of the seen image (or a blurry version of it) from
voxels, and starts the decoder from it so that layout and colour survive the semantic decoding.
:class:`LowLevelDecoder` is the ridge-regression version: images are downsampled to
``resolution`` pixels, and a ridge map (closed form, torch, GPU when present) predicts their
pixels from the brain features. Its predictions go to
``EmbeddingDecoder(..., init_image=pred, strength=...)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from brainalign._utils.device import resolve_device
from brainalign._utils.validation import check_positive
from brainalign.reconstruct.metrics import as_image_tensor

__all__ = ["LowLevelDecoder"]


class LowLevelDecoder:
    """Ridge regression from brain features to downsampled images.

    Parameters
    ----------
    alpha : float
        Ridge penalty (on standardised features; choose it by cross-validation).
    resolution : int
        Side of the predicted images, in pixels (MindEye's blurry images: 64 or less).
    device : str
        ``"auto"``: CUDA when present.

    Attributes
    ----------
    coef_ : tensor, shape (n_features, 3 * resolution ** 2)
    intercept_ : tensor, shape (3 * resolution ** 2,)
    mean_, scale_ : tensor, shape (n_features,)
        Standardisation of the brain features.
    """

    def __init__(self, alpha: float = 1.0, resolution: int = 32, device: Any = "auto") -> None:
        self.alpha = alpha
        self.resolution = resolution
        self.device = device

    def _images(self, images: Any, dev: torch.device) -> torch.Tensor:
        import torch.nn.functional as F

        x = as_image_tensor(images, "images", device=dev)
        r = int(self.resolution)
        x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        return x.flatten(1)

    def fit(self, brain: Any, images: Any) -> LowLevelDecoder:
        """Fit on ``brain`` ``(n_samples, n_features)`` and the seen ``images``."""
        check_positive("alpha", self.alpha, strict=False)
        check_positive("resolution", self.resolution)
        dev = resolve_device(self.device)
        x = torch.as_tensor(np.asarray(brain), dtype=torch.float64, device=dev)
        if x.ndim != 2:
            raise ValueError(f"'brain' must be (n_samples, n_features), got {tuple(x.shape)}.")
        y = self._images(images, dev)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"'brain' has {x.shape[0]} samples but 'images' {y.shape[0]}.")
        self.mean_ = x.mean(0)
        self.scale_ = x.std(0, correction=0).clamp_min(1e-12)
        z = (x - self.mean_) / self.scale_
        self.intercept_ = y.mean(0)
        yc = y - self.intercept_
        n, p = z.shape
        if p <= n:  # primal: (ZᵀZ + αI)⁻¹ Zᵀ Y
            gram = z.T @ z + self.alpha * torch.eye(p, dtype=z.dtype, device=dev)
            self.coef_ = torch.linalg.solve(gram, z.T @ yc)
        else:  # dual: Zᵀ (ZZᵀ + αI)⁻¹ Y
            gram = z @ z.T + self.alpha * torch.eye(n, dtype=z.dtype, device=dev)
            self.coef_ = z.T @ torch.linalg.solve(gram, yc)
        return self

    def predict(self, brain: Any) -> np.ndarray:
        """Blurry images ``(n_samples, resolution, resolution, 3)``, float32 in [0, 1]."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("This LowLevelDecoder is not fitted yet; call fit(brain, images).")
        x = torch.as_tensor(np.asarray(brain), dtype=torch.float64, device=self.coef_.device)
        y = ((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        r = int(self.resolution)
        img = y.clamp(0, 1).reshape(-1, 3, r, r).permute(0, 2, 3, 1)
        return img.float().cpu().numpy()
