"""brainalign: align brain recordings with machine representations.

Decode stimuli from fMRI, MEG and EEG (contrastive encoders, retrieval, reconstruction) and compare
cortex with network layers (RSA, topological RSA), through one API.

Importing ``brainalign`` is cheap: subpackages (and torch, mne, matplotlib behind them) load on
first attribute access, e.g. ``brainalign.io`` or ``brainalign.rsa``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

_SUBPACKAGES = (
    "io",
    "data",
    "targets",
    "models",
    "losses",
    "train",
    "evaluate",
    "reconstruct",
    "rsa",
    "viz",
)

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'brainalign' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
