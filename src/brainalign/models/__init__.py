"""Brain encoders: subject adapters, the fMRI (MindEye) and M/EEG (brainmagick) backbones.

Every encoder maps a batch of brain responses of one or several subjects to the shape of a
target and returns an :class:`EncoderOutput` (``backbone``, ``projected``). Build one by name
(:func:`build_model`, :data:`MODELS`), from recordings (``build_model(name, recordings=...)``,
``FMRIEncoder.from_recordings``), or from a config; save and load it with
``save_pretrained``/:func:`load_pretrained`. A new subject gets an adapter (``add_subject``),
trained alone first (:func:`freeze_except_adapter`). Submodules load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "EncoderOutput": "base",
    "BrainEncoder": "base",
    "ModelConfig": "base",
    "load_pretrained": "base",
    # adapters
    "SubjectLinear": "adapters",
    "trainable_parameters": "adapters",
    "freeze_except_adapter": "adapters",
    "unfreeze": "adapters",
    # fMRI
    "FMRIEncoder": "fmri",
    "FMRIEncoderConfig": "fmri",
    # M/EEG
    "MEEGEncoder": "meeg",
    "MEEGEncoderConfig": "meeg",
    "SpatialAttention": "spatial",
    "fourier_features": "spatial",
    "sensor_layout": "spatial",
    # linear baseline
    "LinearEncoder": "linear",
    "LinearEncoderConfig": "linear",
    # registry
    "MODELS": "registry",
    "ModelSpec": "registry",
    "build_model": "registry",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'brainalign.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
