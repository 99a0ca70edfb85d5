"""Simulated M/EEG recordings with a known ground truth (a MEG-MASC-like listening experiment).

The simulation follows the forward model of M/EEG: a few dipole patches in auditory (bilateral
superior temporal) and higher (left temporal and frontal "language") cortex carry time courses
driven by stimulus features, and a forward model computed by mne carries them to the sensors,
where background brain activity, sensor noise and line noise are added.

Pipeline of one dataset
-----------------------
1. **Features** ``(n_times,)`` or ``(n_dims, n_times)`` at the recording's rate on the
   recording's timeline (the caller computes them: the speech envelope with
   :func:`compute_envelope`, word onsets with :func:`word_onset_impulses`, a mel spectrogram or a
   speech model's embeddings with :mod:`brainalign.targets`).
2. **Source time courses** (:func:`make_source_time_courses`): each source's feature is z-scored
   (a multi-dimensional feature is first collapsed onto a fixed random non-negative unit
   weight vector, then z-scored again), convolved causally with the source's temporal response
   function (:func:`gamma_trf`: a gamma-shaped kernel that peaks, with value 1, at the source's
   latency) and scaled so that its RMS is the source's amplitude (dipole moment, A·m). These
   are the same for every subject.
3. **One subject** (:func:`simulate_meeg_subject`): sensors (:func:`make_meeg_info`; MEG: point
   magnetometers on mne's KIT helmet, the MEG-MASC system, with a subject-specific head position;
   EEG: a standard montage that differs between subjects), a three-shell sphere model fitted to
   the head's digitisation points (:func:`mne.make_sphere_model`), the source positions (given in
   MNI millimetres, moved to head coordinates with the fsaverage head-to-MRI transform that ships
   with mne, jittered per subject) expanded to small patches of dipoles, a discrete source space
   (:func:`mne.setup_volume_source_space` with ``pos=``) and the forward solution
   (:func:`mne.make_forward_solution`). The noise-free sensor signal is
   ``clean = P · diag(channel_gain) · subject_gain · G · m``, with ``G = fwd["sol"]["data"]`` (free
   orientation), ``m`` the dipole moments (each dipole of a patch carries an equal share of its
   source's time course along the patch's orientation) and ``P`` the average reference for EEG
   (identity for MEG). It is our own projection rather than :func:`mne.simulation.simulate_raw`,
   so that the gain matrix is saved and ``clean`` can be recomputed exactly.
4. **Noise**: background brain activity (``n_background`` dipoles at random positions in the
   brain with 1/f time courses, through the same forward model), sensor noise (1/f plus white,
   independent per sensor) and line noise (``line_freq`` and its harmonics below Nyquist), through
   the same channel gains and reference, then scaled so that the recording's SNR equals the
   requested one exactly.

Image paradigm (THINGS-EEG-like)
--------------------------------
The same machinery simulates subjects viewing images in rapid serial visual presentation:
visual sources (:func:`default_visual_sources`: early visual cortex at the occipital pole,
lateral occipital and ventral occipito-temporal cortex) respond to every image onset with their
TRF, scaled by a linear read-out of one network layer (:func:`make_image_readouts`: shared
weights plus per-subject deviations) through :func:`make_event_time_courses`, and
:func:`write_simulated_meeg_images` writes the images, one ``events.tsv`` row per image onset
and the read-outs (``derivatives/simulation/image_readouts.npz``). Such recordings are read back
as THINGS-EEG2's windows (:data:`IMAGE_READ_OPTIONS`).

SNR and noise ceiling
---------------------
The SNR (:func:`compute_snr`) is the ratio of the in-band powers of the noise-free signal and of
the noise, each the mean over channels of the variance after a zero-phase 4th-order Butterworth
band-pass (``scipy.signal.sosfiltfilt``) in ``snr_band`` (0.5–30 Hz by default): the line noise
lies outside that band and barely counts. The noise ceiling (:func:`compute_noise_ceiling`)
compares the noisy windows with the noise-free ones cut the same way: the Pearson correlation per
channel (over all windows and samples), and the segment-level top-k retrieval accuracy of an
oracle decoder that scores each noisy window against every noise-free window by Pearson
correlation (brainmagick's evaluation, with the brain signal itself as the target).

On disk
-------
:func:`write_simulated_meeg` writes a BIDS dataset through mne-bids (MEG: FIF, float32; EEG:
BrainVision, float32), the events (one row per word: ``onset``, ``duration``, ``trial_type``,
``stimulus_id``, ``word``, ``sound``, ``sound_onset``, ``sentence``, ``word_index``), the audio
files under ``stimuli/``, and the ground truth under ``derivatives/simulation/``: the noise-free
recordings (FIF, float32), per subject the gain matrix and source time courses (``.npz``), the
features, TRFs and weights (``features.npz``) and ``ground_truth.json``.
:func:`write_noise_ceiling` adds ``noise_ceiling.json``; :func:`write_meeg_manifest` writes
``manifest.yaml`` (the schema of :mod:`brainalign.io.manifest`) last, which marks the dataset as
complete. :func:`read_meeg_ground_truth` reads the ground truth back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign._utils.atomic import atomic_path, atomic_write, file_sha256
from brainalign._utils.errors import BrainAlignWarning
from brainalign._utils.seeding import check_random_state
from brainalign._utils.validation import check_option, check_positive, check_type, suggest

__all__ = [
    "DERIVATIVES",
    "EEG_MONTAGES",
    "IMAGE_READ_OPTIONS",
    "IMAGE_TASK",
    "PARADIGMS",
    "READ_OPTIONS",
    "ImageReadouts",
    "MEEGGroundTruth",
    "MEEGNoise",
    "NoiseCeiling",
    "SimulatedSubject",
    "SourceSpec",
    "SourceTimeCourses",
    "check_output_folder",
    "compute_envelope",
    "compute_noise_ceiling",
    "compute_snr",
    "default_meeg_sources",
    "default_visual_sources",
    "gamma_trf",
    "make_event_time_courses",
    "make_image_readouts",
    "make_meeg_info",
    "make_source_time_courses",
    "mni_to_head",
    "quantize_pcm16",
    "read_meeg_ground_truth",
    "simulate_meeg_subject",
    "word_onset_impulses",
    "write_meeg_manifest",
    "write_noise_ceiling",
    "write_simulated_meeg",
    "write_simulated_meeg_images",
]

#: EEG montages of mne given to subjects in turn (subject ``i`` gets ``EEG_MONTAGES[i % 3]``).
EEG_MONTAGES = ("biosemi64", "easycap-M1", "GSN-HydroCel-64_1.0")

#: Number of sensors of the KIT/Yokogawa system of MEG-MASC.
N_KIT_SENSORS = 208

#: The BIDS task label of the simulated recordings.
TASK = "listen"

#: How the recordings are read back (brainmagick's windows): the manifest's preprocessing and
#: the windows of the noise ceiling.
READ_OPTIONS: dict[str, Any] = {"sfreq": 120.0, "tmin": -0.5, "tmax": 2.5, "baseline": (None, 0.0)}

#: The BIDS task label of the simulated image recordings (rapid serial visual presentation).
IMAGE_TASK = "rsvp"

#: How image recordings are read back (THINGS-EEG2's preprocessing): -0.2 to 0.8 s around each
#: image onset at 100 Hz, baseline before 0; also the windows of their noise ceiling.
IMAGE_READ_OPTIONS: dict[str, Any] = {
    "sfreq": 100.0,
    "tmin": -0.2,
    "tmax": 0.8,
    "baseline": (None, 0.0),
}

#: The simulated experiments: listening to speech (MEG-MASC) or viewing images (THINGS-EEG).
PARADIGMS = ("speech", "images")

#: Folder of the ground truth inside the dataset.
DERIVATIVES = Path("derivatives") / "simulation"

MODALITIES = ("meg", "eeg")

# Per-subject variability at ``variability=1`` (all scale linearly with it).
_POSITION_JITTER = 0.003  # m, SD of each source's position, per axis
_ORIENTATION_JITTER = np.sin(np.deg2rad(10.0))  # SD added to the unit orientation, per axis
_AMPLITUDE_JITTER = 0.1  # SD of log(amplitude factor)
_HEAD_SHIFT = 0.003  # m, SD of the head position in the MEG helmet, per axis
_HEAD_ROTATION = np.deg2rad(2.0)  # rad, SD of the head rotation, per axis
_SUBJECT_GAIN = 0.2  # SD of log(subject gain)
_CHANNEL_GAIN = 0.03  # SD of each channel's gain around 1
_READOUT_JITTER = 0.5  # SD of a subject's read-out weights around the shared ones (relative)

# Where the centre of the head sphere sits in the KIT helmet, relative to the centre of the
# sphere fitted to the helmet surface (device coordinates, m).
_HELMET_OFFSET = np.array([0.0, -0.005, 0.010])
_PATCH_OFFSETS = np.array(
    [[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float
)
_SAFETY_MARGIN = 0.003  # m, how far inside the inner sphere every dipole must stay


# ----------------------------------------------------------------------------------------------
# Sources and their time courses
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """One simulated source: a dipole patch with a temporal response function to one feature.

    Parameters
    ----------
    name : str
        Unique name (``"auditory_left"``).
    region : str
        What it stands for (``"auditory"``, ``"language"``): free text kept in the ground truth.
    mni : tuple of 3 float
        Position of the patch centre in MNI (fsaverage surface RAS) coordinates, millimetres.
    feature : str
        The feature (key of the features mapping) that drives the source.
    latency : float
        Peak latency of the TRF, seconds (> 0).
    shape : float
        Shape ``k`` of the gamma kernel (> 1): larger is narrower (see :func:`gamma_trf`).
    amplitude : float
        Root-mean-square dipole moment of the source over the recording, A·m (10 nAm by
        default; auditory evoked dipoles peak at a few tens of nAm).
    orientation : tuple of 3 float
        Preferred direction of the dipoles in head coordinates; its part tangential to the head
        sphere is used (radial dipoles are invisible to MEG in a sphere).
    weights : tuple of float | None
        For a multi-dimensional feature, the weights that collapse it to one time course
        (``None``: drawn by :func:`make_source_time_courses`).
    """

    name: str
    region: str
    mni: tuple[float, float, float]
    feature: str
    latency: float = 0.1
    shape: float = 8.0
    amplitude: float = 10e-9
    orientation: tuple[float, float, float] = (0.0, 0.0, 1.0)
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_type("name", self.name, str, "a string")
        if len(self.mni) != 3 or not np.all(np.isfinite(np.asarray(self.mni, dtype=float))):
            raise ValueError(
                f"Source {self.name!r}: 'mni' must be 3 finite coordinates in millimetres, got "
                f"{self.mni!r}."
            )
        if not (np.isfinite(self.latency) and self.latency > 0):
            raise ValueError(
                f"Source {self.name!r}: 'latency' must be a positive number of seconds (the TRF "
                f"peak), got {self.latency!r}."
            )
        if not (np.isfinite(self.shape) and self.shape > 1):
            raise ValueError(
                f"Source {self.name!r}: 'shape' (the gamma kernel's k) must be > 1 so that the "
                f"TRF peaks after 0, got {self.shape!r}."
            )
        if not (np.isfinite(self.amplitude) and self.amplitude > 0):
            raise ValueError(
                f"Source {self.name!r}: 'amplitude' must be a positive dipole moment in A·m "
                f"(e.g. 20e-9), got {self.amplitude!r}."
            )
        ori = np.asarray(self.orientation, dtype=float)
        if ori.shape != (3,) or not np.linalg.norm(ori) > 0:
            raise ValueError(
                f"Source {self.name!r}: 'orientation' must be a non-zero 3-vector, got "
                f"{self.orientation!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain Python values (JSON-ready)."""
        return {
            "name": self.name,
            "region": self.region,
            "mni": [float(v) for v in self.mni],
            "feature": self.feature,
            "latency": float(self.latency),
            "shape": float(self.shape),
            "amplitude": float(self.amplitude),
            "orientation": [float(v) for v in self.orientation],
            "weights": None if self.weights is None else [float(w) for w in self.weights],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SourceSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(d["name"]),
            region=str(d["region"]),
            mni=tuple(float(v) for v in d["mni"]),  # type: ignore[arg-type]
            feature=str(d["feature"]),
            latency=float(d["latency"]),
            shape=float(d["shape"]),
            amplitude=float(d["amplitude"]),
            orientation=tuple(float(v) for v in d["orientation"]),  # type: ignore[arg-type]
            weights=None if d.get("weights") is None else tuple(float(w) for w in d["weights"]),
        )


def default_meeg_sources(
    features: Iterable[str] = ("envelope", "mel", "word_onset"),
) -> tuple[SourceSpec, ...]:
    """The default sources: bilateral auditory cortex, left STG, left MTG and left IFG.

    ==============  =========  ================  ==========  =========  =======  ==========
    name            region     MNI (mm)          feature     latency    shape    amplitude
    ==============  =========  ================  ==========  =========  =======  ==========
    auditory_left   auditory   (-52, -22, 8)     envelope    100 ms     12       10 nAm
    auditory_right  auditory   (54, -18, 8)      envelope    100 ms     12       10 nAm
    stg_left        auditory   (-60, -36, 12)    mel         150 ms     12       8 nAm
    mtg_left        language   (-56, -20, -12)   higher      400 ms     6        6 nAm
    ifg_left        language   (-48, 22, 12)     higher      450 ms     6        6 nAm
    ==============  =========  ================  ==========  =========  =======  ==========

    "higher" is ``"embedding"`` (a speech model's hidden states) when ``features`` has it, else
    ``"word_onset"`` (an impulse at each word onset, giving an N400-like response).

    Parameters
    ----------
    features : iterable of str
        The names of the available features; sources whose feature is absent are left out.

    Returns
    -------
    sources : tuple of SourceSpec

    Raises
    ------
    ValueError
        No default source can be driven by the features given.
    """
    names = set(features)
    higher = "embedding" if "embedding" in names else "word_onset"
    table = (
        SourceSpec("auditory_left", "auditory", (-52, -22, 8), "envelope", 0.10, 12.0, 10e-9),
        SourceSpec("auditory_right", "auditory", (54, -18, 8), "envelope", 0.10, 12.0, 10e-9),
        SourceSpec(
            "stg_left", "auditory", (-60, -36, 12), "mel", 0.15, 12.0, 8e-9, (0.0, 1.0, 1.0)
        ),
        SourceSpec(
            "mtg_left", "language", (-56, -20, -12), higher, 0.40, 6.0, 6e-9, (0.0, 1.0, 0.5)
        ),
        SourceSpec("ifg_left", "language", (-48, 22, 12), higher, 0.45, 6.0, 6e-9, (0.0, 0.5, 1.0)),
    )
    sources = tuple(s for s in table if s.feature in names)
    if not sources:
        raise ValueError(
            f"None of the default sources can be driven by the features {sorted(names)}: they "
            "need 'envelope', 'mel', 'word_onset' or 'embedding'. Pass sources= explicitly."
        )
    return sources


def default_visual_sources() -> tuple[SourceSpec, ...]:
    """The default sources of the image paradigm: early visual, lateral and ventral occipital.

    Each source responds to every image onset with its TRF, scaled by a linear read-out of one
    EfficientNet-Lite0 layer (early layers drive early sources; ``feature`` names the layer):

    ===========  ===========================  ================  =========  =======  =====  =====
    name         region                       MNI (mm)          layer      latency  shape  nAm
    ===========  ===========================  ================  =========  =======  =====  =====
    v1_left      early visual                 (-10, -94, 2)     blocks.1   100 ms   14     10
    v1_right     early visual                 (12, -92, 4)      blocks.1   100 ms   14     10
    lo_left      lateral occipital            (-44, -76, -4)    blocks.3   140 ms   12     8
    vot_left     ventral occipito-temporal    (-38, -56, -16)   blocks.4   170 ms   12     8
    vot_right    ventral occipito-temporal    (40, -54, -16)    blocks.6   220 ms   10     8
    ===========  ===========================  ================  =========  =======  =====  =====

    The two early sources read the same layer out with different weights (as the two
    hemispheres see different halves of the visual field). The layers are those of the
    simulated fMRI dataset (:data:`brainalign.pipelines.simulate_fmri.EFFICIENTNET_REGION_LAYERS`)
    except for ``vot_right``: the fMRI VOT region reads ``global_pool`` out, this source
    ``blocks.6``.

    Returns
    -------
    sources : tuple of SourceSpec
    """
    return (
        SourceSpec(
            "v1_left", "early visual", (-10, -94, 2), "blocks.1", 0.10, 14.0, 10e-9, (0.3, 0, 1)
        ),
        SourceSpec(
            "v1_right", "early visual", (12, -92, 4), "blocks.1", 0.10, 14.0, 10e-9, (-0.3, 0, 1)
        ),
        SourceSpec(
            "lo_left", "lateral occipital", (-44, -76, -4), "blocks.3", 0.14, 12.0, 8e-9, (0, 0, 1)
        ),
        SourceSpec(
            "vot_left",
            "ventral occipito-temporal",
            (-38, -56, -16),
            "blocks.4",
            0.17,
            12.0,
            8e-9,
            (0.0, 0.5, 1.0),
        ),
        SourceSpec(
            "vot_right",
            "ventral occipito-temporal",
            (40, -54, -16),
            "blocks.6",
            0.22,
            10.0,
            8e-9,
            (0.0, 0.5, 1.0),
        ),
    )


def gamma_trf(
    sfreq: float, latency: float, shape: float = 8.0, *, duration: float | None = None
) -> np.ndarray:
    """A gamma-shaped temporal response function that peaks with value 1 at ``latency``.

    ``h(t) = (t / latency) ** (shape - 1) * exp((shape - 1) * (1 - t / latency))`` for
    ``t >= 0``: the gamma density with shape ``k = shape`` and scale ``latency / (k - 1)``,
    scaled to a peak of 1 at its mode.

    Parameters
    ----------
    sfreq : float
        Sampling rate, Hz.
    latency : float
        Time of the peak, seconds (> 0).
    shape : float
        Gamma shape ``k`` (> 1); the kernel's standard deviation is ``sqrt(k) * latency / (k - 1)``.
    duration : float | None
        Length of the kernel in seconds; by default up to where it falls below 1e-3 of its peak.

    Returns
    -------
    trf : ndarray, shape (n_lags,)
        ``h(n / sfreq)`` for ``n = 0 … n_lags - 1`` (lag 0 first).
    """
    check_positive("sfreq", sfreq)
    check_positive("latency", latency)
    if not shape > 1:
        raise ValueError(f"'shape' must be > 1 (the gamma kernel's k), got {shape!r}.")
    k = float(shape)
    if duration is None:
        t = np.linspace(latency, latency * 50, 20_000)
        log_h = (k - 1) * (np.log(t / latency) + 1 - t / latency)
        duration = float(t[np.argmax(log_h < np.log(1e-3))])
    check_positive("duration", duration)
    n_lags = max(int(np.ceil(duration * sfreq)) + 1, 2)
    t = np.arange(n_lags) / float(sfreq)
    with np.errstate(divide="ignore"):
        log_h = (k - 1) * (np.log(t / latency) + 1 - t / latency)
    return np.exp(log_h)


def compute_envelope(
    waveform: np.ndarray,
    sfreq: float,
    sfreq_out: float,
    *,
    n_times: int | None = None,
    method: str = "hilbert",
    cutoff: float | None = None,
) -> np.ndarray:
    """The amplitude envelope of a waveform at the brain's sampling rate.

    Parameters
    ----------
    waveform : ndarray, shape (n_samples,)
        Mono audio.
    sfreq : float
        Its sampling rate, Hz.
    sfreq_out : float
        The rate of the envelope, Hz (e.g. the M/EEG's).
    n_times : int | None
        Samples to return (cropped or zero-padded at the end); by default
        ``round(n_samples * sfreq_out / sfreq)``.
    method : {"hilbert", "rectify"}
        ``"hilbert"``: the modulus of the analytic signal (:func:`scipy.signal.hilbert`);
        ``"rectify"``: the absolute value (full-wave rectification).
    cutoff : float | None
        Low-pass cut-off in Hz applied at ``sfreq_out`` (zero-phase 4th-order Butterworth);
        ``None`` keeps only the anti-aliasing filter of the resampling.

    Returns
    -------
    envelope : ndarray, shape (n_times,), float64
        Sample ``n`` is the envelope at ``n / sfreq_out`` seconds. It is resampled with
        :func:`scipy.signal.resample_poly` (whose anti-aliasing filter low-passes it below
        ``sfreq_out / 2``).
    """
    from fractions import Fraction

    from scipy import fft, signal

    check_option("method", method, ("hilbert", "rectify"))
    check_positive("sfreq", sfreq)
    check_positive("sfreq_out", sfreq_out)
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(
            f"'waveform' must be a non-empty mono signal of shape (n_samples,), got shape "
            f"{x.shape}. Average the channels of a stereo file first."
        )
    if method == "hilbert":
        env = np.abs(signal.hilbert(x, N=fft.next_fast_len(x.size)))[: x.size]
    else:
        env = np.abs(x)
    ratio = Fraction(float(sfreq_out) / float(sfreq)).limit_denominator(1000)
    env = signal.resample_poly(env, ratio.numerator, ratio.denominator)
    n_out = round(x.size * sfreq_out / sfreq) if n_times is None else int(n_times)
    env = env[:n_out] if env.size >= n_out else np.pad(env, (0, n_out - env.size))
    if cutoff is not None:
        check_positive("cutoff", cutoff)
        if cutoff >= sfreq_out / 2:
            raise ValueError(
                f"'cutoff' ({cutoff} Hz) must be below the Nyquist frequency of sfreq_out "
                f"({sfreq_out / 2} Hz); pass a lower cut-off or None."
            )
        sos = signal.butter(4, cutoff, btype="lowpass", fs=sfreq_out, output="sos")
        env = signal.sosfiltfilt(sos, env)
    return env


def quantize_pcm16(waveform: np.ndarray) -> np.ndarray:
    """Round a waveform to the values a 16-bit PCM WAV file holds (``k / 32768``).

    Parameters
    ----------
    waveform : ndarray, shape (n_samples,)
        In [-1, 1).

    Returns
    -------
    quantised : ndarray, shape (n_samples,), float32
        What :func:`soundfile.read` returns for the file :func:`write_simulated_meeg` writes.
    """
    pcm = np.clip(np.round(np.asarray(waveform, dtype=np.float64) * 32768.0), -32768, 32767)
    return (pcm / 32768.0).astype(np.float32)


def word_onset_impulses(
    onsets: Sequence[float] | np.ndarray,
    sfreq: float,
    n_times: int,
    *,
    values: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """An impulse train with one impulse per word onset.

    Parameters
    ----------
    onsets : sequence of float
        Onsets in seconds on the recording's timeline.
    sfreq : float
        Sampling rate, Hz.
    n_times : int
        Length of the output.
    values : sequence of float | None
        Height of each impulse (1 by default); impulses on the same sample add up.

    Returns
    -------
    impulses : ndarray, shape (n_times,)
        ``values[i]`` at sample ``rint(onsets[i] * sfreq)`` (the rounding of
        :func:`brainalign.io.load_meeg`), 0 elsewhere.
    """
    check_positive("sfreq", sfreq)
    times = np.asarray(onsets, dtype=float)
    samples = np.rint(times * sfreq).astype(np.int64)
    bad = np.flatnonzero((samples < 0) | (samples >= n_times) | ~np.isfinite(times))
    if bad.size:
        raise ValueError(
            f"{bad.size} onsets fall outside the {n_times} samples ({n_times / sfreq:g} s at "
            f"{sfreq:g} Hz): {times[bad[:5]].tolist()} s. Onsets must be in seconds from the "
            "start of the recording."
        )
    heights = np.ones(len(times)) if values is None else np.asarray(values, dtype=float)
    if heights.shape != times.shape:
        raise ValueError(
            f"'values' has {heights.size} entries but there are {times.size} onsets; give one "
            "value per onset."
        )
    out = np.zeros(int(n_times))
    np.add.at(out, samples, heights)
    return out


@dataclass(eq=False)
class SourceTimeCourses:
    """The time courses of the sources, shared by every subject.

    Attributes
    ----------
    sources : tuple of SourceSpec
        The sources, with their ``weights`` filled in for multi-dimensional features.
    sfreq : float
        Sampling rate, Hz.
    drives : ndarray, shape (n_sources, n_times)
        Each source's z-scored drive (its feature, collapsed by its weights and z-scored).
    trfs : dict of str to ndarray, shape (n_lags,)
        Each source's TRF (:func:`gamma_trf`), lag 0 first, peak 1.
    data : ndarray, shape (n_sources, n_times)
        Dipole moment of each source (summed over its patch), A·m:
        ``amplitude * r / std(r)`` with ``r = causal_convolution(drive, trf)``, so that each
        source's RMS moment is its amplitude.
    """

    sources: tuple[SourceSpec, ...]
    sfreq: float
    drives: np.ndarray
    trfs: dict[str, np.ndarray]
    data: np.ndarray

    @property
    def n_times(self) -> int:
        """Number of samples."""
        return int(self.data.shape[1])

    @property
    def names(self) -> list[str]:
        """Source names, in order."""
        return [s.name for s in self.sources]


def _zscore(x: np.ndarray, axis: int = -1) -> np.ndarray:
    mean = x.mean(axis=axis, keepdims=True)
    std = x.std(axis=axis, keepdims=True)
    return np.divide(x - mean, std, out=np.zeros_like(x, dtype=float), where=std > 0)


def make_source_time_courses(
    features: Mapping[str, np.ndarray],
    sfreq: float,
    sources: Sequence[SourceSpec] | None = None,
    *,
    seed: int | np.random.Generator | None = 0,
) -> SourceTimeCourses:
    """Drive each source with its feature through its TRF.

    Parameters
    ----------
    features : mapping of str to ndarray, shape (n_times,) or (n_dims, n_times)
        Stimulus features on the recording's timeline at ``sfreq`` (all of the same length).
    sfreq : float
        Their sampling rate, Hz.
    sources : sequence of SourceSpec | None
        The sources; :func:`default_meeg_sources` of the features' names by default.
    seed : int | numpy.random.Generator | None
        Draws the weights of multi-dimensional features that a source does not fix: source
        ``i`` gets ``|N(0, 1)|`` weights normalised to unit length (non-negative: a spectral
        or embedding profile the source responds to).

    Returns
    -------
    time_courses : SourceTimeCourses
    """
    from scipy import signal

    check_positive("sfreq", sfreq)
    if not isinstance(features, Mapping) or not features:
        raise TypeError(
            "'features' must be a non-empty mapping {name: array} of feature time series, e.g. "
            "{'envelope': env}; got " + f"{type(features).__name__}."
        )
    arrays = {str(k): np.asarray(v, dtype=float) for k, v in features.items()}
    lengths = {k: v.shape[-1] for k, v in arrays.items()}
    for name, arr in arrays.items():
        if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
            raise ValueError(
                f"Feature {name!r} must have shape (n_times,) or (n_dims, n_times), got "
                f"{arr.shape}."
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"Feature {name!r} holds NaN or infinite values; fix them first.")
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"All features must have the same number of samples (the recording's), got "
            f"{lengths}. Resample them to sfreq={sfreq:g} Hz on the same timeline."
        )
    sources = tuple(default_meeg_sources(arrays) if sources is None else sources)
    if not sources:
        raise ValueError("'sources' is empty; give at least one SourceSpec.")
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"Source names must be unique, got {dup} more than once.")
    rng = check_random_state(seed)
    n_times = next(iter(lengths.values()))
    filled, drives, trfs, data = [], [], {}, []
    for spec in sources:
        if spec.feature not in arrays:
            raise ValueError(
                f"Source {spec.name!r} is driven by the feature {spec.feature!r}, which is not "
                f"among the features given ({sorted(arrays)}).{suggest(spec.feature, arrays)}"
            )
        feat = arrays[spec.feature]
        weights_draw = np.abs(rng.standard_normal(feat.shape[0] if feat.ndim == 2 else 1))
        if feat.ndim == 2:
            if spec.weights is None:
                w = weights_draw / np.linalg.norm(weights_draw)
                spec = dataclasses.replace(spec, weights=tuple(float(x) for x in w))
            w = np.asarray(spec.weights, dtype=float)
            if w.shape != (feat.shape[0],):
                raise ValueError(
                    f"Source {spec.name!r} has {w.size} weights but its feature "
                    f"{spec.feature!r} has {feat.shape[0]} dimensions."
                )
            drive = _zscore(w @ _zscore(feat))
        else:
            drive = _zscore(feat)
        trf = gamma_trf(sfreq, spec.latency, spec.shape)
        filled.append(spec)
        drives.append(drive)
        trfs[spec.name] = trf
        response = signal.oaconvolve(drive, trf)[:n_times]
        std = float(response.std())
        data.append(spec.amplitude * response / std if std > 0 else response * 0.0)
    return SourceTimeCourses(
        sources=tuple(filled),
        sfreq=float(sfreq),
        drives=np.asarray(drives),
        trfs=trfs,
        data=np.asarray(data),
    )


@dataclass(eq=False)
class ImageReadouts:
    """Linear read-outs of network layers: how strongly each source responds to each image.

    Attributes
    ----------
    stimulus_ids : tuple of str
        The images, in the order of the features' rows.
    sources : tuple of str
        Source names.
    layers : dict of str to str
        Source name to the layer it reads out.
    shared_weights : dict of str to ndarray, shape (n_dims,)
        Per source, the weights shared by all subjects (on the z-scored layer features).
    weights : dict of str to ndarray, shape (n_subjects, n_dims)
        Per source, each subject's weights: the shared ones plus a subject-specific deviation.
    values : ndarray, shape (n_subjects, n_sources, n_images)
        ``zscore(Z @ weights[source][subject])`` over the images, with ``Z`` the layer's
        features z-scored over the images (per dimension; constant dimensions are 0).
    shared_values : ndarray, shape (n_sources, n_images)
        The same with the shared weights.
    """

    stimulus_ids: tuple[str, ...]
    sources: tuple[str, ...]
    layers: dict[str, str]
    shared_weights: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    values: np.ndarray
    shared_values: np.ndarray

    @property
    def n_subjects(self) -> int:
        """Number of subjects."""
        return int(self.values.shape[0])


def make_image_readouts(
    layer_features: Mapping[str, np.ndarray],
    sources: Sequence[SourceSpec],
    *,
    stimulus_ids: Sequence[str] | None = None,
    n_subjects: int = 1,
    seed: int | np.random.Generator | None = 0,
    variability: float = 1.0,
) -> ImageReadouts:
    """Draw each source's linear read-out of its layer, shared and per subject.

    Source ``s`` reading layer ``L`` gets shared weights ``w ~ N(0, I / n_dims)``; subject ``i``
    gets ``w + 0.5 * variability * e_i`` with ``e_i ~ N(0, I / n_dims)`` (its read-out correlates
    about ``1 / sqrt(1 + 0.25 * variability²)`` with the shared one). The read-out of an image is
    ``zscore(Z @ w_i)`` over the images, ``Z`` the layer's features z-scored per dimension.

    Parameters
    ----------
    layer_features : mapping of str to ndarray, shape (n_images, n_dims)
        Features of the images at each layer (e.g. EfficientNet-Lite0's, grid-pooled), rows in
        the same image order for every layer.
    sources : sequence of SourceSpec
        Each source's ``feature`` names its layer.
    stimulus_ids : sequence of str | None
        Ids of the images (``"0"``, ``"1"``… by default).
    n_subjects : int
        Number of subjects.
    seed : int | numpy.random.Generator | None
        Draws the weights (sources in order: shared weights, then each subject's deviation).
    variability : float
        Scale of the subjects' deviations (0: every subject reads the same).

    Returns
    -------
    readouts : ImageReadouts
    """
    check_positive("n_subjects", n_subjects)
    check_positive("variability", variability, strict=False)
    if not isinstance(layer_features, Mapping) or not layer_features:
        raise TypeError(
            "'layer_features' must be a non-empty mapping {layer: (n_images, n_dims) array}; got "
            f"{type(layer_features).__name__}."
        )
    arrays = {str(k): np.asarray(v, dtype=np.float64) for k, v in layer_features.items()}
    n_images = {k: v.shape[0] if v.ndim == 2 else -1 for k, v in arrays.items()}
    for name, arr in arrays.items():
        if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
            raise ValueError(
                f"The features of layer {name!r} must have shape (n_images, n_dims) with at "
                f"least 2 images, got {arr.shape}."
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"The features of layer {name!r} hold NaN or infinite values.")
    if len(set(n_images.values())) != 1:
        raise ValueError(f"Every layer must have one row per image, got {n_images} rows.")
    n = next(iter(n_images.values()))
    ids = tuple(str(i) for i in (range(n) if stimulus_ids is None else stimulus_ids))
    if len(ids) != n:
        raise ValueError(f"'stimulus_ids' has {len(ids)} ids for {n} images.")
    sources = tuple(sources)
    if not sources:
        raise ValueError("'sources' is empty; give at least one SourceSpec.")
    rng = check_random_state(seed)
    n_sub = int(n_subjects)
    shared, weights = {}, {}
    values, shared_values = np.zeros((n_sub, len(sources), n)), np.zeros((len(sources), n))
    for j, spec in enumerate(sources):
        if spec.feature not in arrays:
            raise ValueError(
                f"Source {spec.name!r} reads out the layer {spec.feature!r}, which is not among "
                f"the layers given ({sorted(arrays)}).{suggest(spec.feature, arrays)}"
            )
        z = _zscore(arrays[spec.feature], axis=0)
        n_dims = z.shape[1]
        w = rng.standard_normal(n_dims) / np.sqrt(n_dims)
        dev = rng.standard_normal((n_sub, n_dims)) / np.sqrt(n_dims)
        w_sub = w[None, :] + _READOUT_JITTER * float(variability) * dev
        shared[spec.name] = w
        weights[spec.name] = w_sub
        values[:, j] = _zscore(w_sub @ z.T, axis=-1)
        shared_values[j] = _zscore(z @ w)
    return ImageReadouts(
        stimulus_ids=ids,
        sources=tuple(s.name for s in sources),
        layers={s.name: s.feature for s in sources},
        shared_weights=shared,
        weights=weights,
        values=values,
        shared_values=shared_values,
    )


def make_event_time_courses(
    heights: np.ndarray,
    onsets: Sequence[float] | np.ndarray,
    sfreq: float,
    n_times: int,
    sources: Sequence[SourceSpec],
) -> SourceTimeCourses:
    """Source time courses that respond to events, each with its own amplitude per event.

    Source ``s`` is driven by an impulse of height ``heights[s, e]`` at each onset ``e``
    (:func:`word_onset_impulses`), then treated as by :func:`make_source_time_courses`
    (z-scored, convolved with its TRF, scaled to its RMS amplitude), so that its response to
    event ``e`` peaks at ``onset + latency`` with a size affine in ``heights[s, e]``.

    Parameters
    ----------
    heights : ndarray, shape (n_sources, n_events)
        The amplitude of each source's response to each event (e.g. an onset response plus an
        image's read-out).
    onsets : sequence of float, shape (n_events,)
        Seconds on the recording's timeline.
    sfreq : float
        Sampling rate, Hz.
    n_times : int
        Samples of the recording.
    sources : sequence of SourceSpec
        The sources (their ``feature`` is kept as a label, e.g. the layer read out).

    Returns
    -------
    time_courses : SourceTimeCourses
        ``drives`` are the z-scored impulse trains.
    """
    sources = tuple(sources)
    heights = np.atleast_2d(np.asarray(heights, dtype=float))
    onsets = np.asarray(onsets, dtype=float)
    if heights.shape != (len(sources), onsets.size):
        raise ValueError(
            f"'heights' must have shape (n_sources, n_events) = ({len(sources)}, {onsets.size}), "
            f"got {heights.shape}."
        )
    parts = [
        make_source_time_courses(
            {spec.feature: word_onset_impulses(onsets, sfreq, n_times, values=row)},
            sfreq,
            [spec],
        )
        for spec, row in zip(sources, heights)
    ]
    return SourceTimeCourses(
        sources=sources,
        sfreq=float(sfreq),
        drives=np.concatenate([p.drives for p in parts]),
        trfs={k: v for p in parts for k, v in p.trfs.items()},
        data=np.concatenate([p.data for p in parts]),
    )


# ----------------------------------------------------------------------------------------------
# Geometry: coordinates, sensors, forward model
# ----------------------------------------------------------------------------------------------


def _mne_data(name: str) -> Path:
    import mne

    return Path(mne.__file__).parent / "data" / name


def _mri_head_t() -> Any:
    import mne
    from mne.transforms import invert_transform

    trans = mne.read_trans(_mne_data("fsaverage") / "fsaverage-trans.fif", verbose=False)
    return invert_transform(trans)


def mni_to_head(mni: np.ndarray | Sequence[float]) -> np.ndarray:
    """Move MNI (fsaverage surface RAS) coordinates in millimetres to head coordinates in metres.

    Uses the fsaverage head-to-MRI transform that ships with mne
    (``mne/data/fsaverage/fsaverage-trans.fif``), the frame of mne's standard EEG montages.

    Parameters
    ----------
    mni : array-like, shape (3,) or (n_points, 3)
        Millimetres.

    Returns
    -------
    head : ndarray, same shape
        Metres, head coordinates (x towards the right ear, y towards the nasion, z up).
    """
    from mne.transforms import apply_trans

    pts = np.asarray(mni, dtype=float)
    if pts.shape[-1] != 3:
        raise ValueError(f"'mni' must have 3 coordinates per point, got shape {pts.shape}.")
    return apply_trans(_mri_head_t(), pts / 1000.0)


def _fsaverage_head_points() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fiducials and ~150 scalp points of fsaverage above the fiducial plane, head coords (m)."""
    import mne
    from mne.io.constants import FIFF
    from mne.transforms import apply_trans

    t = _mri_head_t()
    fids = mne.io.read_fiducials(_mne_data("fsaverage") / "fsaverage-fiducials.fif", verbose=False)
    names = {
        FIFF.FIFFV_POINT_LPA: "lpa",
        FIFF.FIFFV_POINT_NASION: "nasion",
        FIFF.FIFFV_POINT_RPA: "rpa",
    }
    cardinal = {names[int(d["ident"])]: apply_trans(t, d["r"]) for d in fids[0]}
    scalp = mne.read_bem_surfaces(_mne_data("fsaverage") / "fsaverage-head.fif", verbose=False)[0]
    rr = apply_trans(t, scalp["rr"])
    rr = rr[rr[:, 2] > 0.0]
    return cardinal, _farthest_points(rr, 150)


def _farthest_points(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` well-spread points of ``points`` (greedy farthest-point sampling from the top)."""
    chosen = [int(np.argmax(points[:, 2]))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(1, min(n, len(points))):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return points[np.asarray(chosen)]


def _helmet_sensors(n_sensors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions and outward normals of ``n_sensors`` points on mne's KIT helmet (device, m).

    Candidates are the helmet's vertices and triangle centroids; ``n_sensors`` of them are taken
    by farthest-point sampling. Also returns the centre of the sphere fitted to the helmet.
    """
    import mne
    from scipy.optimize import least_squares

    surf = mne.read_bem_surfaces(_mne_data("helmets") / "KIT.fif.gz", verbose=False)[0]
    rr, nn, tris = surf["rr"], surf["nn"], surf["tris"]
    cand = np.concatenate([rr, rr[tris].mean(axis=1)])
    cand_nn = np.concatenate([nn, nn[tris].mean(axis=1)])
    cand_nn /= np.linalg.norm(cand_nn, axis=1, keepdims=True)
    if n_sensors > len(cand):
        raise ValueError(
            f"'n_channels' for MEG must be at most {len(cand)} (points on the KIT helmet), got "
            f"{n_sensors}; MEG-MASC's system has {N_KIT_SENSORS}."
        )
    fit = least_squares(lambda p: np.linalg.norm(rr - p[:3], axis=1) - p[3], [0, 0, 0, 0.1])
    centre = fit.x[:3]
    chosen = [int(np.argmax(cand[:, 2]))]
    dist = np.linalg.norm(cand - cand[chosen[0]], axis=1)
    for _ in range(1, n_sensors):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(cand - cand[nxt], axis=1))
    idx = np.asarray(chosen)
    normals = cand_nn[idx]
    outward = np.sign(np.sum(normals * (cand[idx] - centre), axis=1))
    return cand[idx], normals * outward[:, None], centre


def _rotation(angles: np.ndarray) -> np.ndarray:
    from mne.transforms import rotation3d

    return rotation3d(*angles)


def make_meeg_info(
    modality: str,
    sfreq: float,
    *,
    subject_index: int = 0,
    n_channels: int | None = None,
    seed: int | np.random.Generator | None = None,
    variability: float = 1.0,
    line_freq: float = 50.0,
) -> Any:
    """The sensors of one simulated subject as an :class:`mne.Info`.

    Parameters
    ----------
    modality : {"meg", "eeg"}
        ``"meg"``: point magnetometers (``FIFFV_COIL_POINT_MAGNETOMETER``) on mne's KIT helmet
        (``mne/data/helmets/KIT.fif.gz``), spread by farthest-point sampling, oriented along
        the helmet's outward normal, named ``"MEG 001"``…; the same for every subject. The head
        (fsaverage's fiducials and 150 scalp points as digitisation) sits in the helmet with a
        subject-specific shift and rotation (``info["dev_head_t"]``), so sensor positions in
        head coordinates differ between subjects. ``"eeg"``: the standard montage
        ``EEG_MONTAGES[subject_index % 3]`` (biosemi64, easycap-M1, GSN-HydroCel-64), in head
        coordinates.
    sfreq : float
        Sampling rate, Hz.
    subject_index : int
        0-based subject number (chooses the EEG montage).
    n_channels : int | None
        Number of sensors. MEG: points on the helmet (208 by default, MEG-MASC's count). EEG: a
        random subset of the montage's electrodes, in montage order (all by default).
    seed : int | numpy.random.Generator | None
        Draws the head position and the EEG subset.
    variability : float
        Scales the head-position jitter (3 mm and 2 degrees per axis at 1; 0 centres the head).
    line_freq : float
        Written to ``info["line_freq"]`` (Hz).

    Returns
    -------
    info : mne.Info
    """
    import mne
    from mne.io.constants import FIFF
    from mne.transforms import Transform

    check_option("modality", modality, MODALITIES)
    check_positive("sfreq", sfreq)
    check_positive("variability", variability, strict=False)
    rng = check_random_state(seed)
    if modality == "meg":
        n = N_KIT_SENSORS if n_channels is None else int(n_channels)
        check_positive("n_channels", n)
        pos, normals, centre = _helmet_sensors(n)
        names = [f"MEG {i + 1:03d}" for i in range(n)]
        info = mne.create_info(names, float(sfreq), "mag")
        for ch, r, ez in zip(info["chs"], pos, normals):
            ex = np.cross([0.0, 1.0, 0.0], ez)
            if np.linalg.norm(ex) < 1e-6:
                ex = np.array([1.0, 0.0, 0.0])
            ex /= np.linalg.norm(ex)
            ey = np.cross(ez, ex)
            ch["loc"][:3] = r
            ch["loc"][3:12] = np.concatenate([ex, ey, ez])
            ch["coil_type"] = FIFF.FIFFV_COIL_POINT_MAGNETOMETER
            ch["coord_frame"] = FIFF.FIFFV_COORD_DEVICE
        cardinal, scalp = _fsaverage_head_points()
        dig = mne.channels.make_dig_montage(**cardinal, hsp=scalp, coord_frame="head")
        info.set_montage(dig)
        from mne.bem import fit_sphere_to_headshape

        _, r0_head, _ = fit_sphere_to_headshape(info, units="m", verbose=False)
        shift = rng.normal(0.0, _HEAD_SHIFT * variability, 3)
        rot = _rotation(rng.normal(0.0, _HEAD_ROTATION * variability, 3))
        c_dev = centre + _HELMET_OFFSET + shift
        t = np.eye(4)
        t[:3, :3] = rot
        t[:3, 3] = np.asarray(r0_head) - rot @ c_dev
        with info._unlock():
            info["dev_head_t"] = Transform("meg", "head", t)
    else:
        montage_name = EEG_MONTAGES[subject_index % len(EEG_MONTAGES)]
        montage = mne.channels.make_standard_montage(montage_name)
        names = list(montage.ch_names)
        if n_channels is not None:
            check_positive("n_channels", n_channels)
            if n_channels > len(names):
                raise ValueError(
                    f"'n_channels' ({n_channels}) exceeds the {len(names)} electrodes of the "
                    f"montage {montage_name!r} of subject index {subject_index}; pass at most "
                    f"{len(names)}, or None for all."
                )
            keep = np.sort(rng.choice(len(names), int(n_channels), replace=False))
            names = [names[i] for i in keep]
        info = mne.create_info(names, float(sfreq), "eeg")
        info.set_montage(montage, on_missing="ignore")
    with info._unlock():
        info["line_freq"] = float(line_freq)
    return info


def _sphere_for(info: Any) -> Any:
    import mne

    return mne.make_sphere_model("auto", "auto", info=info, verbose=False)


def _inner_radius(sphere: Any) -> float:
    return float(min(layer["rad"] for layer in sphere["layers"]))


def _forward(info: Any, positions: np.ndarray, sphere: Any, modality: str) -> Any:
    """Free-orientation forward solution of discrete dipoles at ``positions`` (head, m)."""
    import mne

    src = mne.setup_volume_source_space(
        pos={"rr": positions, "nn": np.tile([0.0, 0.0, 1.0], (len(positions), 1))},
        sphere=sphere,
        mindist=0.0,
        verbose=False,
    )
    if src[0]["nuse"] != len(positions):
        raise RuntimeError(
            f"mne kept {src[0]['nuse']} of {len(positions)} dipoles in the source space; every "
            "simulated dipole must lie inside the inner sphere."
        )
    fwd = mne.make_forward_solution(
        info,
        trans=None,
        src=src,
        bem=sphere,
        meg=modality == "meg",
        eeg=modality == "eeg",
        mindist=0.0,
        verbose=False,
    )
    if not np.allclose(fwd["source_rr"], positions, atol=1e-9):
        raise RuntimeError("mne reordered the simulated dipoles; cannot map them to sources.")
    return fwd


# ----------------------------------------------------------------------------------------------
# One subject
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MEEGNoise:
    """The noise of the simulated recordings (its overall level is set by the SNR).

    Attributes
    ----------
    brain_fraction : float
        Share, in [0, 1], of the in-band noise power coming from background brain activity
        (the rest is sensor noise).
    n_background : int
        Number of background dipoles, drawn uniformly in a ball of 60 % of the inner sphere's
        radius, with random orientations and independent 1/f time courses.
    exponent : float
        Power spectra of the background and of the coloured sensor noise fall as
        ``1 / f ** exponent`` (above 0.1 Hz).
    white_fraction : float
        Share, in [0, 1], of the sensor noise's broadband power that is white.
    line_freq : float | None
        Mains frequency in Hz (50 in Europe, 60 in America); harmonics below Nyquist are added,
        harmonic ``h`` with amplitude ``1 / h``. ``None`` for no line noise.
    line_ratio : float
        Power of the line noise over the in-band power of the other noise (before the band-pass,
        so it does not count in the SNR).
    """

    brain_fraction: float = 0.5
    n_background: int = 100
    exponent: float = 1.0
    white_fraction: float = 0.2
    line_freq: float | None = 50.0
    line_ratio: float = 1.0

    def __post_init__(self) -> None:
        for name in ("brain_fraction", "white_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"MEEGNoise.{name} must be in [0, 1], got {value!r}.")
        if self.n_background < 1 and self.brain_fraction > 0:
            raise ValueError(
                f"MEEGNoise.n_background must be >= 1 when brain_fraction > 0, got "
                f"{self.n_background}."
            )
        check_positive("MEEGNoise.exponent", self.exponent, strict=False)
        check_positive("MEEGNoise.line_ratio", self.line_ratio, strict=False)
        if self.line_freq is not None:
            check_positive("MEEGNoise.line_freq", self.line_freq)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain Python values."""
        return dict(self.__dict__)


@dataclass(eq=False)
class SimulatedSubject:
    """One simulated recording, in memory.

    Attributes
    ----------
    subject : str
        Subject label (no ``sub-`` prefix).
    modality : str
        ``"meg"`` or ``"eeg"``.
    info : mne.Info
        Sensors, sampling rate and digitisation.
    data : ndarray, shape (n_channels, n_times)
        The noisy recording: T (MEG) or V (EEG).
    clean : ndarray, shape (n_channels, n_times)
        Its noise-free part; ``clean == gain @ source_activity``.
    gain : ndarray, shape (n_channels, n_sources)
        Effective gain of each source (T or V per A·m): forward model, patch, orientation,
        channel and subject gains and reference included.
    source_activity : ndarray, shape (n_sources, n_times)
        Dipole moment of each source, A·m (its patch's dipoles share it equally).
    sources : DataFrame
        One row per source: ``source``, ``region``, ``feature``, ``latency``, ``shape``,
        ``amplitude`` (with this subject's jitter), ``x``, ``y``, ``z`` (patch centre, head
        coordinates, m), ``ox``, ``oy``, ``oz`` (unit orientation), ``mni_x``…
    dipoles : DataFrame
        One row per dipole: ``source`` (its index), ``x``, ``y``, ``z``, ``ox``, ``oy``, ``oz``,
        ``share`` (fraction of the source's moment).
    forward : mne.Forward
        Free-orientation forward solution: the source dipoles first (in ``dipoles`` order), then
        the background dipoles.
    channel_gain : ndarray, shape (n_channels,)
    subject_gain : float
    reference : str
        ``"average"`` (EEG) or ``"none"`` (MEG).
    snr : float
        The requested SNR.
    snr_band : tuple of float
        Band of the SNR, Hz.
    snr_achieved : float
        :func:`compute_snr` of ``clean`` and ``data - clean``.
    noise : MEEGNoise
        The noise settings.
    """

    subject: str
    modality: str
    info: Any
    data: np.ndarray
    clean: np.ndarray
    gain: np.ndarray
    source_activity: np.ndarray
    sources: pd.DataFrame
    dipoles: pd.DataFrame
    forward: Any
    channel_gain: np.ndarray
    subject_gain: float
    reference: str
    snr: float
    snr_band: tuple[float, float]
    snr_achieved: float
    noise: MEEGNoise = field(default_factory=MEEGNoise)

    @property
    def sfreq(self) -> float:
        """Sampling rate, Hz."""
        return float(self.info["sfreq"])

    @property
    def ch_names(self) -> list[str]:
        """Channel names."""
        return list(self.info["ch_names"])

    def dipole_moments(self) -> np.ndarray:
        """Moments of the source dipoles, shape ``(3 * n_dipoles, n_times)`` (x, y, z each), A·m.

        ``forward["sol"]["data"][:, :3 * n_dipoles] @ dipole_moments()``, times the channel and
        subject gains and the reference, is :attr:`clean`.
        """
        d = self.dipoles
        share = d["share"].to_numpy()[:, None]
        activity = self.source_activity[d["source"].to_numpy()] * share  # (n_dip, n_times)
        ori = d[["ox", "oy", "oz"]].to_numpy()
        return (ori[:, :, None] * activity[:, None, :]).reshape(3 * len(d), -1)

    def to_raw(self, *, clean: bool = False) -> Any:
        """The recording (or its noise-free part) as an :class:`mne.io.RawArray`."""
        import mne

        return mne.io.RawArray(self.clean if clean else self.data, self.info.copy(), verbose=False)


def _colored_noise(
    rng: np.random.Generator, n_rows: int, n_times: int, sfreq: float, exponent: float
) -> np.ndarray:
    """Gaussian noise with a ``1 / f ** exponent`` power spectrum (flat below 0.1 Hz, no DC)."""
    white = rng.standard_normal((n_rows, n_times))
    if exponent == 0:
        return _zscore(white)
    spec = np.fft.rfft(white, axis=-1)
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    scale = np.maximum(freqs, 0.1) ** (-exponent / 2.0)
    scale[0] = 0.0
    return _zscore(np.fft.irfft(spec * scale, n=n_times, axis=-1))


def _band_sos(sfreq: float, band: tuple[float, float]) -> Any:
    from scipy import signal

    low, high = (float(b) for b in band)
    if not 0 < low < high < sfreq / 2:
        raise ValueError(
            f"'snr_band' must be (low, high) with 0 < low < high < sfreq/2 = {sfreq / 2:g} Hz, "
            f"got {tuple(band)!r}. Lower the band's upper edge or raise sfreq."
        )
    return signal.butter(4, [low, high], btype="bandpass", fs=sfreq, output="sos")


def _band_power(x: np.ndarray, sfreq: float, band: tuple[float, float]) -> float:
    from scipy import signal

    y = signal.sosfiltfilt(_band_sos(sfreq, band), np.asarray(x, dtype=float), axis=-1)
    return float(np.mean(np.var(y, axis=-1)))


def compute_snr(
    signal: np.ndarray,
    noise: np.ndarray,
    sfreq: float,
    *,
    band: tuple[float, float] = (0.5, 30.0),
) -> float:
    """Sensor-level signal-to-noise ratio in a frequency band.

    Parameters
    ----------
    signal, noise : ndarray, shape (n_channels, n_times)
        The noise-free recording and the noise (``noisy - clean``).
    sfreq : float
        Sampling rate, Hz.
    band : (float, float)
        Band edges, Hz.

    Returns
    -------
    snr : float
        ``P(signal) / P(noise)``, ``P`` the mean over channels of the variance after a
        zero-phase 4th-order Butterworth band-pass (``scipy.signal.sosfiltfilt``): the ratio of
        in-band powers summed over channels.
    """
    check_positive("sfreq", sfreq)
    signal = np.atleast_2d(np.asarray(signal, dtype=float))
    noise = np.atleast_2d(np.asarray(noise, dtype=float))
    if signal.shape != noise.shape:
        raise ValueError(
            f"'signal' and 'noise' must have the same shape (n_channels, n_times), got "
            f"{signal.shape} and {noise.shape}."
        )
    p_noise = _band_power(noise, sfreq, band)
    if p_noise == 0:
        raise ValueError("The noise has no power in the band; the SNR is infinite.")
    return _band_power(signal, sfreq, band) / p_noise


def _tangential(
    direction: np.ndarray, position: np.ndarray, r0: np.ndarray, name: str
) -> np.ndarray:
    radial = position - r0
    radial /= np.linalg.norm(radial)
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    t = d - (d @ radial) * radial
    if np.linalg.norm(t) < 0.1:
        raise ValueError(
            f"Source {name!r}: its orientation {tuple(direction)} is almost radial at its "
            "position, where MEG cannot see it; give a direction along the head's surface."
        )
    return t / np.linalg.norm(t)


def simulate_meeg_subject(
    time_courses: SourceTimeCourses,
    *,
    modality: str = "meg",
    subject: str = "01",
    subject_index: int = 0,
    seed: int | np.random.Generator | None = 0,
    snr: float = 0.1,
    snr_band: tuple[float, float] = (0.5, 30.0),
    n_channels: int | None = None,
    noise: MEEGNoise | None = None,
    n_dipoles_per_patch: int = 7,
    patch_spacing: float = 0.005,
    variability: float = 1.0,
) -> SimulatedSubject:
    """Simulate the M/EEG recording of one subject (see the module docstring for the model).

    Parameters
    ----------
    time_courses : SourceTimeCourses
        From :func:`make_source_time_courses` (shared by all subjects).
    modality : {"meg", "eeg"}
        Sensors (see :func:`make_meeg_info`).
    subject : str
        Subject label.
    subject_index : int
        0-based subject number (chooses the EEG montage).
    seed : int | numpy.random.Generator | None
        Draws everything subject-specific: head position or channel subset, source jitter,
        background dipoles, gains and noise. The same seed gives the same arrays.
    snr : float
        Requested SNR (:func:`compute_snr` in ``snr_band``); achieved exactly.
    snr_band : (float, float)
        Band of the SNR, Hz; its upper edge must lie below ``sfreq / 2``.
    n_channels : int | None
        Number of sensors (see :func:`make_meeg_info`).
    noise : MEEGNoise | None
        Noise settings (``MEEGNoise()`` by default).
    n_dipoles_per_patch : int
        Dipoles per source patch, 1 to 7: the centre, then neighbours ``patch_spacing`` away
        along ±x, ±y, ±z.
    patch_spacing : float
        Metres.
    variability : float
        Scales every per-subject jitter (positions 3 mm, orientations ~10°, amplitudes 10 %,
        head position 3 mm / 2°, subject gain 20 %, channel gains 3 %); 0 makes every subject's
        geometry and gains nominal (EEG montages still differ).

    Returns
    -------
    subject : SimulatedSubject
    """
    check_type("time_courses", time_courses, SourceTimeCourses, "a SourceTimeCourses")
    check_option("modality", modality, MODALITIES)
    check_positive("snr", snr)
    check_positive("variability", variability, strict=False)
    noise = MEEGNoise() if noise is None else noise
    check_type("noise", noise, MEEGNoise, "a MEEGNoise")
    if not 1 <= int(n_dipoles_per_patch) <= len(_PATCH_OFFSETS):
        raise ValueError(
            f"'n_dipoles_per_patch' must be between 1 and {len(_PATCH_OFFSETS)}, got "
            f"{n_dipoles_per_patch!r}."
        )
    check_positive("patch_spacing", patch_spacing, strict=False)
    sfreq = time_courses.sfreq
    snr_band = (float(snr_band[0]), float(snr_band[1]))
    _band_sos(sfreq, snr_band)  # validate before the expensive part
    rng = check_random_state(seed)
    v = float(variability)

    # 1. sensors and head model
    line_freq = 50.0 if noise.line_freq is None else float(noise.line_freq)
    info = make_meeg_info(
        modality,
        sfreq,
        subject_index=subject_index,
        n_channels=n_channels,
        seed=rng,
        variability=v,
        line_freq=line_freq,
    )
    sphere = _sphere_for(info)
    r0 = np.asarray(sphere["r0"], dtype=float)
    r_inner = _inner_radius(sphere)

    # 2. sources: position, orientation, amplitude (with jitter), patches
    rows, dip_rows = [], []
    for i, spec in enumerate(time_courses.sources):
        centre = mni_to_head(spec.mni) + rng.normal(0.0, _POSITION_JITTER * v, 3)
        ori = np.asarray(spec.orientation, float) / np.linalg.norm(spec.orientation)
        ori = ori + rng.normal(0.0, _ORIENTATION_JITTER * v, 3)
        ori = _tangential(ori, centre, r0, spec.name)
        factor = float(np.exp(rng.normal(0.0, _AMPLITUDE_JITTER * v)))
        offsets = _PATCH_OFFSETS[: int(n_dipoles_per_patch)] * patch_spacing
        for off in offsets:
            pos = centre + off
            dist = np.linalg.norm(pos - r0)
            if dist > r_inner - _SAFETY_MARGIN:
                raise ValueError(
                    f"Source {spec.name!r} (MNI {tuple(spec.mni)} mm) has a dipole "
                    f"{dist * 1000:.1f} mm from the centre of the head sphere, outside its "
                    f"inner shell ({r_inner * 1000:.1f} mm minus a {_SAFETY_MARGIN * 1000:g} mm "
                    "margin). Move it deeper or use fewer/closer patch dipoles."
                )
            dip_rows.append(
                {
                    "source": i,
                    "x": pos[0],
                    "y": pos[1],
                    "z": pos[2],
                    "ox": ori[0],
                    "oy": ori[1],
                    "oz": ori[2],
                    "share": 1.0 / len(offsets),
                }
            )
        rows.append(
            {
                "source": spec.name,
                "region": spec.region,
                "feature": spec.feature,
                "latency": spec.latency,
                "shape": spec.shape,
                "amplitude": spec.amplitude * factor,
                "amplitude_factor": factor,
                "x": centre[0],
                "y": centre[1],
                "z": centre[2],
                "ox": ori[0],
                "oy": ori[1],
                "oz": ori[2],
                "mni_x": float(spec.mni[0]),
                "mni_y": float(spec.mni[1]),
                "mni_z": float(spec.mni[2]),
            }
        )
    sources = pd.DataFrame(rows)
    dipoles = pd.DataFrame(dip_rows)
    n_bg = int(noise.n_background) if noise.brain_fraction > 0 else 0
    bg_dir = rng.standard_normal((n_bg, 3))
    bg_dir /= np.linalg.norm(bg_dir, axis=1, keepdims=True)
    bg_pos = r0 + bg_dir * (0.6 * r_inner * rng.uniform(0.0, 1.0, (n_bg, 1)) ** (1 / 3))
    bg_ori = rng.standard_normal((n_bg, 3))
    bg_ori /= np.linalg.norm(bg_ori, axis=1, keepdims=True)

    # 3. forward model and projection
    positions = np.concatenate([dipoles[["x", "y", "z"]].to_numpy(), bg_pos])
    fwd = _forward(info, positions, sphere, modality)
    g_free = fwd["sol"]["data"].reshape(len(info["ch_names"]), len(positions), 3)
    n_dip = len(dipoles)
    g_dip = np.einsum("cdk,dk->cd", g_free[:, :n_dip], dipoles[["ox", "oy", "oz"]].to_numpy())
    g_bg = np.einsum("cdk,dk->cd", g_free[:, n_dip:], bg_ori)
    n_ch = g_dip.shape[0]
    n_src = len(sources)
    patch = np.zeros((n_dip, n_src))
    patch[np.arange(n_dip), dipoles["source"].to_numpy()] = dipoles["share"].to_numpy()
    amp_factor = sources["amplitude_factor"].to_numpy()
    activity = time_courses.data * amp_factor[:, None]

    subject_gain = float(np.exp(rng.normal(0.0, _SUBJECT_GAIN * v)))
    channel_gain = np.clip(1.0 + rng.normal(0.0, _CHANNEL_GAIN * v, n_ch), 0.5, 1.5)
    if modality == "eeg":
        reference = "average"
        ref = np.eye(n_ch) - 1.0 / n_ch
    else:
        reference = "none"
        ref = np.eye(n_ch)
    sensor_t = ref * (channel_gain * subject_gain)[None, :]  # P @ diag(g) * s
    gain = sensor_t @ g_dip @ patch
    clean = gain @ activity

    # 4. noise, scaled to the requested SNR
    n_times = activity.shape[1]
    parts = []
    if n_bg:
        brain = g_bg @ _colored_noise(rng, n_bg, n_times, sfreq, noise.exponent)
        parts.append(
            np.sqrt(noise.brain_fraction) * brain / np.sqrt(_band_power(brain, sfreq, snr_band))
        )
    if noise.brain_fraction < 1:
        wf = noise.white_fraction
        sensor = np.sqrt(1 - wf) * _colored_noise(rng, n_ch, n_times, sfreq, noise.exponent)
        sensor += np.sqrt(wf) * rng.standard_normal((n_ch, n_times))
        parts.append(
            np.sqrt(1 - noise.brain_fraction)
            * sensor
            / np.sqrt(_band_power(sensor, sfreq, snr_band))
        )
    background = np.sum(parts, axis=0)
    if noise.line_freq is not None and noise.line_ratio > 0:
        t = np.arange(n_times) / sfreq
        pattern = rng.standard_normal(n_ch)
        line = np.zeros((n_ch, n_times))
        harmonics = [h for h in range(1, 100) if h * noise.line_freq < sfreq / 2]
        for h in harmonics:
            phase = rng.uniform(0, 2 * np.pi, n_ch)
            line += (
                pattern[:, None] / h * np.sin(2 * np.pi * h * noise.line_freq * t + phase[:, None])
            )
        if harmonics:
            p_line = float(np.mean(np.var(line, axis=-1)))
            p_bg = _band_power(background, sfreq, snr_band)
            background = background + line * np.sqrt(noise.line_ratio * p_bg / p_line)
    noise_t = sensor_t @ background
    scale = np.sqrt(
        _band_power(clean, sfreq, snr_band) / (snr * _band_power(noise_t, sfreq, snr_band))
    )
    noise_t *= scale
    data = clean + noise_t
    return SimulatedSubject(
        subject=str(subject),
        modality=modality,
        info=info,
        data=data,
        clean=clean,
        gain=gain,
        source_activity=activity,
        sources=sources,
        dipoles=dipoles,
        forward=fwd,
        channel_gain=channel_gain,
        subject_gain=subject_gain,
        reference=reference,
        snr=float(snr),
        snr_band=snr_band,
        snr_achieved=compute_snr(clean, data - clean, sfreq, band=snr_band),
        noise=noise,
    )


# ----------------------------------------------------------------------------------------------
# Noise ceiling
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseCeiling:
    """The best any decoder can do on a noisy dataset (see :func:`compute_noise_ceiling`).

    Attributes
    ----------
    channel_correlation : ndarray, shape (n_channels,)
        Pearson correlation of each channel's noisy and noise-free samples, over all windows.
    mean_correlation : float
        Mean over channels (NaN channels ignored).
    top_k : int
        The ``k`` of :attr:`top_k_accuracy`.
    top_k_accuracy : float
        Fraction of noisy windows whose own noise-free window ranks among the ``k`` best of all
        noise-free windows.
    top1_accuracy : float
        The same with ``k = 1``.
    n_segments : int
        Number of windows (candidates).
    ch_names : tuple of str | None
    """

    channel_correlation: np.ndarray
    mean_correlation: float
    top_k: int
    top_k_accuracy: float
    top1_accuracy: float
    n_segments: int
    ch_names: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "mean_correlation": float(self.mean_correlation),
            "top_k": int(self.top_k),
            "top_k_accuracy": float(self.top_k_accuracy),
            "top1_accuracy": float(self.top1_accuracy),
            "n_segments": int(self.n_segments),
            "chance_top_k": min(1.0, self.top_k / self.n_segments),
            "ch_names": None if self.ch_names is None else list(self.ch_names),
            "channel_correlation": [
                None if not np.isfinite(c) else float(c) for c in self.channel_correlation
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NoiseCeiling:
        """Inverse of :meth:`to_dict`."""
        corr = np.array(
            [np.nan if c is None else float(c) for c in d["channel_correlation"]], dtype=float
        )
        return cls(
            channel_correlation=corr,
            mean_correlation=float(d["mean_correlation"]),
            top_k=int(d["top_k"]),
            top_k_accuracy=float(d["top_k_accuracy"]),
            top1_accuracy=float(d["top1_accuracy"]),
            n_segments=int(d["n_segments"]),
            ch_names=None if d.get("ch_names") is None else tuple(d["ch_names"]),
        )


def compute_noise_ceiling(
    clean: np.ndarray,
    noisy: np.ndarray,
    *,
    top_k: int = 10,
    ch_names: Sequence[str] | None = None,
    chunk_size: int = 256,
) -> NoiseCeiling:
    """Correlation and retrieval ceilings of noisy windows against their noise-free versions.

    Parameters
    ----------
    clean, noisy : ndarray, shape (n_segments, n_channels, n_times)
        The same windows (e.g. 3 s around each word onset) cut from the noise-free and the noisy
        recording with the same preprocessing.
    top_k : int
        ``k`` of the top-k accuracy (brainmagick reports top-10); must be below ``n_segments``.
    ch_names : sequence of str | None
        Kept in the result.
    chunk_size : int
        Windows processed at a time, in float64 (memory about
        ``3 * chunk_size * n_channels * n_times`` values).

    Returns
    -------
    ceiling : NoiseCeiling

    Notes
    -----
    Correlation ceiling: for channel ``c``, ``pearson(clean[:, c].ravel(), noisy[:, c].ravel())``
    (the best correlation a decoder predicting channel ``c`` could reach). Retrieval ceiling:
    the oracle decoder outputs the noisy window; each noisy window ``i`` is scored against every
    noise-free window ``j`` by the Pearson correlation of the flattened ``(n_channels, n_times)``
    arrays; its rank is the number of ``j`` scoring strictly higher than its own window (ties
    favour it), and top-k accuracy is the fraction of ranks below ``k``. Overlapping windows
    (consecutive words 3 s long) are all candidates, as in brainmagick's segment-level protocol.
    """
    clean = np.asarray(clean)
    noisy = np.asarray(noisy)
    if clean.ndim != 3 or clean.shape != noisy.shape:
        raise ValueError(
            f"'clean' and 'noisy' must be windows of the same shape (n_segments, n_channels, "
            f"n_times), got {clean.shape} and {noisy.shape}."
        )
    n_seg, n_ch, n_t = clean.shape
    if n_seg < 2:
        raise ValueError(f"Retrieval needs at least 2 windows, got {n_seg}.")
    if not 1 <= int(top_k) < n_seg:
        raise ValueError(
            f"'top_k' must be between 1 and n_segments - 1 = {n_seg - 1}, got {top_k!r}: with "
            f"k >= {n_seg} every window is found."
        )
    if ch_names is not None and len(ch_names) != n_ch:
        raise ValueError(f"'ch_names' has {len(ch_names)} names for {n_ch} channels.")
    check_positive("chunk_size", chunk_size)
    # everything in float64, a chunk of windows at a time (the inputs may be large float32)
    chunks = [slice(i, min(i + int(chunk_size), n_seg)) for i in range(0, n_seg, int(chunk_size))]

    # correlation per channel over all windows and samples (two passes: means, then moments)
    mean_c, mean_n = np.zeros(n_ch), np.zeros(n_ch)
    for sl in chunks:
        mean_c += np.asarray(clean[sl], dtype=np.float64).sum(axis=(0, 2))
        mean_n += np.asarray(noisy[sl], dtype=np.float64).sum(axis=(0, 2))
    mean_c /= n_seg * n_t
    mean_n /= n_seg * n_t
    sxy, sxx, syy = np.zeros(n_ch), np.zeros(n_ch), np.zeros(n_ch)
    for sl in chunks:
        x = np.asarray(clean[sl], dtype=np.float64) - mean_c[:, None]
        y = np.asarray(noisy[sl], dtype=np.float64) - mean_n[:, None]
        sxy += np.einsum("sct,sct->c", x, y)
        sxx += np.einsum("sct,sct->c", x, x)
        syy += np.einsum("sct,sct->c", y, y)
    denom = np.sqrt(sxx * syy)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, sxy / denom, np.nan)
    mean_corr = float(np.nanmean(corr)) if np.isfinite(corr).any() else float("nan")

    # retrieval: Pearson correlation of every noisy window with every noise-free one
    flat_clean = clean.reshape(n_seg, -1)
    flat_noisy = noisy.reshape(n_seg, -1)

    def unit_rows(x: np.ndarray, sl: slice) -> np.ndarray:
        block = np.array(x[sl], dtype=np.float64)
        block -= block.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(block, axis=1, keepdims=True)
        return np.divide(block, norm, out=np.zeros_like(block), where=norm > 0)

    ranks = np.empty(n_seg, dtype=np.int64)
    for q_sl in chunks:
        query = unit_rows(flat_noisy, q_sl)
        scores = np.empty((query.shape[0], n_seg))
        for c_sl in chunks:
            scores[:, c_sl] = query @ unit_rows(flat_clean, c_sl).T
        own = scores[np.arange(query.shape[0]), np.arange(q_sl.start, q_sl.stop)]
        ranks[q_sl] = (scores > own[:, None]).sum(axis=1)
    return NoiseCeiling(
        channel_correlation=corr,
        mean_correlation=mean_corr,
        top_k=int(top_k),
        top_k_accuracy=float(np.mean(ranks < top_k)),
        top1_accuracy=float(np.mean(ranks < 1)),
        n_segments=int(n_seg),
        ch_names=None if ch_names is None else tuple(str(c) for c in ch_names),
    )


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

_EVENT_COLUMNS = {
    "onset": "Word onset, seconds from the first sample of the recording.",
    "duration": "Duration of the spoken word, seconds.",
    "trial_type": "Always 'word'.",
    "stimulus_id": "Unique id of the word token (row of stimuli/words.tsv).",
    "word": "The word, lower case, without punctuation.",
    "sound": "The audio file the word is in, relative to the dataset root.",
    "sound_onset": "Onset of the word in that audio file, seconds.",
    "sentence": "0-based index of the sentence (for splits that keep sentences whole).",
    "word_index": "0-based position of the word in its sentence.",
}

_MARKER = DERIVATIVES / "ground_truth.json"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    raise TypeError(f"Cannot write {type(obj).__name__} to JSON.")


def _write_json(path: Path, content: Any) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(content, fh, indent=2, default=_json_default)
        fh.write("\n")


def _write_tsv(path: Path, table: pd.DataFrame) -> None:
    with atomic_write(path, "w") as fh:
        table.to_csv(fh, sep="\t", index=False, na_rep="n/a", lineterminator="\n")


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]


def check_output_folder(root: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that a simulated dataset may be written to ``root``; nothing is changed.

    Parameters
    ----------
    root : path-like
        The dataset folder: new, empty, or holding an earlier simulation (then ``overwrite``
        must be true).
    overwrite : bool
        Whether an earlier simulation may be replaced.

    Returns
    -------
    root : Path

    Raises
    ------
    FileExistsError
        ``root`` is a file, a non-empty folder that holds no simulation, or a simulation and
        ``overwrite`` is false.
    """
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"The output {str(root)!r} exists and is not a folder.")
    if root.is_dir() and any(root.iterdir()):
        if not (root / _MARKER).is_file():
            raise FileExistsError(
                f"The output folder {str(root)!r} is not empty and does not hold a brainalign "
                "simulation; choose an empty or new folder (nothing was written)."
            )
        if not overwrite:
            raise FileExistsError(
                f"The output folder {str(root)!r} already holds a simulated dataset; pass "
                "overwrite=True to replace it, or choose another folder."
            )
    return root


def _prepare_root(root: Path, overwrite: bool) -> None:
    check_output_folder(root, overwrite=overwrite)
    if root.is_dir() and any(root.iterdir()):
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)


def _bids_path(root: Path, subject: str, modality: str, task: str) -> Any:
    import mne_bids

    return mne_bids.BIDSPath(subject=subject, task=task, datatype=modality, root=root)


def _meas_date(index: int) -> Any:
    import datetime

    start = datetime.datetime(2020, 1, 1, 9, 0, tzinfo=datetime.timezone.utc)
    return start + datetime.timedelta(days=int(index))


def _write_bids_raw(sim: SimulatedSubject, root: Path, task: str, index: int) -> Path:
    import mne
    import mne_bids

    raw = sim.to_raw()
    raw.set_meas_date(_meas_date(index))
    bids_path = _bids_path(root, sim.subject, sim.modality, task)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*No events found or provided.*")
        warnings.filterwarnings("ignore", message=".*Converting data files to BrainVision.*")
        if sim.modality == "meg":
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                tmp_fif = Path(tmp) / "sim_raw.fif"
                raw.save(tmp_fif, fmt="single", verbose=False)
                raw_f = mne.io.read_raw_fif(tmp_fif, preload=False, verbose=False)
                mne_bids.write_raw_bids(raw_f, bids_path, format="FIF", verbose="error")
                del raw_f
        else:
            _require_pybv()
            mne_bids.write_raw_bids(
                raw, bids_path, format="BrainVision", allow_preload=True, verbose="error"
            )
    return Path(bids_path.fpath)


def _require_pybv() -> None:
    """Raise a clear ImportError when pybv (mne-bids' BrainVision writer) is missing."""
    from brainalign._utils.optional import import_optional

    import_optional("pybv", purpose="writing simulated EEG as BrainVision (BIDS EEG)")


def write_simulated_meeg(
    root: str | os.PathLike,
    subjects: Iterable[SimulatedSubject],
    time_courses: SourceTimeCourses,
    *,
    events: pd.DataFrame,
    features: Mapping[str, np.ndarray],
    sounds: Mapping[str, tuple[np.ndarray, float]],
    words: pd.DataFrame,
    parameters: Mapping[str, Any] | None = None,
    task: str = TASK,
    overwrite: bool = False,
) -> Path:
    """Write simulated recordings as a BIDS dataset with their stimuli and ground truth.

    Parameters
    ----------
    root : path-like
        The dataset folder (also the BIDS root); created if needed. It must be empty or new,
        or hold an earlier simulation and ``overwrite=True``.
    subjects : iterable of SimulatedSubject
        One per subject (same modality, sampling rate and length); a generator is consumed one
        subject at a time, so that only one is in memory.
    time_courses : SourceTimeCourses
        The shared source time courses (their TRFs, drives and weights are saved).
    events : DataFrame
        One row per word, the same for every subject, with the columns ``onset`` (s, recording),
        ``duration``, ``stimulus_id``, ``word``, ``sound`` (path relative to ``root``),
        ``sound_onset``, ``sentence``, ``word_index``; ``trial_type`` is set to ``"word"``.
    features : mapping of str to ndarray, shape (n_times,) or (n_dims, n_times)
        The stimulus features on the recording's timeline (saved in ``features.npz``).
    sounds : mapping of str to (ndarray, float)
        Audio files to write: path relative to ``root`` (``"stimuli/audio/story_000.wav"``) to
        ``(waveform (n_samples,), sfreq)``; written as 16-bit PCM WAV (values on the grid of
        :func:`quantize_pcm16`; others are quantised with a ``BrainAlignWarning``).
    words : DataFrame
        The word stimuli, written to ``stimuli/words.tsv`` (columns ``stimulus_id``, ``file``
        relative to ``stimuli/``, ``onset``, ``duration`` in the file, and any others), the table
        :func:`brainalign.io.load_audio` reads.
    parameters : mapping | None
        Simulation settings to keep in ``ground_truth.json`` (JSON-serialisable).
    task : str
        BIDS task label.
    overwrite : bool
        Replace an earlier simulation in ``root``.

    Returns
    -------
    root : Path
    """
    import soundfile as sf

    root = Path(root).expanduser()
    required = ("onset", "duration", "stimulus_id", "word", "sound", "sound_onset")
    missing = [c for c in required if c not in events.columns]
    if missing:
        raise ValueError(f"'events' lacks the columns {missing}; it needs {list(_EVENT_COLUMNS)}.")
    for rel in sounds:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"Sound paths must be relative to the dataset root, got {rel!r}.")
    _prepare_root(root, overwrite)

    # stimuli (16-bit PCM: float WAV files carry a time-stamped PEAK chunk, so their bytes
    # would change from run to run)
    for rel, (wave, wave_sfreq) in sounds.items():
        pcm = np.round(np.asarray(wave, dtype=np.float64) * 32768.0)
        if not np.array_equal(pcm / 32768.0, np.asarray(wave, dtype=np.float64)):
            warnings.warn(
                f"The sound {rel!r} was quantised to 16 bits to be written as PCM WAV; compute "
                "features from quantize_pcm16(waveform) to match the file exactly.",
                BrainAlignWarning,
                stacklevel=2,
            )
        with atomic_path(root / rel, suffix=".wav") as tmp:
            sf.write(
                tmp,
                np.clip(pcm, -32768, 32767).astype(np.int16),
                int(wave_sfreq),
                subtype="PCM_16",
                format="WAV",
            )
    _write_tsv(root / "stimuli" / "words.tsv", words)
    _write_recordings(
        root,
        subjects,
        time_courses,
        table=_events_table(events, "word", _EVENT_COLUMNS),
        descriptions=_EVENT_COLUMNS,
        features=features,
        parameters=parameters,
        task=task,
        paradigm="speech",
    )
    with atomic_write(root / ".bidsignore", "w") as fh:
        fh.write("manifest.yaml\nstimuli/words.tsv\n")
    return root


def _events_table(
    events: pd.DataFrame, trial_type: str, columns: Mapping[str, str]
) -> pd.DataFrame:
    """The events in BIDS column order, ``trial_type`` set."""
    table = events.copy()
    table["trial_type"] = trial_type
    first = [c for c in columns if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


def _write_recordings(
    root: Path,
    subjects: Iterable[SimulatedSubject],
    time_courses: SourceTimeCourses,
    *,
    table: pd.DataFrame,
    descriptions: Mapping[str, str],
    features: Mapping[str, np.ndarray],
    parameters: Mapping[str, Any] | None,
    task: str,
    paradigm: str,
) -> None:
    """The BIDS recordings, their events and the ground truth (shared by both paradigms)."""
    deriv = root / DERIVATIVES
    subject_info = {}
    first_sim: SimulatedSubject | None = None
    for index, sim in enumerate(subjects):
        check_type("subjects[i]", sim, SimulatedSubject, "a SimulatedSubject")
        if first_sim is None:
            first_sim = sim
        elif (sim.modality, sim.sfreq, sim.data.shape[1]) != (
            first_sim.modality,
            first_sim.sfreq,
            first_sim.data.shape[1],
        ):
            raise ValueError(
                f"All subjects must share one modality, sampling rate and length; subject "
                f"{sim.subject!r} has {sim.modality}, {sim.sfreq:g} Hz, {sim.data.shape[1]} "
                f"samples but subject {first_sim.subject!r} has {first_sim.modality}, "
                f"{first_sim.sfreq:g} Hz, {first_sim.data.shape[1]} samples."
            )
        if sim.subject in subject_info:
            raise ValueError(f"Subject labels must be unique; {sim.subject!r} came twice.")
        fpath = _write_bids_raw(sim, root, task, index)
        events_path = fpath.parent / f"sub-{sim.subject}_task-{task}_events.tsv"
        _write_tsv(events_path, table)
        _write_json(
            events_path.with_suffix(".json"),
            {c: {"Description": d} for c, d in descriptions.items() if c in table.columns},
        )
        sub_dir = deriv / f"sub-{sim.subject}" / sim.modality
        sub_dir.mkdir(parents=True, exist_ok=True)
        clean_path = sub_dir / f"sub-{sim.subject}_task-{task}_desc-clean_{sim.modality}.fif"
        clean_raw = sim.to_raw(clean=True)
        clean_raw.set_meas_date(_meas_date(index))
        clean_raw.save(clean_path, fmt="single", overwrite=True, verbose=False)
        truth_path = sub_dir / f"sub-{sim.subject}_task-{task}_desc-truth_arrays.npz"
        _write_npz(
            truth_path,
            {
                "gain": sim.gain,
                "source_activity": sim.source_activity,
                "channel_gain": sim.channel_gain,
                "dipole_positions": sim.dipoles[["x", "y", "z"]].to_numpy(),
                "dipole_orientations": sim.dipoles[["ox", "oy", "oz"]].to_numpy(),
                "dipole_source": sim.dipoles["source"].to_numpy(),
                "dipole_share": sim.dipoles["share"].to_numpy(),
                "ch_names": np.asarray(sim.ch_names),
            },
        )
        subject_info[sim.subject] = {
            "data": fpath.relative_to(root).as_posix(),
            "events": events_path.relative_to(root).as_posix(),
            "clean": clean_path.relative_to(root).as_posix(),
            "arrays": truth_path.relative_to(root).as_posix(),
            "snr_achieved": sim.snr_achieved,
            "subject_gain": sim.subject_gain,
            "reference": sim.reference,
            "n_channels": len(sim.ch_names),
            "sources": sim.sources.to_dict(orient="records"),
        }
    if first_sim is None:
        raise ValueError("'subjects' is empty; simulate at least one subject.")
    modality, sfreq, n_times = first_sim.modality, first_sim.sfreq, first_sim.data.shape[1]
    feats = {f"feature__{k}": np.asarray(v) for k, v in features.items()}
    feats.update({f"trf__{k}": v for k, v in time_courses.trfs.items()})
    feats["drives"] = time_courses.drives
    feats["source_names"] = np.asarray(time_courses.names)
    _write_npz(deriv / "features.npz", feats)
    _write_json(
        deriv / "dataset_description.json",
        {
            "Name": "brainalign simulation ground truth",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "brainalign", "Description": "data.simulate.meeg"}],
        },
    )
    _write_json(
        root / _MARKER,
        {
            "paradigm": paradigm,
            "modality": modality,
            "task": task,
            "sfreq": sfreq,
            "n_times": n_times,
            "snr": first_sim.snr,
            "snr_band": list(first_sim.snr_band),
            "snr_definition": (
                "mean over channels of the variance of the noise-free signal over that of the "
                "noise (noisy - clean), both band-passed in snr_band with a zero-phase 4th-order "
                "Butterworth filter (scipy.signal.sosfiltfilt)"
            ),
            "noise": first_sim.noise.to_dict(),
            "sources": [s.to_dict() for s in time_courses.sources],
            "features": sorted(features),
            "subjects": subject_info,
            "parameters": dict(parameters or {}),
        },
    )


_IMAGE_EVENT_COLUMNS = {
    "onset": "Image onset, seconds from the first sample of the recording.",
    "duration": "How long the image stayed on the screen, seconds.",
    "trial_type": "Always 'image'.",
    "stimulus_id": "Id of the image (row of stimuli/images.tsv).",
    "image": "The image file, relative to the dataset root.",
    "category": "Category of the image.",
    "split": "'test' for the repeated test images, 'train' for the others.",
    "repetition": "0-based count of earlier presentations of the same image.",
    "sequence": "0-based index of the rapid serial visual presentation sequence.",
    "sequence_position": "0-based position of the image in its sequence.",
}

#: The image paradigm's extra ground truth: layer features, read-out weights and values.
IMAGE_TRUTH = DERIVATIVES / "image_readouts.npz"


def write_simulated_meeg_images(
    root: str | os.PathLike,
    subjects: Iterable[SimulatedSubject],
    time_courses: SourceTimeCourses,
    *,
    events: pd.DataFrame,
    images: pd.DataFrame,
    layer_features: Mapping[str, np.ndarray],
    readouts: ImageReadouts,
    features: Mapping[str, np.ndarray] | None = None,
    parameters: Mapping[str, Any] | None = None,
    task: str = IMAGE_TASK,
    overwrite: bool = False,
) -> Path:
    """Write simulated recordings of an image experiment as BIDS with the images and ground truth.

    The layout is that of :func:`write_simulated_meeg`, with the images copied to
    ``stimuli/images/`` and listed in ``stimuli/images.tsv`` (paths relative to ``stimuli/``,
    the table :func:`brainalign.io.load_images` reads), and the read-outs in
    ``derivatives/simulation/image_readouts.npz``: ``stimulus_ids`` ``(n_images,)``,
    ``layer__<layer>`` ``(n_images, n_dims)`` (the features given), ``readouts``
    ``(n_subjects, n_sources, n_images)``, ``weights__<source>`` ``(n_subjects, n_dims)``,
    ``shared_weights__<source>`` ``(n_dims,)``, ``source_names`` and ``source_layers``.

    Parameters
    ----------
    root : path-like
        The dataset folder (also the BIDS root); new, empty, or an earlier simulation with
        ``overwrite=True``.
    subjects : iterable of SimulatedSubject
        One per subject, in the order of ``readouts``' subjects (a generator is consumed one
        subject at a time).
    time_courses : SourceTimeCourses
        The source time courses of the read-outs' shared weights (their TRFs, drives and
        specifications are saved; each subject's own are in its arrays).
    events : DataFrame
        One row per image presentation, the same for every subject: ``onset`` (s),
        ``duration``, ``stimulus_id`` and ``image`` (path relative to ``root``, under
        ``stimuli/images/``), and any others (``split``, ``repetition``…); ``trial_type`` is
        set to ``"image"``.
    images : DataFrame
        The image stimuli: ``stimulus_id``, ``path`` (an existing file, copied to
        ``stimuli/images/<its name>``) and any other columns (``category``…).
    layer_features : mapping of str to ndarray, shape (n_images, n_dims)
        The features the read-outs were computed from, rows in the order of ``images``.
    readouts : ImageReadouts
        From :func:`make_image_readouts`, images in the order of ``images``.
    features : mapping of str to ndarray, shape (n_times,) or (n_dims, n_times) | None
        Features on the recording's timeline (e.g. the image-onset impulses).
    parameters : mapping | None
        Simulation settings to keep in ``ground_truth.json``.
    task : str
        BIDS task label.
    overwrite : bool
        Replace an earlier simulation in ``root``.

    Returns
    -------
    root : Path
    """
    root = Path(root).expanduser()
    check_type("readouts", readouts, ImageReadouts, "an ImageReadouts")
    for name, table, required in (
        ("events", events, ("onset", "duration", "stimulus_id", "image")),
        ("images", images, ("stimulus_id", "path")),
    ):
        missing = [c for c in required if c not in table.columns]
        if missing:
            raise ValueError(f"{name!r} lacks the columns {missing}; it needs {list(required)}.")
    ids = images["stimulus_id"].astype(str).tolist()
    if tuple(ids) != readouts.stimulus_ids:
        raise ValueError(
            "The images and the read-outs list different stimulus ids (or another order); "
            "compute the read-outs from the features of these images."
        )
    unknown = sorted(set(events["stimulus_id"].astype(str)) - set(ids))
    if unknown:
        raise ValueError(f"'events' shows images that 'images' lacks: {unknown[:5]}.")
    sources = [Path(p) for p in images["path"]]
    names = [p.name for p in sources]
    if len(set(names)) != len(names):
        raise ValueError("The image files must have distinct names to be copied together.")
    for p in sources:
        if not p.is_file():
            raise FileNotFoundError(f"The image file {str(p)!r} does not exist.")
    expected = {sid: f"stimuli/images/{n}" for sid, n in zip(ids, names)}
    wrong = (
        events["image"].astype(str).to_numpy()
        != events["stimulus_id"].astype(str).map(expected).to_numpy()
    )
    if wrong.any():
        raise ValueError(
            "The 'image' column of 'events' must give each image's copy, 'stimuli/images/"
            f"<file name>'; row {int(np.argmax(wrong))} has "
            f"{events['image'].iloc[int(np.argmax(wrong))]!r}."
        )
    _prepare_root(root, overwrite)
    folder = root / "stimuli" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for p in sources:
        with atomic_path(folder / p.name, suffix=p.suffix) as tmp:
            shutil.copyfile(p, tmp)
    stimuli_table = images.copy()
    stimuli_table["path"] = [f"images/{n}" for n in names]
    _write_tsv(root / "stimuli" / "images.tsv", stimuli_table)
    subject_labels: list[str] = []

    def counted() -> Iterable[SimulatedSubject]:
        for sim in subjects:
            subject_labels.append(sim.subject)
            yield sim

    _write_recordings(
        root,
        counted(),
        time_courses,
        table=_events_table(events, "image", _IMAGE_EVENT_COLUMNS),
        descriptions=_IMAGE_EVENT_COLUMNS,
        features=dict(features or {}),
        parameters=parameters,
        task=task,
        paradigm="images",
    )
    if len(subject_labels) != readouts.n_subjects:
        raise ValueError(
            f"{len(subject_labels)} subjects were written but the read-outs are those of "
            f"{readouts.n_subjects}."
        )
    arrays: dict[str, np.ndarray] = {
        "stimulus_ids": np.asarray(ids),
        "subjects": np.asarray(subject_labels),
        "source_names": np.asarray(readouts.sources),
        "source_layers": np.asarray([readouts.layers[s] for s in readouts.sources]),
        "readouts": readouts.values,
        "shared_readouts": readouts.shared_values,
    }
    arrays.update({f"layer__{k}": np.asarray(v) for k, v in layer_features.items()})
    arrays.update({f"weights__{k}": v for k, v in readouts.weights.items()})
    arrays.update({f"shared_weights__{k}": v for k, v in readouts.shared_weights.items()})
    _write_npz(root / IMAGE_TRUTH, arrays)
    with atomic_write(root / ".bidsignore", "w") as fh:
        fh.write("manifest.yaml\nstimuli/images.tsv\n")
    return root


def write_noise_ceiling(
    root: str | os.PathLike,
    ceilings: Mapping[str, NoiseCeiling],
    *,
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Save the noise ceiling of each subject to ``derivatives/simulation/noise_ceiling.json``.

    Parameters
    ----------
    root : path-like
        A dataset written by :func:`write_simulated_meeg`.
    ceilings : mapping of str to NoiseCeiling
        Subject label to its ceiling.
    settings : mapping | None
        How the windows were cut (``tmin``, ``tmax``, ``sfreq``, ``baseline``…).

    Returns
    -------
    path : Path
    """
    root = Path(root).expanduser()
    if not (root / _MARKER).is_file():
        raise FileNotFoundError(
            f"{str(root)!r} holds no simulated dataset ({_MARKER.as_posix()} is missing); "
            "write it with write_simulated_meeg first."
        )
    path = root / DERIVATIVES / "noise_ceiling.json"
    _write_json(
        path,
        {
            "settings": dict(settings or {}),
            "subjects": {str(k): c.to_dict() for k, c in ceilings.items()},
        },
    )
    return path


def _file_role(rel: str) -> str:
    if rel.startswith("derivatives/"):
        return "derivative"
    if rel.startswith("stimuli/"):
        return "stimuli"
    if rel.endswith("_events.tsv"):
        return "events"
    if rel.endswith(("_meg.fif", "_eeg.vhdr", "_eeg.eeg", "_eeg.vmrk")):
        return "data"
    return "metadata"


def write_meeg_manifest(
    root: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    split_seed: int = 0,
) -> Path:
    """Write ``manifest.yaml`` for a simulated dataset (schema of :mod:`brainalign.io.manifest`).

    Every file under ``root`` is listed with its role, size and SHA-256; the reader is
    :func:`brainalign.io.load_bids` (``task``, ``datatype``). Speech: the preprocessing is
    brainmagick's (120 Hz, -0.5 to 2.5 s around word onsets, baseline before 0, robust scaling,
    clamp at 20) and the default split keeps sentences whole. Images: THINGS-EEG2's windows
    (:data:`IMAGE_READ_OPTIONS`) and the test images (``split == "test"``) as the test set.
    Writing it last marks the dataset as complete.

    Parameters
    ----------
    root : path-like
        A dataset written by :func:`write_simulated_meeg`.
    name : str | None
        Manifest name (``"simulated_meg"`` / ``"simulated_eeg"`` by default).
    description : str | None
        Replaces the default description.
    split_seed : int
        Seed of the default split.

    Returns
    -------
    path : Path
    """
    import yaml

    from brainalign.io.manifest import manifest_from_dict

    root = Path(root).expanduser()
    marker = root / _MARKER
    if not marker.is_file():
        raise FileNotFoundError(
            f"{str(root)!r} holds no simulated dataset ({_MARKER.as_posix()} is missing); "
            "write it with write_simulated_meeg first."
        )
    truth = json.loads(marker.read_text(encoding="utf-8"))
    modality = truth["modality"]
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in ("manifest.yaml",) or any(part.startswith(".") for part in Path(rel).parts):
            continue
        files.append(
            {
                "path": rel,
                "size": path.stat().st_size,
                "sha256": file_sha256(path),
                "role": _file_role(rel),
            }
        )
    subjects = sorted(truth["subjects"])
    images = truth.get("paradigm", "speech") == "images"
    table = "images.tsv" if images else "words.tsv"
    n_stimuli = len(pd.read_csv(root / "stimuli" / table, sep="\t", usecols=["stimulus_id"]))
    read = IMAGE_READ_OPTIONS if images else READ_OPTIONS
    what = "viewing images in rapid serial visual presentation" if images else "listening to speech"
    content = {
        "schema": 1,
        "name": name or f"simulated_{modality}" + ("_images" if images else ""),
        "modality": modality,
        "description": description
        or (
            f"Simulated {modality.upper()} of {len(subjects)} subjects {what} "
            f"({truth['sfreq']:g} Hz, SNR {truth['snr']:g} in {truth['snr_band']} Hz), written "
            "by brainalign.data.simulate.meeg with its ground truth under "
            f"{DERIVATIVES.as_posix()}."
        ),
        "license": "CC0-1.0",
        "files": files,
        "subjects": subjects,
        "stimuli": (
            {
                "kind": "image",
                "path": "stimuli/images",
                "n_stimuli": n_stimuli,
                "description": "PNG images, listed in stimuli/images.tsv",
            }
            if images
            else {
                "kind": "audio",
                "path": "stimuli/audio",
                "n_stimuli": n_stimuli,
                "description": "word segments of the audio files, listed in stimuli/words.tsv",
            }
        ),
        "events": {
            "path": f"sub-*/{modality}/sub-*_task-{truth['task']}_events.tsv",
            "description": (
                "one row per image presentation: onset, image file, split, repetition"
                if images
                else "one row per word: onset, word, sound file and onset in it"
            ),
        },
        "reader": {"name": "load_bids", "options": {"task": truth["task"], "datatype": modality}},
        "preprocessing": {
            "sfreq": read["sfreq"],
            "tmin": read["tmin"],
            "tmax": read["tmax"],
            "baseline": list(read["baseline"]),
            "scale": "robust",
            "clip": 20.0,
            "notes": (
                "THINGS-EEG2 windows; the noise ceiling is computed on them"
                if images
                else "brainmagick recipe; the noise ceiling is computed on these windows"
            ),
        },
        "split": (
            {
                "method": "column",
                "options": {"column": "split", "test_values": ["test"]},
                "description": "the repeated test images form the test set",
            }
            if images
            else {
                "method": "grouped_fraction",
                "options": {
                    "group": "sentence",
                    "test_size": 0.2,
                    "val_size": 0.1,
                    "seed": split_seed,
                },
                "description": "whole sentences go to one split",
            }
        ),
    }
    manifest_from_dict(content, source=root / "manifest.yaml")  # validate before writing
    path = root / "manifest.yaml"
    with atomic_write(path, "w") as fh:
        yaml.safe_dump(content, fh, sort_keys=False, allow_unicode=True)
    return path


# ----------------------------------------------------------------------------------------------
# Reading the ground truth
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class MEEGGroundTruth:
    """The ground truth of a simulated dataset, read from disk by :func:`read_meeg_ground_truth`.

    Attributes
    ----------
    root : Path
        The dataset folder.
    modality, task : str
    sfreq : float
        Rate of the simulated recordings and of the features, Hz.
    n_times : int
        Samples of each recording.
    subjects : tuple of str
    source_specs : tuple of SourceSpec
        The sources as specified (weights filled in).
    sources : DataFrame
        One row per subject and source (``subject``, ``source``, positions, orientations,
        amplitudes with the subject's jitter; see :class:`SimulatedSubject`).
    trfs : dict of str to ndarray, shape (n_lags,)
        TRF of each source at ``sfreq`` (lag 0 first, peak 1 at the source's latency).
    features : dict of str to ndarray, shape (n_times,) or (n_dims, n_times)
        The stimulus features on the recording's timeline.
    drives : ndarray, shape (n_sources, n_times)
        The z-scored drive of each source.
    snr : float
        Requested SNR; ``snr_achieved`` per subject, in ``snr_band`` (Hz).
    snr_achieved : dict of str to float
    snr_band : tuple of float
    subject_gain : dict of str to float
    noise_ceiling : dict of str to NoiseCeiling | None
        Per subject, when :func:`write_noise_ceiling` has run; its ``settings`` are in
        ``noise_ceiling_settings``.
    noise_ceiling_settings : dict
    noise : dict
        The :class:`MEEGNoise` settings.
    parameters : dict
        Everything else the simulation recorded (seed, duration…).
    files : dict of str to dict of str to Path
        Per subject: ``data``, ``events``, ``clean``, ``arrays``.
    paradigm : {"speech", "images"}
        The experiment. For ``"images"``, each source's ``feature`` names the network layer
        it reads out, and :meth:`image_readouts` gives the layers' features and the read-outs.
    """

    root: Path
    modality: str
    task: str
    sfreq: float
    n_times: int
    subjects: tuple[str, ...]
    source_specs: tuple[SourceSpec, ...]
    sources: pd.DataFrame
    trfs: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    drives: np.ndarray
    snr: float
    snr_achieved: dict[str, float]
    snr_band: tuple[float, float]
    subject_gain: dict[str, float]
    noise_ceiling: dict[str, NoiseCeiling] | None
    noise_ceiling_settings: dict[str, Any]
    noise: dict[str, Any]
    parameters: dict[str, Any]
    files: dict[str, dict[str, Path]]
    paradigm: str = "speech"

    def _check_subject(self, subject: str) -> str:
        subject = str(subject).removeprefix("sub-")
        if subject not in self.subjects:
            raise ValueError(
                f"No subject {subject!r} in the simulated dataset {str(self.root)!r}; subjects: "
                f"{list(self.subjects)}.{suggest(subject, self.subjects)}"
            )
        return subject

    def arrays(self, subject: str) -> dict[str, np.ndarray]:
        """The subject's ground-truth arrays.

        Returns
        -------
        arrays : dict
            ``gain`` (n_channels, n_sources), ``source_activity`` (n_sources, n_times) in A·m
            (``gain @ source_activity`` is the noise-free recording), ``channel_gain``
            (n_channels,), ``dipole_positions`` and ``dipole_orientations`` (n_dipoles, 3),
            ``dipole_source`` and ``dipole_share`` (n_dipoles,), ``ch_names`` (n_channels,).
        """
        path = self.files[self._check_subject(subject)]["arrays"]
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def image_readouts(self) -> dict[str, np.ndarray]:
        """The image paradigm's read-outs (``derivatives/simulation/image_readouts.npz``).

        Returns
        -------
        arrays : dict
            ``stimulus_ids`` (n_images,), ``subjects`` (n_subjects,), ``source_names`` and
            ``source_layers`` (n_sources,), ``readouts`` (n_subjects, n_sources, n_images): how
            strongly each subject's source responds to each image (see
            :func:`make_image_readouts`), ``layer__<layer>`` (n_images, n_dims) the layer
            features, ``weights__<source>`` (n_subjects, n_dims) and
            ``shared_weights__<source>`` (n_dims,), ``shared_readouts`` (n_sources, n_images).

        Raises
        ------
        ValueError
            The dataset is not of the image paradigm.
        """
        if self.paradigm != "images":
            raise ValueError(
                f"The simulated dataset {str(self.root)!r} is of the {self.paradigm!r} paradigm; "
                "only image datasets have read-outs."
            )
        with np.load(self.root / IMAGE_TRUTH, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def clean_path(self, subject: str) -> Path:
        """The FIF file of the subject's noise-free recording."""
        return self.files[self._check_subject(subject)]["clean"]

    def clean_raw(self, subject: str) -> Any:
        """The subject's noise-free recording as an :class:`mne.io.Raw` (read from FIF)."""
        import mne

        return mne.io.read_raw_fif(self.clean_path(subject), preload=True, verbose=False)


def read_meeg_ground_truth(root: str | os.PathLike) -> MEEGGroundTruth:
    """Read the ground truth of a dataset written by :func:`write_simulated_meeg`.

    Parameters
    ----------
    root : path-like
        The dataset folder.

    Returns
    -------
    truth : MEEGGroundTruth

    Raises
    ------
    FileNotFoundError
        ``root`` holds no simulated dataset, or one of its ground-truth files is missing.
    """
    root = Path(root).expanduser()
    marker = root / _MARKER
    if not marker.is_file():
        raise FileNotFoundError(
            f"{str(root)!r} holds no simulated M/EEG dataset: {_MARKER.as_posix()} is missing. "
            "Simulate one with brainalign.pipelines.simulate_meeg.simulate_meeg_dataset."
        )
    truth = json.loads(marker.read_text(encoding="utf-8"))
    features_path = root / DERIVATIVES / "features.npz"
    if not features_path.is_file():
        raise FileNotFoundError(
            f"The simulated dataset {str(root)!r} lacks {features_path.relative_to(root)}; "
            "simulate it again."
        )
    with np.load(features_path, allow_pickle=False) as npz:
        features = {k.split("__", 1)[1]: npz[k] for k in npz.files if k.startswith("feature__")}
        trfs = {k.split("__", 1)[1]: npz[k] for k in npz.files if k.startswith("trf__")}
        drives = npz["drives"]
    files: dict[str, dict[str, Path]] = {}
    rows: list[dict[str, Any]] = []
    for subject, info in truth["subjects"].items():
        files[subject] = {k: root / info[k] for k in ("data", "events", "clean", "arrays")}
        for k, p in files[subject].items():
            if not p.is_file():
                raise FileNotFoundError(
                    f"The {k} file of subject {subject!r} of the simulated dataset "
                    f"{str(root)!r} is missing: {str(p)!r}. Simulate the dataset again."
                )
        rows.extend({"subject": subject, **r} for r in info["sources"])
    ceiling_path = root / DERIVATIVES / "noise_ceiling.json"
    ceilings, settings = None, {}
    if ceiling_path.is_file():
        content = json.loads(ceiling_path.read_text(encoding="utf-8"))
        settings = dict(content.get("settings", {}))
        ceilings = {k: NoiseCeiling.from_dict(v) for k, v in content["subjects"].items()}
    subjects = tuple(sorted(truth["subjects"]))
    paradigm = str(truth.get("paradigm", "speech"))
    if paradigm == "images" and not (root / IMAGE_TRUTH).is_file():
        raise FileNotFoundError(
            f"The simulated dataset {str(root)!r} lacks {IMAGE_TRUTH.as_posix()}; simulate it "
            "again."
        )
    return MEEGGroundTruth(
        root=root,
        modality=truth["modality"],
        task=truth["task"],
        sfreq=float(truth["sfreq"]),
        n_times=int(truth["n_times"]),
        subjects=subjects,
        source_specs=tuple(SourceSpec.from_dict(s) for s in truth["sources"]),
        sources=pd.DataFrame(rows),
        trfs=trfs,
        features=features,
        drives=drives,
        snr=float(truth["snr"]),
        snr_achieved={k: float(v["snr_achieved"]) for k, v in truth["subjects"].items()},
        snr_band=(float(truth["snr_band"][0]), float(truth["snr_band"][1])),
        subject_gain={k: float(v["subject_gain"]) for k, v in truth["subjects"].items()},
        noise_ceiling=ceilings,
        noise_ceiling_settings=settings,
        noise=dict(truth["noise"]),
        parameters=dict(truth["parameters"]),
        files=files,
        paradigm=paradigm,
    )
