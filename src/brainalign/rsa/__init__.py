"""RSA and topological RSA: compare cortex with network layers.

RDMs from patterns (:func:`compute_rdms`, batched over regions, layers and subjects, chunked over
stimuli, on the GPU when present), comparisons of every RDM with every other
(:func:`compare_rdms`), geo-topological transforms and model selection (:func:`geotopological`,
:func:`geodesic`, :func:`topological_model_selection`), inference (:func:`permutation_test`,
:func:`bootstrap`, :func:`compare_models`, and :func:`dual_bootstrap` with the corrected variance
of a bootstrap over subjects and stimuli), noise ceilings (:func:`noise_ceiling`),
searchlights over voxel spheres and M/EEG sensors × time windows (:func:`searchlight_rsa`,
:func:`searchlight_meeg`) and, as the complement of RSA, cross-validated ridge encoding models
(:func:`ridge_encoding`, :func:`encoding_layers_regions`). Values equal rsatoolbox's (and
scikit-learn's for the encoding models) where they define the same quantity.

Importing this package is cheap: torch and the modules load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded on first access)
_LAZY = {
    # RDMs
    "METRICS": "rdm",
    "compute_rdms": "rdm",
    "noise_covariance": "noise",
    "noise_precision": "noise",
    "to_condensed": "condensed",
    "to_square": "condensed",
    "n_stimuli_from_pairs": "condensed",
    # comparisons
    "COMPARE_METHODS": "compare",
    "compare_rdms": "compare",
    # topology
    "geotopological": "topology",
    "geodesic": "topology",
    "default_grid": "topology",
    "topological_model_selection": "topology",
    "TopologicalSelection": "topology",
    # inference
    "permutation_test": "inference",
    "PermutationResult": "inference",
    "bootstrap": "inference",
    "BootstrapResult": "inference",
    "compare_models": "inference",
    "dual_bootstrap": "dual",
    "DualBootstrapResult": "dual",
    "corrected_variance": "dual",
    "ModelComparison": "inference",
    "pairwise_bootstrap_tests": "inference",
    "correct_pvalues": "correction",
    "noise_ceiling": "ceiling",
    "NoiseCeiling": "ceiling",
    # layers vs regions
    "compare_layers_regions": "layers",
    "best_layers": "layers",
    "layer_rdms_from_model": "layers",
    "LAYER_TABLE_COLUMNS": "layers",
    # searchlight
    "searchlight_rsa": "searchlight",
    "searchlight_meeg": "searchlight",
    "neighbourhoods": "searchlight",
    "time_windows": "searchlight",
    # encoding models
    "ridge_encoding": "encoding",
    "encoding_layers_regions": "encoding",
    "EncodingResult": "encoding",
    "make_folds": "encoding",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'brainalign.rsa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
