"""Simulated datasets with known ground truth, written in the real formats.

* :mod:`~brainalign.data.simulate.fmri`: an NSD-like fMRI experiment (single-trial betas of
  several subjects in MNI regions driven by network layers, NSD's HDF5/NIfTI/TSV formats);
* :mod:`~brainalign.data.simulate.meeg`: M/EEG recordings (``simulate_meeg_*``).

The simulators take arrays (stimulus features) and write files; computing the features of real
stimuli through a network is done one layer up, in :mod:`brainalign.pipelines`. Importing this
package is cheap: names are loaded from their module on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded on first access)
_LAZY = {
    # fMRI
    "DEFAULT_REGIONS": "fmri",
    "FMRIGroundTruth": "fmri",
    "FMRISimulation": "fmri",
    "FMRISimulationConfig": "fmri",
    "RegionSpec": "fmri",
    "SubjectSimulation": "fmri",
    "compute_ncsnr": "fmri",
    "load_brain_mask": "fmri",
    "load_fmri_ground_truth": "fmri",
    "noise_ceiling": "fmri",
    "simulate_fmri": "fmri",
    "subject_paths": "fmri",
    "write_fmri_simulation": "fmri",
    # M/EEG (the module's other public names are found lazily too, see __getattr__)
    "simulate_meeg_subject": "meeg",
    "write_simulated_meeg": "meeg",
    "read_meeg_ground_truth": "meeg",
    # shared helpers
    "load_ground_truth": "_common",
}

#: Any other ``simulate_meeg*`` name, or any name in the ``__all__`` of
#: :mod:`~brainalign.data.simulate.meeg`, is also looked up there on first access.
_MEEG_PREFIX = "simulate_meeg"

__all__ = sorted(_LAZY)


def _meeg_names() -> list[str]:
    try:
        module = importlib.import_module(f"{__name__}.meeg")
    except ModuleNotFoundError as err:
        if err.name == f"{__name__}.meeg":
            return []
        raise
    return list(getattr(module, "__all__", ()))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if not name.startswith("__") and (name.startswith(_MEEG_PREFIX) or name in _meeg_names()):
        module = importlib.import_module(f"{__name__}.meeg")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_meeg_names()})
