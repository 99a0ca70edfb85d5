"""An NSD-like fMRI experiment with known ground truth, simulated from stimulus features.

The simulator takes arrays — the features of every stimulus at a few network layers — and
returns single-trial responses ("betas") of several subjects, written in the formats of the
Natural Scenes Dataset (Allen et al., 2022) and read back by brainalign's ordinary readers.
It never computes features itself (:mod:`brainalign.pipelines.simulate_fmri` does, with
EfficientNet-Lite0).

The generating model
--------------------
Voxels lie on a grid in MNI space (the MNI152 brain mask of nilearn, resampled to
``resolution_mm``), inside regions of interest defined as spheres around approximate MNI
centres (:data:`DEFAULT_REGIONS`). For subject ``s``, region ``r`` driven by layer ``ℓ`` and
voxel ``v`` of that region:

1. the features of ``ℓ`` are z-scored (each feature over the stimuli) and reduced to their first
   ``n_components`` principal components ``X_ℓ`` (scores, not whitened: the geometry of the
   layer is kept) — :func:`~brainalign.data.simulate._common.reduce_features`;
2. read-out weights are drawn for every voxel, ``N(0, 1)``, smoothed in space with a Gaussian
   kernel of FWHM ``smoothness_mm`` (neighbouring voxels get similar tuning), and the region's
   weight matrix ``W`` ``(n_components, n_voxels)`` is replaced by the closest matrix with
   orthonormal rows (``U Vᵀ`` of its SVD; orthonormal columns when the region has fewer voxels
   than components). With ``W Wᵀ = I`` the noise-free patterns of a region have exactly the
   representational geometry of the reduced layer: ``(X W)(X W)ᵀ = X Xᵀ``;
3. the noise-free response to stimulus ``i`` is ``μ_v(i) = b_v + c_r · X_ℓ[i] · w_v``, where
   ``c_r`` scales the region so that its voxels' signal variance over the stimulus set is
   ``signal_std²`` on average (voxels differ around it), and ``b_v ~ N(baseline_mean,
   baseline_std)`` is the voxel's mean response (percent signal change);
4. each trial ``t`` showing stimulus ``i`` gives ``β_v(t) = μ_v(i) + Σ_f a_fv g_f(t) + e_v(t)``:
   region-shared noise (``n_noise_factors`` factors ``g_f(t) ~ N(0, 1)`` per region and trial,
   loadings ``a_fv`` scaled so that they carry a fraction ``shared_noise`` of the voxel's noise
   variance) plus voxel-specific noise ``e_v(t) ~ N(0, (1 − shared_noise) σ²_noise,v)``;
5. the betas are stored as int16 after multiplication by 300 (NSD's convention), so the values
   read back differ from ``β`` by at most 1/600 percent signal change.

Subjects differ in anatomy (region centres jittered by ``position_jitter_mm``, radii by
``radius_jitter``, so voxel counts differ) and in their read-out weights, noise and trial order.

Signal-to-noise ratio
---------------------
``snr`` is defined per voxel as **the variance of the noise-free response across the stimulus
set divided by the variance of the noise of a single trial** (shared plus voxel-specific):
``SNR_v = Var_i(μ_v(i)) / σ²_noise,v``. Voxels get ``SNR_v = snr · exp(snr_spread · z_v)`` with
``z_v ~ N(0, 1)`` (log-normal, median ``snr``; ``snr_spread=0`` gives every voxel ``snr``).
NSD's ``ncsnr`` is the square root of this ratio.

Noise ceilings and the oracle
-----------------------------
For every voxel the ground truth holds three noise ceilings, in percent of the variance of
trial-averaged responses that a perfect model could explain, for the average of ``n``
repetitions (``n = n_repetitions``): ``NC = 100 · ncsnr² / (ncsnr² + 1/n)`` (Allen et al., 2022)
with

* ``nc_data``: ``ncsnr`` estimated from the betas alone as NSD does (:func:`compute_ncsnr`);
* ``nc_true``: ``ncsnr² = SNR_v``, the requested SNR (analytic);
* ``nc_achieved``: ``ncsnr²`` = the SNR achieved in this draw, the variance of the noise-free
  responses over the subject's stimuli divided by the variance of the stored betas minus the
  noise-free responses over the subject's trials.

The correlation ceiling of a voxel is ``sqrt(NC / 100)``.

The **oracle** says how well any decoder could possibly identify the test stimuli from the
averaged test responses of a subject: for each of the ``n_test`` shared test stimuli, the betas
are averaged over repetitions, and the stimulus is identified among all ``n_test`` by comparing
this average with the noise-free responses of every candidate (top-1, ``n_test``-way; chance
``1 / n_test``). Two comparisons are reported:

* ``top1_mahalanobis``: the maximum-likelihood choice under the known Gaussian noise
  (smallest Mahalanobis distance with the true noise covariance, block-diagonal over regions):
  no decoder can do better in expectation;
* ``top1_correlation``: the largest Pearson correlation across voxels between the average and
  the candidate (baselines ``b_v`` subtracted from both), the usual correlation-based
  identification.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign._utils.errors import BrainAlignWarning
from brainalign._utils.progress import logger, progress
from brainalign._utils.validation import check_positive, check_type

from ._common import (
    child_rng,
    correlation_matrix,
    file_entries,
    load_ground_truth,
    publish_files,
    reduce_features,
    save_ground_truth,
    subject_labels,
    top1_accuracy,
    write_hdf5,
    write_manifest,
)

__all__ = [
    "DEFAULT_REGIONS",
    "FORMAT",
    "NSD_SCALE",
    "FMRIGroundTruth",
    "FMRISimulation",
    "FMRISimulationConfig",
    "RegionSpec",
    "SubjectSimulation",
    "check_n_test",
    "compute_ncsnr",
    "load_brain_mask",
    "load_fmri_ground_truth",
    "noise_ceiling",
    "simulate_fmri",
    "subject_paths",
    "write_fmri_simulation",
]

#: Identifies the ground truth files of this simulator (``ground_truth.json`` ``format``).
FORMAT = "brainalign-simulated-fmri"
_VERSION = 1
#: NSD stores betas as int16 percent signal change × 300.
NSD_SCALE = 300.0
_INT16_MAX = np.iinfo(np.int16).max
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


# --------------------------------------------------------------------------------------------
# regions and configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionSpec:
    """A region of interest: the union of spheres around MNI centres.

    Attributes
    ----------
    name : str
        Short name (letters, digits, ``_``, ``.``, ``-``), e.g. ``"EVC"``.
    centres_mm : tuple of (x, y, z)
        Sphere centres in MNI152 millimetres (one per hemisphere, typically).
    radius_mm : float
        Sphere radius in millimetres (before the per-subject jitter).
    description : str
        What the region stands for.
    """

    name: str
    centres_mm: tuple[tuple[float, float, float], ...]
    radius_mm: float
    description: str = ""


#: Four visual regions, each a pair of spheres (left, right hemisphere). The centres are
#: approximate, hand-placed MNI152 coordinates of the structures named (as in the
#: Harvard-Oxford atlas: intracalcarine cortex / occipital pole, lateral occipital cortex,
#: temporal occipital fusiform cortex, superior parietal lobule / intraparietal sulcus), not
#: atlas-derived boundaries; what matters for a simulation is plausible placement and sizes.
DEFAULT_REGIONS: tuple[RegionSpec, ...] = (
    RegionSpec(
        "EVC",
        ((-10.0, -92.0, 2.0), (12.0, -90.0, 2.0)),
        16.0,
        "early visual cortex (V1-V3) around the calcarine sulcus and the occipital pole",
    ),
    RegionSpec(
        "LOC",
        ((-44.0, -74.0, -6.0), (44.0, -74.0, -6.0)),
        12.0,
        "lateral occipital complex (object-selective lateral occipital cortex)",
    ),
    RegionSpec(
        "IPS",
        ((-26.0, -70.0, 44.0), (26.0, -70.0, 44.0)),
        12.0,
        "posterior parietal cortex along the intraparietal sulcus (dorsal stream)",
    ),
    RegionSpec(
        "VOT",
        ((-40.0, -52.0, -18.0), (40.0, -52.0, -18.0)),
        12.0,
        "ventral occipito-temporal cortex on the fusiform gyrus (near the fusiform face area)",
    ),
)


@dataclass(frozen=True)
class FMRISimulationConfig:
    """Parameters of the simulated fMRI experiment (see the module docstring for the model).

    Attributes
    ----------
    n_subjects : int
        Number of subjects.
    n_test : int
        Stimuli in the shared test set, seen by every subject (NSD: 1,000 shared images). The
        default simulated dataset uses 300
        (:data:`brainalign.pipelines.simulate_fmri.DEFAULT_N_TEST`).
    train_overlap : float
        Fraction of the training stimuli seen by every subject; the other training stimuli
        are split into disjoint blocks, one per subject. 1 (the default): every subject sees
        every stimulus, as many images per subject as the stimulus set allows (NSD: ~9,000
        images per subject, none shared but the test set); the decoders' accuracy follows the
        number of images a subject has seen (see
        :data:`brainalign.pipelines.simulate_fmri.DEFAULT_TRAIN_OVERLAP`).
    n_repetitions : int
        Presentations of every stimulus to a subject (NSD: 3). At least 2 (noise ceilings).
    snr : float
        Median single-trial signal-to-noise ratio per voxel: variance of the noise-free
        response over the stimulus set / variance of the noise of one trial.
    snr_spread : float
        SD of ``log(SNR_v)`` across voxels (0: every voxel at ``snr``).
    shared_noise : float
        Fraction of each voxel's noise variance that is shared within its region, in [0, 1).
    n_noise_factors : int
        Number of shared noise factors per region.
    n_components : int
        Principal components kept from each layer's z-scored features.
    smoothness_mm : float
        FWHM (mm) of the Gaussian kernel that smooths the read-out weights in space; 0: none.
    signal_std : float
        Root mean square over a region's voxels of the SD of their noise-free responses over
        the stimulus set, percent signal change.
    baseline_mean, baseline_std : float
        Mean and SD across voxels of the voxels' mean responses, percent signal change.
    resolution_mm : int
        Voxel size of the MNI grid (nilearn's MNI152 brain mask resampled), millimetres.
    position_jitter_mm : float
        SD of the per-subject shift of every region centre, millimetres (each axis).
    radius_jitter : float
        Per-subject radii are ``radius_mm · U(1 − radius_jitter, 1 + radius_jitter)``.
    trials_per_run, runs_per_session : int
        Trials are numbered within runs and runs within sessions (NSD: ~62 trials per run,
        12 runs per session).
    trial_duration : float
        Stimulus duration, seconds (NSD: 3 s).
    trial_interval : float
        Time between trial onsets, seconds (NSD: 4 s); the first onset of a run is at
        ``trial_interval``.
    regions : tuple of RegionSpec
        The regions of interest.
    seed : int
        Seed of every random draw.
    """

    n_subjects: int = 4
    n_test: int = 100
    train_overlap: float = 1.0
    n_repetitions: int = 3
    snr: float = 0.3
    snr_spread: float = 0.5
    shared_noise: float = 0.3
    n_noise_factors: int = 5
    n_components: int = 128
    smoothness_mm: float = 6.0
    signal_std: float = 1.0
    baseline_mean: float = 1.0
    baseline_std: float = 0.5
    resolution_mm: int = 3
    position_jitter_mm: float = 3.0
    radius_jitter: float = 0.15
    trials_per_run: int = 60
    runs_per_session: int = 12
    trial_duration: float = 3.0
    trial_interval: float = 4.0
    regions: tuple[RegionSpec, ...] = DEFAULT_REGIONS
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_subjects", "n_test", "n_noise_factors", "n_components"):
            _check_int(name, getattr(self, name), 1)
        _check_int("n_repetitions", self.n_repetitions, 2)
        _check_int("trials_per_run", self.trials_per_run, 1)
        _check_int("runs_per_session", self.runs_per_session, 1)
        _check_int("resolution_mm", self.resolution_mm, 1)
        _check_int("seed", self.seed, 0)
        for name in ("snr", "signal_std", "trial_duration", "trial_interval"):
            check_positive(name, getattr(self, name))
        for name in ("snr_spread", "smoothness_mm", "baseline_std", "position_jitter_mm"):
            check_positive(name, getattr(self, name), strict=False)
        if not 0 <= self.shared_noise < 1:
            raise ValueError(f"'shared_noise' must be in [0, 1), got {self.shared_noise!r}.")
        if not 0 <= self.train_overlap <= 1:
            raise ValueError(f"'train_overlap' must be in [0, 1], got {self.train_overlap!r}.")
        if not 0 <= self.radius_jitter < 1:
            raise ValueError(f"'radius_jitter' must be in [0, 1), got {self.radius_jitter!r}.")
        if not self.regions:
            raise ValueError("'regions' is empty; give at least one RegionSpec.")
        names = [r.name for r in self.regions]
        for region in self.regions:
            check_type("regions", region, RegionSpec, "a tuple of RegionSpec")
            _check_name(region.name, "region name")
            check_positive(f"radius_mm of region {region.name!r}", region.radius_mm)
            if not region.centres_mm or any(len(c) != 3 for c in region.centres_mm):
                raise ValueError(
                    f"Region {region.name!r} needs at least one centre (x, y, z) in MNI mm, got "
                    f"{region.centres_mm!r}."
                )
        if len(set(names)) != len(names):
            raise ValueError(f"Region names must be unique, got {names}.")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name!r} must be an integer >= {minimum}, got {value!r}.")


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"Invalid {what} {name!r}: use letters, digits, '_', '.' and '-' only (it names "
            "HDF5 datasets and table entries)."
        )


# --------------------------------------------------------------------------------------------
# the brain mask
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _mni_mask(resolution_mm: int) -> tuple[np.ndarray, np.ndarray]:
    from nilearn.datasets import load_mni152_brain_mask

    img = load_mni152_brain_mask(resolution=int(resolution_mm))
    mask = np.asarray(img.dataobj) > 0
    affine = np.asarray(img.affine, dtype=np.float64)
    mask.flags.writeable = False
    affine.flags.writeable = False
    return mask, affine


def load_brain_mask(resolution_mm: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 brain mask shipped with nilearn (offline), on a grid of ``resolution_mm``.

    Parameters
    ----------
    resolution_mm : int
        Voxel size in millimetres (nilearn resamples its 1 mm template and thresholds it at
        0.2, :func:`nilearn.datasets.load_mni152_brain_mask`).

    Returns
    -------
    mask : ndarray of bool, shape (nx, ny, nz)
        Read-only.
    affine : ndarray, shape (4, 4)
        Voxel indices → MNI millimetres. Read-only.
    """
    _check_int("resolution_mm", resolution_mm, 1)
    return _mni_mask(int(resolution_mm))


def _resolve_brain_mask(brain_mask: Any, resolution_mm: int) -> tuple[np.ndarray, np.ndarray]:
    if brain_mask is None:
        return load_brain_mask(resolution_mm)
    from brainalign.io.fmri import read_mask

    if isinstance(brain_mask, tuple) and len(brain_mask) == 2:
        arr, affine = brain_mask
        arr = np.asarray(arr, bool)
        affine = np.asarray(affine, float)
        if arr.ndim != 3 or affine.shape != (4, 4):
            raise ValueError(
                "'brain_mask' given as (array, affine) needs a 3-D array and a 4×4 affine, got "
                f"shapes {arr.shape} and {affine.shape}."
            )
        return arr, affine
    arr, affine, where = read_mask(brain_mask)
    if affine is None:
        raise ValueError(
            f"'brain_mask' {where} has no affine: pass a NIfTI image or path, or a tuple "
            "(mask array, 4×4 affine)."
        )
    return arr, affine


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


@dataclass
class SubjectSimulation:
    """One simulated subject (arrays as written to disk; see :class:`FMRISimulation`).

    Attributes
    ----------
    subject : str
        Label without ``sub-`` (``"01"``).
    design : DataFrame, shape (n_trials, n_columns)
        The design table as written: ``subject`` (``sub-XX``), ``session`` (``ses-XX``),
        ``run``, ``trial`` (1-based within the run), ``onset`` and ``duration`` (s),
        ``stimulus_id``, ``repetition`` (0-based), ``split`` (``train``/``test``) and, when
        categories were given, ``category``.
    betas_int16 : ndarray of int16, shape (n_trials, n_voxels)
        Stored values: percent signal change × 300, rounded.
    mask : ndarray of bool, shape (nx, ny, nz)
        The subject's voxels (union of its regions); columns follow its C order.
    roi_volume : ndarray of int16, shape (nx, ny, nz)
        Region label of each voxel (1 … n_regions in the order of the config, 0 outside).
    voxel_region : ndarray of str, shape (n_voxels,)
    stimulus_ids : ndarray of str, shape (n_subject_stimuli,)
        The stimuli this subject saw, in the order of the stimulus set.
    clean : ndarray of float32, shape (n_subject_stimuli, n_voxels)
        Noise-free responses (percent signal change), rows as ``stimulus_ids``.
    arrays : dict of str to ndarray
        Everything else of the ground truth (weights, noise loadings, SNRs, noise ceilings).
    info : dict
        Scalars: voxel counts, region centres and radii, oracle accuracies.
    """

    subject: str
    design: pd.DataFrame
    betas_int16: np.ndarray
    mask: np.ndarray
    roi_volume: np.ndarray
    voxel_region: np.ndarray
    stimulus_ids: np.ndarray
    clean: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def betas(self) -> np.ndarray:
        """Betas in percent signal change, ``(n_trials, n_voxels)`` float32, exactly as
        :func:`~brainalign.io.load_nsd_betas` returns them (int16 / 300)."""
        data = self.betas_int16.astype(np.float32)
        data /= np.float32(NSD_SCALE)
        return data

    @property
    def n_voxels(self) -> int:
        """Number of voxels."""
        return int(self.betas_int16.shape[1])


@dataclass
class FMRISimulation:
    """A simulated experiment: stimuli, ground truth and every subject's data.

    Attributes
    ----------
    config : FMRISimulationConfig
    stimulus_ids : ndarray of str, shape (n_stimuli,)
    categories : ndarray of str, shape (n_stimuli,) | None
    test_ids : ndarray of str, shape (n_test,)
        The shared test stimuli, in stimulus-set order.
    region_layers : dict of str to str
        Which layer drives which region.
    features : dict of str to ndarray, shape (n_stimuli, n_kept)
        The reduced features (principal component scores) of each layer used.
    explained_variance : dict of str to float
        Fraction of each layer's z-scored feature variance the kept components explain.
    brain_mask : ndarray of bool, shape (nx, ny, nz)
    affine : ndarray, shape (4, 4)
    subjects : list of SubjectSimulation
    """

    config: FMRISimulationConfig
    stimulus_ids: np.ndarray
    categories: np.ndarray | None
    test_ids: np.ndarray
    region_layers: dict[str, str]
    features: dict[str, np.ndarray]
    explained_variance: dict[str, float]
    brain_mask: np.ndarray
    affine: np.ndarray
    subjects: list[SubjectSimulation]

    def subject(self, label: str) -> SubjectSimulation:
        """The subject with this label (``"01"`` or ``"sub-01"``)."""
        label = str(label).removeprefix("sub-")
        for sub in self.subjects:
            if sub.subject == label:
                return sub
        raise KeyError(
            f"No subject {label!r}; the subjects are {[s.subject for s in self.subjects]}."
        )


# --------------------------------------------------------------------------------------------
# noise ceilings
# --------------------------------------------------------------------------------------------


def compute_ncsnr(
    betas: np.ndarray, stimulus_ids: Sequence[Any], sessions: Sequence[Any] | None = None
) -> np.ndarray:
    """Noise-ceiling signal-to-noise ratio of every voxel, as NSD computes it.

    Following Allen et al. (2022): the betas of each voxel are z-scored within each session;
    the noise variance is the variance across the repetitions of a stimulus (unbiased,
    ``ddof=1``) averaged over the stimuli shown at least twice; the signal variance is
    ``max(0, 1 − noise variance)``; ``ncsnr = sqrt(signal variance / noise variance)``.

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_voxels)
    stimulus_ids : sequence, shape (n_trials,)
        The stimulus of every trial.
    sessions : sequence, shape (n_trials,) | None
        Session of every trial (z-scoring within each); ``None``: one session.

    Returns
    -------
    ncsnr : ndarray, shape (n_voxels,) float64
        0 for voxels without signal (or constant voxels).
    """
    x = np.asarray(betas, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"'betas' must be (n_trials, n_voxels), got shape {x.shape}.")
    ids = np.asarray([str(s) for s in stimulus_ids])
    if len(ids) != len(x):
        raise ValueError(
            f"'stimulus_ids' has {len(ids)} entries but 'betas' has {len(x)} trials; give the "
            "stimulus of every trial."
        )
    groups = np.zeros(len(x), int) if sessions is None else pd.factorize(np.asarray(sessions))[0]
    if len(groups) != len(x):
        raise ValueError(f"'sessions' has {len(groups)} entries but 'betas' has {len(x)} trials.")
    z = np.empty_like(x)
    for g in np.unique(groups):
        rows = groups == g
        sd = x[rows].std(axis=0, ddof=1) if rows.sum() > 1 else np.zeros(x.shape[1])
        sd[sd == 0] = np.inf
        z[rows] = (x[rows] - x[rows].mean(axis=0)) / sd
    codes, _ = pd.factorize(ids)
    counts = np.bincount(codes)
    repeated = counts[codes] >= 2
    if not repeated.any():
        raise ValueError(
            "No stimulus is shown more than once; the noise ceiling needs repetitions."
        )
    codes_r = pd.factorize(codes[repeated])[0]
    n_r = np.bincount(codes_r).astype(float)
    zr = z[repeated]
    sums = np.zeros((len(n_r), x.shape[1]))
    np.add.at(sums, codes_r, zr)
    means = sums / n_r[:, None]
    sq = np.zeros_like(sums)
    np.add.at(sq, codes_r, (zr - means[codes_r]) ** 2)
    noise_var = (sq / (n_r - 1)[:, None]).mean(axis=0)
    signal_var = np.clip(1.0 - noise_var, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(signal_var / noise_var)
    return np.where(np.isfinite(out), out, 0.0)


def noise_ceiling(ncsnr: np.ndarray | float, n_average: float) -> np.ndarray:
    """NSD's noise ceiling: ``100 · ncsnr² / (ncsnr² + 1 / n_average)``.

    Parameters
    ----------
    ncsnr : float | ndarray
        Noise-ceiling SNR (``sqrt`` of signal variance / single-trial noise variance).
    n_average : float
        Number of trials averaged per stimulus in the data the model is evaluated on.

    Returns
    -------
    nc : ndarray
        Percent of the variance of the averaged responses that the noise-free responses
        explain (the squared correlation ceiling × 100).
    """
    check_positive("n_average", n_average)
    s2 = np.square(np.asarray(ncsnr, dtype=np.float64))
    return 100.0 * s2 / (s2 + 1.0 / float(n_average))


# --------------------------------------------------------------------------------------------
# the simulation
# --------------------------------------------------------------------------------------------


def _check_ids(stimulus_ids: Any, n: int) -> np.ndarray:
    if stimulus_ids is None:
        return np.arange(n).astype(str)
    ids = np.asarray([str(s) for s in stimulus_ids], dtype=object).astype(str)
    if ids.shape != (n,):
        raise ValueError(
            f"'stimulus_ids' has {ids.size} entries but the features have {n} stimuli."
        )
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()
    if len(dup):
        raise ValueError(f"'stimulus_ids' must be unique; repeated: {list(dup[:10])}.")
    for sid in ids.tolist():
        # a design table read back with pandas turns numeric-looking ids into numbers
        try:
            value = float(sid)
        except ValueError:
            continue
        if not (sid.isdigit() and str(int(value)) == sid):
            raise ValueError(
                f"The stimulus id {sid!r} looks like a number that would not read back as "
                "written from a CSV/TSV design table (leading zeros, signs, decimals); use ids "
                "such as 'img0001'."
            )
    return ids


def _check_features(features: Any) -> dict[str, np.ndarray]:
    if not isinstance(features, Mapping) or not features:
        raise TypeError(
            "'features' must be a non-empty mapping layer name -> array (n_stimuli, ...), got "
            f"{type(features).__name__}."
        )
    out: dict[str, np.ndarray] = {}
    n = None
    for name, value in features.items():
        _check_name(name, "layer name")
        arr = np.asarray(value)
        if arr.ndim < 2:
            raise ValueError(
                f"The features of layer {name!r} must be (n_stimuli, ...), got shape {arr.shape}."
            )
        if n is not None and arr.shape[0] != n:
            raise ValueError(
                f"Every layer needs one row per stimulus: layer {name!r} has {arr.shape[0]} rows, "
                f"the first layer {n}."
            )
        n = arr.shape[0]
        out[str(name)] = arr
    return out


def _check_region_layers(
    region_layers: Mapping[str, str] | None,
    regions: Sequence[RegionSpec],
    layers: Sequence[str],
) -> dict[str, str]:
    names = [r.name for r in regions]
    if region_layers is None:
        if len(layers) != len(names):
            raise ValueError(
                f"{len(layers)} layers ({list(layers)}) for {len(names)} regions ({names}): pass "
                "region_layers={region: layer} to say which layer drives which region."
            )
        return dict(zip(names, layers))
    mapping = {str(k): str(v) for k, v in region_layers.items()}
    missing = [n for n in names if n not in mapping]
    unknown = [k for k in mapping if k not in names]
    if missing or unknown:
        raise ValueError(
            f"'region_layers' must name every region {names} once; missing {missing}, unknown "
            f"{unknown}."
        )
    bad = {k: v for k, v in mapping.items() if v not in layers}
    if bad:
        raise ValueError(
            f"'region_layers' names layers that are not in 'features': {bad}; the features "
            f"hold {list(layers)}."
        )
    return {n: mapping[n] for n in names}


def check_n_test(n_test: int, n_stimuli: int) -> None:
    """Refuse a number of shared test stimuli that leaves no training stimulus, or fewer than
    the 2 that identification needs (called before any feature is computed, too)."""
    if n_test >= n_stimuli:
        raise ValueError(
            f"n_test={n_test} (--n-test) leaves no training stimulus among the {n_stimuli} "
            f"stimuli; give n_test below {n_stimuli} (e.g. {max(2, n_stimuli // 10)}), or more "
            "stimuli."
        )
    if n_test < 2:
        raise ValueError(f"n_test={n_test}: identification needs at least 2 test stimuli.")


def _allocate(n_stimuli: int, cfg: FMRISimulationConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """Positions of the shared test stimuli and of each subject's stimuli (sorted)."""
    check_n_test(cfg.n_test, n_stimuli)
    rng = child_rng(cfg.seed, "allocation")
    perm = rng.permutation(n_stimuli)
    test = np.sort(perm[: cfg.n_test])
    train = perm[cfg.n_test :]
    n_shared = round(cfg.train_overlap * len(train))
    shared, rest = train[:n_shared], train[n_shared:]
    blocks = np.array_split(rest, cfg.n_subjects)
    per_subject = [np.sort(np.concatenate([test, shared, block])) for block in blocks]
    return test, per_subject


def _assign_regions(
    ijk: np.ndarray, affine: np.ndarray, cfg: FMRISimulationConfig, subject: str
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Region label (1-based, 0 = none) of each brain voxel for one subject."""
    rng = child_rng(cfg.seed, "anatomy", subject)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    score = np.full((len(cfg.regions), len(xyz)), np.inf)
    placed = []
    for r, region in enumerate(cfg.regions):
        centres = np.asarray(region.centres_mm, float)
        centres = centres + rng.normal(0.0, cfg.position_jitter_mm, centres.shape)
        radius = region.radius_mm * rng.uniform(1 - cfg.radius_jitter, 1 + cfg.radius_jitter)
        dist = np.min(np.linalg.norm(xyz[None, :, :] - centres[:, None, :], axis=2), axis=0)
        score[r] = np.where(dist <= radius, dist / radius, np.inf)
        placed.append({"centres_mm": centres.round(3).tolist(), "radius_mm": round(radius, 3)})
    best = np.argmin(score, axis=0)
    labels = np.where(np.isfinite(score[best, np.arange(len(xyz))]), best + 1, 0)
    return labels, placed


def _smoothing(coords: np.ndarray, fwhm: float) -> Any:
    """Sparse Gaussian kernel ``(n, n)`` between voxel coordinates (mm), cut at 3 SD."""
    from scipy import sparse
    from scipy.spatial import cKDTree

    n = len(coords)
    if fwhm <= 0:
        return sparse.identity(n, format="csr")
    sigma = fwhm * _FWHM_TO_SIGMA
    tree = cKDTree(coords)
    dist = tree.sparse_distance_matrix(tree, 3.0 * sigma, output_type="coo_matrix")
    kernel = sparse.coo_matrix(
        (np.exp(-(dist.data**2) / (2 * sigma**2)), (dist.row, dist.col)), shape=(n, n)
    ).tocsr()
    return kernel + sparse.identity(n, format="csr")  # the zero self-distances are not stored


def _design(
    sub: str,
    positions: np.ndarray,
    ids: np.ndarray,
    categories: np.ndarray | None,
    test: np.ndarray,
    cfg: FMRISimulationConfig,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The trial table and the position (in the stimulus set) of every trial's stimulus."""
    rng = child_rng(cfg.seed, "design", sub)
    trial_pos = rng.permutation(np.repeat(positions, cfg.n_repetitions))
    n = len(trial_pos)
    per_session = cfg.trials_per_run * cfg.runs_per_session
    index = np.arange(n)
    within = index % per_session
    in_run = within % cfg.trials_per_run
    table = pd.DataFrame(
        {
            "subject": f"sub-{sub}",
            "session": [f"ses-{s:02d}" for s in index // per_session + 1],
            "run": within // cfg.trials_per_run + 1,
            "trial": in_run + 1,
            "onset": cfg.trial_interval * (in_run + 1),
            "duration": cfg.trial_duration,
            "stimulus_id": ids[trial_pos],
        }
    )
    table["repetition"] = table.groupby("stimulus_id").cumcount()
    table["split"] = np.where(np.isin(trial_pos, test), "test", "train")
    if categories is not None:
        table["category"] = categories[trial_pos]
    return table, trial_pos


def _whiteners(
    loadings: Mapping[str, np.ndarray], indep_var: np.ndarray, voxel_region: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per region: its voxel columns and the Cholesky factor of its noise covariance."""
    out = {}
    for name, a in loadings.items():
        cols = np.flatnonzero(voxel_region == name)
        cov = a.T.astype(np.float64) @ a.astype(np.float64) + np.diag(indep_var[cols])
        out[name] = (cols, np.linalg.cholesky(cov))
    return out


def _oracle(
    betas: np.ndarray,
    trial_pos: np.ndarray,
    clean_all: np.ndarray,
    baseline: np.ndarray,
    test: np.ndarray,
    whiteners: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """Top-1 identification of the averaged test responses (see the module docstring), with
    all voxels and with each region's voxels alone."""
    from scipy.linalg import solve_triangular

    avg = np.stack([betas[trial_pos == p].mean(axis=0, dtype=np.float64) for p in test])
    mu = clean_all[test].astype(np.float64)
    out: dict[str, Any] = {"n_way": len(test), "chance": 1.0 / len(test)}
    dist = np.zeros((len(test), len(test)))
    regions = {}
    for name, (cols, chol) in whiteners.items():
        za = solve_triangular(chol, avg[:, cols].T, lower=True).T
        zm = solve_triangular(chol, mu[:, cols].T, lower=True).T
        sq = (za**2).sum(1)[:, None] + (zm**2).sum(1)[None, :] - 2 * za @ zm.T
        dist += sq
        corr = correlation_matrix(avg[:, cols] - baseline[cols], mu[:, cols] - baseline[cols])
        regions[name] = {
            "top1_correlation": top1_accuracy(corr),
            "top1_mahalanobis": top1_accuracy(sq, larger_is_better=False),
        }
    corr = correlation_matrix(avg - baseline, mu - baseline)
    out["top1_correlation"] = top1_accuracy(corr)
    out["top1_mahalanobis"] = top1_accuracy(dist, larger_is_better=False)
    out["regions"] = regions
    return out


def _simulate_subject(
    sub: str,
    positions: np.ndarray,
    test: np.ndarray,
    ids: np.ndarray,
    categories: np.ndarray | None,
    reduced: Mapping[str, np.ndarray],
    region_layers: Mapping[str, str],
    brain_ijk: np.ndarray,
    brain_shape: tuple[int, ...],
    affine: np.ndarray,
    cfg: FMRISimulationConfig,
) -> SubjectSimulation:
    labels, placed = _assign_regions(brain_ijk, affine, cfg, sub)
    roi_volume = np.zeros(brain_shape, np.int16)
    roi_volume[tuple(brain_ijk.T)] = labels
    mask = roi_volume > 0
    vox_ijk = np.argwhere(mask)  # C order: the order of the data columns
    vox_label = roi_volume[mask]
    names = np.array([r.name for r in cfg.regions])
    for r, region in enumerate(cfg.regions, start=1):
        if not np.any(vox_label == r):
            raise ValueError(
                f"Region {region.name!r} has no voxel inside the brain mask for subject {sub!r} "
                f"(centres {placed[r - 1]['centres_mm']} mm, radius {placed[r - 1]['radius_mm']} "
                "mm). Move its centres inside the brain, enlarge its radius, or use a finer "
                "resolution_mm."
            )
    voxel_region = names[vox_label - 1]
    coords = vox_ijk @ affine[:3, :3].T + affine[:3, 3]
    n_vox = len(vox_ijk)
    n_stim = len(ids)

    rng_w = child_rng(cfg.seed, "weights", sub)
    rng_v = child_rng(cfg.seed, "voxels", sub)
    signal = np.empty((n_stim, n_vox))
    arrays: dict[str, np.ndarray] = {}
    for region in cfg.regions:
        cols = np.flatnonzero(voxel_region == region.name)
        x = reduced[region_layers[region.name]]
        w0 = rng_w.standard_normal((x.shape[1], len(cols)))
        kernel = _smoothing(coords[cols], cfg.smoothness_mm)
        w0 = np.asarray((kernel @ w0.T).T)
        u, _, vt = np.linalg.svd(w0, full_matrices=False)
        w = u @ vt  # closest matrix with orthonormal rows (or columns)
        raw = x @ w
        scale = cfg.signal_std / np.sqrt(np.mean(raw.var(axis=0)))
        signal[:, cols] = scale * raw
        arrays[f"weights/{region.name}"] = w
        arrays[f"signal_scale/{region.name}"] = np.asarray(scale)
    baseline = rng_v.normal(cfg.baseline_mean, cfg.baseline_std, n_vox)
    clean_all = baseline + signal
    signal_var = signal.var(axis=0)
    signal_var = np.maximum(signal_var, 1e-6 * cfg.signal_std**2)
    snr = cfg.snr * np.exp(cfg.snr_spread * rng_v.standard_normal(n_vox))
    noise_var = signal_var / snr
    indep_var = (1.0 - cfg.shared_noise) * noise_var

    design, trial_pos = _design(sub, positions, ids, categories, test, cfg)
    n_trials = len(design)
    rng_n = child_rng(cfg.seed, "noise", sub)
    noise = np.empty((n_trials, n_vox))
    loadings: dict[str, np.ndarray] = {}
    for region in cfg.regions:
        cols = np.flatnonzero(voxel_region == region.name)
        a = rng_n.standard_normal((cfg.n_noise_factors, len(cols)))
        a *= np.sqrt(cfg.shared_noise * noise_var[cols]) / np.linalg.norm(a, axis=0)
        factors = rng_n.standard_normal((n_trials, cfg.n_noise_factors))
        noise[:, cols] = factors @ a
        loadings[region.name] = a
        arrays[f"noise_loadings/{region.name}"] = a.astype(np.float32)
    noise += rng_n.standard_normal((n_trials, n_vox)) * np.sqrt(indep_var)

    stored = np.rint((clean_all[trial_pos] + noise) * NSD_SCALE)
    n_clipped = int(np.sum(np.abs(stored) > _INT16_MAX))
    if n_clipped:
        warnings.warn(
            f"{n_clipped} betas of subject {sub!r} exceed the int16 range of NSD's storage "
            f"(±{_INT16_MAX / NSD_SCALE:.1f} % signal change) and were clipped; lower "
            "signal_std or baseline_mean, or raise snr.",
            BrainAlignWarning,
            stacklevel=5,
        )
    betas_int16 = np.clip(stored, -_INT16_MAX, _INT16_MAX).astype(np.int16)
    betas = betas_int16.astype(np.float32)
    betas /= np.float32(NSD_SCALE)

    # achieved SNR, noise ceilings and the oracle, from the values as stored
    clean_sub = clean_all[positions]
    residual = betas.astype(np.float64) - clean_all[trial_pos]
    snr_achieved = clean_sub.var(axis=0) / residual.var(axis=0)
    ncsnr = compute_ncsnr(betas, design["stimulus_id"], design["session"])
    n = cfg.n_repetitions
    oracle = _oracle(
        betas, trial_pos, clean_all, baseline, test, _whiteners(loadings, indep_var, voxel_region)
    )
    arrays.update(
        {
            "stimulus_ids": ids[positions],
            "clean": clean_sub.astype(np.float32),
            "baseline": baseline.astype(np.float32),
            "signal_var": signal_var,
            "voxel_ijk": vox_ijk.astype(np.int32),
            "voxel_region": voxel_region,
            "snr": snr,
            "snr_achieved": snr_achieved,
            "noise_std": np.sqrt(noise_var),
            "ncsnr": ncsnr,
            "nc_data": noise_ceiling(ncsnr, n),
            "nc_true": noise_ceiling(np.sqrt(snr), n),
            "nc_achieved": noise_ceiling(np.sqrt(snr_achieved), n),
        }
    )
    regions_info = {}
    for r, (region, where) in enumerate(zip(cfg.regions, placed), start=1):
        cols = voxel_region == region.name
        regions_info[region.name] = {
            "label": r,
            "layer": region_layers[region.name],
            "n_voxels": int(cols.sum()),
            **where,
            "median_snr": float(np.median(snr[cols])),
            "median_snr_achieved": float(np.median(snr_achieved[cols])),
            "median_nc_true": float(np.median(arrays["nc_true"][cols])),
            "median_nc_data": float(np.median(arrays["nc_data"][cols])),
        }
    info = {
        "n_voxels": n_vox,
        "n_trials": n_trials,
        "n_stimuli": len(positions),
        "n_sessions": int(design["session"].nunique()),
        "regions": regions_info,
        "oracle": oracle,
    }
    return SubjectSimulation(
        subject=sub,
        design=design,
        betas_int16=betas_int16,
        mask=mask,
        roi_volume=roi_volume,
        voxel_region=voxel_region,
        stimulus_ids=ids[positions],
        clean=clean_sub.astype(np.float32),
        arrays=arrays,
        info=info,
    )


def simulate_fmri(
    features: Mapping[str, Any],
    stimulus_ids: Sequence[Any] | np.ndarray | None = None,
    *,
    region_layers: Mapping[str, str] | None = None,
    categories: Sequence[Any] | np.ndarray | None = None,
    config: FMRISimulationConfig | None = None,
    brain_mask: Any = None,
    verbose: bool = False,
    **overrides: Any,
) -> FMRISimulation:
    """Simulate an NSD-like fMRI experiment whose responses are read-outs of given features.

    Parameters
    ----------
    features : mapping of str to ndarray, each (n_stimuli, ...)
        Features of every stimulus at some layers (any trailing shape, flattened). They are
        z-scored and reduced to ``n_components`` principal components per layer.
    stimulus_ids : sequence of str, shape (n_stimuli,) | None
        Ids of the stimuli (``"0"``, ``"1"`` … by default). Numeric-looking ids must be plain
        integers without leading zeros (they must read back unchanged from the design table).
    region_layers : mapping of str to str | None
        Region name → layer name (a key of ``features``). ``None``: the regions, in the
        config's order (early to late), get the layers in the order of ``features``, which
        then needs one layer per region.
    categories : sequence of str, shape (n_stimuli,) | None
        A category per stimulus, copied into the design tables.
    config : FMRISimulationConfig | None
        The parameters; default ``FMRISimulationConfig()``.
    brain_mask : path | nibabel image | (ndarray, affine) | None
        The grid and brain to place regions in (MNI coordinates expected by the default
        regions). ``None``: nilearn's MNI152 brain mask at ``config.resolution_mm`` (then
        ``resolution_mm`` is ignored for a given mask).
    verbose : bool
        Log progress and show a progress bar over subjects.
    **overrides
        Fields of :class:`FMRISimulationConfig` that replace the config's (e.g. ``snr=0.5``).

    Returns
    -------
    simulation : FMRISimulation
        Arrays in memory; write them with :func:`write_fmri_simulation`.
    """
    cfg = config if config is not None else FMRISimulationConfig()
    check_type("config", cfg, FMRISimulationConfig, "an FMRISimulationConfig")
    if overrides:
        known = {f.name for f in dataclasses.fields(FMRISimulationConfig)}
        unknown = [k for k in overrides if k not in known]
        if unknown:
            from brainalign._utils.validation import suggest

            raise TypeError(
                f"simulate_fmri() got unknown parameters {unknown}.{suggest(unknown[0], known)} "
                f"Parameters of the simulation: {sorted(known)}."
            )
        cfg = dataclasses.replace(cfg, **overrides)
    feats = _check_features(features)
    n_stimuli = next(iter(feats.values())).shape[0]
    ids = _check_ids(stimulus_ids, n_stimuli)
    cats = None
    if categories is not None:
        cats = np.asarray([str(c) for c in categories])
        if cats.shape != (n_stimuli,):
            raise ValueError(
                f"'categories' has {cats.size} entries but there are {n_stimuli} stimuli."
            )
    layers_of = _check_region_layers(region_layers, cfg.regions, list(feats))
    mask, affine = _resolve_brain_mask(brain_mask, cfg.resolution_mm)
    from threadpoolctl import threadpool_limits

    # the matrices are small (≤ a few thousand voxels); multi-threaded BLAS only adds
    # contention (10× slower on a busy 2-core machine), so it runs on one thread
    with threadpool_limits(limits=1, user_api="blas"):
        return _simulate(feats, ids, cats, layers_of, mask, affine, cfg, verbose)


def _simulate(
    feats: dict[str, np.ndarray],
    ids: np.ndarray,
    cats: np.ndarray | None,
    layers_of: dict[str, str],
    mask: np.ndarray,
    affine: np.ndarray,
    cfg: FMRISimulationConfig,
    verbose: bool,
) -> FMRISimulation:
    n_stimuli = len(ids)
    used = list(dict.fromkeys(layers_of.values()))
    reduced, explained = {}, {}
    for layer in used:
        scores, info = reduce_features(feats[layer], cfg.n_components, name=layer)
        reduced[layer] = scores
        explained[layer] = float(info["explained_variance_ratio"].sum())
    test, per_subject = _allocate(n_stimuli, cfg)
    brain_ijk = np.argwhere(mask)
    subjects = []
    labels = subject_labels(cfg.n_subjects)
    for sub, positions in progress(
        list(zip(labels, per_subject)), desc="simulating subjects", verbose=verbose
    ):
        subjects.append(
            _simulate_subject(
                sub,
                positions,
                test,
                ids,
                cats,
                reduced,
                layers_of,
                brain_ijk,
                mask.shape,
                affine,
                cfg,
            )
        )
        if verbose:
            logger.info(
                "sub-%s: %d voxels, %d trials, oracle top-1 %.2f",
                sub,
                subjects[-1].n_voxels,
                subjects[-1].info["n_trials"],
                subjects[-1].info["oracle"]["top1_mahalanobis"],
            )
    return FMRISimulation(
        config=cfg,
        stimulus_ids=ids,
        categories=cats,
        test_ids=ids[test],
        region_layers=layers_of,
        features={k: v.astype(np.float32) for k, v in reduced.items()},
        explained_variance=explained,
        brain_mask=np.array(mask, bool),
        affine=np.array(affine, float),
        subjects=subjects,
    )


# --------------------------------------------------------------------------------------------
# writing and reading back the ground truth
# --------------------------------------------------------------------------------------------

_DEFINITIONS = {
    "snr": (
        "Per voxel: variance of the noise-free response over the stimulus set divided by the "
        "variance of the noise of a single trial (region-shared plus voxel-specific). 'snr' is "
        "the value requested for each voxel; 'snr_achieved' the variance of the noise-free "
        "responses over the subject's stimuli divided by the variance of (stored betas - "
        "noise-free responses) over the subject's trials."
    ),
    "ncsnr": (
        "Allen et al. (2022): betas z-scored per voxel within each session; noise variance = "
        "mean over stimuli of the unbiased variance across repetitions; signal variance = "
        "max(0, 1 - noise variance); ncsnr = sqrt(signal variance / noise variance)."
    ),
    "noise_ceiling": (
        "Percent of the variance of responses averaged over n = n_repetitions trials that the "
        "noise-free responses explain: NC = 100 * ncsnr^2 / (ncsnr^2 + 1/n). nc_data uses the "
        "ncsnr estimated from the betas, nc_true ncsnr^2 = snr (requested), nc_achieved "
        "ncsnr^2 = snr_achieved. The correlation ceiling is sqrt(NC / 100)."
    ),
    "oracle": (
        "Top-1 n_test-way identification of each shared test stimulus from the subject's betas "
        "averaged over its repetitions (all voxels), against the noise-free responses of every "
        "test stimulus. top1_mahalanobis: smallest Mahalanobis distance under the true noise "
        "covariance (block-diagonal over regions; the maximum-likelihood choice, which no "
        "decoder beats in expectation). top1_correlation: largest Pearson correlation across "
        "voxels after subtracting the voxel baselines. chance = 1 / n_test."
    ),
    "clean": (
        "clean = baseline + signal_scale * features @ weights, per region (weights/<region> "
        "(n_components, n_voxels) with orthonormal rows, signal_scale/<region> a scalar) with "
        "the features of its layer (features/<layer>: principal component scores of the "
        "z-scored layer features, centred over the stimulus set)."
    ),
}


def _nifti(data: np.ndarray, affine: np.ndarray) -> Any:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_sform(affine, code=4)  # MNI152
    img.header.set_qform(affine, code=4)
    return img


def _save_nifti(img: Any, path: Path) -> Path:
    """Write a ``.nii.gz`` atomically, gzip header without a timestamp (same image → same bytes)."""
    import gzip

    from brainalign._utils.atomic import atomic_write

    payload = gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)
    with atomic_write(path, "wb") as fh:
        fh.write(payload)
    return path


def _write_tsv(table: pd.DataFrame, path: Path) -> Path:
    from brainalign._utils.atomic import atomic_write

    with atomic_write(path, "w") as fh:
        table.to_csv(fh, sep="\t", index=False, lineterminator="\n", float_format="%.6g")
    return path


def subject_paths(subject: str) -> dict[str, str]:
    """Paths (relative to the dataset folder) of one subject's files."""
    base = f"sub-{subject}/sub-{subject}"
    return {
        "betas": f"{base}_betas.hdf5",
        "design": f"{base}_design.tsv",
        "mask": f"{base}_mask.nii.gz",
        "roi": f"{base}_roi.nii.gz",
    }


def write_fmri_simulation(
    simulation: FMRISimulation,
    folder: str | os.PathLike,
    *,
    stimulus_table: str | None = None,
    stimulus_files: Sequence[str] = (),
    name: str = "simulated_fmri",
    description: str = "",
) -> Path:
    """Write a simulation in NSD's formats, with its ground truth and a manifest.

    Layout (paths relative to ``folder``)::

        manifest.yaml                 schema of brainalign.io.manifest, every file with sha256
        brain_mask.nii.gz             the brain mask the regions were placed in
        rois.tsv                      label, name, layer and description of every region
        ground_truth.json / .h5       see FMRIGroundTruth
        sub-XX/sub-XX_betas.hdf5      '/betas' (n_trials, n_voxels) int16 = % signal change × 300
        sub-XX/sub-XX_design.tsv      one row per trial, in the order of the betas
        sub-XX/sub-XX_mask.nii.gz     the subject's voxels (columns of the betas in C order)
        sub-XX/sub-XX_roi.nii.gz      region labels (rois.tsv)

    Read a subject back with ``brainalign.io.load_nsd_betas(betas, design, subject="XX",
    mask=mask)``. Every file is byte-identical for the same simulation.

    Parameters
    ----------
    simulation : FMRISimulation
    folder : path-like
        The dataset folder (created if needed; existing files of the same names are
        replaced).
    stimulus_table : str | None
        Path, relative to ``folder``, of a stimulus table already written there (recorded
        in the manifest).
    stimulus_files : sequence of str
        Paths, relative to ``folder``, of the stimulus files (recorded with checksums).
    name : str
        The manifest's name.
    description : str
        Extra text for the manifest's description.

    Returns
    -------
    manifest : Path
        The written ``manifest.yaml``.
    """
    check_type("simulation", simulation, FMRISimulation, "an FMRISimulation")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sim, cfg = simulation, simulation.config
    written: dict[str, list[str]] = {"data": [], "events": [], "mask": [], "metadata": []}

    _save_nifti(_nifti(sim.brain_mask.astype(np.uint8), sim.affine), folder / "brain_mask.nii.gz")
    written["mask"].append("brain_mask.nii.gz")
    rois = pd.DataFrame(
        {
            "label": np.arange(1, len(cfg.regions) + 1),
            "name": [r.name for r in cfg.regions],
            "layer": [sim.region_layers[r.name] for r in cfg.regions],
            "radius_mm": [r.radius_mm for r in cfg.regions],
            "centres_mm": [
                ";".join(",".join(f"{v:g}" for v in c) for c in r.centres_mm) for r in cfg.regions
            ],
            "description": [r.description for r in cfg.regions],
        }
    )
    _write_tsv(rois, folder / "rois.tsv")
    written["metadata"].append("rois.tsv")

    arrays: dict[str, np.ndarray] = {
        "stimulus_ids": sim.stimulus_ids,
        "test_ids": sim.test_ids,
    }
    if sim.categories is not None:
        arrays["categories"] = sim.categories
    for layer, scores in sim.features.items():
        arrays[f"features/{layer}"] = scores
    subjects_info = {}
    for sub in sim.subjects:
        paths = subject_paths(sub.subject)
        (folder / f"sub-{sub.subject}").mkdir(exist_ok=True)
        write_hdf5(
            folder / paths["betas"],
            {"betas": sub.betas_int16},
            dataset_attrs={
                "betas": {
                    "affine": sim.affine,
                    "volume_shape": np.asarray(sub.mask.shape, np.int64),
                    "scale": NSD_SCALE,
                    "units": "percent signal change x 300",
                }
            },
        )
        _write_tsv(sub.design, folder / paths["design"])
        _save_nifti(_nifti(sub.mask.astype(np.uint8), sim.affine), folder / paths["mask"])
        _save_nifti(_nifti(sub.roi_volume.astype(np.int16), sim.affine), folder / paths["roi"])
        written["data"].append(paths["betas"])
        written["events"].append(paths["design"])
        written["mask"] += [paths["mask"], paths["roi"]]
        for key, value in sub.arrays.items():
            arrays[f"sub-{sub.subject}/{key}"] = value
        subjects_info[sub.subject] = sub.info

    oracle_mean = {
        key: float(np.mean([s.info["oracle"][key] for s in sim.subjects]))
        for key in ("top1_mahalanobis", "top1_correlation")
    }
    info = {
        "format": FORMAT,
        "version": _VERSION,
        "config": dataclasses.asdict(cfg),
        "region_layers": sim.region_layers,
        "layers": list(sim.features),
        "explained_variance": sim.explained_variance,
        "n_stimuli": len(sim.stimulus_ids),
        "n_test": len(sim.test_ids),
        "nsd_scale": NSD_SCALE,
        "definitions": _DEFINITIONS,
        "subjects": subjects_info,
        "oracle_mean": oracle_mean,
        "files": subject_paths("XX"),
    }
    save_ground_truth(folder, info, arrays)
    written["metadata"] += ["ground_truth.json", "ground_truth.h5"]

    text = (
        f"Simulated NSD-like fMRI experiment (brainalign, seed {cfg.seed}): "
        f"{cfg.n_subjects} subjects, {len(sim.stimulus_ids)} stimuli of which {len(sim.test_ids)} "
        f"are a test set shared by every subject, {cfg.n_repetitions} repetitions, "
        f"{cfg.resolution_mm} mm MNI voxels in {len(cfg.regions)} regions "
        f"({', '.join(f'{k} <- {v}' for k, v in sim.region_layers.items())}), single-trial "
        f"SNR {cfg.snr:g} (median). Betas are int16 percent signal change x 300; ground truth in "
        "ground_truth.json/.h5."
    )
    if description:
        text += " " + description
    files = []
    if stimulus_table is not None:
        files += file_entries(folder, [stimulus_table], role="stimuli", description="stimuli")
    files += file_entries(folder, stimulus_files, role="stimuli")
    files += file_entries(folder, written["data"], role="data", description="betas")
    files += file_entries(folder, written["events"], role="events", description="design")
    files += file_entries(folder, written["mask"], role="mask")
    files += file_entries(folder, written["metadata"], role="metadata")
    manifest: dict[str, Any] = {
        "schema": 1,
        "name": name,
        "modality": "fmri",
        "description": text,
        "license": (
            "CC0-1.0 for the simulated data; the stimulus images keep the licenses of the "
            "packages they come from (scikit-image, scikit-learn sample data)"
        ),
        "access": {
            "notes": (
                "Generated offline by brainalign (brainalign simulate fmri --out DIR --seed "
                f"{cfg.seed}); nothing to download."
            )
        },
        "files": files,
        "subjects": [s.subject for s in sim.subjects],
        "events": {
            "path": "sub-*/sub-*_design.tsv",
            "description": "one row per trial, in the order of the betas",
        },
        "reader": {
            "name": "load_nsd_betas",
            "options": {"dataset": "betas", "scale": NSD_SCALE},
            "notes": (
                "Per subject XX: betas=sub-XX/sub-XX_betas.hdf5, design=sub-XX/sub-XX_design.tsv, "
                "mask=sub-XX/sub-XX_mask.nii.gz, subject='XX'; region labels in "
                "sub-XX/sub-XX_roi.nii.gz (names in rois.tsv)."
            ),
        },
        "split": {
            "method": "column",
            "options": {"column": "split", "test_values": ["test"]},
            "average_test_repetitions": True,
            "description": (
                "The stimuli marked split == test in the design (shown to every subject) are "
                "the test set (responses averaged over repetitions); the others are training "
                "stimuli."
            ),
        },
    }
    if stimulus_table is not None:
        manifest["stimuli"] = {
            "kind": "image",
            "path": stimulus_table,
            "n_stimuli": len(sim.stimulus_ids),
            "description": "stimulus table: stimulus_id, path (relative), category, source",
        }
    path = write_manifest(folder, manifest)
    publish_files(folder)
    return path


@dataclass
class FMRIGroundTruth:
    """The ground truth of a simulated fMRI dataset, as read from its folder.

    Attributes
    ----------
    info : dict
        ``ground_truth.json``: the config, ``region_layers``, definitions, per-subject voxel
        counts, region placements and oracle accuracies.
    arrays : dict of str to ndarray
        ``ground_truth.h5``: ``stimulus_ids``, ``test_ids``, ``features/<layer>`` and, per
        subject, ``sub-XX/<name>`` (see :meth:`subject`).
    """

    info: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def region_layers(self) -> dict[str, str]:
        """Region → the layer that drives it."""
        return dict(self.info["region_layers"])

    @property
    def subjects(self) -> list[str]:
        """Subject labels."""
        return list(self.info["subjects"])

    @property
    def test_ids(self) -> np.ndarray:
        """The shared test stimuli."""
        return self.arrays["test_ids"]

    @property
    def features(self) -> dict[str, np.ndarray]:
        """Reduced features (principal component scores) of each layer, (n_stimuli, n_kept)."""
        return {k.split("/", 1)[1]: v for k, v in self.arrays.items() if k.startswith("features/")}

    def subject(self, label: str) -> dict[str, np.ndarray]:
        """Arrays of one subject: ``clean`` (n_subject_stimuli, n_voxels), ``stimulus_ids``,
        ``baseline``, ``signal_var``, ``voxel_ijk``, ``voxel_region``, ``snr``,
        ``snr_achieved``, ``noise_std``, ``ncsnr``, ``nc_data``, ``nc_true``, ``nc_achieved``
        (n_voxels,), ``weights/<region>`` (n_kept, n_region_voxels), ``signal_scale/<region>``
        (scalar) and ``noise_loadings/<region>`` (n_noise_factors, n_region_voxels)."""
        label = str(label).removeprefix("sub-")
        prefix = f"sub-{label}/"
        out = {k[len(prefix) :]: v for k, v in self.arrays.items() if k.startswith(prefix)}
        if not out:
            raise KeyError(f"No subject {label!r} in the ground truth; it has {self.subjects}.")
        return out


def load_fmri_ground_truth(folder: str | os.PathLike) -> FMRIGroundTruth:
    """Read the ground truth written by :func:`write_fmri_simulation`.

    Raises
    ------
    FileNotFoundError
        When the folder has no ground truth.
    ValueError
        When the ground truth is not of this simulator.
    """
    info, arrays = load_ground_truth(folder)
    if info.get("format") != FORMAT:
        raise ValueError(
            f"{str(Path(folder) / 'ground_truth.json')!r} is not the ground truth of a simulated "
            f"fMRI dataset (format {info.get('format')!r}, expected {FORMAT!r})."
        )
    return FMRIGroundTruth(info, arrays)
