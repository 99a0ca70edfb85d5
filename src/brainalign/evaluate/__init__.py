"""Evaluation: retrieval metrics and protocols (:mod:`.retrieval`), CIs (:mod:`.statistics`).

Importing this package is cheap; the names below load their module (and torch) on first access::

    from brainalign.evaluate import retrieval_metrics, n_way_retrieval
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GallerySizeCurve": "retrieval",
    "RetrievalResult": "retrieval",
    "accuracy_vs_gallery_size": "retrieval",
    "full_gallery_retrieval": "retrieval",
    "mean_reciprocal_rank": "retrieval",
    "median_rank": "retrieval",
    "n_way_retrieval": "retrieval",
    "ranks": "retrieval",
    "retrieval_metrics": "retrieval",
    "search_topk": "retrieval",
    "topk_accuracy": "retrieval",
    "two_way_identification": "retrieval",
    "bootstrap_ci": "statistics",
    "bootstrap_distribution": "statistics",
}
_SUBMODULES = ("retrieval", "statistics")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
