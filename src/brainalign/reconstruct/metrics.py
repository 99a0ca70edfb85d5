"""Reconstruction metrics as defined by MindEye (Scotti et al. 2023, 2024), batched in torch.

Low-level metrics compare pixels: :func:`pixcorr` (Pearson correlation of the flattened, resized
RGB images) and :func:`ssim` (grayscale SSIM with a Gaussian window, equal to scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)`` on ``rgb2gray`` images). High-level metrics compare the features a network
extracts from both images: :func:`two_way_identification` (the fraction of distractors beaten by
the true image, chance 0.5) and :func:`embedding_distance` (mean correlation distance, as MindEye
reports for EfficientNet-B1 and SwAV-ResNet50). :func:`feature_two_way` and
:func:`feature_distance` run a network through :mod:`brainalign.targets` (the offline
EfficientNet-Lite0 by default; AlexNet, InceptionV3, CLIP … when the user has their weights;
presets in :data:`MINDEYE_FEATURES`). :func:`reconstruction_metrics` puts them in one tidy table
with bootstrap confidence intervals over test images.

Images are arrays or tensors ``(n_images, height, width, 3)`` or ``(n_images, 3, height,
width)``, ``uint8`` (0–255) or float (0–1). Computations run on the device of tensor inputs, or
``device`` (``"auto"``: CUDA when present).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from brainalign._utils.device import resolve_device
from brainalign._utils.validation import check_option

if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = [
    "MINDEYE_FEATURES",
    "brain_retrieval_of_reconstructions",
    "compute_image_features",
    "embedding_distance",
    "feature_distance",
    "feature_two_way",
    "pixcorr",
    "reconstruction_metrics",
    "ssim",
    "two_way_identification",
]

#: skimage.color.rgb2gray weights (ITU-R BT.709), as MindEye's SSIM uses.
RGB2GRAY = (0.2125, 0.7154, 0.0721)

#: MindEye's feature metrics: name -> (network, layer, metric). The networks other than
#: EfficientNet-Lite0 need weights (``weights=`` a file, or ``"hub"`` with a network).
MINDEYE_FEATURES: dict[str, tuple[str, str, str]] = {
    "alexnet2": ("torchvision:alexnet", "features.4", "two_way"),
    "alexnet5": ("torchvision:alexnet", "features.11", "two_way"),
    "inception": ("torchvision:inception_v3", "avgpool", "two_way"),
    "clip": ("ViT-L-14", "image", "two_way"),
    "effnet": ("torchvision:efficientnet_b1", "avgpool", "distance"),
    "swav": ("torchvision:resnet50", "avgpool", "distance"),
    # offline: works without any download
    "efficientnet_lite0": ("efficientnet_lite0", "global_pool", "two_way"),
}

_REDUCTIONS = ("mean", "none")


# --------------------------------------------------------------------------------- inputs


def _resolve(device: Any, *xs: Any) -> torch.device:
    import torch

    for x in xs:
        if isinstance(x, torch.Tensor):
            return x.device if device is None else resolve_device(device)
    return resolve_device("auto" if device is None else device)


def as_image_tensor(images: Any, name: str = "images", *, device: Any = None) -> torch.Tensor:
    """Return ``images`` as a float tensor ``(n_images, 3, height, width)`` in [0, 1].

    Accepts ``(n, H, W, 3)`` or ``(n, 3, H, W)`` arrays / tensors, ``uint8`` or float in [0, 1],
    or a sequence of ``(H, W, 3)`` arrays or PIL images of one size.
    """
    import torch

    if isinstance(images, Sequence) and not isinstance(images, np.ndarray | torch.Tensor):
        if len(images) == 0:
            raise ValueError(f"{name!r} is empty; give at least one image.")
        images = np.stack([np.asarray(im) for im in images])
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.ndim != 4 or (x.shape[1] != 3 and x.shape[-1] != 3):
        raise ValueError(
            f"{name!r} must have shape (n_images, height, width, 3) or (n_images, 3, height, "
            f"width), got {tuple(x.shape)}."
        )
    if x.shape[-1] == 3:  # channels-last (a shape with 3 on both axes is read channels-last)
        x = x.permute(0, 3, 1, 2)
    dev = _resolve(device, images)
    if x.dtype == torch.uint8:
        x = x.to(dev, torch.float64) / 255.0
    elif x.is_floating_point():
        x = x.to(dev, torch.float64)
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3 or not np.isfinite(lo + hi):
            raise ValueError(
                f"Float {name!r} must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; rescale "
                "them (e.g. (x + 1) / 2 for images in [-1, 1]) or pass uint8 images."
            )
    else:
        raise TypeError(f"{name!r} must be uint8 or floating point, got {x.dtype}.")
    return x.contiguous()


def _pair(
    pred: Any, true: Any, device: Any, resolution: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    p = as_image_tensor(pred, "images_pred", device=_resolve(device, pred, true))
    t = as_image_tensor(true, "images_true", device=p.device)
    if p.shape[0] != t.shape[0]:
        raise ValueError(
            f"'images_pred' has {p.shape[0]} images but 'images_true' has {t.shape[0]}; give one "
            "reconstruction per test image, in the same order."
        )
    p, t = _resize(p, resolution), _resize(t, resolution)
    if p.shape != t.shape:
        raise ValueError(
            f"After resizing, the reconstructions have shape {tuple(p.shape[1:])} but the images "
            f"{tuple(t.shape[1:])}; give images of one aspect ratio or pass resolution=."
        )
    return p, t


def _resize(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """torchvision ``Resize(resolution)`` (bilinear, antialiased): shorter side -> resolution."""
    import torch.nn.functional as F

    if resolution is None:
        return x
    h, w = x.shape[-2:]
    if h <= w:
        size = (int(resolution), int(resolution * w / h))
    else:
        size = (int(resolution * h / w), int(resolution))
    if size == (h, w):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _reduce(values: torch.Tensor, reduction: str) -> float | np.ndarray:
    check_option("reduction", reduction, _REDUCTIONS)
    out = values.detach().double().cpu().numpy()
    return float(out.mean()) if reduction == "mean" else out


# --------------------------------------------------------------------------------- pixels


def pixcorr(
    images_pred: Any,
    images_true: Any,
    *,
    resolution: int | None = 425,
    reduction: str = "mean",
    device: Any = None,
) -> float | np.ndarray:
    """MindEye's PixCorr: Pearson correlation of each flattened RGB image pair, averaged.

    Parameters
    ----------
    images_pred, images_true : array-like or tensor, shape (n_images, H, W, 3) | (n_images, 3, H, W)
        Reconstructions and the seen images, in the same order (``uint8`` or float in [0, 1]).
    resolution : int | None
        Both are resized so that their shorter side is this many pixels (bilinear, antialiased,
        as torchvision's ``Resize(425)`` in MindEye); ``None`` keeps the sizes.
    reduction : {'mean', 'none'}
        The mean over images, or the per-image values ``(n_images,)``.
    device : str | torch.device | None
        Where to compute; ``None``: the device of tensor inputs, else CUDA when present.

    Returns
    -------
    pixcorr : float | ndarray, shape (n_images,)
    """
    p, t = _pair(images_pred, images_true, device, resolution)
    p = p.flatten(1)
    t = t.flatten(1)
    p = p - p.mean(1, keepdim=True)
    t = t - t.mean(1, keepdim=True)
    r = (p * t).sum(1) / (p.norm(dim=1) * t.norm(dim=1))
    return _reduce(r, reduction)


def _gaussian_kernel(sigma: float, truncate: float, dtype: Any, device: Any) -> torch.Tensor:
    import torch

    radius = int(truncate * sigma + 0.5)  # scipy.ndimage.gaussian_filter1d
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _gaussian_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable filter of ``(n, c, H, W)`` with scipy's ``mode='reflect'`` (edge repeated)."""
    import torch
    import torch.nn.functional as F

    r = (kernel.numel() - 1) // 2
    c = x.shape[1]
    for dim in (-1, -2):
        size = x.shape[dim]
        # symmetric padding d c b a | a b c d; longer than the image: reflect periodically
        idx = torch.arange(-r, size + r, device=x.device)
        period = 2 * size
        idx = torch.remainder(idx, period)
        idx = torch.where(idx >= size, period - 1 - idx, idx)
        x = x.index_select(dim, idx)
        w = kernel.view(1, 1, 1, -1) if dim == -1 else kernel.view(1, 1, -1, 1)
        x = F.conv2d(x, w.expand(c, 1, *w.shape[2:]).contiguous(), groups=c)
    return x


def ssim(
    images_pred: Any,
    images_true: Any,
    *,
    resolution: int | None = 425,
    sigma: float = 1.5,
    reduction: str = "mean",
    chunk_size: int = 32,
    device: Any = None,
) -> float | np.ndarray:
    """MindEye's SSIM: grayscale structural similarity with a Gaussian window.

    Equal (to float64 rounding) to ``skimage.metrics.structural_similarity(rgb2gray(pred),
    rgb2gray(true), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1.0)`` per image pair, after the same resize as :func:`pixcorr`: local means,
    variances and covariance by a Gaussian filter (truncated at 3.5 σ, edges reflected), the
    SSIM map averaged after cropping ``(win_size - 1) / 2`` pixels from every border.

    Parameters
    ----------
    images_pred, images_true, resolution, reduction, device
        As in :func:`pixcorr`.
    sigma : float
        Standard deviation of the Gaussian window, in pixels.
    chunk_size : int
        Images per batch (bounds memory).

    Returns
    -------
    ssim : float | ndarray, shape (n_images,)
    """
    import torch

    p, t = _pair(images_pred, images_true, device, resolution)
    truncate = 3.5
    win_size = 2 * int(truncate * sigma + 0.5) + 1
    if min(p.shape[-2:]) < win_size:
        raise ValueError(
            f"The images are {tuple(p.shape[-2:])} pixels, smaller than the SSIM window "
            f"({win_size} for sigma={sigma}); use a larger resolution."
        )
    gray = torch.tensor(RGB2GRAY, dtype=p.dtype, device=p.device).view(1, 3, 1, 1)
    kernel = _gaussian_kernel(sigma, truncate, p.dtype, p.device)
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2  # K1, K2 with data_range = 1
    pad = (win_size - 1) // 2
    out = []
    for start in range(0, p.shape[0], chunk_size):
        x = (p[start : start + chunk_size] * gray).sum(1, keepdim=True)
        y = (t[start : start + chunk_size] * gray).sum(1, keepdim=True)
        stats = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), kernel)
        ux, uy, uxx, uyy, uxy = stats.unbind(1)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        out.append(s[:, pad : s.shape[1] - pad, pad : s.shape[2] - pad].mean(dim=(1, 2)))
    return _reduce(torch.cat(out), reduction)


# --------------------------------------------------------------------------------- features


def _as_features(x: Any, name: str, device: Any, dtype: Any) -> torch.Tensor:
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim < 2:
        raise ValueError(f"{name!r} must have shape (n_images, ...), got {tuple(t.shape)}.")
    return t.detach().to(device, dtype).flatten(1)


def _feature_pair(
    pred: Any, true: Any, device: Any, dtype: str
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    check_option("dtype", dtype, ("float64", "float32"))
    dev = _resolve(device, pred, true)
    p = _as_features(pred, "pred_feats", dev, getattr(torch, dtype))
    t = _as_features(true, "true_feats", dev, getattr(torch, dtype))
    if p.shape != t.shape:
        raise ValueError(
            f"'pred_feats' has shape {tuple(p.shape)} but 'true_feats' {tuple(t.shape)} (after "
            "flattening); give features of the same network and layer for both."
        )
    return p, t


def _zscore_rows(x: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True)


def two_way_identification(
    pred_feats: Any,
    true_feats: Any,
    *,
    reduction: str = "mean",
    chunk_size: int = 1024,
    dtype: str = "float64",
    device: Any = None,
) -> float | np.ndarray:
    """MindEye's 2-way identification from features of the reconstructions and the images.

    For reconstruction ``i``, the fraction of the other images ``j`` with
    ``corr(pred_i, true_i) > corr(pred_i, true_j)`` (Pearson correlation of the flattened
    features; ties count as failures, as in MindEye's ``r < congruent``); averaged over ``i``.
    Chance is 0.5. Equal to MindEye's ``np.corrcoef``-based code; see also
    :func:`brainalign.evaluate.two_way_identification` (ties, bootstrap, repetitions).

    Parameters
    ----------
    pred_feats, true_feats : array-like or tensor, shape (n_images, ...)
        Features of the reconstructions and of the seen images (flattened per image).
    reduction : {'mean', 'none'}
        The mean, or the per-reconstruction fractions ``(n_images,)``.
    chunk_size : int
        Reconstructions per block of the correlation matrix.
    dtype : {'float64', 'float32'}
        Precision of the correlations (float64 as NumPy; float32 halves the memory).
    device : str | torch.device | None
        As in :func:`pixcorr`.

    Returns
    -------
    two_way : float | ndarray, shape (n_images,)
    """
    import torch

    p, t = _feature_pair(pred_feats, true_feats, device, dtype)
    n = p.shape[0]
    if n < 2:
        raise ValueError(f"2-way identification needs at least 2 images, got {n}.")
    p, t = _zscore_rows(p), _zscore_rows(t)
    out = []
    for start in range(0, n, chunk_size):
        r = p[start : start + chunk_size] @ t.T  # (block, n): corr(pred_i, true_j)
        rows = torch.arange(r.shape[0], device=r.device)
        congruent = r[rows, rows + start]
        out.append((r < congruent[:, None]).sum(1).to(torch.float64) / (n - 1))
    return _reduce(torch.cat(out), reduction)


def embedding_distance(
    pred_feats: Any,
    true_feats: Any,
    *,
    reduction: str = "mean",
    dtype: str = "float64",
    device: Any = None,
) -> float | np.ndarray:
    """Mean correlation distance ``1 - corr(pred_i, true_i)`` (MindEye's EffNet-B / SwAV).

    Equal to ``scipy.spatial.distance.correlation`` per pair. Lower is better.

    Parameters
    ----------
    pred_feats, true_feats : array-like or tensor, shape (n_images, ...)
        Features of the reconstructions and of the seen images.
    reduction, dtype, device
        As in :func:`two_way_identification`.

    Returns
    -------
    distance : float | ndarray, shape (n_images,)
    """
    p, t = _feature_pair(pred_feats, true_feats, device, dtype)
    d = 1.0 - (_zscore_rows(p) * _zscore_rows(t)).sum(1)
    return _reduce(d, reduction)


def _to_uint8_hwc(images: Any, name: str) -> np.ndarray:
    import torch

    x = as_image_tensor(images, name, device="cpu")
    return (x.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def compute_image_features(
    images: Any,
    network: Any = "efficientnet_lite0",
    layer: str | None = None,
    *,
    weights: Any = None,
    pooling: str = "none",
    batch_size: int = 32,
    device: Any = "auto",
    cache: bool = False,
    verbose: bool = False,
) -> np.ndarray:
    """Features of ``images`` at one layer of ``network``, through :mod:`brainalign.targets`.

    Parameters
    ----------
    images : array-like or tensor
        As in :func:`pixcorr`; converted to ``uint8`` and preprocessed by the network's own
        transform (resize, crop, normalisation).
    network : str | torch.nn.Module
        Any model :func:`brainalign.targets.make_extractor` knows: ``"efficientnet_lite0"``
        (offline), ``"torchvision:alexnet"``, an open_clip name (``"ViT-L-14"``) …
    layer : str | None
        The layer (``brainalign.targets.list_layers(network)``; CLIP: ``"image"``); ``None`` for
        the network's default output.
    weights : path-like | str | None
        As in :func:`brainalign.targets.load_vision_model` / :func:`~brainalign.targets.load_clip`.
    pooling : str
        ``"none"`` flattens the whole activation (MindEye); ``"avg"`` averages over space.
    batch_size, device, cache, verbose
        As in :func:`brainalign.targets.compute_features` (no cache by default: reconstructions
        change with every run).

    Returns
    -------
    features : ndarray, shape (n_images, n_features)
    """
    from brainalign.targets.extract import compute_features, make_extractor

    arr = _to_uint8_hwc(images, "images")
    extractor, _ = make_extractor(network, weights=weights, modality="image")
    outputs = None if layer is None else [layer]
    feats = compute_features(
        extractor,
        list(arr),
        outputs,
        pooling=pooling,
        batch_size=batch_size,
        device=device,
        cache=cache,
        verbose=verbose,
    )
    key = feats.keys()[0]
    return np.asarray(feats[key]).reshape(len(arr), -1)


def feature_two_way(
    images_pred: Any,
    images_true: Any,
    network: Any = "efficientnet_lite0",
    layer: str | None = "global_pool",
    *,
    weights: Any = None,
    pooling: str = "none",
    reduction: str = "mean",
    batch_size: int = 32,
    device: Any = "auto",
) -> float | np.ndarray:
    """2-way identification on a network's features of the reconstructions and the images.

    MindEye's high-level metrics are this function with AlexNet ``features.4`` / ``features.11``,
    InceptionV3 ``avgpool`` and CLIP ViT-L/14 ``image`` (see :data:`MINDEYE_FEATURES`); the
    default, EfficientNet-Lite0's pooled features, works offline. Parameters as in
    :func:`compute_image_features` and :func:`two_way_identification`.
    """
    kw = {"weights": weights, "pooling": pooling, "batch_size": batch_size, "device": device}
    fp = compute_image_features(images_pred, network, layer, **kw)
    ft = compute_image_features(images_true, network, layer, **kw)
    return two_way_identification(fp, ft, reduction=reduction, device=device)


def feature_distance(
    images_pred: Any,
    images_true: Any,
    network: Any = "efficientnet_lite0",
    layer: str | None = "global_pool",
    *,
    weights: Any = None,
    pooling: str = "none",
    reduction: str = "mean",
    batch_size: int = 32,
    device: Any = "auto",
) -> float | np.ndarray:
    """:func:`embedding_distance` on a network's features (MindEye: EfficientNet-B1, SwAV)."""
    kw = {"weights": weights, "pooling": pooling, "batch_size": batch_size, "device": device}
    fp = compute_image_features(images_pred, network, layer, **kw)
    ft = compute_image_features(images_true, network, layer, **kw)
    return embedding_distance(fp, ft, reduction=reduction, device=device)


def brain_retrieval_of_reconstructions(
    brain_embeddings: Any,
    recon_embeddings: Any,
    *,
    n_way: int | None = 300,
    n_draws: int = 30,
    similarity: str = "cosine",
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> Any:
    """Retrieval between brain embeddings and the embeddings of their own reconstructions.

    Each reconstruction is embedded in the space the brain encoder maps into (e.g. CLIP image
    embeddings of the reconstructed images); the reconstruction of brain sample ``i`` should be
    retrieved by brain embedding ``i`` (brain → reconstruction) and vice versa. MindEye's N-way
    protocol (``n_way`` random test items, ``n_draws`` draws, top-1); ``n_way=None`` or larger
    than the number of items uses all of them.

    Parameters
    ----------
    brain_embeddings, recon_embeddings : array-like, shape (n_images, n_features)
        Row ``i`` of both belongs to test image ``i``.
    n_way, n_draws, similarity, seed, n_bootstrap
        As in :func:`brainalign.evaluate.n_way_retrieval`.

    Returns
    -------
    result : brainalign.evaluate.RetrievalResult
        Directions ``'brain_to_stimulus'`` (brain → reconstruction) and ``'stimulus_to_brain'``.
    """
    from brainalign.evaluate.retrieval import n_way_retrieval

    b = np.asarray(brain_embeddings, dtype=np.float64).reshape(len(brain_embeddings), -1)
    r = np.asarray(recon_embeddings, dtype=np.float64).reshape(len(recon_embeddings), -1)
    if b.shape[0] != r.shape[0]:
        raise ValueError(
            f"'brain_embeddings' has {b.shape[0]} rows but 'recon_embeddings' {r.shape[0]}; give "
            "one reconstruction per brain sample, in the same order."
        )
    k = b.shape[0] if n_way is None else min(int(n_way), b.shape[0])
    return n_way_retrieval(
        b, r, k, n_draws, similarity=similarity, seed=seed, n_bootstrap=n_bootstrap
    )


# --------------------------------------------------------------------------------- table


def reconstruction_metrics(
    images_pred: Any,
    images_true: Any,
    *,
    features: Sequence[str] | Mapping[str, tuple[str, str, str]] = ("efficientnet_lite0",),
    weights: Mapping[str, Any] | None = None,
    brain_embeddings: Any = None,
    recon_embeddings: Any = None,
    true_features: Mapping[str, Any] | None = None,
    resolution: int | None = 425,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    device: Any = "auto",
) -> pd.DataFrame:
    """All reconstruction metrics in one tidy table, with bootstrap CIs over test images.

    Parameters
    ----------
    images_pred, images_true : array-like or tensor
        Reconstructions and seen images (see :func:`pixcorr`).
    features : sequence of str | mapping
        Names in :data:`MINDEYE_FEATURES` (``"alexnet2"``, ``"alexnet5"``, ``"inception"``,
        ``"clip"``, ``"effnet"``, ``"swav"``, ``"efficientnet_lite0"``), or a mapping
        ``name -> (network, layer, 'two_way' | 'distance')``.
    weights : mapping | None
        ``name -> weights`` for the networks that need them (a file, or ``"hub"``).
    brain_embeddings, recon_embeddings : array-like | None
        When both are given, add brain ↔ reconstruction retrieval (top-1, MindEye's 300-way
        protocol, see :func:`brain_retrieval_of_reconstructions`).
    true_features : mapping | None
        ``name -> (n_images, n_features)`` features of ``images_true`` already computed with
        :func:`compute_image_features` (e.g. when several sets of reconstructions are scored
        against the same seen images); missing names are computed.
    resolution : int | None
        Resize of the pixel metrics.
    n_bootstrap, ci, seed
        Bootstrap over test images (:func:`brainalign.evaluate.bootstrap_ci`).
    device : str
        Where to compute.

    Returns
    -------
    table : pandas.DataFrame
        One row per metric: ``metric``, ``value``, ``ci_low``, ``ci_high``, ``n_images``,
        ``higher_is_better``.
    """
    import pandas as pd

    from brainalign.evaluate.statistics import bootstrap_ci

    if isinstance(features, Mapping):
        specs = dict(features)
    else:
        specs = {}
        for name in features:
            check_option("features", name, MINDEYE_FEATURES)
            specs[name] = MINDEYE_FEATURES[name]
    weights = dict(weights or {})
    pixel_kw = {"resolution": resolution, "reduction": "none", "device": device}
    per_image: dict[str, tuple[np.ndarray, bool]] = {
        "pixcorr": (np.asarray(pixcorr(images_pred, images_true, **pixel_kw)), True),
        "ssim": (np.asarray(ssim(images_pred, images_true, **pixel_kw)), True),
    }
    for name, (network, layer, kind) in specs.items():
        check_option(f"features[{name!r}] metric", kind, ("two_way", "distance"))
        kw = {"weights": weights.get(name), "device": device}
        fp = compute_image_features(images_pred, network, layer, **kw)
        if true_features is not None and name in true_features:
            ft = np.asarray(true_features[name])
        else:
            ft = compute_image_features(images_true, network, layer, **kw)
        if kind == "two_way":
            vals = two_way_identification(fp, ft, reduction="none", device=device)
            per_image[f"{name}_2way"] = (np.asarray(vals), True)
        else:
            vals = embedding_distance(fp, ft, reduction="none", device=device)
            per_image[f"{name}_distance"] = (np.asarray(vals), False)
    rows = []
    for metric, (vals, higher) in per_image.items():
        low, high = bootstrap_ci(vals, n_bootstrap=n_bootstrap, ci=ci, seed=seed)
        rows.append((metric, float(np.mean(vals)), low, high, len(vals), higher))
    if (brain_embeddings is None) != (recon_embeddings is None):
        raise ValueError(
            "Give both 'brain_embeddings' and 'recon_embeddings' for brain retrieval, or neither."
        )
    if brain_embeddings is not None:
        res = brain_retrieval_of_reconstructions(
            brain_embeddings, recon_embeddings, seed=seed, n_bootstrap=n_bootstrap
        )
        for direction, label in (
            ("brain_to_stimulus", "brain_to_recon_top1"),
            ("stimulus_to_brain", "recon_to_brain_top1"),
        ):
            low, high = res.ci[direction].get("top1", (np.nan, np.nan))
            value = res.metrics[direction]["top1"]
            rows.append((label, value, low, high, res.n_queries[direction], True))
    return pd.DataFrame(
        rows, columns=["metric", "value", "ci_low", "ci_high", "n_images", "higher_is_better"]
    )
