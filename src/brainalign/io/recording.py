"""The :class:`Recording`: what every reader returns, for fMRI and M/EEG alike.

It lives in ``io`` (not ``data``) because readers produce it and ``io`` sits below ``data`` in the
layering of DESIGN.md; :mod:`brainalign.data` re-exports it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["KINDS", "MODALITIES", "TRIAL_COLUMNS", "Recording", "make_trial_table"]

#: The columns every trial table has, in this order (more may follow).
TRIAL_COLUMNS = ("subject", "session", "run", "onset", "duration", "stimulus_id", "repetition")

#: ``"fmri"`` for volumes or surfaces, ``"meg"``/``"eeg"`` for sensors.
MODALITIES = ("fmri", "meg", "eeg")

#: How ``data`` is laid out:
#: ``"trials"``  (n_trials, n_features)       one response (beta) per trial;
#: ``"timeseries"`` (n_times, n_features)     a continuous run (fMRI TRs or M/EEG samples); the
#:                                            trial table then lists events with onsets in seconds;
#: ``"epochs"``  (n_trials, n_channels, n_times) windows locked to trial onsets.
KINDS = ("trials", "timeseries", "epochs")


def make_trial_table(
    n_trials: int,
    *,
    subject: str = "01",
    session: str = "01",
    run: int | np.ndarray = 1,
    onset: float | np.ndarray = np.nan,
    duration: float | np.ndarray = np.nan,
    stimulus_id: Any = None,
    repetition: int | np.ndarray | None = None,
    **extra: Any,
) -> pd.DataFrame:
    """Build a trial table with the standard columns of :data:`TRIAL_COLUMNS`.

    ``repetition`` defaults to the 0-based count of earlier trials with the same ``stimulus_id``.
    ``onset`` and ``duration`` are in seconds from the start of the run.
    """
    if stimulus_id is None:
        stimulus_id = np.arange(n_trials).astype(str)
    table = pd.DataFrame(
        {
            "subject": subject,
            "session": session,
            "run": run,
            "onset": onset,
            "duration": duration,
            "stimulus_id": np.asarray(stimulus_id).astype(str),
        },
        index=pd.RangeIndex(n_trials, name="trial"),
    )
    if repetition is None:
        table["repetition"] = table.groupby(["subject", "stimulus_id"]).cumcount()
    else:
        table["repetition"] = repetition
    for key, value in extra.items():
        table[key] = value
    return table


@dataclass(eq=False)
class Recording:
    """Brain responses of one subject with their trial table and spatial information.

    Parameters
    ----------
    data : ndarray
        ``(n_trials, n_voxels)`` or ``(n_times, n_voxels)`` for fMRI, ``(n_trials, n_channels,
        n_times)`` or ``(n_times, n_channels)`` for M/EEG; see :data:`KINDS`. Float32 or float64.
    trials : DataFrame
        One row per trial (``kind`` ``"trials"``/``"epochs"``) or per event (``"timeseries"``),
        with at least the columns of :data:`TRIAL_COLUMNS`.
    modality : {"fmri", "meg", "eeg"}
    kind : {"trials", "timeseries", "epochs"}
    subject : str
        Subject label without the ``sub-`` prefix.
    affine : ndarray, shape (4, 4) | None
        Voxel-to-world (mm) affine of the volume the voxels come from.
    mask : ndarray of bool, shape (nx, ny, nz) | None
        The volume mask; ``data``'s columns are the voxels where it is true, in C order.
    voxel_coords : ndarray, shape (n_voxels, 3) | None
        World coordinates (mm) of each voxel or surface vertex.
    roi_labels : ndarray of str, shape (n_voxels,) | None
        Region of interest of each voxel/vertex (``""`` when unlabelled).
    mesh : tuple (coords (n_vertices, 3), faces (n_faces, 3)) | None
        The surface mesh, for surface data.
    tr : float | None
        Repetition time in seconds (fMRI time series).
    ch_names : list of str | None
        Channel names (M/EEG).
    sensor_positions : ndarray, shape (n_channels, 3) | None
        Sensor positions in metres, head coordinates (M/EEG); NaN where unknown.
    sfreq : float | None
        Sampling frequency in Hz (M/EEG).
    times : ndarray, shape (n_times,) | None
        Time of each sample in seconds relative to the trial onset (``"epochs"``).
    info : mne.Info | None
        The MNE measurement info, kept for topomaps and forward models.
    source : Path | None
        The file the data were read from.
    metadata : dict
        Anything else the reader found worth keeping (e.g. the NSD scaling factor).
    """

    data: np.ndarray
    trials: pd.DataFrame
    modality: str
    kind: str
    subject: str = "01"
    affine: np.ndarray | None = None
    mask: np.ndarray | None = None
    voxel_coords: np.ndarray | None = None
    roi_labels: np.ndarray | None = None
    mesh: tuple[np.ndarray, np.ndarray] | None = None
    tr: float | None = None
    ch_names: list[str] | None = None
    sensor_positions: np.ndarray | None = None
    sfreq: float | None = None
    times: np.ndarray | None = None
    info: Any = None
    source: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(
                f"Invalid value for the 'modality' parameter. Allowed values are "
                f"{', '.join(map(repr, MODALITIES))}, but got {self.modality!r} instead."
            )
        if self.kind not in KINDS:
            raise ValueError(
                f"Invalid value for the 'kind' parameter. Allowed values are "
                f"{', '.join(map(repr, KINDS))}, but got {self.kind!r} instead."
            )
        data = np.asarray(self.data)
        want_ndim = 3 if self.kind == "epochs" else 2
        if data.ndim != want_ndim:
            raise ValueError(
                f"Recording data of kind {self.kind!r} must have {want_ndim} dimensions, got "
                f"shape {data.shape}{self._where()}."
            )
        missing = [c for c in TRIAL_COLUMNS if c not in self.trials.columns]
        if missing:
            raise ValueError(
                f"The trial table{self._where()} lacks the columns {missing}; it needs "
                f"{list(TRIAL_COLUMNS)}. Build it with brainalign.io.make_trial_table."
            )
        if self.kind != "timeseries" and len(self.trials) != data.shape[0]:
            raise ValueError(
                f"The trial table{self._where()} has {len(self.trials)} rows but the data have "
                f"{data.shape[0]} trials (shape {data.shape}); they must match one to one."
            )
        n_feat = data.shape[1]
        for name in ("voxel_coords", "roi_labels", "sensor_positions"):
            value = getattr(self, name)
            if value is not None and len(value) != n_feat:
                raise ValueError(
                    f"{name!r} has {len(value)} rows but the data have {n_feat} "
                    f"voxels/channels{self._where()}."
                )
        if self.ch_names is not None and len(self.ch_names) != n_feat:
            raise ValueError(
                f"'ch_names' has {len(self.ch_names)} names but the data have {n_feat} "
                f"channels{self._where()}."
            )

    def _where(self) -> str:
        return f" (from {str(self.source)!r})" if self.source is not None else ""

    @property
    def n_trials(self) -> int:
        """Number of rows of the trial table."""
        return len(self.trials)

    @property
    def n_features(self) -> int:
        """Number of voxels, vertices or channels."""
        return int(self.data.shape[1])

    def select(self, trials: np.ndarray | slice | None = None, features: Any = None) -> Recording:
        """Return a new Recording restricted to some trials and/or some voxels/channels.

        Parameters
        ----------
        trials : boolean mask, integer positions or slice | None
            Rows to keep (only for ``kind`` ``"trials"``/``"epochs"``).
        features : boolean mask or integer positions | None
            Voxels/vertices/channels to keep.
        """
        changes: dict[str, Any] = {}
        data = self.data
        if trials is not None:
            if self.kind == "timeseries":
                raise ValueError(
                    "select(trials=...) needs a Recording of kind 'trials' or 'epochs'; this one "
                    "is a 'timeseries'. Estimate trial responses first."
                )
            idx = np.arange(self.n_trials)[trials]
            data = data[idx]
            changes["trials"] = self.trials.iloc[idx].reset_index(drop=True).rename_axis("trial")
        if features is not None:
            fidx = np.arange(self.n_features)[features]
            data = data[:, fidx]
            for name in ("voxel_coords", "roi_labels", "sensor_positions"):
                value = getattr(self, name)
                if value is not None:
                    changes[name] = np.asarray(value)[fidx]
            if self.ch_names is not None:
                changes["ch_names"] = [self.ch_names[i] for i in fidx]
            if self.mask is not None:
                mask = np.zeros(self.mask.shape, bool)
                flat = np.flatnonzero(self.mask)[fidx]
                mask.flat[flat] = True
                changes["mask"] = mask
            if self.info is not None and self.ch_names is not None:
                import mne

                changes["info"] = mne.pick_info(self.info, fidx)
        changes["data"] = data
        changes["metadata"] = dict(self.metadata)
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        shape = "×".join(map(str, self.data.shape))
        return (
            f"<Recording {self.modality} sub-{self.subject} {self.kind} {shape}, "
            f"{self.n_trials} trials, {self.trials['stimulus_id'].nunique()} stimuli>"
        )
