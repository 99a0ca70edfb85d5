"""Readers: fMRI (NIfTI, GIfTI, MGZ, NSD-style HDF5), M/EEG (mne, mne-bids), stimuli, manifests.

Every reader returns a :class:`~brainalign.io.recording.Recording` (or a stimulus set) and never
changes the user's files or arrays. Heavy libraries (nibabel, nilearn, mne, h5py) are imported by
the reader that needs them, on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "Recording": "recording",
    "TRIAL_COLUMNS": "recording",
    "make_trial_table": "recording",
    # fMRI
    "load_nifti_runs": "fmri",
    "load_nifti_betas": "fmri",
    "load_surface": "surface",
    "load_nsd_betas": "nsd",
    "read_design_table": "design",
    # M/EEG
    "read_raw": "meeg",
    "load_meeg": "meeg",
    "load_bids": "meeg",
    "events_to_trials": "meeg",
    "read_bids_events": "meeg",
    # stimuli
    "StimulusSet": "stimuli",
    "load_images": "stimuli",
    "load_audio": "stimuli",
    "load_texts": "stimuli",
    "resolve_stimuli": "stimuli",
    # manifests
    "Manifest": "manifest",
    "load_manifest": "manifest",
    "find_manifest": "manifest",
    "list_manifests": "manifest",
    "validate_dataset": "manifest",
    "fetch_dataset": "fetch",
    "download_file": "fetch",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'brainalign.io' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
