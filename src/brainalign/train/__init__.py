"""Training: configs, the contrastive loop, checkpoints and resume, DDP, sklearn-style decoders.

:func:`fit` trains an encoder of :mod:`brainalign.models` on a :class:`BrainTargetDataset`
(trials paired with their stimulus' target embedding) under a :class:`TrainConfig` (read from
YAML with overrides), writing checkpoints that :func:`fit` ``(..., resume=True)`` continues
exactly, and metrics to ``metrics.jsonl``. Under ``torch.distributed`` each rank takes its shard
of every global batch and the losses gather the negatives of all ranks. :class:`RidgeDecoder`
and :class:`ContrastiveDecoder` wrap it all in ``fit(X, Y)`` / ``transform`` / ``score`` on
NumPy arrays. Submodules load on first attribute access (importing this package loads no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded on first access)
_LAZY = {
    # config
    "TrainConfig": "config",
    "LOSSES": "config",
    # data
    "Batch": "data",
    "BrainTargetDataset": "data",
    "epoch_batches": "data",
    "epoch_permutation": "data",
    # checkpoints
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "latest_checkpoint": "checkpoint",
    "list_checkpoints": "checkpoint",
    # loop
    "ModelEMA": "ema",
    "FitResult": "loop",
    "build_loss": "loop",
    "encode": "loop",
    "evaluate_retrieval": "loop",
    "fit": "loop",
    # estimators
    "RidgeDecoder": "decoders",
    "ContrastiveDecoder": "decoders",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'brainalign.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
