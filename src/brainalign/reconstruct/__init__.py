"""Image reconstruction from brain embeddings: diffusion prior, decoders, metrics.

The path follows MindEye: a brain encoder's embedding goes through a diffusion prior
(:mod:`.prior`) into the image-embedding space of a decoder, a diffusers pipeline that takes
image embeddings (:mod:`.decoders`: Stable unCLIP, Kandinsky 2.2), optionally started from a
low-level image (:mod:`.lowlevel`); :mod:`.metrics` scores the reconstructions (PixCorr, SSIM,
2-way identification on network features, distances, brain retrieval) with bootstrap CIs.

Importing this package is cheap: torch and diffusers load with the first name used.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded on first access)
_LAZY = {
    # metrics
    "MINDEYE_FEATURES": "metrics",
    "as_image_tensor": "metrics",
    "brain_retrieval_of_reconstructions": "metrics",
    "compute_image_features": "metrics",
    "embedding_distance": "metrics",
    "feature_distance": "metrics",
    "feature_two_way": "metrics",
    "pixcorr": "metrics",
    "reconstruction_metrics": "metrics",
    "ssim": "metrics",
    "two_way_identification": "metrics",
    # diffusion prior
    "PriorConfig": "prior",
    "PriorDraws": "prior",
    "DiffusionPrior": "prior",
    "build_joint_prior": "prior",
    "build_prior": "prior",
    "draw_prior_noise": "prior",
    "load_joint_prior": "prior",
    "prior_loss": "prior",
    "sample": "prior",
    "save_prior": "prior",
    "load_prior": "prior",
    "train_prior": "prior",
    # decoders
    "EmbeddingDecoder": "decoders",
    "load_decoder": "decoders",
    "random_kandinsky_pipeline": "decoders",
    # the offline stand-in decoder
    "ConvImageDecoder": "image_decoder",
    "ImageDecoderConfig": "image_decoder",
    "train_image_decoder": "image_decoder",
    "save_image_decoder": "image_decoder",
    "load_image_decoder": "image_decoder",
    # low-level path
    "LowLevelDecoder": "lowlevel",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'brainalign.reconstruct' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
