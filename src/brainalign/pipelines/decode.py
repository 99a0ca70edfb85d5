"""Decoding the simulated fMRI dataset: brain → image embedding, retrieval vs ridge and ceiling.

The job, as :func:`decode_simulated_fmri` runs it:

1. **targets**: one embedding per stimulus (:func:`decoding_targets`): by default the pooled
   output of EfficientNet-Lite0's last convolution (``global_pool``, 1,280 values), the
   offline stand-in for the CLIP image embeddings MindEye decodes (no CLIP weights can be
   downloaded here); give an open_clip name and weights (``target_model="ViT-L-14"``,
   ``target_layer="image"``) and the same job decodes into CLIP. The embeddings are
   standardised with the mean and SD of the training stimuli (``standardize_targets``):
   post-ReLU features are all positive, and their cosine similarities are dominated by the
   mean otherwise;
2. **splits**: every subject's ``split == "train"`` trials are training trials, except those of
   a random ``val_fraction`` of the training stimuli (the same stimuli for every subject),
   which validate each epoch; the shared ``split == "test"`` stimuli are the test set, their
   betas averaged over repetitions per subject (MindEye's protocol). Voxels are z-scored per
   subject with the mean and SD of its training trials;
3. **the contrastive model**: one encoder of :mod:`brainalign.models` for all subjects
   (per-subject adapters into a shared space) trained by :func:`brainalign.train.fit` on the
   single training trials of every subject, with checkpoints (and ``resume``) in
   ``out_dir/train``;
4. **the ridge baseline**: :class:`brainalign.train.RidgeDecoder` per subject, on the same
   training trials, penalty chosen by 5-fold cross-validation, saved with the run
   (``ridge.npz``) so that evaluating it again does not refit;
5. **retrieval**, per subject and model, in both directions (brain → image: a test response's
   image among the candidates; image → brain: a test image's response among the subject's test
   responses), by cosine similarity:

   * ``"n-way"``: top-1/top-5 among ``N = min(n_way, n_test)`` test items, ``n_draws`` random
     draws (MindEye: 300-way, 30 draws). With fewer than ``n_way`` test stimuli, ``N`` is the
     whole test set (every draw is the same) and the results say so in ``results.notes``;
   * ``"full-gallery"``: top-1/top-5 brain → image against the images of *every* stimulus of
     the dataset (the training images are distractors); image → brain against the subject's
     test responses;
   * ``"gallery-size"``: top-1 as a function of the number of candidates
     (:func:`brainalign.evaluate.accuracy_vs_gallery_size`), in ``results.curves``;

   beside the simulation's **ceiling**: the oracle of the ground truth, the top-1
   ``n_test``-way identification of the averaged test responses by the maximum-likelihood rule
   under the known noise (``top1_mahalanobis``): no decoder beats it in expectation.

Measured on the default simulated dataset (version 3: 4 subjects, 2,446-3,023 voxels, 3,000
stimuli, 300 shared test, every subject sees all 2,700 training images 3 times, SNR 0.3) with
``configs/decode_simulated_fmri.yaml`` (MindEye2-style encoder without residual block, hidden
256, CLIP loss + 5 × the backbone's MSE to the target, 30 epochs of batch 256) on 2 CPU cores,
one torch thread: training 204 s (the whole job 6 min, 3.3 GB); 300-way top-1 (the whole test
set), mean over subjects, [mean of the subjects' 95 % CIs]:

===================  ====================  ====================  ======================
                     brain → image top-1   image → brain top-1   top-5 (b → i / i → b)
===================  ====================  ====================  ======================
contrastive          0.83 [0.79, 0.87]     0.90 [0.87, 0.93]     0.99 / 1.00
ridge (per subject)  0.53 [0.48, 0.59]     0.85 [0.80, 0.89]     0.91 / 0.99
ceiling (oracle)     1.00                  —                     —
===================  ====================  ====================  ======================

Full gallery (brain → image among all 3,000 images): top-1 / top-5 0.41 / 0.84 contrastive,
0.14 / 0.41 ridge; most test images have a near-duplicate among the training crops (median
cosine similarity of the nearest training target 0.91), which the full gallery counts as wrong.
The oracle knows the noise-free responses of the test stimuli; a decoder must learn the map
from 2,430 training images per subject (NSD: ~9,000). What keeps the decoders from it is the
measurement noise with that much data, not the model: trained and tested on the *noise-free*
responses of the same trials, the same job identifies 0.96 (contrastive) and 0.98 (ridge) of
the 300 test images; with a third of the images per subject (version 2 of the dataset, ~880
each) the same config reached 0.73 and ridge 0.41. The CLIP loss alone with a residual block
(the previous config) reaches 0.80 on version 3. On a CPU shared with other jobs,
``torch.set_num_threads(1)`` trains these small matrices several times faster than two
threads that wait for each other.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign._utils.atomic import atomic_write
from brainalign._utils.progress import logger
from brainalign._utils.validation import check_file, check_option, suggest
from brainalign.train.config import TrainConfig, read_yaml_mapping, write_yaml

__all__ = [
    "DecodeConfig",
    "DecodeResults",
    "decode_simulated_fmri",
    "decoding_targets",
    "evaluate_checkpoint",
    "load_decode_dataset",
    "plot_retrieval_vs_gallery",
    "plot_retrieved_images",
    "train_from_config",
]

#: The tidy results table's columns (one row per subject, model, protocol, direction, metric).
RESULT_COLUMNS = (
    "subject",
    "model",
    "direction",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "protocol",
    "n_gallery",
    "chance",
)
DIRECTIONS = ("brain_to_stimulus", "stimulus_to_brain")
DECODE_CONFIG_NAME = "decode.yaml"
PREPROCESSING_NAME = "preprocessing.npz"
DATASET_RECORD_NAME = "dataset.json"
RIDGE_NAME = "ridge.npz"
TRAIN_DIR = "train"
_DEFAULT_RIDGE_ALPHAS = (1.0, 10.0, 100.0, 316.0, 1000.0, 3162.0, 10000.0, 100000.0)


# --------------------------------------------------------------------------- the config
class _SectionedConfig:
    """YAML, dict and ``key=value`` override handling of a decoding config with a ``train:``
    section (a :class:`~brainalign.train.TrainConfig`); subclasses are frozen dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (YAML ready); ``train`` as :meth:`TrainConfig.to_dict`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "train":
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], overrides: Iterable[str] = ()) -> Any:
        """Build from a mapping and ``key=value`` overrides (``train.lr=1e-3`` reaches into
        ``train``; ``train.model_kwargs.hidden=256`` into its dicts)."""
        import yaml

        if not isinstance(values, Mapping):
            raise TypeError(
                f"A {cls.__name__} is built from a mapping, got {type(values).__name__}."
            )
        values = dict(values)
        train = values.pop("train", None) or {}
        if isinstance(train, TrainConfig):
            train = train.to_dict()
        train_overrides = []
        names = [f.name for f in dataclasses.fields(cls)]
        for item in overrides:
            if not isinstance(item, str) or "=" not in item:
                raise ValueError(
                    f"An override must be a string 'key=value' (e.g. 'n_draws=10' or "
                    f"'train.lr=1e-3'), got {item!r}."
                )
            key, _, text = item.partition("=")
            key = key.strip()
            if key.startswith("train."):
                train_overrides.append(f"{key[len('train.') :]}={text}")
                continue
            if key not in names or key == "train":
                raise ValueError(
                    f"Unknown decoding config key {key!r} in the override {item!r}."
                    f"{suggest(key, names)} Allowed keys: {', '.join(names)} (training settings "
                    "as train.<key>, e.g. train.lr=1e-3)."
                )
            try:
                values[key] = yaml.safe_load(text) if text.strip() else None
            except yaml.YAMLError as err:
                raise ValueError(f"Cannot parse the value of the override {item!r}: {err}") from err
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ValueError(
                f"Unknown decoding config key {unknown[0]!r}.{suggest(str(unknown[0]), names)} "
                f"Allowed keys: {', '.join(names)}."
            )
        train_config = TrainConfig.from_dict(
            _merge_train(cls._default_train(), train), train_overrides
        )
        return cls(**values, train=train_config)

    @classmethod
    def _default_train(cls) -> TrainConfig:
        """The training settings that keys missing from a ``train:`` section take."""
        return TrainConfig()

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Iterable[str] = ()) -> Any:
        """Read a YAML file (see ``configs/decode_simulated_*.yaml``) and apply overrides."""
        path = check_file(path, "path", what="YAML decoding config")
        values = read_yaml_mapping(path)
        try:
            return cls.from_dict(values, overrides)
        except (TypeError, ValueError) as err:
            raise type(err)(f"In {str(path)!r}: {err}") from err

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write the config as YAML, atomically; returns the path."""
        return write_yaml(self.to_dict(), path)

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DecodeConfig(_SectionedConfig):
    """Everything the decoding job needs besides the data: targets, splits, training, evaluation.

    Attributes
    ----------
    dataset : str
        ``"default"`` (:func:`~brainalign.pipelines.simulate_fmri.default_simulated_fmri`) or
        the folder of a dataset written by
        :func:`~brainalign.pipelines.simulate_fmri.simulate_fmri_dataset`.
    target_model : str
        The network that embeds the stimuli (:func:`brainalign.targets.extract_features`):
        ``"efficientnet_lite0"`` (offline) or an open_clip name such as ``"ViT-L-14"``.
    target_weights : str | None
        Its weights (open_clip pretrained tag or a local file; ``None``: the default).
    target_layer : str
        The layer (``list_layers``; for CLIP ``"image"``).
    pooling : {"avg", "none", "grid", "random", "pca"}
        Pooling of the layer's activations.
    image_size : int | None
        EfficientNet-Lite0 only: input side in pixels (``None``: the stimuli's own size, as the
        simulation did). Other networks use their own preprocessing.
    standardize_targets : bool
        Standardise every target dimension with the mean and SD over the training stimuli.
    zscore_voxels : bool
        z-score every voxel with the mean and SD of the subject's training trials.
    val_fraction : float in [0, 1)
        Fraction of the training stimuli held out for validation (0: no validation).
    ridge_alphas : sequence of float
        Penalties the ridge baseline chooses from by 5-fold cross-validation.
    n_way, n_draws : int
        N-way protocol (``N = min(n_way, n_test)``) and its number of draws.
    n_bootstrap : int
        Bootstrap resamples (over test stimuli) of the confidence intervals; 0: none.
    gallery_sizes : sequence of int | None
        Sizes of the accuracy-vs-gallery-size curve (``None``: 2, 5, 10, 20, 50, 100, … up to
        ``n_test``).
    seed : int
        Seed of the validation split, the draws and the bootstrap (``train.seed`` seeds the
        training).
    train : TrainConfig
        The model, loss and optimisation; ``model_kwargs`` gets ``n_voxels`` and
        ``target_shape`` from the data.
    """

    dataset: str = "default"
    target_model: str = "efficientnet_lite0"
    target_weights: str | None = None
    target_layer: str = "global_pool"
    pooling: str = "avg"
    image_size: int | None = None
    standardize_targets: bool = True
    zscore_voxels: bool = True
    val_fraction: float = 0.1
    ridge_alphas: tuple[float, ...] = _DEFAULT_RIDGE_ALPHAS
    n_way: int = 300
    n_draws: int = 30
    n_bootstrap: int = 1000
    gallery_sizes: tuple[int, ...] | None = None
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if isinstance(self.train, Mapping):
            object.__setattr__(self, "train", TrainConfig.from_dict(self.train))
        if not isinstance(self.train, TrainConfig):
            raise TypeError(
                f"DecodeConfig.train must be a TrainConfig or a mapping, got {self.train!r:.80}."
            )
        for name in ("dataset", "target_model", "target_layer"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(
                    f"DecodeConfig.{name} must be a non-empty string, got {getattr(self, name)!r}."
                )
        if self.target_weights is not None:
            object.__setattr__(self, "target_weights", str(self.target_weights))
        check_option("pooling", self.pooling, ("avg", "none", "grid", "random", "pca"))
        for name in ("standardize_targets", "zscore_voxels"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"DecodeConfig.{name} must be true or false, got {getattr(self, name)!r}."
                )
        if not isinstance(self.val_fraction, int | float) or not 0 <= self.val_fraction < 1:
            raise ValueError(
                f"DecodeConfig.val_fraction must lie in [0, 1), got {self.val_fraction!r}."
            )
        object.__setattr__(self, "val_fraction", float(self.val_fraction))
        object.__setattr__(self, "ridge_alphas", _check_alphas("DecodeConfig", self.ridge_alphas))
        for name, minimum in (("n_way", 2), ("n_draws", 1), ("n_bootstrap", 0), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"DecodeConfig.{name} must be an integer >= {minimum}, got {value!r}."
                )
        if self.image_size is not None and (
            isinstance(self.image_size, bool)
            or not isinstance(self.image_size, int)
            or self.image_size < 8
        ):
            raise ValueError(
                f"DecodeConfig.image_size must be null or an integer >= 8, got {self.image_size!r}."
            )
        if self.gallery_sizes is not None:
            object.__setattr__(self, "gallery_sizes", tuple(int(n) for n in self.gallery_sizes))

    # ----------------------------------------------------------------- dicts / YAML


def _merge_train(defaults: TrainConfig, values: Mapping[str, Any]) -> dict[str, Any]:
    """A ``train:`` section over the job's default training settings; ``model_kwargs`` are
    merged one level deep when the model is the default one (a partial ``model_kwargs`` keeps
    the other default sizes)."""
    merged = {**defaults.to_dict(), **values}
    kwargs = values.get("model_kwargs")
    if isinstance(kwargs, Mapping) and merged["model"] == defaults.model:
        merged["model_kwargs"] = {**defaults.model_kwargs, **kwargs}
    return merged


def _coerce_config(config: Any, cls: type) -> Any:
    """A ``cls`` config from ``None`` (defaults), itself, a TrainConfig or a YAML path."""
    if config is None:
        return cls()
    if isinstance(config, cls):
        return config
    if isinstance(config, TrainConfig):
        return cls(train=config)
    if isinstance(config, str | os.PathLike):
        return cls.from_yaml(config)
    raise TypeError(
        f"'config' must be a {cls.__name__}, a TrainConfig, the path of a YAML config or None, "
        f"got {type(config).__name__}."
    )


def _as_decode_config(config: Any) -> DecodeConfig:
    return _coerce_config(config, DecodeConfig)


def _check_alphas(owner: str, value: Any) -> tuple[float, ...]:
    """``owner.ridge_alphas`` as a tuple of positive finite floats, or a clear error."""
    try:
        alphas = tuple(float(a) for a in np.atleast_1d(value))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{owner}.ridge_alphas must be positive numbers, got {value!r}.") from err
    if not alphas or not all(math.isfinite(a) and a > 0 for a in alphas):
        raise ValueError(f"{owner}.ridge_alphas must be positive numbers, got {value!r}.")
    return alphas


def _retrieval_rows(
    result: Any, subject: str, model: str, protocol: str, ks: Sequence[int]
) -> list[dict[str, Any]]:
    """Tidy rows (:data:`RESULT_COLUMNS`) of a RetrievalResult: both directions, every top-k."""
    rows = []
    for direction in DIRECTIONS:
        for k in ks:
            low, high = result.ci.get(direction, {}).get(f"top{k}", (np.nan,) * 2)
            n_gallery = int(result.n_gallery[direction])
            rows.append(
                {
                    "subject": subject,
                    "model": model,
                    "direction": direction,
                    "metric": f"top{k}",
                    "value": float(result.metrics[direction][f"top{k}"]),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "protocol": protocol,
                    "n_gallery": n_gallery,
                    "chance": min(1.0, k / n_gallery),
                }
            )
    return rows


def _ceiling_row(subject: str, k: int, value: float, protocol: str, n_gallery: int) -> dict:
    """The tidy row of a ceiling's brain → stimulus top-``k`` (no CI)."""
    return {
        "subject": subject,
        "model": "ceiling",
        "direction": "brain_to_stimulus",
        "metric": f"top{k}",
        "value": float(value),
        "ci_low": np.nan,
        "ci_high": np.nan,
        "protocol": protocol,
        "n_gallery": int(n_gallery),
        "chance": min(1.0, k / n_gallery),
    }


# --------------------------------------------------------------------------- results
@dataclass
class DecodeResults:
    """What :func:`decode_simulated_fmri` and :func:`evaluate_checkpoint` return.

    Attributes
    ----------
    table : DataFrame
        Tidy: one row per subject, model (``"contrastive"``, ``"ridge"``, ``"ceiling"``),
        protocol (``"n-way"``, ``"full-gallery"``), direction (``"brain_to_stimulus"``,
        ``"stimulus_to_brain"``) and metric (``"top1"``, ``"top5"``); columns ``subject``,
        ``model``, ``direction``, ``metric``, ``value``, ``ci_low``, ``ci_high`` (bootstrap
        over test stimuli; NaN without), ``protocol``, ``n_gallery``, ``chance``.
    curves : DataFrame
        Top-1 vs gallery size: ``subject``, ``model``, ``direction``, ``gallery_size``,
        ``accuracy``, ``ci_low``, ``ci_high``, ``chance``.
    config : DecodeConfig
        The settings (``config.train.model_kwargs`` holds the data's sizes).
    checkpoint : Path | None
        The latest checkpoint of the trained model (``None`` without ``out_dir``).
    out_dir : Path | None
        The run folder (``decode.yaml``, ``preprocessing.npz``, ``train/``, ``results.tsv``).
    test_ids : ndarray of str, shape (n_test,)
        The test stimuli, in the order of the rows of ``embeddings``.
    stimulus_ids : ndarray of str, shape (n_stimuli,)
        All stimuli, in the order of the rows of ``targets``.
    targets : ndarray, shape (n_stimuli, n_dims)
        The (standardised) target embeddings.
    embeddings : dict of str to dict of str to ndarray
        ``embeddings[model][subject]``: decoded embeddings of the averaged test responses,
        ``(n_test, n_dims)``.
    history : list of dict
        The training history (:attr:`brainalign.train.FitResult.history`).
    train_seconds : float
        Wall time of the contrastive training (0 when evaluated from a checkpoint).
    notes : list of str
        Caveats (e.g. N-way with fewer than 300 test stimuli).
    model : torch.nn.Module | None
        The trained encoder.
    ridge : dict of str to RidgeDecoder
        The fitted baselines per subject.
    prior : DiffusionPrior | None
        The diffusion prior trained jointly with the encoder (``train.prior_weight > 0``).
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    config: DecodeConfig
    checkpoint: Path | None
    out_dir: Path | None
    test_ids: np.ndarray
    stimulus_ids: np.ndarray
    targets: np.ndarray
    embeddings: dict[str, dict[str, np.ndarray]]
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    model: Any = None
    ridge: dict[str, Any] = field(default_factory=dict)
    prior: Any = None

    @property
    def subjects(self) -> list[str]:
        """Subjects evaluated."""
        return list(dict.fromkeys(self.table["subject"]))

    def summary(self, protocol: str | None = None) -> pd.DataFrame:
        """Mean over subjects of one protocol: rows ``model``, columns ``(direction, metric)``.

        ``protocol`` is ``"n-way"`` or ``"full-gallery"`` (fMRI) or ``"segments"`` (M/EEG);
        ``None``: the table's first.
        """
        if protocol is None:
            protocol = str(self.table["protocol"].iloc[0])
        check_option("protocol", protocol, sorted(set(self.table["protocol"])))
        sub = self.table[self.table["protocol"] == protocol]
        wide = sub.pivot_table(
            index="model", columns=["direction", "metric"], values="value", aggfunc="mean"
        )
        order = [m for m in ("contrastive", "ridge", "ceiling") if m in wide.index]
        return wide.loc[order]

    def retrieve(self, subject: str, model: str = "contrastive", k: int = 5) -> pd.DataFrame:
        """The ``k`` best test images for each test response of a subject (brain → image).

        Returns
        -------
        retrieved : DataFrame
            One row per test stimulus: ``stimulus_id`` (the query's), ``retrieved`` (list of
            ``k`` ids, best first), ``rank`` of the true image among the test images (1 best).
        """
        check_option("model", model, list(self.embeddings))
        emb = self.embeddings[model]
        check_option("subject", subject, list(emb))
        pos = {s: i for i, s in enumerate(self.stimulus_ids)}
        gallery = self.targets[[pos[s] for s in self.test_ids]]
        sim = _cosine(emb[subject], gallery)
        order = np.argsort(-sim, axis=1, kind="stable")
        ranks = 1 + (sim > np.diag(sim)[:, None]).sum(1)
        return pd.DataFrame(
            {
                "stimulus_id": self.test_ids,
                "retrieved": [list(self.test_ids[row[:k]]) for row in order],
                "rank": ranks,
            }
        )

    def save(self, out_dir: str | os.PathLike | None = None) -> Path:
        """Write ``results.tsv``, ``curves.tsv`` and ``summary.json`` to ``out_dir``."""
        folder = Path(out_dir) if out_dir is not None else self.out_dir
        if folder is None:
            raise ValueError("These results have no out_dir; pass one to save().")
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / "results.tsv", "w") as fh:
            self.table.to_csv(fh, sep="\t", index=False)
        with atomic_write(folder / "curves.tsv", "w") as fh:
            self.curves.to_csv(fh, sep="\t", index=False)
        info = {
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "train_seconds": self.train_seconds,
            "notes": self.notes,
        }
        with atomic_write(folder / "summary.json", "w") as fh:
            json.dump(info, fh, indent=2)
        return folder

    def __str__(self) -> str:
        lines = [f"DecodeResults: {len(self.subjects)} subjects, {len(self.test_ids)} test stimuli"]
        for protocol in dict.fromkeys(self.table["protocol"]):
            sub = self.table[self.table["protocol"] == protocol]
            n = sorted({int(v) for v in sub["n_gallery"]})
            lines.append(f"-- {protocol} (gallery {', '.join(map(str, n))}; mean over subjects)")
            lines.append(self.summary(protocol).round(3).to_string())
        if self.train_seconds:
            lines.append(f"training: {self.train_seconds:.1f} s")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- data
def load_decode_dataset(dataset: Any = "default", *, verbose: bool = True) -> Any:
    """The dataset a config names: ``"default"`` or a folder; a SimulatedFMRI passes through."""
    from brainalign.pipelines.simulate_fmri import (
        SimulatedFMRI,
        default_simulated_fmri,
        load_simulated_fmri,
    )

    if isinstance(dataset, SimulatedFMRI):
        return dataset
    if dataset is None or (isinstance(dataset, str) and dataset == "default"):
        return default_simulated_fmri(verbose=verbose)
    if isinstance(dataset, str | os.PathLike):
        return load_simulated_fmri(Path(dataset).expanduser())
    raise TypeError(
        "'dataset' must be a SimulatedFMRI, a dataset folder or 'default', got "
        f"{type(dataset).__name__}."
    )


def decoding_targets(
    dataset: Any,
    layer: str = "global_pool",
    pooling: str = "avg",
    *,
    model: str = "efficientnet_lite0",
    weights: Any = None,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: Any = "auto",
    verbose: bool = True,
) -> pd.DataFrame:
    """One target embedding per stimulus of a dataset, from a late layer of a network.

    Parameters
    ----------
    dataset : SimulatedFMRI | StimulusSet
        A dataset (its ``stimuli`` are used) or a stimulus set.
    layer : str
        The layer (:func:`brainalign.targets.list_layers`); the default, ``"global_pool"`` of
        EfficientNet-Lite0, is its 1,280-value image embedding (the offline stand-in for CLIP).
        For an open_clip model, ``"image"`` (the CLIP image embedding).
    pooling : {"avg", "none", "grid", "random", "pca"}
        Pooling of the layer's activations (:func:`brainalign.targets.extract_features`).
    model : str
        ``"efficientnet_lite0"`` (offline weights) or any model
        :func:`~brainalign.targets.extract_features` takes: an open_clip name such as
        ``"ViT-L-14"`` with ``weights="openai"`` gives CLIP image embeddings.
    weights : str | path-like | None
        The model's weights (open_clip pretrained tag or a local file).
    image_size : int | None
        EfficientNet-Lite0 only: input side in pixels; ``None``: the stimuli's own size (the
        images are centre-cropped to a square and scaled as in the simulation). Other models
        use their own preprocessing.
    cache_dir : path-like | None
        Feature cache folder (default: brainalign's cache).
    device : str
        Where the network runs.
    verbose : bool
        Progress bar.

    Returns
    -------
    targets : DataFrame, shape (n_stimuli, n_dims)
        Float32 embeddings indexed by stimulus id (in the order of ``stimuli.ids``).
    """
    stimuli = getattr(dataset, "stimuli", dataset)
    if not hasattr(stimuli, "ids") or not hasattr(stimuli, "load"):
        raise TypeError(
            "'dataset' must be a SimulatedFMRI or a StimulusSet (with ids and load), got "
            f"{type(dataset).__name__}."
        )
    from brainalign.targets import extract_features

    transform = None
    if model == "efficientnet_lite0":
        from brainalign.pipelines.simulate_fmri import _SquareImageTransform

        if image_size is None:
            image_size = min(stimuli.load(stimuli.ids[0]).size)
        transform = _SquareImageTransform(int(image_size))
    feats = extract_features(
        model,
        [layer],
        stimuli,
        weights=weights,
        pooling=pooling,
        transform=transform,
        cache_dir=cache_dir,
        device=device,
        modality="image",
        verbose=verbose,
    )
    values = np.asarray(feats[layer], dtype=np.float32).reshape(len(feats), -1)
    ids = [str(i) for i in stimuli.ids]
    if list(feats.stimulus_ids) != ids:  # pragma: no cover - guard
        raise RuntimeError("The features came back in another order than the stimuli.")
    return pd.DataFrame(values, index=pd.Index(ids, name="stimulus_id"))


@dataclass
class _Prepared:
    """The arrays of one run: standardised targets, per-subject train/val/test responses."""

    stimulus_ids: np.ndarray
    targets: np.ndarray  # (n_stimuli, n_dims), standardised
    test_ids: np.ndarray
    train: dict[str, tuple[np.ndarray, np.ndarray]]  # subject -> (X, stimulus rows)
    val: dict[str, tuple[np.ndarray, np.ndarray]]
    test: dict[str, np.ndarray]  # subject -> (n_test, n_voxels) averaged, rows of test_ids
    stats: dict[str, np.ndarray]


def _prepare(
    dataset: Any,
    targets: Any,
    config: DecodeConfig,
    stats: Mapping[str, np.ndarray] | None = None,
) -> _Prepared:
    """Split, average and standardise; ``stats`` (from a saved run) replace the fitted ones."""
    from brainalign.data.repetitions import average_repetitions

    stimulus_ids = np.asarray([str(i) for i in dataset.stimuli.ids])
    if isinstance(targets, pd.DataFrame):
        missing = sorted(set(stimulus_ids) - {str(i) for i in targets.index})
        if missing:
            raise ValueError(
                f"'targets' has no row for {len(missing)} stimuli (e.g. {missing[:3]}); give one "
                "row per stimulus, indexed by stimulus id (see decoding_targets)."
            )
        Y = targets.set_axis([str(i) for i in targets.index]).loc[stimulus_ids].to_numpy()
    else:
        Y = np.asarray(targets)
        if Y.ndim != 2 or len(Y) != len(stimulus_ids):
            raise ValueError(
                f"'targets' must have shape (n_stimuli={len(stimulus_ids)}, n_dims), in the "
                f"order of dataset.stimuli.ids, got {Y.shape}."
            )
    Y = Y.astype(np.float64)
    pos = {s: i for i, s in enumerate(stimulus_ids)}
    test_ids = np.asarray([str(i) for i in dataset.test_ids])
    test_set = set(test_ids)
    train_stim = np.array([s for s in stimulus_ids if s not in test_set])
    stats = dict(stats) if stats is not None else {}
    if "val_ids" in stats:
        val_ids = set(stats["val_ids"].astype(str))
    elif config.val_fraction > 0:
        rng = np.random.default_rng([config.seed, 7])
        n_val = max(1, round(config.val_fraction * len(train_stim)))
        val_ids = set(train_stim[np.sort(rng.choice(len(train_stim), n_val, replace=False))])
    else:
        val_ids = set()
    stats["val_ids"] = np.asarray(sorted(val_ids), dtype=str)
    fit_rows = [pos[s] for s in train_stim if s not in val_ids]
    if config.standardize_targets:
        if "target_mean" not in stats:
            stats["target_mean"] = Y[fit_rows].mean(0)
            stats["target_std"] = Y[fit_rows].std(0)
        sd = stats["target_std"]
        Y = (Y - stats["target_mean"]) / np.where(sd > 1e-8 * max(sd.max(), 1e-30), sd, 1.0)

    train, val, test = {}, {}, {}
    for sub in dataset.subjects:
        rec = dataset[sub]
        trials = rec.trials
        split = trials["split"].astype(str).to_numpy()
        stim = trials["stimulus_id"].astype(str).to_numpy()
        unknown = sorted(set(stim) - set(pos))
        if unknown:
            raise ValueError(
                f"Subject {sub!r} has trials of stimuli that are not in the stimulus set: "
                f"{unknown[:3]}."
            )
        is_test = split == "test"
        is_val = ~is_test & np.isin(stim, list(val_ids))
        is_train = ~is_test & ~is_val
        X = np.asarray(rec.data, dtype=np.float32)
        if config.zscore_voxels:
            if f"mean/{sub}" not in stats:
                stats[f"mean/{sub}"] = X[is_train].mean(0, dtype=np.float64).astype(np.float32)
                sd = X[is_train].std(0, dtype=np.float64).astype(np.float32)
                stats[f"std/{sub}"] = np.where(sd > 0, sd, 1.0).astype(np.float32)
            mean, sd = stats[f"mean/{sub}"], stats[f"std/{sub}"]
        else:
            mean, sd = np.zeros(X.shape[1], np.float32), np.ones(X.shape[1], np.float32)
        train[sub] = ((X[is_train] - mean) / sd, np.array([pos[s] for s in stim[is_train]]))
        if is_val.any():
            val[sub] = ((X[is_val] - mean) / sd, np.array([pos[s] for s in stim[is_val]]))
        avg = average_repetitions(rec.select(trials=np.flatnonzero(is_test)))
        order = {s: i for i, s in enumerate(avg.trials["stimulus_id"].astype(str))}
        missing = [s for s in test_ids if s not in order]
        if missing:
            raise ValueError(
                f"Subject {sub!r} has no test trial of {len(missing)} shared test stimuli (e.g. "
                f"{missing[:3]}); every subject must see every test stimulus."
            )
        data = np.asarray(avg.data, dtype=np.float32)[[order[s] for s in test_ids]]
        test[sub] = (data - mean) / sd
    return _Prepared(stimulus_ids, Y.astype(np.float32), test_ids, train, val, test, stats)


# --------------------------------------------------------------------------- evaluation
def _evaluate(
    embeddings: Mapping[str, Mapping[str, np.ndarray]],
    prep: _Prepared,
    config: DecodeConfig,
    dataset: Any,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    from brainalign.evaluate.retrieval import (
        accuracy_vs_gallery_size,
        n_way_retrieval,
        retrieval_metrics,
    )

    pos = {s: i for i, s in enumerate(prep.stimulus_ids)}
    test_rows = np.array([pos[s] for s in prep.test_ids])
    n_test = len(prep.test_ids)
    n_way = min(config.n_way, n_test)
    notes = []
    if n_test < config.n_way:
        notes.append(
            f"{config.n_way}-way retrieval needs {config.n_way} test stimuli; this dataset has "
            f"{n_test}, so the N-way numbers are {n_way}-way (the whole test set, every draw the "
            "same) and are not comparable with MindEye's 300-way numbers."
        )
    ks = tuple(k for k in (1, 5) if k <= n_way)
    common = {"n_bootstrap": config.n_bootstrap, "seed": config.seed}
    rows, curves = [], []
    for model, per_subject in embeddings.items():
        for sub, emb in per_subject.items():
            nway = n_way_retrieval(
                emb, prep.targets[test_rows], n_way, config.n_draws, ks=ks, **common
            )
            full = retrieval_metrics(
                emb,
                prep.targets,
                ks=ks,
                brain_ids=prep.test_ids,
                stimulus_ids=prep.stimulus_ids,
                **common,
            )
            for result, protocol in ((nway, "n-way"), (full, "full-gallery")):
                rows += _retrieval_rows(result, sub, model, protocol, ks)
            sizes = None
            if config.gallery_sizes is not None:
                sizes = [n for n in config.gallery_sizes if 2 <= n <= n_test] or None
            curve = accuracy_vs_gallery_size(
                emb, prep.targets[test_rows], sizes, k=1, n_draws=config.n_draws, **common
            )
            frame = curve.to_frame().drop(columns="k")
            frame.insert(0, "model", model)
            frame.insert(0, "subject", sub)
            curves.append(frame)
    # the simulation's ceiling: the maximum-likelihood identification among the n_test stimuli
    oracle = dataset.ground_truth.info.get("subjects", {})
    for sub in embeddings[next(iter(embeddings))]:
        info = oracle.get(sub, {}).get("oracle")
        if not info:
            continue
        n_gallery = int(info.get("n_way", n_test))
        rows.append(_ceiling_row(sub, 1, info["top1_mahalanobis"], "n-way", n_gallery))
    if n_way != n_test:
        notes.append(
            f"The ceiling is the oracle's {n_test}-way top-1 (the whole test set), a lower bound "
            f"of the {n_way}-way ceiling."
        )
    table = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    return table, pd.concat(curves, ignore_index=True), notes


# --------------------------------------------------------------------------- training
def _train_config(config: DecodeConfig, prep: _Prepared, out_dir: Path | None) -> TrainConfig:
    n_voxels = {sub: int(x.shape[1]) for sub, (x, _) in prep.train.items()}
    kwargs = {**config.train.model_kwargs, "n_voxels": n_voxels}
    kwargs["target_shape"] = [int(prep.targets.shape[1])]
    kwargs.pop("target_dim", None)
    n_train = sum(len(x) for x, _ in prep.train.values())
    changes: dict[str, Any] = {
        "model_kwargs": kwargs,
        "out_dir": str(out_dir / TRAIN_DIR) if out_dir is not None else None,
        "batch_size": min(config.train.batch_size, n_train),
    }
    if not prep.val:
        changes.update(patience=None, restore_best=False)
    return config.train.replace(**changes)


def _datasets(prep: _Prepared) -> tuple[Any, Any]:
    from brainalign.train.data import BrainTargetDataset

    train = BrainTargetDataset(
        {s: x for s, (x, _) in prep.train.items()},
        {s: ids for s, (_, ids) in prep.train.items()},
        prep.targets,
    )
    val = None
    if prep.val:
        val = BrainTargetDataset(
            {s: x for s, (x, _) in prep.val.items()},
            {s: ids for s, (_, ids) in prep.val.items()},
            prep.targets,
        )
    return train, val


def _encode_test(model: Any, prep: _Prepared) -> dict[str, np.ndarray]:
    from brainalign.train.data import BrainTargetDataset
    from brainalign.train.loop import encode

    out = {}
    for sub, x in prep.test.items():
        data = BrainTargetDataset({sub: x}, {sub: np.zeros(len(x), np.int64)}, prep.targets[:1])
        out[sub] = encode(model, data).numpy()
    return out


def _fit_ridge(prep: _Prepared, config: DecodeConfig) -> tuple[dict[str, Any], dict]:
    from brainalign.train.decoders import RidgeDecoder

    decoders = {
        sub: RidgeDecoder(alphas=config.ridge_alphas).fit(x, prep.targets[ids])
        for sub, (x, ids) in prep.train.items()
    }
    return decoders, _ridge_embeddings(decoders, prep)


def _ridge_embeddings(decoders: Mapping[str, Any], prep: _Prepared) -> dict[str, np.ndarray]:
    return {sub: dec.predict(prep.test[sub]).astype(np.float32) for sub, dec in decoders.items()}


def _save_ridge(run_dir: Path, decoders: Mapping[str, Any], dataset: Any) -> None:
    """Write the fitted ridge decoders to ``run_dir/ridge.npz`` with the penalties tried and the
    dataset's manifest digest: a later evaluation of the run on the same data reads them
    instead of refitting (5-fold CV: ~35 s per subject on the default dataset)."""
    identity = _dataset_identity(dataset)
    arrays: dict[str, np.ndarray] = {
        "subjects": np.asarray(list(decoders), dtype=str),
        "manifest_sha256": np.asarray(identity["manifest_sha256"] if identity else ""),
    }
    for sub, dec in decoders.items():
        arrays.update({f"{sub}/{k}": v for k, v in dec.fitted_state().items()})
    with atomic_write(run_dir / RIDGE_NAME, "wb") as fh:
        np.savez(fh, **arrays)


def _load_ridge(
    run_dir: Path, dataset: Any, config: DecodeConfig, prep: _Prepared
) -> dict[str, Any] | None:
    """The ridge decoders saved with the run, or ``None`` when they cannot stand for a refit:
    no file, another dataset (or one without a manifest), other penalties, other subjects or
    voxel counts."""
    from brainalign.train.decoders import RidgeDecoder

    path = run_dir / RIDGE_NAME
    identity = _dataset_identity(dataset)
    if not path.is_file() or identity is None:
        return None
    alphas = np.atleast_1d(np.asarray(config.ridge_alphas, dtype=np.float64))
    with np.load(path) as saved:
        if str(saved["manifest_sha256"]) != identity["manifest_sha256"]:
            return None
        if saved["subjects"].tolist() != list(prep.train):
            return None
        decoders = {}
        for sub, (x, _) in prep.train.items():
            state = {k.split("/", 1)[1]: saved[k] for k in saved.files if k.startswith(f"{sub}/")}
            dec = RidgeDecoder.from_fitted_state(state)
            if dec.n_features_in_ != x.shape[1] or not np.array_equal(state["alphas"], alphas):
                return None
            decoders[sub] = dec
    return decoders


def _dataset_identity(dataset: Any) -> dict[str, str] | None:
    """The dataset's folder and the SHA-256 of its manifest (which lists every file's
    checksum): what a run records, so that it is never resumed on other data."""
    from brainalign._utils.atomic import file_sha256

    folder = getattr(dataset, "folder", None) or getattr(dataset, "root", None)
    if folder is None or not (Path(folder) / "manifest.yaml").is_file():
        return None
    digest = file_sha256(Path(folder) / "manifest.yaml")
    return {"folder": str(Path(folder).resolve()), "manifest_sha256": digest}


def _check_same_dataset(run_dir: Path, dataset: Any, config_name: str = DECODE_CONFIG_NAME) -> None:
    """Refuse to resume a run that was trained on another dataset (e.g. an earlier version of
    the default one): its weights would load, and be scored on data they never saw."""
    current = _dataset_identity(dataset)
    if current is None:
        return
    recorded: dict[str, Any] | None = None
    if (run_dir / DATASET_RECORD_NAME).is_file():
        recorded = json.loads((run_dir / DATASET_RECORD_NAME).read_text())
        same = recorded.get("manifest_sha256") == current["manifest_sha256"]
    elif (run_dir / config_name).is_file():  # a run written before the record existed
        named = read_yaml_mapping(run_dir / config_name).get("dataset")
        if not isinstance(named, str) or named == "default":
            return
        recorded = {"folder": str(Path(named).expanduser().resolve())}
        same = recorded["folder"] == current["folder"]
    else:
        return
    if not same:
        raise ValueError(
            f"The run {str(run_dir)!r} was trained on the dataset {recorded.get('folder')!r}, not "
            f"on {current['folder']!r} (its files differ): resuming it would score those "
            "weights on data they were not trained on. Give another out_dir (or "
            "train.out_dir), or delete the run folder to train again."
        )


def _record_dataset(run_dir: Path, dataset: Any) -> None:
    """Write ``run_dir/dataset.json`` (see :func:`_check_same_dataset`)."""
    identity = _dataset_identity(dataset)
    if identity is not None:
        with atomic_write(run_dir / DATASET_RECORD_NAME, "w") as fh:
            json.dump(identity, fh, indent=2)


def _save_run(out_dir: Path, config: DecodeConfig, prep: _Prepared, dataset: Any) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _record_dataset(out_dir, dataset)
    values = config.to_dict()
    if config.dataset == "default" and dataset is not None:
        values["dataset"] = str(Path(dataset.folder).resolve())
    DecodeConfig.from_dict(values).to_yaml(out_dir / DECODE_CONFIG_NAME)
    with atomic_write(out_dir / PREPROCESSING_NAME, "wb") as fh:
        np.savez(fh, **prep.stats)


def decode_simulated_fmri(
    dataset: Any = None,
    *,
    config: DecodeConfig | TrainConfig | str | os.PathLike | None = None,
    targets: Any = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
    seed: int | None = None,
) -> DecodeResults:
    """Train the contrastive decoder and the ridge baseline; retrieval against the ceiling.

    Parameters
    ----------
    dataset : SimulatedFMRI | path-like | "default" | None
        The dataset (``None``: ``config.dataset``, by default the default simulated dataset).
    config : DecodeConfig | TrainConfig | path-like | None
        The settings: a :class:`DecodeConfig`, a YAML file of one
        (``configs/decode_simulated_fmri.yaml``), or only the training part (the other
        settings take their defaults). ``None``: all defaults.
    targets : DataFrame | array-like | None
        One embedding per stimulus (rows indexed by stimulus id, or in the order of
        ``dataset.stimuli.ids``); ``None``: :func:`decoding_targets` with the config's model,
        layer and pooling.
    out_dir : path-like | None
        The run folder: ``decode.yaml``, ``preprocessing.npz``, the checkpoints and metrics in
        ``train/``, the fitted ridge decoders (``ridge.npz``), and ``results.tsv``/
        ``curves.tsv``. ``None``: ``config.train.out_dir``'s
        parent folder when that is set, else nothing is written (and no checkpoint).
    resume : bool
        Continue the training from the latest checkpoint in ``out_dir/train``. A run trained
        on another dataset (``out_dir/dataset.json`` records its folder and the SHA-256 of its
        manifest) is refused with a ``ValueError``.
    verbose : bool
        Progress bars and a summary.
    seed : int | None
        Replaces both ``config.seed`` (split, draws, bootstrap) and ``config.train.seed``.

    Returns
    -------
    results : DecodeResults
        ``results.table`` (tidy), ``results.summary()``, ``results.checkpoint``, …
    """
    import torch

    from brainalign.models import build_model
    from brainalign.train.checkpoint import latest_checkpoint
    from brainalign.train.loop import fit

    config = _as_decode_config(config)
    if seed is not None:
        config = config.replace(seed=int(seed), train=config.train.replace(seed=int(seed)))
    dataset = load_decode_dataset(config.dataset if dataset is None else dataset, verbose=verbose)
    if out_dir is None and config.train.out_dir is not None:
        out_dir = Path(config.train.out_dir).parent
    run_dir = Path(out_dir).expanduser() if out_dir is not None else None
    if targets is None:
        targets = _config_targets(dataset, config, verbose)
    prep = _prepare(dataset, targets, config)
    train_config = _train_config(config, prep, run_dir)
    config = config.replace(train=train_config)
    if run_dir is not None:
        if resume:
            _check_same_dataset(run_dir, dataset)
        _save_run(run_dir, config, prep, dataset)
    train_data, val_data = _datasets(prep)
    logger.info(
        "Decoding %d subjects: %d training trials, %d validation trials, %d test stimuli.",
        len(prep.train), len(train_data), 0 if val_data is None else len(val_data),
        len(prep.test_ids),
    )  # fmt: skip
    torch.manual_seed(train_config.seed)
    model = build_model(train_config.model, **train_config.model_kwargs)
    start = time.perf_counter()
    prior = None
    if train_config.prior_weight > 0:  # MindEye: the diffusion prior trained beside the head
        from brainalign.reconstruct.prior import build_joint_prior

        prior = build_joint_prior(train_config, prep.targets.shape[1:])
    fitted = fit(
        model, train_data, val_data, train_config, prior=prior, resume=resume, verbose=verbose
    )
    train_seconds = time.perf_counter() - start
    model = fitted.model
    ridge, ridge_emb = _fit_ridge(prep, config)
    if run_dir is not None:
        _save_ridge(run_dir, ridge, dataset)
    embeddings = {"contrastive": _encode_test(model, prep), "ridge": ridge_emb}
    table, curves, notes = _evaluate(embeddings, prep, config, dataset)
    checkpoint = latest_checkpoint(run_dir / TRAIN_DIR) if run_dir is not None else None
    results = DecodeResults(
        table=table,
        curves=curves,
        config=config,
        checkpoint=checkpoint,
        out_dir=run_dir,
        test_ids=prep.test_ids,
        stimulus_ids=prep.stimulus_ids,
        targets=prep.targets,
        embeddings=embeddings,
        history=fitted.history,
        train_seconds=train_seconds,
        notes=notes,
        model=model,
        ridge=ridge,
        prior=fitted.prior,
    )
    if run_dir is not None:
        results.save(run_dir)
    if verbose:
        print(results)
    return results


def _config_targets(dataset: Any, config: DecodeConfig, verbose: bool) -> pd.DataFrame:
    return decoding_targets(
        dataset,
        config.target_layer,
        config.pooling,
        model=config.target_model,
        weights=config.target_weights,
        image_size=config.image_size,
        device=config.train.device,
        verbose=verbose,
    )


def train_from_config(
    path: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
) -> DecodeResults:
    """``brainalign train CONFIG``: read a YAML decoding config, train, evaluate, save.

    A config with ``kind: meeg-speech`` (``configs/decode_simulated_meg.yaml``) runs
    :func:`~brainalign.pipelines.decode_meeg.decode_simulated_meeg` instead.

    Parameters
    ----------
    path : path-like
        A YAML :class:`DecodeConfig` (``configs/decode_simulated_fmri.yaml``): ``dataset``
        (``default`` or a folder), the targets, the evaluation and a ``train:`` section
        (:class:`~brainalign.train.TrainConfig`: model, loss, optimisation, ``out_dir``).
    overrides : sequence of str
        ``key=value`` items: ``n_draws=10``, ``train.lr=1e-3``,
        ``train.model_kwargs.hidden=256``, ``dataset=/data/sim``.
    out_dir : path-like | None
        The run folder; default the parent of ``train.out_dir`` (the config's
        ``runs/decode_simulated_fmri/train`` gives ``runs/decode_simulated_fmri``).
    resume : bool
        Continue from the latest checkpoint of the run.
    verbose : bool
        Progress and the results table.

    Returns
    -------
    results : DecodeResults
        With ``results.checkpoint`` for :func:`evaluate_checkpoint`.
    """
    path = check_file(path, "path", what="YAML decoding config")
    kind = read_yaml_mapping(path).get("kind")
    if kind is not None and kind != "meeg-speech":
        raise ValueError(
            f"In {str(path)!r}: unknown kind {kind!r}; 'meeg-speech' (M/EEG speech decoding, "
            "configs/decode_simulated_meg.yaml), or no kind for fMRI image decoding "
            "(configs/decode_simulated_fmri.yaml)."
        )
    if kind == "meeg-speech":
        from .decode_meeg import MEEGDecodeConfig, decode_simulated_meeg

        meeg = MEEGDecodeConfig.from_yaml(path, overrides)
        return decode_simulated_meeg(
            None, config=meeg, out_dir=out_dir, resume=resume, verbose=verbose
        )
    config = DecodeConfig.from_yaml(path, overrides)
    return decode_simulated_fmri(
        None, config=config, out_dir=out_dir, resume=resume, verbose=verbose
    )


def _run_dir_of(path: Path) -> tuple[Path, Path]:
    """(run folder, checkpoint folder) of a run folder, its train/ folder or a checkpoint."""
    from brainalign.train.checkpoint import latest_checkpoint

    path = path.expanduser()
    if path.is_file():
        path = path.parent
    for candidate in (path, path.parent, path.parent.parent, path.parent.parent.parent):
        if (candidate / DECODE_CONFIG_NAME).is_file():
            run = candidate
            break
    else:
        if any((c / "decode_meeg.yaml").is_file() for c in (path, path.parent, path.parent.parent)):
            raise ValueError(
                f"{str(path)!r} is an M/EEG speech decoding run: its results are in results.tsv; "
                "`brainalign train CONFIG --resume` (or decode_simulated_meeg(..., resume=True)) "
                "evaluates a finished run again without training."
            )
        raise FileNotFoundError(
            f"{str(path)!r} is not a decoding run: no {DECODE_CONFIG_NAME} in it or above it. "
            "Pass the out_dir of decode_simulated_fmri / `brainalign train`, or one of its "
            "checkpoints."
        )
    if (path / "state.pt").is_file():
        return run, path
    checkpoint = latest_checkpoint(run / TRAIN_DIR)
    if checkpoint is None:
        raise FileNotFoundError(f"The run {str(run)!r} has no checkpoint in {TRAIN_DIR}/.")
    return run, checkpoint


def evaluate_checkpoint(
    path: str | os.PathLike,
    dataset: Any = None,
    *,
    targets: Any = None,
    ridge: bool = True,
    verbose: bool = True,
) -> DecodeResults:
    """``brainalign evaluate CHECKPOINT``: the retrieval results of a saved decoding run.

    Parameters
    ----------
    path : path-like
        A run folder (``out_dir``), its ``train/`` folder, or one checkpoint
        (``train/checkpoints/step-…``; default the latest).
    dataset : SimulatedFMRI | path-like | None
        The data (``None``: the dataset the run's ``decode.yaml`` names).
    targets : DataFrame | array-like | None
        The target embeddings (``None``: recomputed, from the feature cache, as configured).
    ridge : bool
        Report the ridge baseline too: the decoders saved with the run (``ridge.npz``) when
        they were fitted on this dataset with the run's penalties, else refitted
        (deterministic: the same numbers).
    verbose : bool
        Print the table.

    Returns
    -------
    results : DecodeResults
        The same numbers as the run that wrote the checkpoint (for its last checkpoint).
    """
    import torch

    from brainalign.models import build_model
    from brainalign.train.checkpoint import load_checkpoint

    run, checkpoint = _run_dir_of(Path(path))
    config = DecodeConfig.from_yaml(run / DECODE_CONFIG_NAME)
    dataset = load_decode_dataset(config.dataset if dataset is None else dataset, verbose=verbose)
    if targets is None:
        targets = _config_targets(dataset, config, verbose)
    with np.load(run / PREPROCESSING_NAME) as saved:
        stats = {k: saved[k] for k in saved.files}
    prep = _prepare(dataset, targets, config, stats)
    state = load_checkpoint(checkpoint)
    train_config = state.get("config", config.train)
    torch.manual_seed(train_config.seed)
    model = build_model(train_config.model, **train_config.model_kwargs)
    weights = state["model"]
    if train_config.restore_best and state.get("best_model") is not None:
        weights = state["best_model"]
    model.load_state_dict(weights)
    embeddings = {"contrastive": _encode_test(model, prep)}
    decoders: dict[str, Any] = {}
    if ridge:
        saved = _load_ridge(run, dataset, config, prep)
        if saved is not None:
            decoders, embeddings["ridge"] = saved, _ridge_embeddings(saved, prep)
        else:
            decoders, embeddings["ridge"] = _fit_ridge(prep, config)
    table, curves, notes = _evaluate(embeddings, prep, config, dataset)
    trainer = state.get("trainer", {})
    results = DecodeResults(
        table=table,
        curves=curves,
        config=config,
        checkpoint=checkpoint,
        out_dir=run,
        test_ids=prep.test_ids,
        stimulus_ids=prep.stimulus_ids,
        targets=prep.targets,
        embeddings=embeddings,
        history=list(trainer.get("history", [])),
        notes=notes,
        model=model,
        ridge=decoders,
    )
    if verbose:
        print(results)
    return results


# --------------------------------------------------------------------------- plots
_COLORS = {"contrastive": "C0", "ridge": "C1", "ceiling": "k"}
_LABELS = {"brain_to_stimulus": "brain → stimulus", "stimulus_to_brain": "stimulus → brain"}


def plot_retrieval_vs_gallery(results: DecodeResults, *, ax: Any = None) -> Any:
    """Top-1 accuracy against the number of candidates, per model and direction.

    Lines are the mean over subjects, bands the range of the subjects; the dotted line is
    chance (``1 / N``) and the black marker the simulation's ceiling at ``N = n_test``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    curves = results.curves
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    else:
        axes = np.atleast_1d(ax)
        if len(axes) != 2:
            raise ValueError("'ax' must be two axes (brain → image, image → brain).")
        fig = axes[0].figure
    table = results.table
    ceiling = table[(table["model"] == "ceiling") & (table["metric"] == "top1")]
    for a, direction in zip(axes, DIRECTIONS, strict=True):
        sub = curves[curves["direction"] == direction]
        for model, group in sub.groupby("model", sort=False):
            stats = group.groupby("gallery_size")["accuracy"].agg(["mean", "min", "max"])
            color = _COLORS.get(str(model))
            a.plot(stats.index, stats["mean"], marker="o", ms=3, color=color, label=model)
            a.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2)
        chance = sub.groupby("gallery_size")["chance"].mean()
        a.plot(chance.index, chance.values, ls=":", color="grey", label="chance")
        if direction == "brain_to_stimulus" and len(ceiling):
            a.plot(
                ceiling["n_gallery"].mean(),
                ceiling["value"].mean(),
                marker="*",
                ms=12,
                color="k",
                ls="none",
                label="ceiling (oracle)",
            )
        a.set_xscale("log")
        a.set_ylim(0, 1.02)
        a.set_xlabel("gallery size N (candidates)")
        a.set_title(_LABELS[direction])
    axes[0].set_ylabel("top-1 accuracy")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_retrieved_images(
    results: DecodeResults,
    dataset: Any,
    *,
    subject: str | None = None,
    model: str = "contrastive",
    n_queries: int = 4,
    k: int = 5,
    seed: int = 0,
) -> Any:
    """Test images (left) and the ``k`` test images retrieved from their brain responses.

    The true image, when retrieved, is framed in green.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    subject = subject if subject is not None else results.subjects[0]
    k = min(k, len(results.test_ids))
    table = results.retrieve(subject, model, k=k)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(table), size=min(n_queries, len(table)), replace=False))
    stimuli = getattr(dataset, "stimuli", dataset)
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(1.6 * (k + 1), 1.7 * len(rows)))
    axes = np.atleast_2d(axes)
    for r, row in enumerate(rows):
        query = table["stimulus_id"].iloc[row]
        axes[r, 0].imshow(stimuli.load(query))
        axes[r, 0].set_title(f"seen: {query}", fontsize=7)
        for j, found in enumerate(table["retrieved"].iloc[row]):
            a = axes[r, j + 1]
            a.imshow(stimuli.load(found))
            a.set_title(f"#{j + 1}", fontsize=7)
            if found == query:
                for spine in a.spines.values():
                    spine.set_edgecolor("green")
                    spine.set_linewidth(3)
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(f"sub-{subject}, {model}: top-{k} retrieved test images", fontsize=9)
    fig.tight_layout()
    return fig
