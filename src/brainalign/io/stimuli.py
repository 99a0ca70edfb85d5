"""Stimulus sets: images, audio segments and texts, indexed by ``stimulus_id`` and loaded lazily.

A :class:`StimulusSet` holds one row per stimulus (its id, where its content lives, its category)
and reads the content only when asked: :meth:`StimulusSet.load` returns a PIL image (RGB), a
mono float32 waveform with its sampling frequency, or a string. :func:`resolve_stimuli` joins a
trial table to a stimulus set through ``stimulus_id``.

PIL, soundfile and scipy are imported by the functions that need them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils.errors import BrainAlignWarning, CorruptFileError
from .._utils.progress import progress
from .._utils.validation import check_file, check_option, check_positive, check_type, suggest

__all__ = ["StimulusSet", "load_audio", "load_images", "load_texts", "resolve_stimuli"]

#: What a stimulus set holds.
STIMULUS_KINDS = ("image", "audio", "text")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")

# columns each kind of stimulus table must have (more may follow)
_REQUIRED = {
    "image": ("stimulus_id", "path", "category"),
    "audio": ("stimulus_id", "file", "onset", "duration", "file_sfreq", "sfreq", "category"),
    "text": ("stimulus_id", "text", "source", "category"),
}

# how many ids an error message lists before summarising the rest
_N_LISTED = 20


def _list_some(values: Iterable[Any], n: int = _N_LISTED) -> str:
    """``'a', 'b', 'c'`` or ``'a', 'b' … and 7 more`` for error messages."""
    values = list(values)
    shown = ", ".join(repr(str(v)) for v in values[:n])
    if len(values) > n:
        shown += f" … and {len(values) - n} more"
    return shown


class StimulusSet:
    """Stimuli with unique ids, one table row each, whose content is read on demand.

    Build one with :func:`load_images`, :func:`load_audio` or :func:`load_texts`; the constructor
    is for tables you assembled yourself. The set is immutable in practice: :attr:`ids` is a
    read-only array and :attr:`table` returns a copy.

    Parameters
    ----------
    table : DataFrame
        One row per stimulus. Columns needed by ``kind``:

        - ``"image"``: ``stimulus_id``, ``path`` (absolute), ``category``;
        - ``"audio"``: ``stimulus_id``, ``file`` (absolute), ``onset`` (s into the file),
          ``duration`` (s), ``file_sfreq`` (Hz, the file's rate), ``sfreq`` (Hz, the rate
          :meth:`load` returns), ``category``;
        - ``"text"``: ``stimulus_id``, ``text``, ``source`` (the file it came from, or
          ``"<mapping>"``), ``category``.

        Any other column (labels, words, …) is kept. The table is copied.
    kind : {"image", "audio", "text"}
        What the stimuli are.
    sfreq : float | None
        Audio only: the sampling frequency (Hz) every waveform is returned at, or ``None`` when
        each is returned at its file's rate.

    Attributes
    ----------
    ids : ndarray of str, shape (n_stimuli,)
        The stimulus ids, unique, in table order (read-only).
    kind : str
        ``"image"``, ``"audio"`` or ``"text"``.
    sfreq : float | None
        See above; for audio sets loaded without ``sfreq`` it is the files' common rate when they
        share one.
    """

    def __init__(self, table: pd.DataFrame, kind: str, *, sfreq: float | None = None) -> None:
        check_option("kind", kind, STIMULUS_KINDS)
        check_type("table", table, pd.DataFrame, "a pandas DataFrame")
        missing = [c for c in _REQUIRED[kind] if c not in table.columns]
        if missing:
            raise ValueError(
                f"A stimulus table of kind {kind!r} needs the columns {list(_REQUIRED[kind])} but "
                f"lacks {missing}. Build it with load_images, load_audio or load_texts."
            )
        table = table.reset_index(drop=True).copy()
        if table["stimulus_id"].isna().any():
            rows = np.flatnonzero(table["stimulus_id"].isna().to_numpy())
            raise ValueError(
                f"The stimulus table has {len(rows)} rows without a 'stimulus_id' (rows "
                f"{_list_some(rows)}); give every stimulus an id."
            )
        table["stimulus_id"] = table["stimulus_id"].astype(str)
        dup = table["stimulus_id"][table["stimulus_id"].duplicated()].unique()
        if len(dup):
            raise ValueError(
                f"Stimulus ids must be unique, but {len(dup)} appear more than once: "
                f"{_list_some(dup)}. For files with the same name in different folders use "
                "id_from='relative', or give unique ids in the table's 'stimulus_id' column."
            )
        ids = table["stimulus_id"].to_numpy().astype(str)
        ids.flags.writeable = False
        self._table = table
        self._ids = ids
        self._positions = {sid: i for i, sid in enumerate(ids.tolist())}
        self._kind = kind
        if kind == "audio":
            if sfreq is not None:
                check_positive("sfreq", sfreq)
                sfreq = float(sfreq)
            elif len(table) and table["sfreq"].nunique() == 1:
                sfreq = float(table["sfreq"].iloc[0])
        elif sfreq is not None:
            raise ValueError(f"'sfreq' is only for audio stimuli, got sfreq={sfreq!r} for {kind}.")
        self._sfreq = sfreq

    # -- read-only attributes ------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """Stimulus ids, shape ``(n_stimuli,)``, read-only."""
        return self._ids

    @property
    def kind(self) -> str:
        """``"image"``, ``"audio"`` or ``"text"``."""
        return self._kind

    @property
    def sfreq(self) -> float | None:
        """Sampling frequency (Hz) of the waveforms :meth:`load` returns (audio only)."""
        return self._sfreq

    @property
    def table(self) -> pd.DataFrame:
        """A copy of the stimulus table, one row per stimulus, in the order of :attr:`ids`."""
        return self._table.copy()

    # -- container protocol --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids.tolist())

    def __contains__(self, stimulus_id: object) -> bool:
        return isinstance(stimulus_id, str) and stimulus_id in self._positions

    def __getitem__(self, stimulus_id: str) -> Any:
        return self.load(stimulus_id)

    def __repr__(self) -> str:
        extra = f", {self._sfreq:g} Hz" if self._sfreq is not None else ""
        return f"<StimulusSet {self._kind}, {len(self)} stimuli{extra}>"

    # -- lookups -------------------------------------------------------------------------------
    def _position(self, stimulus_id: Any) -> int:
        if not isinstance(stimulus_id, str):
            raise TypeError(
                f"Stimuli are looked up by their id (a str), got {type(stimulus_id).__name__} "
                f"{stimulus_id!r}. For the i-th stimulus use stimuli.load(stimuli.ids[i])."
            )
        try:
            return self._positions[stimulus_id]
        except KeyError:
            hint = suggest(stimulus_id, self._positions) if len(self) <= 10_000 else ""
            raise KeyError(
                f"No stimulus with id {stimulus_id!r} in this {self._kind} set of {len(self)} "
                f"stimuli.{hint}"
            ) from None

    def index_of(self, ids: Iterable[Any]) -> np.ndarray:
        """Positions of ``ids`` in :attr:`ids`, shape ``(n,)``; unknown ids raise a ValueError."""
        ids = [str(i) for i in ids]
        unknown = list(dict.fromkeys(i for i in ids if i not in self._positions))
        if unknown:
            raise ValueError(
                f"{len(unknown)} ids are not in this {self._kind} stimulus set of {len(self)} "
                f"stimuli: {_list_some(unknown)}. Check them against stimuli.ids."
            )
        return np.array([self._positions[i] for i in ids], dtype=np.int64)

    def subset(self, ids: Iterable[Any]) -> StimulusSet:
        """A new set with the stimuli ``ids``, in that order (each at most once)."""
        pos = self.index_of(ids)
        if len(np.unique(pos)) != len(pos):
            dup = pd.Series(self._ids[pos])
            dup = dup[dup.duplicated()].unique()
            raise ValueError(
                f"subset() got some ids more than once: {_list_some(dup)}; pass each id once."
            )
        return StimulusSet(self._table.iloc[pos], self._kind, sfreq=self._sfreq)

    # -- content -------------------------------------------------------------------------------
    def load(self, stimulus_id: str) -> Any:
        """Read one stimulus.

        Parameters
        ----------
        stimulus_id : str
            One of :attr:`ids`.

        Returns
        -------
        content : PIL.Image.Image | tuple of (ndarray, float) | str
            Images: a PIL image in mode ``"RGB"`` (grey images are replicated to 3 channels,
            the alpha channel of RGBA images is dropped). Audio: ``(waveform, sfreq)``, with
            ``waveform`` a float32 array of shape ``(n_samples,)`` (mean over the file's channels)
            and ``sfreq`` in Hz. Text: the string.

        Raises
        ------
        KeyError
            When the id is not in the set.
        CorruptFileError
            When the file cannot be decoded (the message names it).
        """
        row = self._table.iloc[self._position(stimulus_id)]
        if self._kind == "image":
            return _read_image(Path(row["path"]))
        if self._kind == "audio":
            return _read_segment(row)
        return str(row["text"])


# ------------------------------------------------------------------------------------------------
# tables


def _read_table(
    source: Any, name: str, what: str = "table (CSV/TSV)"
) -> tuple[pd.DataFrame, Path | None]:
    """A copy of ``source`` as a DataFrame and the folder relative paths resolve against."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True).copy(), None
    path = check_file(source, name, what=what)
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        table = pd.read_csv(
            path,
            sep=sep,
            dtype={"stimulus_id": str},
            keep_default_na=False,
            na_values=["", "n/a", "NaN", "nan"],
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CorruptFileError(
            f"Cannot read the table {str(path)!r} given as {name!r} ({err}). It must be a CSV "
            "(or a TSV with a .tsv suffix) with a header row."
        ) from err
    return table, path.parent


def _require_columns(table: pd.DataFrame, columns: Sequence[str], name: str, what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"The {what} table given as {name!r} lacks the columns {missing} (it has "
            f"{list(table.columns)}); it needs {list(columns)}."
        )


def _resolve_paths(values: pd.Series, base: Path | None, column: str, name: str) -> list[str]:
    """Absolute paths for a column of paths, relative ones taken from ``base`` (or the cwd)."""
    if values.isna().any():
        rows = np.flatnonzero(values.isna().to_numpy())
        raise ValueError(
            f"The table given as {name!r} has {len(rows)} rows without a {column!r} (rows "
            f"{_list_some(rows)}); every stimulus needs its file."
        )
    base = base if base is not None else Path.cwd()
    paths = []
    for value in values.astype(str):
        p = Path(value).expanduser()
        paths.append(str(p if p.is_absolute() else (base / p)))
    missing = [p for p in dict.fromkeys(paths) if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} files listed in the {column!r} column of the table given as "
            f"{name!r} do not exist: {_list_some(missing)}. Relative paths are taken from "
            f"{str(base)!r} (the table's folder, or the current folder for a DataFrame unless "
            "'root' is given)."
        )
    return paths


def _scan_folder(
    folder: Path, extensions: Sequence[str], recursive: bool, id_from: str
) -> pd.DataFrame:
    """Files under ``folder`` with one of ``extensions``: ids, absolute paths, categories."""
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    rows = []
    for path in candidates:
        rel = path.relative_to(folder)
        # hidden files and folders (.DS_Store, ._x.jpg, .git) are never stimuli
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() not in exts or not path.is_file():
            continue
        rows.append(
            {
                "stimulus_id": path.stem if id_from == "stem" else rel.as_posix(),
                "path": str(path.resolve()),
                "category": rel.parts[-2] if len(rel.parts) > 1 else "",
                "_rel": rel.as_posix(),
            }
        )
    if not rows:
        where = "under" if recursive else "in"
        raise FileNotFoundError(
            f"No file with the extensions {sorted(exts)} {where} the folder {str(folder)!r}. "
            "Check the folder, the 'extensions' parameter, or pass recursive=True."
        )
    table = pd.DataFrame(rows).sort_values("_rel", kind="stable").drop(columns="_rel")
    dup = table["stimulus_id"][table["stimulus_id"].duplicated()].unique()
    if len(dup):
        clashes = table[table["stimulus_id"].isin(dup[:3])]["path"].tolist()
        raise ValueError(
            f"{len(dup)} file stems appear more than once under {str(folder)!r}: "
            f"{_list_some(dup)} (e.g. {clashes}). Use id_from='relative' to use relative paths "
            "as ids, or list the stimuli in a table with unique 'stimulus_id's."
        )
    return table.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# images


def _read_image(path: Path, *, check_only: bool = False) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if check_only:
                return None
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"The image file {str(path)!r} no longer exists; reload the stimulus set."
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CorruptFileError(
            f"Cannot decode the image file {str(path)!r} ({type(err).__name__}: {err}). The file "
            "is truncated or not an image; replace it, or remove it from the stimulus set. "
            "load_images(..., check=True) finds every such file up front."
        ) from err


def load_images(
    folder_or_table: str | os.PathLike | pd.DataFrame,
    *,
    id_from: str = "stem",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
    root: str | os.PathLike | None = None,
    check: bool = False,
    verbose: bool = False,
) -> StimulusSet:
    """Index image stimuli from a folder or a table; images are decoded when loaded.

    Parameters
    ----------
    folder_or_table : path-like | DataFrame
        A folder of images (searched recursively by default; files and folders whose name starts
        with ``"."`` are skipped), or a table with the columns ``stimulus_id`` and ``path``: a
        DataFrame or a CSV/TSV file (``.tsv`` is read tab-separated). Relative paths in a table
        file are taken from the table's folder. Other columns (``category``, labels) are kept.
    id_from : {"stem", "relative"}
        Folder only: the id of each image is its file name without extension (``"stem"``;
        duplicated stems are an error) or its path relative to the folder with ``/`` separators
        and the extension (``"relative"``, e.g. ``"cats/cat_01.png"``).
    extensions : sequence of str
        Folder only: the file suffixes taken as images (case-insensitive).
    recursive : bool
        Folder only: search sub-folders too.
    root : path-like | None
        DataFrame only: the folder relative paths are taken from (default: the current folder).
    check : bool
        Decode every image now, so that a corrupt file is reported here rather than at its first
        :meth:`~StimulusSet.load` (slower: reads every file once).
    verbose : bool
        Show a progress bar while checking.

    Returns
    -------
    stimuli : StimulusSet
        ``kind="image"``; table columns ``stimulus_id``, ``path`` (absolute), ``category`` (the
        parent sub-folder's name for a folder, ``""`` for images at the top; from the table's
        ``category`` column, else ``""``), then the table's other columns. Folder images are
        sorted by relative path.

    Raises
    ------
    FileNotFoundError
        The folder holds no image, or files listed in the table are missing.
    CorruptFileError
        With ``check=True``, an image cannot be decoded (the message names the file).
    """
    check_option("id_from", id_from, ("stem", "relative"))
    if (
        not isinstance(folder_or_table, pd.DataFrame)
        and Path(folder_or_table).suffix.lower() in IMAGE_EXTENSIONS
    ):
        raise ValueError(
            f"load_images takes a folder of images or a table listing them, got the image file "
            f"{str(folder_or_table)!r}. Pass its folder, or a table with 'stimulus_id' and 'path'."
        )
    if not isinstance(folder_or_table, pd.DataFrame) and Path(folder_or_table).is_dir():
        table = _scan_folder(Path(folder_or_table), extensions, recursive, id_from)
    else:
        table, base = _read_table(folder_or_table, "folder_or_table", "folder or table (CSV/TSV)")
        _require_columns(table, ("stimulus_id", "path"), "folder_or_table", "image")
        if base is None and root is not None:
            base = Path(root)
        table["path"] = _resolve_paths(table["path"], base, "path", "folder_or_table")
        if "category" not in table.columns:
            table["category"] = ""
        first = ["stimulus_id", "path", "category"]
        table = table[first + [c for c in table.columns if c not in first]]
    stimuli = StimulusSet(table, "image")
    if check:
        for path in progress(stimuli._table["path"], desc="checking images", verbose=verbose):
            _read_image(Path(path), check_only=True)
    return stimuli


# ------------------------------------------------------------------------------------------------
# audio


def _resample_ratio(sfreq_in: float, sfreq_out: float, max_denominator: int = 1000) -> Fraction:
    """``up/down`` closest to ``sfreq_out / sfreq_in`` with ``down <= max_denominator``."""
    ratio = Fraction(float(sfreq_out)) / Fraction(float(sfreq_in))
    ratio = ratio.limit_denominator(max_denominator)
    if ratio == 0:
        raise ValueError(
            f"Cannot resample from {sfreq_in:g} Hz to {sfreq_out:g} Hz: the ratio is too small. "
            "Check the 'sfreq' parameter (in Hz)."
        )
    return ratio


def _audio_info(path: str) -> Any:
    import soundfile as sf

    try:
        return sf.info(path)
    except (sf.SoundFileError, RuntimeError) as err:
        raise CorruptFileError(
            f"Cannot read the audio file {path!r} ({err}). brainalign reads WAV, FLAC and OGG "
            "through soundfile (libsndfile); convert the file, or replace it if it is damaged."
        ) from err


def _read_segment(row: pd.Series) -> tuple[np.ndarray, float]:
    import soundfile as sf

    file_sfreq = float(row["file_sfreq"])
    start = round(float(row["onset"]) * file_sfreq)
    n = max(round(float(row["duration"]) * file_sfreq), 1)
    try:
        data, _ = sf.read(row["file"], start=start, stop=start + n, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise CorruptFileError(
            f"Cannot read the audio file {row['file']!r} for stimulus {row['stimulus_id']!r} "
            f"({err}); replace the file or remove the stimulus."
        ) from err
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    sfreq = float(row["sfreq"])
    if sfreq != file_sfreq:
        from scipy.signal import resample_poly

        ratio = _resample_ratio(file_sfreq, sfreq)
        wave = resample_poly(wave, ratio.numerator, ratio.denominator)
    return np.ascontiguousarray(wave, dtype=np.float32), sfreq


def load_audio(
    files_or_table: str | os.PathLike | Sequence[str | os.PathLike] | Mapping | pd.DataFrame,
    *,
    sfreq: float | None = None,
    id_from: str = "stem",
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    root: str | os.PathLike | None = None,
) -> StimulusSet:
    """Index audio stimuli (whole files or segments of files); samples are read when loaded.

    Parameters
    ----------
    files_or_table : path-like | sequence of path-like | mapping | DataFrame
        One audio file, a folder of them (searched recursively, ids as in :func:`load_images`),
        a list of files (ids are their stems), a mapping ``{stimulus_id: file}``, or a table of
        segments (DataFrame, CSV or TSV) with the columns ``stimulus_id``, ``file`` and optionally
        ``onset`` and ``duration`` (s into the file, as the word or sentence segments of
        MEG-MASC or brainmagick). A missing or NaN ``onset`` is 0; a missing or NaN ``duration``
        runs to the end of the file. Relative files in a table file are taken from the table's
        folder. Other columns are kept. Files are read with soundfile (WAV, FLAC, OGG).
    sfreq : float | None
        Sampling frequency (Hz) to return the waveforms at. Files at another rate are resampled
        when loaded, with :func:`scipy.signal.resample_poly` and the ratio ``up/down`` closest to
        ``sfreq / file_rate`` with ``down <= 1000`` (a ``BrainAlignWarning`` says which files and,
        when the ratio is not exact, the rate obtained; that rate is what :meth:`load` returns).
        Segments are resampled on their own, so the first and last few samples carry the
        filter's edge effects. ``None`` keeps each file's rate.
    id_from : {"stem", "relative"}
        Folder only: how ids are made from file names (see :func:`load_images`).
    extensions : sequence of str
        Folder only: the file suffixes taken as audio.
    root : path-like | None
        Lists, mappings and DataFrames: the folder relative paths are taken from (default: the
        current folder).

    Returns
    -------
    stimuli : StimulusSet
        ``kind="audio"``; table columns ``stimulus_id``, ``file``, ``onset``, ``duration`` (s),
        ``file_sfreq`` (Hz), ``sfreq`` (Hz of the returned waveforms), ``category``,
        ``n_channels``, then the table's other columns. :meth:`~StimulusSet.load` returns
        ``(waveform, sfreq)``, the waveform a float32 array of shape ``(n_samples,)``: files with
        several channels are mixed down to mono by averaging the channels (a
        ``BrainAlignWarning`` says so here).

    Raises
    ------
    ValueError
        A segment starts before 0, has no duration, or runs past the end of its file (the
        message names the file, its duration and the segment).
    CorruptFileError
        A file cannot be read as audio.
    """
    check_option("id_from", id_from, ("stem", "relative"))
    if sfreq is not None:
        check_positive("sfreq", sfreq)
    base = Path(root) if root is not None else None
    source = files_or_table
    name = "files_or_table"
    if isinstance(source, pd.DataFrame) or (
        isinstance(source, str | os.PathLike) and Path(source).suffix.lower() in (".csv", ".tsv")
    ):
        table, table_base = _read_table(source, name)
        base = table_base if table_base is not None else base
        if "path" in table.columns and "file" not in table.columns:
            table = table.rename(columns={"path": "file"})
        _require_columns(table, ("stimulus_id", "file"), name, "audio")
    elif isinstance(source, str | os.PathLike) and Path(source).is_dir():
        table = _scan_folder(Path(source), extensions, True, id_from).rename(
            columns={"path": "file"}
        )
    elif isinstance(source, Mapping):
        table = pd.DataFrame(
            {"stimulus_id": [str(k) for k in source], "file": [str(v) for v in source.values()]}
        )
    else:
        files = [source] if isinstance(source, str | os.PathLike) else list(source)
        table = pd.DataFrame(
            {"stimulus_id": [Path(f).stem for f in files], "file": [str(f) for f in files]}
        )
    table["file"] = _resolve_paths(table["file"], base, "file", name)
    for column in ("onset", "duration"):
        if column not in table.columns:
            table[column] = np.nan
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    if "category" not in table.columns:
        table["category"] = ""

    infos = {f: _audio_info(f) for f in dict.fromkeys(table["file"])}
    file_sfreq = table["file"].map(lambda f: float(infos[f].samplerate))
    n_frames = table["file"].map(lambda f: int(infos[f].frames))
    file_duration = n_frames / file_sfreq
    table["file_sfreq"] = file_sfreq
    table["n_channels"] = table["file"].map(lambda f: int(infos[f].channels))
    table["onset"] = table["onset"].fillna(0.0)
    table["duration"] = table["duration"].fillna(file_duration - table["onset"])
    _check_segments(table, file_duration)

    if sfreq is None:
        table["sfreq"] = file_sfreq
    else:
        out = {}
        for rate in sorted(set(file_sfreq)):
            ratio = _resample_ratio(rate, sfreq)
            out[rate] = rate * ratio.numerator / ratio.denominator
            if ratio != 1:
                n_files = len({f for f in infos if float(infos[f].samplerate) == rate})
                exact = "" if out[rate] == sfreq else f" (= {out[rate]:.6g} Hz, the closest ratio)"
                warnings.warn(
                    f"{n_files} audio file(s) are sampled at {rate:g} Hz, not sfreq={sfreq:g} Hz: "
                    f"their stimuli will be resampled when loaded with "
                    f"scipy.signal.resample_poly(up={ratio.numerator}, "
                    f"down={ratio.denominator}){exact}.",
                    BrainAlignWarning,
                    stacklevel=2,
                )
        table["sfreq"] = file_sfreq.map(out)
    multi = sorted(f for f, info in infos.items() if info.channels > 1)
    if multi:
        warnings.warn(
            f"{len(multi)} audio file(s) have more than one channel ({_list_some(multi, 3)}); "
            "their waveforms are the mean over channels (mono).",
            BrainAlignWarning,
            stacklevel=2,
        )
    first = ["stimulus_id", "file", "onset", "duration", "file_sfreq", "sfreq", "category"]
    table = table[first + [c for c in table.columns if c not in first]]
    if sfreq is not None and table["sfreq"].nunique() == 1:
        sfreq = float(table["sfreq"].iloc[0])
    return StimulusSet(table, "audio", sfreq=sfreq)


def _check_segments(table: pd.DataFrame, file_duration: pd.Series) -> None:
    """Raise a ``ValueError`` naming every segment outside its file."""
    onset, duration = table["onset"], table["duration"]
    # half a sample of slack for onsets/durations rounded to the millisecond
    slack = 0.5 / table["file_sfreq"]
    bad = (onset < 0) | ~(duration > 0) | (onset + duration > file_duration + slack)
    if not bad.any():
        return
    lines = []
    for i in np.flatnonzero(bad.to_numpy())[:_N_LISTED]:
        lines.append(
            f"  stimulus {table['stimulus_id'].iloc[i]!r}: onset {onset.iloc[i]:g} s, duration "
            f"{duration.iloc[i]:g} s (ends at {onset.iloc[i] + duration.iloc[i]:g} s) in "
            f"{table['file'].iloc[i]!r}, which lasts {file_duration.iloc[i]:g} s "
            f"({round(file_duration.iloc[i] * table['file_sfreq'].iloc[i])} samples at "
            f"{table['file_sfreq'].iloc[i]:g} Hz)"
        )
    more = f"\n  … and {int(bad.sum()) - _N_LISTED} more" if bad.sum() > _N_LISTED else ""
    raise ValueError(
        f"{int(bad.sum())} audio segments do not fit in their file (onsets must be >= 0, "
        "durations > 0, and segments must end before the file does):\n"
        + "\n".join(lines)
        + more
        + "\nFix the 'onset'/'duration' columns (seconds from the start of the file) or the file."
    )


# ------------------------------------------------------------------------------------------------
# texts


def load_texts(
    texts_or_file: Mapping[Any, str] | Sequence[str] | pd.DataFrame | str | os.PathLike,
) -> StimulusSet:
    """Index text stimuli (sentences, words, captions).

    Parameters
    ----------
    texts_or_file : mapping | sequence of str | DataFrame | path-like
        A mapping ``{stimulus_id: text}``; a list of texts (ids ``"0"``, ``"1"``, … as
        :func:`~brainalign.io.make_trial_table` makes by default); a table with the columns
        ``stimulus_id`` and ``text`` (DataFrame, ``.csv`` or ``.tsv`` file; other columns are
        kept); or a UTF-8 text file with one stimulus per line, whose ids are the 0-based line
        numbers (trailing empty lines are ignored, empty lines elsewhere are an error).

    Returns
    -------
    stimuli : StimulusSet
        ``kind="text"``; table columns ``stimulus_id``, ``text``, ``source`` (the file, or
        ``"<mapping>"``), ``category``, then the table's other columns.
    """
    source_name = "<mapping>"
    if isinstance(texts_or_file, pd.DataFrame) or (
        isinstance(texts_or_file, str | os.PathLike)
        and Path(texts_or_file).suffix.lower() in (".csv", ".tsv")
    ):
        table, _ = _read_table(texts_or_file, "texts_or_file")
        _require_columns(table, ("stimulus_id", "text"), "texts_or_file", "text")
        if not isinstance(texts_or_file, pd.DataFrame):
            source_name = str(Path(texts_or_file).resolve())
    elif isinstance(texts_or_file, str | os.PathLike):
        path = check_file(texts_or_file, "texts_or_file", what="text file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise CorruptFileError(
                f"The text file {str(path)!r} is not UTF-8 ({err}); re-encode it as UTF-8."
            ) from err
        while lines and not lines[-1].strip():
            lines.pop()
        empty = [i for i, line in enumerate(lines) if not line.strip()]
        if empty:
            raise ValueError(
                f"The text file {str(path)!r} has empty lines (0-based line numbers "
                f"{_list_some(empty)}); it needs one stimulus per line. Remove them, or pass a "
                "table with 'stimulus_id' and 'text' columns."
            )
        table = pd.DataFrame({"stimulus_id": [str(i) for i in range(len(lines))], "text": lines})
        source_name = str(path.resolve())
    elif isinstance(texts_or_file, Mapping):
        table = pd.DataFrame(
            {
                "stimulus_id": [str(k) for k in texts_or_file],
                "text": list(texts_or_file.values()),
            }
        )
    elif isinstance(texts_or_file, Sequence):
        texts = list(texts_or_file)
        table = pd.DataFrame({"stimulus_id": [str(i) for i in range(len(texts))], "text": texts})
    else:
        raise TypeError(
            "'texts_or_file' must be a mapping id -> text, a list of texts, a DataFrame, or the "
            f"path of a .txt/.csv/.tsv file, got {type(texts_or_file).__name__}."
        )
    not_text = [
        sid
        for sid, text in zip(table["stimulus_id"], table["text"])
        if not isinstance(text, str) or not text
    ]
    if not_text:
        raise ValueError(
            f"{len(not_text)} stimuli have no text (empty, missing or not a string): "
            f"{_list_some(not_text)}. Give every stimulus a non-empty string."
        )
    table["source"] = source_name
    if "category" not in table.columns:
        table["category"] = ""
    first = ["stimulus_id", "text", "source", "category"]
    table = table[first + [c for c in table.columns if c not in first]]
    return StimulusSet(table, "text")


# ------------------------------------------------------------------------------------------------
# trials ↔ stimuli


def resolve_stimuli(trials: Any, stimuli: StimulusSet) -> pd.DataFrame:
    """Join a trial table to a stimulus set through ``stimulus_id``.

    Parameters
    ----------
    trials : DataFrame | Recording
        A trial table with a ``stimulus_id`` column (or a Recording, whose ``trials`` is used).
        It is not modified.
    stimuli : StimulusSet
        The stimuli the trials show.

    Returns
    -------
    trials : DataFrame
        A copy of the trial table with the column ``stimulus_index`` (int64): the position of
        each trial's stimulus in ``stimuli.ids`` (an existing ``stimulus_index`` column is
        replaced in the copy).

    Raises
    ------
    ValueError
        Some trials show stimuli that are not in ``stimuli``; the message lists them (the first 20
        and how many more) and how to fix it.
    """
    table = getattr(trials, "trials", trials)
    check_type("trials", table, pd.DataFrame, "a trial table (DataFrame) or a Recording")
    check_type("stimuli", stimuli, StimulusSet, "a StimulusSet (see load_images/load_audio)")
    if "stimulus_id" not in table.columns:
        raise ValueError(
            f"The trial table has no 'stimulus_id' column (it has {list(table.columns)}); build "
            "it with brainalign.io.make_trial_table."
        )
    ids = table["stimulus_id"].astype(str)
    positions = ids.map(stimuli._positions)
    missing_rows = positions.isna()
    if missing_rows.any():
        missing = ids[missing_rows].unique().tolist()
        hint = suggest(missing[0], stimuli._positions) if len(stimuli) <= 10_000 else ""
        raise ValueError(
            f"{int(missing_rows.sum())} trials show {len(missing)} stimulus ids that are not in "
            f"the {stimuli.kind} stimulus set of {len(stimuli)} stimuli: {_list_some(missing)}."
            f"{hint} Load those stimuli too, or drop their trials first with "
            "trials[trials['stimulus_id'].isin(stimuli.ids)]; if the ids differ only in form "
            "(file stems vs relative paths, '001' vs '1'), fix them or reload the stimuli with "
            "another id_from."
        )
    out = table.copy()
    out["stimulus_index"] = positions.to_numpy(dtype=np.int64)
    return out
