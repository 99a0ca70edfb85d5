"""Contrastive losses: exact, gathered across GPUs, memory-bounded.

Pure functions with documented shapes (``clip_loss``, ``siglip_loss``, ``soft_clip_loss``,
``mixco_loss``, ``dcl_loss``, ``hard_negative_loss``, ``align_uniform_loss``), thin
:class:`torch.nn.Module` wrappers holding the learnable scale (``ClipLoss``, ``SigLipLoss``, …),
MindEye's BiMixCo → SoftCLIP schedule, and the gathers with gradient used under
``distributed=True`` (:mod:`brainalign.losses.distributed`, which states the exact equality with
single-process training). Every loss can return a :class:`LossOutput` with its alignment /
uniformity terms and in-batch accuracies (``return_output=True``).

Conventions: embeddings have shape ``(n_samples, n_features)`` and are L2-normalised by the
caller; ``logit_scale`` is the multiplier ``1 / temperature`` (MindEye's losses take the
temperature, as MindEye does). Submodules load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "LossOutput": "output",
    # InfoNCE family
    "clip_loss": "infonce",
    "ClipLoss": "infonce",
    "siglip_loss": "siglip",
    "SigLipLoss": "siglip",
    "dcl_loss": "dcl",
    "DCLLoss": "dcl",
    "hard_negative_mixing": "hard_negatives",
    "hard_negative_loss": "hard_negatives",
    "HardNegativeLoss": "hard_negatives",
    "alignment_loss": "align_uniform",
    "uniformity_loss": "align_uniform",
    "align_uniform_loss": "align_uniform",
    "AlignUniformLoss": "align_uniform",
    # MindEye
    "soft_clip_loss": "softclip",
    "SoftClipLoss": "softclip",
    "mixco": "bimixco",
    "mixco_loss": "bimixco",
    "MixcoResult": "bimixco",
    "MixCoLoss": "bimixco",
    "LossSchedule": "schedule",
    "LossStage": "schedule",
    "cosine_anneal": "schedule",
    "mindeye_loss_schedule": "schedule",
    # across GPUs
    "gather_with_grad": "distributed",
    "all_gather_tensor": "distributed",
    "all_reduce_with_grad": "distributed",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'brainalign.losses' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
