"""Stimulus representations: CLIP, speech and DNN-layer features with a safe on-disk cache.

Importing this package is cheap: each name is loaded from its module (which imports torch,
open_clip, timm … on first use) when first accessed.

Examples
--------
>>> from brainalign.targets import extract_features
>>> feats = extract_features("efficientnet_lite0", ["blocks.5"], "stimuli/")  # doctest: +SKIP
>>> feats["blocks.5"].shape  # doctest: +SKIP
(200, 192)
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded on first access)
_LAZY = {
    # engine
    "FeatureSet": "extract",
    "compute_features": "extract",
    "extract_features": "extract",
    "make_extractor": "extract",
    "Extractor": "base",
    # cache
    "FeatureCache": "cache",
    "default_cache_dir": "cache",
    "make_cache_key": "cache",
    # stimuli
    "collect_stimuli": "inputs",
    # DNN layers
    "list_layers": "layers",
    "record_layers": "layers",
    "LayerRecorder": "layers",
    "make_pooling": "pooling",
    "POOLING_METHODS": "pooling",
    "VisionModel": "pretrained",
    "VisionExtractor": "pretrained",
    "load_vision_model": "pretrained",
    "load_efficientnet_lite0": "pretrained",
    "efficientnet_lite0_weights_path": "pretrained",
    "read_state_dict": "pretrained",
    # CLIP
    "ClipModel": "clip",
    "ClipImageExtractor": "clip",
    "ClipTextExtractor": "clip",
    "load_clip": "clip",
    "compute_clip_image_embeddings": "clip",
    "compute_clip_image_tokens": "clip",
    "compute_clip_text_embeddings": "clip",
    "normalize_tokens_by_cls": "clip",
    # speech
    "SpeechModel": "speech",
    "MelExtractor": "speech",
    "Wav2Vec2Extractor": "speech",
    "load_speech_model": "speech",
    "compute_mel_spectrogram": "speech",
    "compute_speech_embeddings": "speech",
    "mel_filterbank": "speech",
    "segment_features": "speech",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'brainalign.targets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
