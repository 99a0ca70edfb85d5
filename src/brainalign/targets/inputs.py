"""Stimuli given to the feature extractors: normalise the many accepted forms, hash and load them.

Accepted forms, for each modality:

* images: a folder (its image files, sorted by name), a list of file paths, PIL images or arrays
  ``(height, width)`` / ``(height, width, 3 or 4)`` (uint8 0–255 or float 0–1), an array
  ``(n_images, height, width[, channels])``, or any iterable of these (e.g. a stimulus set);
* audio: a folder, a list of file paths (anything :mod:`soundfile` reads), ``(waveform, sfreq)``
  pairs, or 1-D waveforms ``(n_samples,)`` / ``(n_samples, n_channels)`` with their sampling rate
  given separately;
* text: a list of strings, or a ``.txt`` file with one text per line;
* any modality: a stimulus set — an object with ``ids`` and ``load(id)`` (such as
  :class:`brainalign.io.StimulusSet`), read one stimulus at a time. When it exposes its image files
  (a ``paths`` attribute, or a ``table`` with a ``path`` column) those are used directly.

Each stimulus gets a content hash — of the file's bytes or of the in-memory pixels, samples or
characters, never of its name — which keys the feature cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainalign._utils.errors import CorruptFileError
from brainalign._utils.validation import check_file, check_option

__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MODALITIES",
    "StimulusItem",
    "collect_stimuli",
    "hash_stimulus_set",
    "load_audio_item",
    "load_image_item",
    "load_text_item",
]

MODALITIES = ("image", "audio", "text")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
_EXTENSIONS = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS}


@dataclass(frozen=True)
class StimulusItem:
    """One stimulus: where it comes from and the hash of its content.

    Attributes
    ----------
    id : str
        The file name (for files) or ``"#<index>"`` (for in-memory stimuli).
    source : object
        A :class:`~pathlib.Path`, a PIL image, an array or a string.
    content_hash : str
        Hex SHA-256 of the content (file bytes, pixels, samples or UTF-8 text).
    """

    id: str
    source: Any
    content_hash: str


class _Lazy:
    """A stimulus read on demand from a stimulus set: ``load(key)``."""

    __slots__ = ("key", "load")

    def __init__(self, load: Any, key: Any) -> None:
        self.load = load
        self.key = key

    def get(self) -> Any:
        return self.load(self.key)

    def __repr__(self) -> str:
        return f"<stimulus {self.key!r}>"


def _resolve(source: Any) -> Any:
    return source.get() if isinstance(source, _Lazy) else source


def _is_audio_pair(obj: Any) -> bool:
    return (
        isinstance(obj, tuple)
        and len(obj) == 2
        and isinstance(obj[0], np.ndarray)
        and isinstance(obj[1], int | float | np.integer | np.floating)
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _sha256_array(array: np.ndarray, extra: str = "") -> str:
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"ndarray|{array.dtype.str}|{array.shape}|{extra}|".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "tobytes")


def _hash_item(obj: Any, modality: str) -> str:
    if isinstance(obj, Path):
        return _sha256_file(obj)
    if modality == "text":
        return hashlib.sha256(b"text|" + obj.encode("utf-8")).hexdigest()
    if _is_audio_pair(obj):
        return _sha256_array(obj[0], extra=f"sfreq={float(obj[1])}")
    if _is_pil(obj):
        h = hashlib.sha256(f"PIL|{obj.mode}|{obj.size}|".encode())
        h.update(obj.tobytes())
        return h.hexdigest()
    return _sha256_array(np.asarray(obj))


def _list_folder(folder: Path, modality: str) -> list[Path]:
    exts = _EXTENSIONS[modality]
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(
            f"The folder {str(folder)!r} holds no {modality} files (extensions "
            f"{', '.join(exts)}). Check the path or the file types."
        )
    return files


def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\r\n") for line in fh if line.strip()]


def _from_set(stimuli: Any, modality: str) -> tuple[list[Any], list[str]] | None:
    """Stimuli of a set with ``ids`` and ``load(id)``; its files when it exposes them."""
    ids = getattr(stimuli, "ids", None)
    load = getattr(stimuli, "load", None)
    if ids is None or not callable(load) or isinstance(stimuli, np.ndarray):
        return None
    ids = [str(i) for i in ids]
    paths = getattr(stimuli, "paths", None)
    if paths is None and modality == "image":
        table: Any = getattr(stimuli, "table", None)
        columns = getattr(table, "columns", ())
        if "path" in columns:
            paths = list(table["path"])
    if modality == "image" and paths is not None and len(paths) == len(ids):
        return [Path(p) for p in paths], ids
    return [_Lazy(load, i) for i in ids], ids


def _expand(stimuli: Any, modality: str) -> tuple[list[Any], list[str] | None]:
    """Turn the accepted forms into a flat list of Paths / in-memory objects (and ids)."""
    from_set = _from_set(stimuli, modality)
    if from_set is not None:
        return from_set
    if modality == "text" and isinstance(stimuli, str):
        if stimuli.endswith(".txt") and Path(stimuli).expanduser().is_file():
            return _read_lines(Path(stimuli).expanduser()), None
        return [stimuli], None
    if isinstance(stimuli, str | os.PathLike):
        path = Path(stimuli).expanduser()
        if path.is_dir() and modality != "text":
            return list(_list_folder(path, modality)), None
        path = check_file(path, "stimuli", what=f"{modality} file or folder")
        return (_read_lines(path) if modality == "text" else [path]), None
    if isinstance(stimuli, np.ndarray):
        single_image = stimuli.ndim == 2 or (stimuli.ndim == 3 and stimuli.shape[-1] in (3, 4))
        if modality == "image" and not single_image:
            return list(stimuli), None  # (n_images, height, width[, channels])
        if modality == "audio" and stimuli.ndim == 2:
            return list(stimuli), None  # (n_segments, n_samples)
        return [stimuli], None
    if _is_pil(stimuli) or _is_audio_pair(stimuli):
        return [stimuli], None
    paths = getattr(stimuli, "paths", None)  # e.g. a stimulus set that knows its files
    if paths is not None and not isinstance(stimuli, list | tuple):
        stimuli = list(paths)
    if not isinstance(stimuli, Iterable):
        raise TypeError(
            f"'stimuli' must be a folder, a file, or a list of {modality} stimuli, got "
            f"{type(stimuli).__name__}."
        )
    return list(stimuli), None


def collect_stimuli(stimuli: Any, modality: str) -> list[StimulusItem]:
    """Normalise ``stimuli`` into a list of :class:`StimulusItem`, hashing each one.

    Parameters
    ----------
    stimuli : path-like | iterable
        See the module docstring for the accepted forms. Iterables are read once.
    modality : {"image", "audio", "text"}
        What the stimuli are.

    Returns
    -------
    items : list of StimulusItem
        In the given order (files of a folder sorted by name).
    """
    check_option("modality", modality, MODALITIES)
    raw, ids = _expand(stimuli, modality)
    if not raw:
        raise ValueError("'stimuli' is empty: give at least one stimulus.")
    items = []
    for i, obj in enumerate(raw):
        source = obj
        if isinstance(obj, _Lazy):  # hashed from its content, read again when computed
            obj = obj.get()
        if isinstance(obj, str | os.PathLike) and not (modality == "text" and isinstance(obj, str)):
            obj = check_file(obj, f"stimuli[{i}]", what=f"{modality} file")
            items.append(StimulusItem(ids[i] if ids else obj.name, obj, _hash_item(obj, modality)))
            continue
        if modality == "text" and not isinstance(obj, str):
            raise TypeError(f"Text stimuli must be strings; stimuli[{i}] is {type(obj).__name__}.")
        ok = (
            _is_pil(obj)
            or isinstance(obj, np.ndarray)
            or (modality == "audio" and _is_audio_pair(obj))
        )
        if modality != "text" and not ok:
            if modality == "image" and hasattr(obj, "__array__"):
                obj = source = np.asarray(obj)
            else:
                kinds = ", PIL images" if modality == "image" else ", (waveform, sfreq) pairs"
                raise TypeError(
                    f"stimuli[{i}] is a {type(obj).__name__}; {modality} stimuli must be file "
                    f"paths{kinds} or arrays."
                )
        items.append(StimulusItem(ids[i] if ids else f"#{i}", source, _hash_item(obj, modality)))
    return items


def hash_stimulus_set(items: list[StimulusItem], extra: str = "") -> str:
    """Hex SHA-256 of the ordered content hashes (plus ``extra``, e.g. a sampling rate)."""
    h = hashlib.sha256(f"stimulus-set|{len(items)}|{extra}|".encode())
    for item in items:
        h.update(item.content_hash.encode())
    return h.hexdigest()


def load_image_item(item: StimulusItem) -> Any:
    """Return the stimulus as an RGB PIL image (the file is named in any read error)."""
    from PIL import Image, UnidentifiedImageError

    src = _resolve(item.source)
    if isinstance(src, Path):
        try:
            with Image.open(src) as img:
                img.load()
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise CorruptFileError(
                f"Cannot read the image file {str(src)!r}: {err}. Check that it is a valid "
                "image (PNG, JPEG, ...) and not truncated, or remove it from the stimuli."
            ) from err
    if _is_pil(src):
        return src.convert("RGB")
    arr = np.asarray(src)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Image {item.id} has shape {arr.shape}, which looks channels-first; give images as "
            "(height, width) or (height, width, channels) arrays."
        )
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise ValueError(
            f"Image {item.id} has shape {arr.shape}; expected (height, width) or "
            "(height, width, 1|3|4)."
        )
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1):
                raise ValueError(
                    f"Float image {item.id} has values in [{np.nanmin(arr):.3g}, "
                    f"{np.nanmax(arr):.3g}]; float images must lie in [0, 1] (or give uint8)."
                )
            arr = np.round(arr * 255).astype(np.uint8)
        else:
            raise TypeError(f"Image {item.id} has dtype {arr.dtype}; use uint8 or float in [0, 1].")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    from PIL import Image as _Image

    img = _Image.fromarray(arr)
    return img.convert("RGB")


def load_audio_item(item: StimulusItem, sfreq: float | None) -> tuple[np.ndarray, float]:
    """Return ``(waveform, sfreq)``: a mono float32 waveform ``(n_samples,)`` and its rate in Hz.

    Files are read with :mod:`soundfile` (channels averaged); ``(waveform, sfreq)`` pairs carry
    their rate; other in-memory waveforms need ``sfreq``.
    """
    src = _resolve(item.source)
    if _is_audio_pair(src):
        src, sfreq = src
    if isinstance(src, Path):
        import soundfile as sf

        try:
            data, rate = sf.read(str(src), dtype="float32", always_2d=True)
        except (RuntimeError, OSError, sf.LibsndfileError) as err:
            raise CorruptFileError(
                f"Cannot read the audio file {str(src)!r}: {err}. Check that it is a valid "
                "WAV/FLAC/OGG file and not truncated."
            ) from err
        return data.mean(axis=1).astype(np.float32), float(rate)
    if sfreq is None:
        raise ValueError(
            f"Audio stimulus {item.id} is an array without a sampling rate: pass 'sfreq' (Hz)."
        )
    arr = np.asarray(src, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=1) if arr.shape[1] < arr.shape[0] else arr.mean(axis=0)
    if arr.ndim != 1:
        raise ValueError(f"Audio stimulus {item.id} has shape {arr.shape}; expected (n_samples,).")
    return arr, float(sfreq)


def load_text_item(item: StimulusItem) -> str:
    """Return the stimulus's text."""
    return str(_resolve(item.source))
