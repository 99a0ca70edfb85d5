"""Decoding simulated M/EEG speech: brain windows → speech features, segment-level retrieval.

The brainmagick protocol (Défossez et al., 2023) on a dataset of
:func:`~brainalign.pipelines.simulate_meeg.simulate_meeg_dataset`, as
:func:`decode_simulated_meeg` runs it:

1. **segments**: one window per word (-0.5 to 2.5 s around its onset at 120 Hz, as the
   simulation reads them back); consecutive windows overlap, and every one is a candidate;
2. **targets**: the same window of a speech feature of the ground truth (by default the 40-band
   log-mel spectrogram), averaged into bins of ``1 / target_sfreq`` s and standardised per band
   with the mean and SD of the training windows;
3. **splits**: consecutive whole sentences are merged into blocks of at least
   ``block_duration`` s (the same for every subject, who all hear the same story); a seeded
   ``test_fraction`` of the blocks are test blocks and ``val_fraction`` validate each epoch, and
   a window that does not lie wholly inside its block is dropped (:func:`block_splits`), so no
   sample of a test window's audio or recording is ever trained on;
   channels are z-scored per subject with the training windows' statistics;
4. **the contrastive model**: the brainmagick encoder of :mod:`brainalign.models.meeg` (spatial
   attention over the sensor layout, subject layers, dilated convolutions) shared by all
   subjects, trained with the CLIP loss on (window, target window) pairs by
   :func:`brainalign.train.fit` — small by default so that it trains on a CPU in minutes;
5. **the ridge baseline** (brainmagick's linear baseline): per subject, ridge from the window
   (channels × time, averaged to ``ridge_sfreq``) to the flattened target window, the penalty
   chosen by 5-fold cross-validation;
6. **retrieval** among *all* test segments, per subject and model, in both directions (brain →
   segment: the target window of a test response among all test target windows; segment →
   brain: the response among all test responses), top-1 and top-``top_k`` (brainmagick:
   top-10) by cosine similarity, with bootstrap CIs over segments, and top-1 against gallery
   size;

beside the simulation's **ceiling**: the oracle that knows the noise-free recordings and the
noise's spatial and temporal covariance (estimated from the training windows' noise), whitens
noisy and noise-free test windows with it and identifies each noisy window as the best
correlated noise-free one (:func:`oracle_ceiling`). The plain correlation oracle saved with the
dataset (no whitening) is not a bound: a decoder that learns spatial filters beats it.

Measured on the default dataset (2 subjects, 208-channel MEG, SNR 0.1, 300 s of speech, 592
words in 36 sentences; 30-s blocks, 125 test segments) with the defaults
(``configs/decode_simulated_meg.yaml``: hidden 64, depth 4, 64 attention heads, mel at 10 Hz,
30 epochs of batch 64, one CPU thread), mean over the 2 subjects:

===================  ===========================  ===========================
                     brain → segment top-1 / 10   segment → brain top-1 / 10
===================  ===========================  ===========================
contrastive          0.95 / 1.00                  0.94 / 1.00
ridge (per subject)  0.39 / 0.87                  0.52 / 0.94
ceiling (oracle)     1.00 / 1.00                  —
===================  ===========================  ===========================

Chance is 1/125 and 10/125; the unwhitened correlation oracle saved with the dataset reaches
top-1 0.65 and 0.59 (over all 592 segments). Training took 189 s (the whole job 228 s) on 2 CPU
cores shared with other jobs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign._utils.atomic import atomic_write
from brainalign._utils.progress import logger, progress
from brainalign._utils.validation import suggest
from brainalign.train.config import TrainConfig

from .decode import (
    RESULT_COLUMNS,
    DecodeResults,
    _ceiling_row,
    _check_alphas,
    _check_same_dataset,
    _coerce_config,
    _merge_train,
    _record_dataset,
    _retrieval_rows,
    _SectionedConfig,
)

__all__ = [
    "MEEGDecodeConfig",
    "block_splits",
    "decode_simulated_meeg",
    "load_meeg_decode_dataset",
    "oracle_ceiling",
]

MEEG_KIND = "meeg-speech"
MEEG_CONFIG_NAME = "decode_meeg.yaml"
PREPROCESSING_NAME = "preprocessing.npz"
TRAIN_DIR = "train"
_DEFAULT_RIDGE_ALPHAS = (1e2, 1e3, 1e4, 1e5, 1e6)


def _default_meeg_train() -> TrainConfig:
    return TrainConfig(
        model="brainmagick",
        # a small brainmagick: trains on a CPU in minutes (the published one has 270 heads,
        # hidden 320, depth 10)
        model_kwargs={"n_heads": 64, "hidden": 64, "depth": 4, "n_freqs": 16, "conv_dropout": 0.1},
        loss="clip",
        lr=1e-3,
        weight_decay=0.05,
        epochs=30,
        batch_size=64,
        restore_best=True,
        log_every=10,
        cpu_threads=1,
    )


@dataclass(frozen=True)
class MEEGDecodeConfig(_SectionedConfig):
    """Everything the M/EEG decoding job needs besides the data.

    Attributes
    ----------
    kind : str
        Always ``"meeg-speech"``: tells ``brainalign train`` which job a YAML config is for.
    dataset : str
        ``"default"`` (:func:`~brainalign.pipelines.simulate_meeg.default_simulated_meeg` with
        ``duration``) or the folder of a speech dataset written by
        :func:`~brainalign.pipelines.simulate_meeg.simulate_meeg_dataset`.
    duration : float
        Seconds of speech of the default dataset.
    target : str
        The ground-truth feature decoded: ``"mel"`` (40-band log-mel spectrogram),
        ``"envelope"``, or ``"embedding"`` when the dataset was simulated with a speech model.
    target_sfreq : float | None
        Rate of the target windows, Hz: the feature is averaged in bins of
        ``round(sfreq / target_sfreq)`` samples (``None``: the recording's 120 Hz).
    test_fraction, val_fraction : float
        Fractions of the blocks whose segments are test and validation segments.
    block_duration : float
        Consecutive sentences form blocks of at least this many seconds; splits are drawn per
        block and windows across a block's edges are dropped.
    zscore_channels : bool
        z-score every channel with the mean and SD of the subject's training windows.
    ridge_sfreq : float
        The ridge baseline's input rate, Hz (windows averaged in bins, to keep it tractable).
    ridge_alphas : sequence of float
        Penalties the ridge baseline chooses from by 5-fold cross-validation.
    top_k : int
        The k of the top-k accuracy (brainmagick: 10).
    n_bootstrap : int
        Bootstrap resamples (over test segments) of the confidence intervals; 0: none.
    n_draws : int
        Random galleries per size of the accuracy-vs-gallery-size curve.
    gallery_sizes : sequence of int | None
        Its sizes (``None``: 2, 5, 10, 20, 50, 100, … up to the number of test segments).
    seed : int
        Seed of the block split and the bootstrap (``train.seed`` seeds the training).
    train : TrainConfig
        Model (``"brainmagick"``), loss and optimisation; the data's sizes and sensor layouts
        are added to ``model_kwargs``.
    """

    kind: str = "meeg-speech"
    dataset: str = "default"
    duration: float = 300.0
    target: str = "mel"
    target_sfreq: float | None = 10.0
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    block_duration: float = 30.0
    zscore_channels: bool = True
    ridge_sfreq: float = 30.0
    ridge_alphas: tuple[float, ...] = _DEFAULT_RIDGE_ALPHAS
    top_k: int = 10
    n_bootstrap: int = 1000
    n_draws: int = 30
    gallery_sizes: tuple[int, ...] | None = None
    seed: int = 0
    train: TrainConfig = field(default_factory=_default_meeg_train)

    @classmethod
    def _default_train(cls) -> TrainConfig:
        return _default_meeg_train()

    def __post_init__(self) -> None:
        if isinstance(self.train, Mapping):
            object.__setattr__(
                self,
                "train",
                TrainConfig.from_dict(_merge_train(self._default_train(), self.train)),
            )
        if not isinstance(self.train, TrainConfig):
            raise TypeError(
                f"MEEGDecodeConfig.train must be a TrainConfig or a mapping, got "
                f"{self.train!r:.80}."
            )
        if self.train.model != "brainmagick":
            raise ValueError(
                f"MEEGDecodeConfig.train.model must be 'brainmagick' (the M/EEG encoder this job "
                f"builds), got {self.train.model!r}; start from MEEGDecodeConfig().train."
            )
        if self.kind != MEEG_KIND:
            raise ValueError(
                f"MEEGDecodeConfig.kind must be {MEEG_KIND!r}, got {self.kind!r}; an fMRI "
                "decoding config is a DecodeConfig (configs/decode_simulated_fmri.yaml)."
            )
        for name in ("dataset", "target"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(
                    f"MEEGDecodeConfig.{name} must be a non-empty string, got "
                    f"{getattr(self, name)!r}."
                )
        for name, optional in (
            ("duration", False),
            ("target_sfreq", True),
            ("ridge_sfreq", False),
            ("block_duration", False),
        ):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value < math.inf
            ):
                raise ValueError(
                    f"MEEGDecodeConfig.{name} must be a positive number"
                    f"{' or null' if optional else ''}, got {value!r}."
                )
            object.__setattr__(self, name, float(value))
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ValueError(f"MEEGDecodeConfig.{name} must lie in [0, 1), got {value!r}.")
            object.__setattr__(self, name, float(value))
        if self.test_fraction <= 0 or self.test_fraction + self.val_fraction >= 1:
            raise ValueError(
                f"MEEGDecodeConfig.test_fraction={self.test_fraction} and val_fraction="
                f"{self.val_fraction} must be > 0 and leave training blocks (sum below 1)."
            )
        if not isinstance(self.zscore_channels, bool):
            raise TypeError(
                f"MEEGDecodeConfig.zscore_channels must be true or false, got "
                f"{self.zscore_channels!r}."
            )
        object.__setattr__(
            self, "ridge_alphas", _check_alphas("MEEGDecodeConfig", self.ridge_alphas)
        )
        for name, minimum in (("top_k", 1), ("n_bootstrap", 0), ("n_draws", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"MEEGDecodeConfig.{name} must be an integer >= {minimum}, got {value!r}."
                )
        if self.gallery_sizes is not None:
            object.__setattr__(self, "gallery_sizes", tuple(int(n) for n in self.gallery_sizes))


# --------------------------------------------------------------------------- data
def load_meeg_decode_dataset(
    dataset: Any = "default", *, duration: float = 300.0, verbose: bool = True
) -> Any:
    """The dataset a config names: ``"default"`` or a folder; a SimulatedMEEG passes through."""
    from brainalign.pipelines.simulate_meeg import (
        SimulatedMEEG,
        default_simulated_meeg,
        load_simulated_meeg,
    )

    if dataset is None or (isinstance(dataset, str) and dataset == "default"):
        dataset = default_simulated_meeg(duration=duration, verbose=verbose)
    elif isinstance(dataset, str | os.PathLike):
        dataset = load_simulated_meeg(Path(dataset).expanduser())
    if not isinstance(dataset, SimulatedMEEG):
        raise TypeError(
            "'dataset' must be a SimulatedMEEG, a dataset folder or 'default', got "
            f"{type(dataset).__name__}."
        )
    if dataset.paradigm != "speech":
        raise ValueError(
            f"decode_simulated_meeg decodes speech; the dataset {str(dataset.root)!r} is a "
            f"{dataset.paradigm!r} experiment. Simulate one with `brainalign simulate meg` "
            "(the default paradigm, speech)."
        )
    return dataset


def block_splits(
    onsets: Any,
    sentences: Any,
    window: tuple[float, float],
    *,
    test_fraction: float,
    val_fraction: float,
    block_duration: float = 30.0,
    seed: int = 0,
) -> np.ndarray:
    """Assign blocks of whole sentences to splits; drop windows that cross a block's edges.

    Parameters
    ----------
    onsets : array-like of float, shape (n_segments,)
        Word onsets, seconds on the recording's clock.
    sentences : array-like of int, shape (n_segments,)
        The sentence of each word.
    window : (float, float)
        The window around each onset, seconds (``(-0.5, 2.5)``).
    test_fraction, val_fraction : float
        Fractions of the blocks that are test and validation blocks (at least one test block;
        validation may be empty).
    block_duration : float
        Consecutive sentences are merged into blocks of at least this many seconds (brainmagick
        splits blocks of sentences the same way).
    seed : int
        Seed of the assignment of blocks to splits.

    Returns
    -------
    split : ndarray of str, shape (n_segments,)
        ``"train"``, ``"val"``, ``"test"``, or ``"none"`` for a window that does not lie wholly
        inside its block (from the block's first word onset to the next block's): consecutive
        windows overlap by seconds, and a window across a block edge would hold the audio of,
        and the brain's response to, another split's words. Windows of different splits thus
        never share a sample; the blocks near the edges are the price (about 3 s a block).
    """
    onsets = np.asarray(onsets, dtype=float)
    sentences = np.asarray(sentences)
    if onsets.shape != sentences.shape or onsets.ndim != 1:
        raise ValueError(
            f"'onsets' and 'sentences' must be 1-D of the same length, got {onsets.shape} and "
            f"{sentences.shape}."
        )
    # sentences in the order they are heard, each starting at its first word
    starts = pd.Series(onsets).groupby(sentences).min().sort_values()
    block_of_sentence, block_starts = {}, []
    for sentence, start in starts.items():
        if not block_starts or start - block_starts[-1] >= block_duration:
            block_starts.append(float(start))
        block_of_sentence[sentence] = len(block_starts) - 1
    n_blocks = len(block_starts)
    n_test = max(1, round(test_fraction * n_blocks))
    n_val = max(1, round(val_fraction * n_blocks)) if val_fraction > 0 else 0
    if n_test + n_val >= n_blocks:
        raise ValueError(
            f"{n_blocks} blocks of at least block_duration={block_duration:g} s cannot give "
            f"{n_test} test and {n_val} validation blocks and still leave training ones; "
            "simulate a longer recording (duration), or lower block_duration, test_fraction or "
            "val_fraction."
        )
    order = np.random.default_rng([seed, 11]).permutation(n_blocks)
    labels = np.full(n_blocks, "train", dtype=object)
    labels[order[:n_test]] = "test"
    labels[order[n_test : n_test + n_val]] = "val"
    block = np.array([block_of_sentence[s] for s in sentences])
    edges = np.append(block_starts, np.inf)
    inside = (onsets + window[0] >= edges[block]) & (onsets + window[1] <= edges[block + 1])
    return np.where(inside, labels[block], "none").astype(str)


def _bin_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Average the last axis in bins of ``width`` samples (a ragged last bin is dropped)."""
    n = x.shape[-1] // width
    return x[..., : n * width].reshape(*x.shape[:-1], n, width).mean(-1)


@dataclass
class _MEEGPrepared:
    segment_ids: np.ndarray  # (n_segments,) word-token ids
    split: np.ndarray  # (n_segments,) "train" / "val" / "test"
    targets: np.ndarray  # (n_segments, n_dims, n_target_times), standardised
    brain: dict[str, np.ndarray]  # subject -> (n_segments, n_channels, n_times), z-scored
    stats: dict[str, np.ndarray]

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def _prepare(dataset: Any, config: MEEGDecodeConfig) -> _MEEGPrepared:
    subjects = dataset.subjects
    first = dataset.recordings[subjects[0]]
    ids = first.trials["stimulus_id"].astype(str).to_numpy()
    for sub in subjects[1:]:
        other = dataset.recordings[sub].trials["stimulus_id"].astype(str).to_numpy()
        if not np.array_equal(other, ids):
            raise ValueError(
                f"Subject {sub!r} has other segments than subject {subjects[0]!r}; the speech "
                "decoder needs every subject to hear the same words in the same order."
            )
    times = np.asarray(first.times, dtype=float)
    window = (float(times[0]), float(times[-1]) + 1.0 / float(first.sfreq))
    split = block_splits(
        first.trials["onset"].to_numpy(dtype=float),
        first.trials["sentence"].to_numpy(),
        window,
        test_fraction=config.test_fraction,
        val_fraction=config.val_fraction,
        block_duration=config.block_duration,
        seed=config.seed,
    )
    n_test = int((split == "test").sum())
    if n_test <= 1:
        raise ValueError(
            f"Only {n_test} test window lies wholly inside its block; simulate a longer "
            "recording (duration) or raise test_fraction."
        )
    train = split == "train"
    truth = dataset.ground_truth
    if config.target not in truth.features:
        raise ValueError(
            f"MEEGDecodeConfig.target={config.target!r} is not a feature of this simulation; "
            f"it has {sorted(truth.features)}.{suggest(config.target, truth.features)}"
        )
    Y = dataset.feature_windows(config.target, subjects[0]).astype(np.float64)
    if config.target_sfreq is not None:
        width = max(1, round(float(first.sfreq) / config.target_sfreq))
        Y = _bin_mean(Y, width)
    mean = Y[train].mean(axis=(0, 2), keepdims=True)
    sd = Y[train].std(axis=(0, 2), keepdims=True)
    Y = (Y - mean) / np.where(sd > 0, sd, 1.0)
    stats = {"target_mean": mean[0, :, 0], "target_std": sd[0, :, 0], "split": split}
    brain = {}
    for sub in subjects:
        X = np.asarray(dataset.recordings[sub].data, dtype=np.float32)
        if config.zscore_channels:
            mu = X[train].mean(axis=(0, 2), dtype=np.float64)
            sigma = X[train].std(axis=(0, 2), dtype=np.float64)
            sigma = np.where(sigma > 0, sigma, 1.0)
            stats[f"mean/{sub}"], stats[f"std/{sub}"] = mu, sigma
            X = ((X - mu[:, None]) / sigma[:, None]).astype(np.float32)
        brain[sub] = X
    return _MEEGPrepared(ids, split, Y.astype(np.float32), brain, stats)


# --------------------------------------------------------------------------- the ceiling
def _inverse_sqrt(cov: np.ndarray, shrinkage: float) -> np.ndarray:
    n = cov.shape[0]
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / n * np.eye(n)
    w, V = np.linalg.eigh(cov)
    return (V / np.sqrt(np.maximum(w, w.max() * 1e-12))) @ V.T


def oracle_ceiling(
    clean: np.ndarray,
    noisy: np.ndarray,
    noise: np.ndarray,
    *,
    top_k: int = 10,
    shrinkage: float = 0.05,
) -> Any:
    """Retrieval ceiling of noisy windows after whitening with the known noise covariance.

    Parameters
    ----------
    clean, noisy : ndarray, shape (n_segments, n_channels, n_times)
        Noise-free and noisy windows of the test segments.
    noise : ndarray, shape (n_windows, n_channels, n_times)
        Noise alone (noisy minus noise-free) of other windows (the training segments), from
        which the spatial covariance ``(n_channels, n_channels)`` and, after spatial
        whitening, the temporal covariance ``(n_times, n_times)`` are estimated (shrunk towards
        the identity by ``shrinkage``).
    top_k : int
        The k of the top-k accuracy.
    shrinkage : float in [0, 1]
        Shrinkage of both covariances towards their scaled identity.

    Returns
    -------
    ceiling : NoiseCeiling
        :func:`~brainalign.data.simulate.meeg.compute_noise_ceiling` of the whitened windows:
        each noisy window is identified as the noise-free window it correlates with best. This
        is an approximate ceiling, not a proof of one: the maximum-likelihood rule would rank by
        whitened distance, the simulated noise (brain background through the head model plus
        sensor noise) is a sum of separable terms rather than one, and the covariances are
        estimated. Unlike the unwhitened correlation oracle, no decoder here came near beating
        it.
    """
    from brainalign.data.simulate.meeg import compute_noise_ceiling

    noise = np.asarray(noise, dtype=np.float64)
    n, c, t = noise.shape
    spatial = _inverse_sqrt(
        np.einsum("nct,ndt->cd", noise, noise, optimize=True) / (n * t), shrinkage
    )
    white = np.einsum("dc,nct->ndt", spatial, noise, optimize=True)
    temporal = _inverse_sqrt(
        np.einsum("nct,ncu->tu", white, white, optimize=True) / (n * c), shrinkage
    )

    def whiten(x: np.ndarray) -> np.ndarray:
        x = np.einsum("dc,nct->ndt", spatial, np.asarray(x, dtype=np.float64), optimize=True)
        return np.einsum("ndt,ut->ndu", x, temporal, optimize=True)

    return compute_noise_ceiling(whiten(clean), whiten(noisy), top_k=top_k)


# --------------------------------------------------------------------------- the models
def _brain_dataset(prep: _MEEGPrepared, rows: np.ndarray, subjects: Any = None) -> Any:
    from brainalign.train.data import BrainTargetDataset

    subjects = list(prep.brain) if subjects is None else list(subjects)
    return BrainTargetDataset(
        {s: prep.brain[s][rows] for s in subjects}, {s: rows for s in subjects}, prep.targets
    )


def _fit_ridge(
    prep: _MEEGPrepared, config: MEEGDecodeConfig, sfreq: float, verbose: bool
) -> tuple[dict, dict]:
    from brainalign.train.decoders import RidgeDecoder

    width = max(1, round(sfreq / config.ridge_sfreq))
    train, test = prep.rows("train"), prep.rows("test")
    Y = prep.targets.reshape(len(prep.targets), -1)
    decoders, emb = {}, {}
    for sub, X in progress(prep.brain.items(), desc="ridge baseline", verbose=verbose):
        flat = _bin_mean(X, width).reshape(len(X), -1)
        dec = RidgeDecoder(alphas=config.ridge_alphas).fit(flat[train], Y[train])
        decoders[sub] = dec
        emb[sub] = dec.predict(flat[test]).astype(np.float32)
    return decoders, emb


def _evaluate(
    embeddings: Mapping[str, Mapping[str, np.ndarray]],
    prep: _MEEGPrepared,
    config: MEEGDecodeConfig,
    ceilings: Mapping[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from brainalign.evaluate.retrieval import accuracy_vs_gallery_size, retrieval_metrics

    test = prep.rows("test")
    gallery = prep.targets[test].reshape(len(test), -1)
    n_test = len(test)
    ks = tuple(dict.fromkeys(k for k in (1, config.top_k) if k < n_test))
    common = {"n_bootstrap": config.n_bootstrap, "seed": config.seed}
    rows, curves = [], []
    for model, per_subject in embeddings.items():
        for sub, emb in per_subject.items():
            result = retrieval_metrics(emb, gallery, ks=ks, **common)
            rows += _retrieval_rows(result, sub, model, "segments", ks)
            sizes = None
            if config.gallery_sizes is not None:
                sizes = [n for n in config.gallery_sizes if 2 <= n <= n_test] or None
            curve = accuracy_vs_gallery_size(
                emb, gallery, sizes, k=1, n_draws=config.n_draws, **common
            )
            frame = curve.to_frame().drop(columns="k")
            frame.insert(0, "model", model)
            frame.insert(0, "subject", sub)
            curves.append(frame)
    for sub, ceiling in ceilings.items():
        values = {1: ceiling.top1_accuracy, ceiling.top_k: ceiling.top_k_accuracy}
        for k, value in values.items():
            if k in ks:
                rows.append(_ceiling_row(sub, k, value, "segments", n_test))
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS)), pd.concat(curves, ignore_index=True)


def decode_simulated_meeg(
    dataset: Any = None,
    *,
    config: MEEGDecodeConfig | TrainConfig | str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
    seed: int | None = None,
) -> DecodeResults:
    """Train the speech decoder and the ridge baseline; segment retrieval against the ceiling.

    Parameters
    ----------
    dataset : SimulatedMEEG | path-like | "default" | None
        A simulated speech dataset (``None``: ``config.dataset``).
    config : MEEGDecodeConfig | TrainConfig | path-like | None
        The settings, a YAML file of them (``configs/decode_simulated_meg.yaml``), or only the
        training part. ``None``: the defaults.
    out_dir : path-like | None
        The run folder: ``decode_meeg.yaml``, ``preprocessing.npz``, checkpoints and metrics
        in ``train/``, ``results.tsv``, ``curves.tsv``. ``None``: ``config.train.out_dir``'s
        parent when that is set, else nothing is written.
    resume : bool
        Continue the training from the latest checkpoint in ``out_dir/train``; a run trained on
        another dataset (``out_dir/dataset.json``) is refused with a ``ValueError``.
    verbose : bool
        Progress bars and the results table.
    seed : int | None
        Replaces both ``config.seed`` (split, bootstrap) and ``config.train.seed``.

    Returns
    -------
    results : DecodeResults
        ``results.table`` has protocol ``"segments"``: models ``"contrastive"``, ``"ridge"``,
        ``"ceiling"``, metrics ``"top1"`` and ``"top{top_k}"``; ``results.targets`` are the
        flattened standardised target windows ``(n_segments, n_dims * n_target_times)`` and
        ``results.embeddings[model][subject]`` the decoded test windows, flattened likewise.
    """
    import torch

    from brainalign.models.meeg import MEEGEncoder
    from brainalign.train.checkpoint import latest_checkpoint
    from brainalign.train.loop import encode, fit

    config = _coerce_config(config, MEEGDecodeConfig)
    if seed is not None:
        config = config.replace(seed=int(seed), train=config.train.replace(seed=int(seed)))
    dataset = load_meeg_decode_dataset(
        config.dataset if dataset is None else dataset, duration=config.duration, verbose=verbose
    )
    if out_dir is None and config.train.out_dir is not None:
        out_dir = Path(config.train.out_dir).parent
    run_dir = Path(out_dir).expanduser() if out_dir is not None else None
    prep = _prepare(dataset, config)
    n_dims, n_target_times = prep.targets.shape[1:]
    train_rows, val_rows, test_rows = (prep.rows(s) for s in ("train", "val", "test"))
    n_train = len(train_rows) * len(prep.brain)
    train_config = config.train.replace(
        out_dir=str(run_dir / TRAIN_DIR) if run_dir is not None else None,
        batch_size=min(config.train.batch_size, n_train),
        **({} if len(val_rows) else {"patience": None, "restore_best": False}),
    )
    config = config.replace(train=train_config)
    if run_dir is not None:
        if resume:
            _check_same_dataset(run_dir, dataset, MEEG_CONFIG_NAME)
        run_dir.mkdir(parents=True, exist_ok=True)
        _record_dataset(run_dir, dataset)
        values = config.to_dict()
        values["dataset"] = str(Path(dataset.root).resolve())  # the data this run used
        MEEGDecodeConfig.from_dict(values).to_yaml(run_dir / MEEG_CONFIG_NAME)
        with atomic_write(run_dir / PREPROCESSING_NAME, "wb") as fh:
            np.savez(fh, **prep.stats)
    logger.info(
        "Decoding %d subjects: %d training, %d validation, %d test segments per subject.",
        len(prep.brain), len(train_rows), len(val_rows), len(test_rows),
    )  # fmt: skip

    torch.manual_seed(train_config.seed)
    model = MEEGEncoder.from_recordings(
        [dataset.recordings[s] for s in prep.brain],
        target_dim=int(n_dims),
        n_target_times=int(n_target_times),
        **train_config.model_kwargs,
    )
    val_data = _brain_dataset(prep, val_rows) if len(val_rows) else None
    start = time.perf_counter()
    fitted = fit(
        model, _brain_dataset(prep, train_rows), val_data, train_config, resume=resume,
        verbose=verbose,
    )  # fmt: skip
    train_seconds = time.perf_counter() - start
    contrastive = {
        sub: encode(fitted.model, _brain_dataset(prep, test_rows, [sub]))
        .numpy()
        .reshape(len(test_rows), -1)
        for sub in prep.brain
    }
    sfreq = float(dataset.recordings[dataset.subjects[0]].sfreq)
    ridge, ridge_emb = _fit_ridge(prep, config, sfreq, verbose)
    ceilings = {}
    for sub in prep.brain:
        noisy = np.asarray(dataset.recordings[sub].data)
        clean = np.asarray(dataset.clean_recordings[sub].data)
        ceilings[sub] = oracle_ceiling(
            clean[test_rows],
            noisy[test_rows],
            noisy[train_rows] - clean[train_rows],
            top_k=min(config.top_k, len(test_rows) - 1),
        )
    table, curves = _evaluate({"contrastive": contrastive, "ridge": ridge_emb}, prep, config,
                              ceilings)  # fmt: skip
    n_test = len(test_rows)
    notes = [
        f"Segment-level retrieval among all {n_test} test segments (overlapping 3 s windows of "
        f"consecutive words); chance top-1 {1 / n_test:.3f}, top-{config.top_k} "
        f"{min(1.0, config.top_k / n_test):.3f}.",
        "ceiling: the oracle that whitens noisy and noise-free windows with the known noise "
        "covariance; the dataset's unwhitened correlation oracle reaches top-1 "
        + ", ".join(
            f"{s}: {dataset.noise_ceiling[s].top1_accuracy:.2f}"
            for s in prep.brain
            if dataset.noise_ceiling and s in dataset.noise_ceiling
        )
        + " (over all its segments), not a bound.",
    ]
    checkpoint = latest_checkpoint(run_dir / TRAIN_DIR) if run_dir is not None else None
    results = DecodeResults(
        table=table,
        curves=curves,
        config=config,
        checkpoint=checkpoint,
        out_dir=run_dir,
        test_ids=prep.segment_ids[test_rows],
        stimulus_ids=prep.segment_ids,
        targets=prep.targets.reshape(len(prep.targets), -1),
        embeddings={"contrastive": contrastive, "ridge": ridge_emb},
        history=fitted.history,
        train_seconds=train_seconds,
        notes=notes,
        model=fitted.model,
        ridge=ridge,
    )
    if run_dir is not None:
        results.save(run_dir)
    if verbose:
        print(results)
    return results
