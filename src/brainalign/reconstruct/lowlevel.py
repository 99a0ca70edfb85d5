"""Low-level path: brain responses → a blurry image, the img2img start of the decoder.

MindEye predicts the Stable Diffusion VAE latent of the seen image (or a blurry version of it) from
voxels, and starts the decoder from it so that layout and colour survive the semantic decoding.
:class:`LowLevelDecoder` is the ridge-regression version: images are downsampled to
``resolution`` pixels, and a ridge map (closed form, torch, GPU when present) predicts their
pixels from the brain features, with the penalty chosen by K-fold cross-validation when a grid
is given. Its predictions go to ``EmbeddingDecoder(..., init_image=pred, strength=...)``, or
through :func:`brainalign.pipelines.reconstruct.reconstruct_from_decoding` ``(...,
low_level=True, strength=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    alpha : float | sequence of float
        Ridge penalty on standardised features, or a grid of penalties: the one with the
        lowest mean squared pixel error over ``cv`` contiguous folds is kept (one
        eigendecomposition per fold serves every penalty), then the map is refitted on all the
        samples.
    resolution : int
        Side of the predicted images, in pixels (MindEye's blurry images: 64 or less).
    device : str
        ``"auto"``: CUDA when present.
    cv : int
        Folds of the cross-validation over a grid of penalties (contiguous, as
        ``sklearn.model_selection.KFold(cv)``).

    Attributes
    ----------
    alpha_ : float
        The penalty used.
    cv_mse_ : ndarray, shape (n_alphas,)
        Mean over folds of the validation pixel MSE of each penalty (empty for one penalty).
    coef_ : tensor, shape (n_features, 3 * resolution ** 2)
    intercept_ : tensor, shape (3 * resolution ** 2,)
    mean_, scale_ : tensor, shape (n_features,)
        Standardisation of the brain features.
    """

    def __init__(
        self,
        alpha: float | Sequence[float] = 1.0,
        resolution: int = 32,
        device: Any = "auto",
        *,
        cv: int = 5,
    ) -> None:
        self.alpha = alpha
        self.resolution = resolution
        self.device = device
        self.cv = cv

    def _images(self, images: Any, dev: torch.device) -> torch.Tensor:
        import torch.nn.functional as F

        x = as_image_tensor(images, "images", device=dev)
        r = int(self.resolution)
        x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        return x.flatten(1)

    def _alphas(self) -> np.ndarray:
        alphas = np.atleast_1d(np.asarray(self.alpha, dtype=np.float64))
        if alphas.ndim != 1 or alphas.size == 0:
            raise ValueError(f"'alpha' must be a number or a list of numbers, got {self.alpha!r}.")
        for value in alphas:
            check_positive("alpha", float(value), strict=alphas.size > 1)
        return alphas

    def fit(self, brain: Any, images: Any) -> LowLevelDecoder:
        """Fit on ``brain`` ``(n_samples, n_features)`` and the seen ``images``.

        ``images``: ``(n_samples, H, W, 3)`` or ``(n_samples, 3, H, W)``, uint8 or float in
        [0, 1]; downsampled to ``resolution`` (antialiased).
        """
        alphas = self._alphas()
        check_positive("resolution", self.resolution)
        dev = resolve_device(self.device)
        x = torch.as_tensor(np.asarray(brain), dtype=torch.float64, device=dev)
        if x.ndim != 2:
            raise ValueError(f"'brain' must be (n_samples, n_features), got {tuple(x.shape)}.")
        y = self._images(images, dev).to(torch.float64)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"'brain' has {x.shape[0]} samples but 'images' {y.shape[0]}.")
        self.cv_mse_ = np.zeros(0)
        if alphas.size > 1:
            from brainalign.train.decoders import kfold_splits

            if isinstance(self.cv, bool) or not isinstance(self.cv, int | np.integer):
                raise TypeError(f"'cv' must be an integer number of folds, got {self.cv!r}.")
            mse = np.zeros(alphas.size)
            splits = kfold_splits(x.shape[0], int(self.cv))
            for train, test in splits:
                train_t, test_t = torch.from_numpy(train), torch.from_numpy(test)
                a, lam, b, y_mean = _ridge_path(x[train_t], y[train_t], x[test_t])
                for i, alpha in enumerate(alphas):
                    pred = (a / (lam + alpha)) @ b + y_mean
                    mse[i] += float(((pred - y[test_t]) ** 2).mean())
            self.cv_mse_ = mse / len(splits)
            self.alpha_ = float(alphas[int(np.argmin(self.cv_mse_))])
        else:
            self.alpha_ = float(alphas[0])
        self.mean_ = x.mean(0)
        self.scale_ = x.std(0, correction=0).clamp_min(1e-12)
        z = (x - self.mean_) / self.scale_
        self.intercept_ = y.mean(0)
        yc = y - self.intercept_
        n, p = z.shape
        if p <= n:  # primal: (ZᵀZ + αI)⁻¹ Zᵀ Y
            gram = z.T @ z + self.alpha_ * torch.eye(p, dtype=z.dtype, device=dev)
            self.coef_ = torch.linalg.solve(gram, z.T @ yc)
        else:  # dual: Zᵀ (ZZᵀ + αI)⁻¹ Y
            gram = z @ z.T + self.alpha_ * torch.eye(n, dtype=z.dtype, device=dev)
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


def _ridge_path(
    x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pieces of the test predictions of every penalty: ``pred(α) = (A / (λ + α)) B + ȳ``.

    ``x`` is standardised on itself (as :meth:`LowLevelDecoder.fit` does) and ``x_test`` with the
    same statistics. Primal (``p <= n``): ``ZᵀZ = Q Λ Qᵀ``, ``A = Z_test Q``, ``B = Qᵀ Zᵀ Y_c``;
    dual: ``ZZᵀ = U Λ Uᵀ``, ``A = Z_test Zᵀ U``, ``B = Uᵀ Y_c``.
    """
    mean = x.mean(0)
    scale = x.std(0, correction=0).clamp_min(1e-12)
    z, z_test = (x - mean) / scale, (x_test - mean) / scale
    y_mean = y.mean(0)
    yc = y - y_mean
    n, p = z.shape
    if p <= n:
        lam, q = torch.linalg.eigh(z.T @ z)
        a, b = z_test @ q, q.T @ (z.T @ yc)
    else:
        lam, u = torch.linalg.eigh(z @ z.T)
        a, b = (z_test @ z.T) @ u, u.T @ yc
    return a, lam.clamp_min(0), b, y_mean
