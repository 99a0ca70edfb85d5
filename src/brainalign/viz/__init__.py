"""Plots: RDM heatmaps, MDS arrangements and layer profiles of brain regions (see DESIGN.md).

Importing this package is cheap: matplotlib and the plotting modules load on first attribute
access.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "MDS_METHODS": "rsa",
    "classical_mds": "rsa",
    "plot_layer_profiles": "rsa",
    "plot_mds": "rsa",
    "plot_rdm": "rsa",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'brainalign.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
