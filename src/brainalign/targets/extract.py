"""Batched, streamed, cached feature extraction — the engine behind ``brainalign features``.

:func:`compute_features` runs any :class:`~brainalign.targets.base.Extractor` over a stimulus
set: stimuli are hashed, each requested output's cache entry is looked up, and only the missing
outputs are computed — batch by batch on the device (``torch.inference_mode``), pooled, and
written straight into a preallocated memory-mapped cache file, so memory stays bounded whatever
the number of stimuli. A second run with the same model, weights, layer, preprocessing, pooling
and stimulus content loads the cache without calling the model.

:func:`extract_features` picks the extractor from a model name (CLIP, DNN layers, speech) for the
command line and writes the result to an HDF5 file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainalign._utils.device import resolve_device
from brainalign._utils.progress import logger, progress
from brainalign._utils.validation import check_option, check_positive
from brainalign.targets.base import Extractor
from brainalign.targets.cache import FeatureCache, make_cache_key
from brainalign.targets.inputs import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    StimulusItem,
    collect_stimuli,
    hash_stimulus_set,
)
from brainalign.targets.pooling import Pooling, make_pooling

__all__ = ["FeatureSet", "compute_features", "extract_features", "make_extractor"]

DTYPES = ("float32", "float16")


@dataclass
class FeatureSet:
    """Features of a stimulus set, one array per output (layer).

    Attributes
    ----------
    features : dict of str to ndarray
        ``(n_stimuli, ...)`` per output, in stimulus order; read-only memory maps of the cache
        files when the cache is on.
    stimulus_ids : list of str
        File names, or ``"#<index>"`` for in-memory stimuli.
    content_hashes : list of str
        SHA-256 of each stimulus's content.
    spec : dict
        Model, weights checksum and preprocessing.
    pooling : dict of str to dict
        The pooling of each output.
    from_cache : dict of str to bool
        Whether each output was loaded from the cache.
    cache_paths : dict of str to Path | None
        The cache file of each output.
    """

    features: dict[str, np.ndarray]
    stimulus_ids: list[str]
    content_hashes: list[str]
    spec: dict[str, Any]
    pooling: dict[str, dict[str, Any]] = field(default_factory=dict)
    from_cache: dict[str, bool] = field(default_factory=dict)
    cache_paths: dict[str, Path | None] = field(default_factory=dict)

    def __getitem__(self, output: str) -> np.ndarray:
        try:
            return self.features[output]
        except KeyError:
            raise KeyError(
                f"No output {output!r} in this FeatureSet; it has {sorted(self.features)}."
            ) from None

    def __len__(self) -> int:
        return len(self.stimulus_ids)

    def keys(self) -> list[str]:
        """The output names."""
        return list(self.features)

    def save(self, fname: str | os.PathLike, *, chunk_rows: int = 1024) -> Path:
        """Write every output to an HDF5 file, atomically, ``chunk_rows`` stimuli at a time.

        Layout: one dataset per output (named as the output, ``(n_stimuli, ...)``), plus
        ``stimulus_ids`` and ``content_hashes`` (strings); attributes ``model``,
        ``weights_sha256``, ``preprocessing`` and, per dataset, ``pooling`` (JSON text).

        Returns
        -------
        path : Path
        """
        import json

        import h5py

        from brainalign._utils.atomic import atomic_path

        path = Path(fname).expanduser()
        with atomic_path(path, suffix=path.suffix or ".h5") as tmp, h5py.File(tmp, "w") as h5:
            for key in ("model", "weights_sha256"):
                h5.attrs[key] = str(self.spec.get(key))
            h5.attrs["spec"] = json.dumps(self.spec, default=str, sort_keys=True)
            str_dt = h5py.string_dtype()
            h5.create_dataset(
                "stimulus_ids", data=np.array(self.stimulus_ids, dtype=object), dtype=str_dt
            )
            h5.create_dataset(
                "content_hashes", data=np.array(self.content_hashes, dtype=object), dtype=str_dt
            )
            for name, array in self.features.items():
                dset = h5.create_dataset(name, shape=array.shape, dtype=array.dtype)
                dset.attrs["pooling"] = json.dumps(self.pooling.get(name, {}), sort_keys=True)
                for start in range(0, array.shape[0], chunk_rows):
                    dset[start : start + chunk_rows] = array[start : start + chunk_rows]
        return path


class _MemoryWriter:
    """Same interface as :class:`~brainalign.targets.cache.CacheWriter`, in memory."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.array = np.empty(shape, dtype=dtype)
        self._n = 0

    def __enter__(self) -> _MemoryWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def append(self, rows: np.ndarray) -> None:
        self.array[self._n : self._n + rows.shape[0]] = rows
        self._n += rows.shape[0]


def _batches(
    items: list[StimulusItem],
    extractor: Extractor,
    batch_size: int,
    device: Any,
    desc: str,
    verbose: bool,
) -> Any:
    """Yield ``(start, batch_on_device)``; inputs of differing shapes are named in an error."""
    first: tuple[StimulusItem, tuple[int, ...]] | None = None
    starts = range(0, len(items), batch_size)
    for start in progress(starts, desc=desc, total=len(starts), verbose=verbose, unit="batch"):
        chunk = items[start : start + batch_size]
        prepared = [extractor.prepare(item) for item in chunk]
        for item, x in zip(chunk, prepared):
            shape = tuple(x.shape)
            if first is None:
                first = (item, shape)
            elif shape != first[1]:
                raise ValueError(
                    f"Stimuli {first[0].id!r} and {item.id!r} give model inputs of shapes "
                    f"{first[1]} and {shape}, which cannot be batched. Audio segments must have "
                    "equal durations: cut the recording into equal windows first (or extract "
                    "each segment separately)."
                )
        yield start, extractor.collate(prepared).to(device, non_blocking=True)


def compute_features(
    extractor: Extractor,
    stimuli: Any,
    outputs: str | Sequence[str] | None = None,
    *,
    pooling: str | Pooling | Mapping[str, Pooling] | None = None,
    grid_size: int = 2,
    n_components: int = 256,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    device: Any = "auto",
    dtype: str = "float32",
    verbose: bool = True,
) -> FeatureSet:
    """Run ``extractor`` over ``stimuli``, loading from / writing to the on-disk cache.

    Parameters
    ----------
    extractor : Extractor
        E.g. :class:`~brainalign.targets.pretrained.VisionExtractor`,
        :class:`~brainalign.targets.clip.ClipImageExtractor`,
        :class:`~brainalign.targets.speech.Wav2Vec2Extractor`.
    stimuli : folder | file | sequence
        See :mod:`brainalign.targets.inputs`.
    outputs : str | sequence of str | None
        Layer / output names; ``None`` for the extractor's default.
    pooling : str | Pooling | mapping | None
        For layer activations: ``"none"``, ``"avg"`` (default), ``"grid"``, ``"random"``,
        ``"pca"`` (see :mod:`brainalign.targets.pooling`), a pooling object, or one per output.
        Named embeddings (CLIP ``"image"``, speech ``"hidden_states"`` …) are never pooled.
    grid_size, n_components, seed : int
        Parameters of the ``"grid"``, ``"random"``/``"pca"`` and ``"random"`` poolings.
    cache : bool
        Use the on-disk cache (``False``: compute in memory, write nothing).
    cache_dir : path-like | None
        Cache folder; ``None`` for ``$BRAINALIGN_CACHE`` or ``~/.cache/brainalign``.
    batch_size : int
        Stimuli per forward pass.
    device : str | torch.device
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    dtype : {"float32", "float16"}
        Stored dtype.
    verbose : bool
        Show a progress bar.

    Returns
    -------
    features : FeatureSet
    """
    import torch

    check_option("dtype", dtype, DTYPES)
    check_positive("batch_size", batch_size)
    dev = resolve_device(device)
    items = collect_stimuli(stimuli, extractor.modality)
    names = extractor.check_outputs(extractor.default_outputs() if outputs is None else outputs)
    poolers: dict[str, Pooling] = {}
    for name in names:
        if not extractor.poolable(name):
            poolers[name] = Pooling()
        elif isinstance(pooling, Mapping):
            poolers[name] = pooling.get(name) or make_pooling("avg")
        elif isinstance(pooling, Pooling):
            poolers[name] = pooling
        else:
            poolers[name] = make_pooling(
                pooling or "avg", grid_size=grid_size, n_components=n_components, seed=seed
            )
    spec = extractor.spec()
    set_hash = hash_stimulus_set(items, extractor.stimulus_extra())
    keys = {
        name: make_cache_key(
            {
                "extractor": spec,
                "output": name,
                "pooling": poolers[name].spec(),
                "dtype": dtype,
                "stimuli": set_hash,
                "n_stimuli": len(items),
            }
        )
        for name in names
    }
    store = FeatureCache(cache_dir) if cache else None
    results: dict[str, np.ndarray] = {}
    if store is not None:
        for name in names:
            array = store.load(keys[name])
            if array is not None:
                results[name] = array
    missing = [n for n in names if n not in results]
    if missing:
        logger.info("Computing %s for %d stimuli on %s", missing, len(items), dev)
        extractor.to(dev)
        with torch.inference_mode():
            to_fit = [n for n in missing if poolers[n].needs_fit]
            if to_fit:
                for _, batch in _batches(
                    items, extractor, batch_size, dev, f"{extractor.name}: fitting pooling", verbose
                ):
                    acts = extractor.forward(batch, to_fit)
                    for name in to_fit:
                        poolers[name].partial_fit(acts[name])
                for name in to_fit:
                    poolers[name].finish_fit()
            written = _write_pass(
                extractor,
                items,
                missing,
                poolers,
                keys,
                spec,
                store,
                batch_size,
                dev,
                dtype,
                verbose,
            )
        for name in missing:
            # just written and hashed while writing: no need to read it back to verify
            array = store.load(keys[name], verify=False) if store is not None else written[name]
            if array is None:
                raise RuntimeError(f"The cache entry for {name!r} could not be read back.")
            results[name] = array
    return FeatureSet(
        features={n: results[n] for n in names},
        stimulus_ids=[it.id for it in items],
        content_hashes=[it.content_hash for it in items],
        spec=spec,
        pooling={n: poolers[n].spec() for n in names},
        from_cache={n: n not in missing for n in names},
        cache_paths={n: store.path(keys[n]) if store is not None else None for n in names},
    )


def _write_pass(
    extractor: Extractor,
    items: list[StimulusItem],
    names: list[str],
    poolers: dict[str, Pooling],
    keys: dict[str, str],
    spec: dict[str, Any],
    store: FeatureCache | None,
    batch_size: int,
    dev: Any,
    dtype: str,
    verbose: bool,
) -> dict[str, np.ndarray]:
    writers: dict[str, Any] = {}
    with ExitStack() as stack:
        for _, batch in _batches(items, extractor, batch_size, dev, extractor.name, verbose):
            acts = extractor.forward(batch, names)
            for name in names:
                pooled = poolers[name].transform(acts[name])
                rows = pooled.float().cpu().numpy().astype(dtype, copy=False)
                if name not in writers:
                    shape = (len(items), *rows.shape[1:])
                    writer: Any
                    if store is not None:
                        entry_spec = {
                            "extractor": spec,
                            "output": name,
                            "pooling": poolers[name].spec(),
                            "dtype": dtype,
                            "stimulus_ids": [it.id for it in items[:20]],
                        }
                        writer = store.writer(keys[name], shape, dtype, entry_spec)
                    else:
                        writer = _MemoryWriter(shape, dtype)
                    writers[name] = stack.enter_context(writer)
                writers[name].append(rows)
    return {n: w.array for n, w in writers.items() if isinstance(w, _MemoryWriter)}


# --------------------------------------------------------------------------- model names


def _guess_modality(stimuli: Any) -> str:
    """``"image"``, ``"audio"`` or ``"text"`` from a folder's files or a list's items."""

    def from_suffix(path: Path) -> str | None:
        suffix = path.suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            return "image"
        if suffix in AUDIO_EXTENSIONS:
            return "audio"
        if suffix == ".txt":
            return "text"
        return None

    kind = getattr(stimuli, "kind", None)  # a stimulus set that says what it holds
    if isinstance(kind, str) and kind in ("image", "audio", "text"):
        return kind
    if isinstance(stimuli, str | os.PathLike):
        path = Path(stimuli).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"The stimuli given as 'stimuli' do not exist: {str(path.resolve())!r}. Pass a "
                "folder of images or audio files, a .txt file of texts, or a list."
            )
        if path.is_dir():
            kinds = {from_suffix(p) for p in path.iterdir() if p.is_file()} - {None, "text"}
            if len(kinds) == 1:
                return str(kinds.pop())
            raise ValueError(
                f"Cannot tell whether the folder {str(path)!r} holds images or audio "
                f"(found {sorted(k for k in kinds if k) or 'neither'}); pass 'modality'."
            )
        kind = from_suffix(path)
        if kind is not None:
            return kind
        return "text"
    if isinstance(stimuli, list | tuple) and stimuli:
        first = stimuli[0]
        if isinstance(first, str) and not Path(first).expanduser().is_file():
            return "text"
        if isinstance(first, str | os.PathLike):
            return from_suffix(Path(first)) or "image"
        if (isinstance(first, np.ndarray) and first.ndim == 1) or (
            isinstance(first, tuple) and len(first) == 2
        ):
            return "audio"
    return "image"


def make_extractor(
    model: Any = "efficientnet_lite0",
    *,
    weights: Any = None,
    modality: str = "image",
    layers: Sequence[Any] | None = None,
    sfreq: float | None = None,
    sfreq_out: float = 120.0,
    transform: Any = None,
    seed: int = 0,
) -> tuple[Extractor, list[str] | None]:
    """Build the extractor for a model name; return it with the output names to compute.

    ``model`` is ``"mel"`` (mel spectrogram), ``"wav2vec2:<folder or hub id>"`` (speech; or
    ``"wav2vec2"`` with the folder / hub id as ``weights``), an
    open_clip name (CLIP image or text embeddings, by ``modality``), any name
    :func:`~brainalign.targets.pretrained.load_vision_model` knows, or a ``torch.nn.Module``.
    For speech models ``layers`` are hidden-state indices to average (default 14–18).
    """
    from brainalign.targets.pretrained import VisionExtractor, load_vision_model

    outputs = None if layers is None else [str(x) for x in layers]
    if isinstance(model, str) and model == "mel":
        from brainalign.targets.speech import MelExtractor

        return MelExtractor(sfreq_out, sfreq=sfreq), outputs
    if isinstance(model, str) and (model == "wav2vec2" or model.startswith("wav2vec2:")):
        from brainalign.targets.speech import (
            BRAINMAGICK_LAYERS,
            Wav2Vec2Extractor,
            load_speech_model,
        )

        source = model[len("wav2vec2:") :] or weights
        if not source:
            raise ValueError(
                "model='wav2vec2' needs the model: 'wav2vec2:<folder or hub id>', or the folder / "
                "hub id as 'weights' (e.g. 'facebook/wav2vec2-large-xlsr-53', needs a network)."
            )
        speech = load_speech_model(source)
        hidden: tuple[int, ...] = BRAINMAGICK_LAYERS
        if layers is not None and all(str(x).lstrip("-").isdigit() for x in layers):
            hidden, outputs = tuple(int(x) for x in layers), None
        extractor = Wav2Vec2Extractor(speech, hidden, sfreq_out=sfreq_out, sfreq=sfreq)
        return extractor, outputs
    if isinstance(model, str | Mapping) and _is_clip_name(model):
        from brainalign.targets.clip import ClipImageExtractor, ClipTextExtractor, load_clip

        name = (
            model[len("open_clip:") :]
            if isinstance(model, str) and model.startswith("open_clip:")
            else model
        )
        clip = load_clip(name, weights, seed=seed)
        if modality == "text":
            return ClipTextExtractor(clip), outputs
        return ClipImageExtractor(clip), outputs
    if modality != "image":
        raise ValueError(
            f"The model {model!r} takes images, but the stimuli are {modality}. Use 'mel' or "
            "'wav2vec2:<model>' for audio, or a CLIP model for text."
        )
    return VisionExtractor(
        load_vision_model(model, weights, transform=transform, seed=seed)
    ), outputs


def _is_clip_name(model: Any) -> bool:
    if isinstance(model, Mapping):
        return True
    if model.startswith(("open_clip:", "local-dir:", "hf-hub:")):
        return True
    if model == "efficientnet_lite0" or model.startswith(("timm:", "torchvision:")):
        return False
    import timm  # cheaper than open_clip, and checked first by load_vision_model too

    if timm.is_model(model):
        return False
    import open_clip

    return model.replace("/", "-") in open_clip.list_models()


def extract_features(
    model: Any = "efficientnet_lite0",
    layers: Sequence[Any] | None = None,
    stimuli: Any = None,
    out: str | os.PathLike | None = None,
    *,
    weights: Any = None,
    pooling: str = "avg",
    grid_size: int = 2,
    n_components: int = 256,
    seed: int = 0,
    device: Any = "auto",
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    cache: bool = True,
    dtype: str = "float32",
    modality: str | None = None,
    sfreq: float | None = None,
    sfreq_out: float = 120.0,
    transform: Any = None,
    verbose: bool = True,
) -> FeatureSet:
    """Extract (or load from the cache) the features of a stimulus set; optionally save them.

    Parameters
    ----------
    model : str | mapping | torch.nn.Module
        ``"efficientnet_lite0"`` (default, works offline), a timm / torchvision name, an open_clip
        name (``"ViT-L-14"``, with ``weights``), ``"mel"``, ``"wav2vec2:<folder or hub id>"``, or a
        module.
    layers : sequence of str | None
        Layers to record (``list_layers(model)``); CLIP: ``"image"``, ``"image_tokens"``,
        ``"visual.<module>"`` or ``"text"``; speech: hidden-state indices to average. ``None``
        for the model's default (the last top-level layer; CLIP ``"image"``/``"text"``; speech
        14–18; ``"mel"``).
    stimuli : folder | file | sequence
        A folder of images or audio files, a ``.txt`` file of texts, or a list.
    out : path-like | None
        HDF5 file to write (see :meth:`FeatureSet.save`).
    weights : path-like | str | None
        See :func:`~brainalign.targets.pretrained.load_vision_model` and
        :func:`~brainalign.targets.clip.load_clip`.
    pooling : {"avg", "none", "grid", "random", "pca"}
        Pooling of layer activations.
    grid_size, n_components, seed : int
        Pooling parameters (and the seed of random weights).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    batch_size : int
        Stimuli per forward pass.
    cache_dir : path-like | None
        Cache folder (default ``$BRAINALIGN_CACHE`` or ``~/.cache/brainalign``).
    cache : bool
        Use the cache.
    dtype : {"float32", "float16"}
        Stored dtype.
    modality : {"image", "audio", "text"} | None
        Kind of stimuli; guessed from the files when ``None``.
    sfreq : float | None
        Rate of in-memory waveforms, Hz.
    sfreq_out : float
        Output rate of speech features, Hz.
    transform : callable | None
        Preprocessing (PIL image → tensor) for a vision model, replacing its own.
    verbose : bool
        Progress bar.

    Returns
    -------
    features : FeatureSet
    """
    if stimuli is None:
        raise ValueError("'stimuli' is required: a folder of images or audio files, or a list.")
    modality = modality or _guess_modality(stimuli)
    if isinstance(model, str) and (model == "mel" or model.startswith("wav2vec2")):
        modality = "audio"
    extractor, outputs = make_extractor(
        model,
        weights=weights,
        modality=modality,
        layers=layers,
        sfreq=sfreq,
        sfreq_out=sfreq_out,
        transform=transform,
        seed=seed,
    )
    result = compute_features(
        extractor,
        stimuli,
        outputs,
        pooling=pooling,
        grid_size=grid_size,
        n_components=n_components,
        seed=seed,
        cache=cache,
        cache_dir=cache_dir,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        verbose=verbose,
    )
    if out is not None:
        result.save(out)
    return result
