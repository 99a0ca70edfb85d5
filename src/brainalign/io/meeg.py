"""M/EEG readers: FIF, EDF/BDF, BrainVision, EEGLAB and BIDS datasets, through mne and mne-bids.

The readers return an :class:`mne.io.Raw` (:func:`read_raw`), a trial table
(:func:`events_to_trials`, :func:`read_bids_events`) or a
:class:`~brainalign.io.recording.Recording` (:func:`load_meeg`, :func:`load_bids`) holding either
event-locked windows (``kind="epochs"``) or the continuous signal (``kind="timeseries"``), with
channel names, sampling frequency, the MNE ``info`` and sensor positions in head coordinates.

Nothing here writes to the user's files, and a :class:`mne.io.Raw` or a table passed in is never
changed: filtering and resampling happen on a copy.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from brainalign._utils.errors import BrainAlignWarning, CorruptFileError
from brainalign._utils.validation import check_file, check_positive, check_type, suggest
from brainalign.io.recording import TRIAL_COLUMNS, Recording, make_trial_table

if TYPE_CHECKING:
    import mne

__all__ = ["events_to_trials", "load_bids", "load_meeg", "read_bids_events", "read_raw"]

# extension (lower case) -> (format name, name of the mne.io reader)
_FORMATS: dict[str, tuple[str, str]] = {
    ".fif": ("FIF", "read_raw_fif"),
    ".fif.gz": ("FIF", "read_raw_fif"),
    ".edf": ("EDF", "read_raw_edf"),
    ".bdf": ("BDF", "read_raw_bdf"),
    ".vhdr": ("BrainVision", "read_raw_brainvision"),
    ".set": ("EEGLAB", "read_raw_eeglab"),
}

# companion files that users sometimes pass instead of the header
_COMPANIONS = {
    ".eeg": "a BrainVision data file: pass its '.vhdr' header instead",
    ".vmrk": "a BrainVision marker file: pass its '.vhdr' header instead",
    ".fdt": "an EEGLAB data file: pass its '.set' file instead",
}

# Messages that mne emits as warnings when a file is shorter than its header says.
_TRUNCATION_MARKERS = (
    "Invalid tag with only",  # FIF: a tag runs past the end of the file
    "does not match the file size",  # EDF/BDF: fewer data records than the header declares
)

# Annotations that mark segments rather than events (mne's own convention).
_NOT_EVENTS = re.compile(r"^(bad|edge)", re.IGNORECASE)

# BIDS suffixes and file extensions of M/EEG recordings (mne-bids reads these).
_BIDS_DATA_SUFFIXES = ("meg", "eeg", "ieeg")
_BIDS_DATA_EXTENSIONS = (
    ".fif",
    ".ds",
    ".con",
    ".sqd",
    ".pdf",
    ".vhdr",
    ".edf",
    ".bdf",
    ".set",
    ".EDF",
    ".snirf",
    ".mef",
    ".nwb",
    ".lay",
    ".bin",
)


# ----------------------------------------------------------------------------------------------
# Raw files
# ----------------------------------------------------------------------------------------------


def _extension(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".fif.gz"):
        return ".fif.gz"
    return path.suffix.lower()


def _log_level(verbose: bool | str | int | None) -> int:
    """The logging level that ``verbose`` means to mne."""
    if verbose is None:
        import mne

        return mne.utils.logger.getEffectiveLevel()
    if verbose is True:
        return logging.INFO
    if verbose is False:
        return logging.WARNING
    if isinstance(verbose, str):
        level = logging.getLevelName(verbose.upper())
        return level if isinstance(level, int) else logging.WARNING
    return int(verbose)


def _call_reader(
    fname: Path, fmt: str, read: Callable[[Any], Any], verbose: bool | str | int | None
) -> Any:
    """Run an mne reader; turn its failures and truncation warnings into clear errors.

    The reader runs at least at the ``"warning"`` level so that mne's truncation warnings can be
    seen; the other warnings are re-emitted when ``verbose`` asks for warnings.
    """
    level = _log_level(verbose)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            raw = read("warning" if level > logging.WARNING else verbose)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"The {fmt} file {str(fname)!r} refers to a file that does not exist ({err}). "
                "Keep its companion files (the '.eeg' and '.vmrk' of a '.vhdr', the '.fdt' of a "
                "'.set', the split parts of a FIF) next to it under the names its header gives."
            ) from err
        except MemoryError:
            raise
        except TypeError as err:
            if "read_epochs_eeglab" in str(err):
                raise ValueError(
                    f"The EEGLAB file {str(fname)!r} holds epochs, not a continuous recording "
                    f"({err}). Read it with mne.read_epochs_eeglab, or export the continuous data."
                ) from err
            raise CorruptFileError(_corrupt_message(fname, fmt, err)) from err
        except Exception as err:
            raise CorruptFileError(_corrupt_message(fname, fmt, err)) from err
    truncated = [
        str(w.message) for w in caught if any(m in str(w.message) for m in _TRUNCATION_MARKERS)
    ]
    if truncated:
        raise CorruptFileError(
            f"The {fmt} file {str(fname)!r} is truncated: it is shorter than its header says "
            f"(mne: {truncated[0]!r}). Download or copy it again. If the recording was "
            "interrupted and you accept the shorter data, read it with mne.io directly and pass "
            "the Raw to brainalign.io.load_meeg."
        )
    if level <= logging.WARNING:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return raw


def _corrupt_message(fname: Path, fmt: str, err: BaseException) -> str:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return (
        f"The file {str(fname)!r} cannot be read as {fmt} ({type(err).__name__}: {detail}). It "
        "is probably truncated or damaged, or not a real "
        f"{fmt} file despite its extension. Download or export it again."
    )


def read_raw(
    fname: str | os.PathLike, *, preload: bool = True, verbose: bool | str | int | None = False
) -> mne.io.BaseRaw:
    """Read a continuous M/EEG recording with the mne reader that its extension names.

    Parameters
    ----------
    fname : path-like
        The recording: FIF (``.fif``, ``.fif.gz``), EDF/BDF (``.edf``, ``.bdf``), BrainVision
        (the ``.vhdr`` header) or EEGLAB (``.set``). The file is only read, never changed.
    preload : bool
        Load the data into memory now (``True``) or on first use.
    verbose : bool | str | int | None
        mne's verbosity (``"error"`` silences it).

    Returns
    -------
    raw : mne.io.BaseRaw
        The recording, ``(n_channels, n_times)`` samples at ``raw.info["sfreq"]`` Hz.

    Raises
    ------
    FileNotFoundError
        ``fname`` (or a companion file its header names) does not exist.
    ValueError
        The extension is not one of the supported ones.
    CorruptFileError
        The file exists but cannot be read: truncated, damaged, or another format.
    """
    import mne

    path = check_file(fname, "fname", what="M/EEG recording")
    ext = _extension(path)
    if ext not in _FORMATS:
        hint = f" {path.name!r} is {_COMPANIONS[ext]}." if ext in _COMPANIONS else ""
        supported = ", ".join(repr(e) for e in _FORMATS)
        raise ValueError(
            f"Unknown M/EEG file extension {ext or '(none)'!r} for fname={str(path)!r}.{hint} "
            f"Supported extensions are {supported}. For other formats read the file with mne.io "
            "(e.g. mne.io.read_raw) and pass the Raw to brainalign.io.load_meeg."
        )
    fmt, reader_name = _FORMATS[ext]
    reader = getattr(mne.io, reader_name)
    return _call_reader(path, fmt, lambda v: reader(path, preload=preload, verbose=v), verbose)


# ----------------------------------------------------------------------------------------------
# Events and trial tables
# ----------------------------------------------------------------------------------------------


def read_bids_events(path: str | os.PathLike) -> pd.DataFrame:
    """Read a BIDS ``*_events.tsv`` file.

    Parameters
    ----------
    path : path-like
        A tab-separated table with an ``onset`` column in seconds from the first sample of the
        recording, usually ``duration`` and ``trial_type`` and any other columns (``value``,
        ``sample``, ``stim_file``, ``word``…).

    Returns
    -------
    events : DataFrame, shape (n_events, n_columns)
        The table as written, ``onset`` as float. Only ``"n/a"`` (BIDS's missing value) and empty
        cells become NaN, so words such as ``"NA"`` or ``"null"`` stay words.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    CorruptFileError
        The file is empty, not text, or its rows do not split into the header's columns.
    ValueError
        The table has no ``onset`` column, or an onset is not a number.
    """
    path = check_file(path, "path", what="BIDS events file")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a", ""], keep_default_na=False)
    except UnicodeDecodeError as err:
        raise CorruptFileError(
            f"The events file {str(path)!r} is not a text file ({err}). A BIDS events file is a "
            "tab-separated UTF-8 table; check that this is the '*_events.tsv'."
        ) from err
    except pd.errors.EmptyDataError as err:
        raise CorruptFileError(
            f"The events file {str(path)!r} is empty. It needs a header line (onset, duration, "
            "trial_type…) and one row per event; write it again."
        ) from err
    except pd.errors.ParserError as err:
        raise CorruptFileError(
            f"The events file {str(path)!r} is not a valid tab-separated table ({err}). Every row "
            "must have as many tab-separated fields as the header."
        ) from err
    if "onset" not in table.columns:
        columns = [str(c) for c in table.columns]
        hint = ""
        if len(columns) == 1 and ("," in columns[0] or ";" in columns[0]):
            hint = " It looks comma- or semicolon-separated; BIDS events files are tab-separated."
        raise ValueError(
            f"The events file {str(path)!r} has no 'onset' column; its columns are {columns}."
            f"{hint} A BIDS events file needs 'onset' (seconds) and 'duration' columns."
        )
    table["onset"] = _numeric_onsets(table["onset"], f"the events file {str(path)!r}")
    return table


def _numeric_onsets(onset: pd.Series, origin: str) -> np.ndarray:
    values = pd.to_numeric(onset, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        found = [onset.iloc[i] for i in bad[:5]]
        raise ValueError(
            f"{len(bad)} onsets of {origin} are not finite numbers: rows {bad[:5].tolist()} hold "
            f"{found}. Every event needs an onset in seconds from the first sample of the "
            "recording; remove or fix those rows."
        )
    return values


def _expand_dict_column(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Spread a column of Python dict literals (MEG-MASC's ``trial_type``) into columns.

    Keys that are already columns are left alone. The column is kept as it is. Nothing happens
    unless every non-missing value is a dict literal.
    """
    if column not in table.columns:
        return table
    values = table[column]
    present = values.notna()
    if not present.any():
        return table
    texts = values[present].astype(str)
    if not texts.str.lstrip().str.startswith("{").all():
        return table
    parsed = []
    for text in texts:
        try:
            item = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return table
        if not isinstance(item, dict):
            return table
        parsed.append(item)
    expanded = pd.DataFrame(parsed, index=texts.index).reindex(table.index)
    new = [k for k in expanded.columns if isinstance(k, str) and k not in table.columns]
    return pd.concat([table, expanded[new]], axis=1)


def _annotations_table(raw: mne.io.BaseRaw) -> pd.DataFrame:
    annotations = raw.annotations
    # mne stores annotation onsets shifted by raw.first_time (whether orig_time is set or not),
    # so that the first sample of the data is at raw.first_time.
    onset = np.asarray(annotations.onset, dtype=float) - raw.first_time
    descriptions = [str(d) for d in annotations.description]
    table = pd.DataFrame(
        {
            "onset": onset,
            "duration": np.asarray(annotations.duration, dtype=float),
            "trial_type": pd.Series(descriptions, dtype=object),
        }
    )
    extras = getattr(annotations, "extras", None)
    if extras is not None and any(len(e) for e in extras):
        more = pd.DataFrame([dict(e) for e in extras])
        table = pd.concat([table, more[[c for c in more if c not in table]]], axis=1)
    keep = np.array([_NOT_EVENTS.match(d) is None for d in descriptions], dtype=bool)
    return table[keep].reset_index(drop=True)


def _array_table(
    events: np.ndarray, event_id: Mapping[str, int] | None, sfreq: float | None, first_samp: int
) -> pd.DataFrame:
    if events.ndim != 2 or events.shape[1] != 3:
        raise ValueError(
            f"An mne events array must have shape (n_events, 3) (sample, previous value, event "
            f"code), got shape {events.shape}. Build it with mne.find_events or "
            "mne.events_from_annotations."
        )
    if sfreq is None:
        raise ValueError(
            "events_to_trials needs sfreq= (Hz) to turn the sample numbers of an events array "
            "into seconds: pass sfreq=raw.info['sfreq'] and first_samp=raw.first_samp, or pass "
            "the Raw itself to use its annotations."
        )
    check_positive("sfreq", sfreq)
    samples = events[:, 0].astype(np.int64)
    codes = events[:, 2].astype(np.int64)
    names = {int(code): str(code) for code in np.unique(codes)}
    if event_id is not None:
        if not isinstance(event_id, Mapping):
            raise TypeError(
                "For an events array, 'event_id' must map names to event codes, e.g. "
                f"{{'word': 1, 'sound': 2}}; got {type(event_id).__name__} ({event_id!r:.80})."
            )
        wanted = {int(v): str(k) for k, v in event_id.items()}
        found = sorted(names)
        keep = np.isin(codes, list(wanted))
        if not keep.any():
            raise ValueError(
                f"None of the event codes of event_id={dict(event_id)!r} occur in the events "
                f"array, whose codes are {found}. Fix the codes in event_id."
            )
        samples, codes = samples[keep], codes[keep]
        names = wanted
    return pd.DataFrame(
        {
            "onset": (samples - int(first_samp)) / float(sfreq),
            "duration": np.nan,
            "trial_type": [names[int(c)] for c in codes],
            "value": codes,
            "sample": samples,
        }
    )


def _select_by_event_id(table: pd.DataFrame, event_id: Any, origin: str) -> pd.DataFrame:
    if event_id is None:
        return table
    names = [event_id] if isinstance(event_id, str) else [str(k) for k in event_id]
    if "trial_type" not in table.columns:
        raise ValueError(
            f"event_id selects events by their 'trial_type', but {origin} has no such column "
            f"(columns: {[str(c) for c in table.columns]}). Filter the table yourself instead."
        )
    keep = table["trial_type"].astype(str).isin(names)
    if not keep.any():
        found = sorted(table["trial_type"].dropna().astype(str).unique().tolist())
        raise ValueError(
            f"None of the event names of event_id ({names}) occur in {origin}, whose trial types "
            f"are {found[:20]}. Fix the names in event_id."
        )
    return table[keep].reset_index(drop=True)


def _as_labels(values: pd.Series) -> np.ndarray:
    """Stimulus labels as strings; integral floats become integers (``12``, not ``12.0``)."""
    array = values.to_numpy()
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    return np.asarray(array).astype(str)


def events_to_trials(
    raw_or_events: Any,
    *,
    stimulus_column: str = "stimulus_id",
    subject: str = "01",
    session: str = "01",
    run: int = 1,
    event_id: Any = None,
    sfreq: float | None = None,
    first_samp: int = 0,
) -> pd.DataFrame:
    """Turn M/EEG events into a trial table.

    Parameters
    ----------
    raw_or_events : mne.io.BaseRaw | ndarray, shape (n_events, 3) | DataFrame | path-like
        Where the events are:

        - a Raw: its annotations, except those whose description starts with ``"BAD"`` or
          ``"EDGE"`` (segments, not events); the description becomes ``trial_type``;
        - an mne events array ``(sample, previous value, code)``, with ``sfreq`` and
          ``first_samp`` to convert samples to seconds; ``trial_type`` is the name that
          ``event_id`` gives each code (the code itself without ``event_id``), ``value`` the code;
        - a BIDS events table (columns ``onset``, ``duration``, ``trial_type`` and any others,
          such as ``value``, ``stim_file``, ``word``, ``sound``, ``image``), or the path of a
          ``*_events.tsv``. A ``trial_type`` of Python dict literals (MEG-MASC) is also spread
          into one column per key (``kind``, ``word``, ``sound``…).
    stimulus_column : str
        The column naming the stimulus of each event; it becomes ``stimulus_id``. The default,
        ``"stimulus_id"``, falls back to ``"trial_type"`` when the table has no such column.
        Events whose value in this column is missing (``"n/a"``) are dropped with a warning.
    subject, session : str
        Labels written in the ``subject`` and ``session`` columns.
    run : int
        Run number written in the ``run`` column.
    event_id : dict | list of str | str | None
        Keep only some events. For an events array: a ``{name: code}`` mapping (mne's
        convention); codes absent from it are left out. For annotations and tables: the
        ``trial_type`` names to keep (a mapping's keys, a list or one name).
    sfreq : float | None
        Sampling frequency in Hz of the events array's samples (events arrays only).
    first_samp : int
        ``raw.first_samp`` of the recording the events array belongs to (events arrays only).

    Returns
    -------
    trials : DataFrame, shape (n_events, n_columns)
        The columns of :data:`~brainalign.io.recording.TRIAL_COLUMNS` (``onset`` and
        ``duration`` in seconds from the first sample of the recording, ``duration`` NaN when
        unknown), then every other column of the events (``trial_type``, ``value``…). Input
        columns named like a trial-table column are replaced. The input is not changed.

    Raises
    ------
    ValueError
        No ``onset`` column, a non-numeric onset, ``stimulus_column`` absent, or ``event_id``
        matching nothing.
    TypeError
        ``raw_or_events`` is of another type.
    """
    import mne

    if isinstance(raw_or_events, mne.io.BaseRaw):
        source = raw_or_events.filenames[0] if raw_or_events.filenames else None
        origin = "the annotations of the Raw" + (f" {str(source)!r}" if source else "")
        table = _select_by_event_id(_annotations_table(raw_or_events), event_id, origin)
    elif isinstance(raw_or_events, np.ndarray):
        origin = "the events array"
        table = _array_table(raw_or_events, event_id, sfreq, first_samp)
    elif isinstance(raw_or_events, pd.DataFrame):
        origin = "the events table"
        table = raw_or_events.copy()
        if "onset" not in table.columns:
            raise ValueError(
                f"The events table has no 'onset' column; its columns are "
                f"{[str(c) for c in table.columns]}. It needs 'onset' in seconds from the first "
                "sample of the recording (BIDS events.tsv convention)."
            )
        table["onset"] = _numeric_onsets(table["onset"], origin)
        table = _select_by_event_id(table, event_id, origin)
    elif isinstance(raw_or_events, (str, os.PathLike)):
        origin = f"the events file {str(raw_or_events)!r}"
        table = _select_by_event_id(read_bids_events(raw_or_events), event_id, origin)
    else:
        raise TypeError(
            "'raw_or_events' must be an mne Raw (its annotations), an mne events array of shape "
            "(n_events, 3), a BIDS events DataFrame or the path of an events.tsv; got "
            f"{type(raw_or_events).__name__}."
        )
    table = _expand_dict_column(table.reset_index(drop=True), "trial_type")

    column = stimulus_column
    if column not in table.columns and column == "stimulus_id" and "trial_type" in table.columns:
        column = "trial_type"
    if column not in table.columns:
        columns = [str(c) for c in table.columns]
        raise ValueError(
            f"stimulus_column={stimulus_column!r} is not a column of {origin}; its columns are "
            f"{columns}.{suggest(stimulus_column, columns)} Pass the column that names each "
            "event's stimulus (e.g. 'word' for MEG-MASC, 'stim_file' or 'trial_type')."
        )
    missing = table[column].isna().to_numpy()
    if missing.any():
        warnings.warn(
            f"{int(missing.sum())} of {len(table)} events of {origin} have no value in the "
            f"stimulus column {column!r} ('n/a') and were dropped from the trial table.",
            BrainAlignWarning,
            stacklevel=2,
        )
        table = table[~missing].reset_index(drop=True)

    duration = (
        pd.to_numeric(table["duration"], errors="coerce").to_numpy(dtype=float)
        if "duration" in table.columns
        else np.full(len(table), np.nan)
    )
    trials = make_trial_table(
        len(table),
        subject=str(subject),
        session=str(session),
        run=int(run),
        onset=table["onset"].to_numpy(dtype=float),
        duration=duration,
        stimulus_id=_as_labels(table[column]),
    )
    for key in table.columns:
        if key not in TRIAL_COLUMNS and key not in ("onset", "duration"):
            trials[key] = table[key].to_numpy()
    return trials


# ----------------------------------------------------------------------------------------------
# Recordings
# ----------------------------------------------------------------------------------------------


def _check_window(tmin: float, tmax: float, baseline: Any) -> None:
    for name, value in (("tmin", tmin), ("tmax", tmax)):
        check_type(name, value, (int, float, np.integer, np.floating), "a number of seconds")
        if not np.isfinite(value):
            raise ValueError(f"{name!r} must be a finite number of seconds, got {value!r}.")
    if tmin >= tmax:
        raise ValueError(
            f"tmin ({tmin} s) must be smaller than tmax ({tmax} s): each window runs from tmin "
            "to tmax around its onset, e.g. tmin=-0.5, tmax=2.5."
        )
    if baseline is None:
        return
    if not isinstance(baseline, Sequence) or isinstance(baseline, str) or len(baseline) != 2:
        raise ValueError(
            f"baseline must be None or a pair (start, stop) in seconds (None for the window's "
            f"edge), got {baseline!r}; e.g. baseline=(None, 0)."
        )
    start = tmin if baseline[0] is None else float(baseline[0])
    stop = tmax if baseline[1] is None else float(baseline[1])
    if not (tmin - 1e-9 <= start < stop <= tmax + 1e-9):
        raise ValueError(
            f"baseline={tuple(baseline)!r} means [{start}, {stop}] s, which is not a non-empty "
            f"interval inside the window tmin={tmin}, tmax={tmax}. Pass baseline=None to skip "
            "baseline correction, or start the window before 0 (e.g. tmin=-0.5)."
        )


def _sensor_positions(info: Any) -> tuple[np.ndarray, bool]:
    """Positions ``(n_channels, 3)`` in metres, head coordinates; NaN where unknown.

    Returns the positions and whether device coordinates had to stand in for head coordinates.
    """
    from mne.io.constants import FIFF
    from mne.transforms import apply_trans

    positions = np.full((len(info["chs"]), 3), np.nan)
    dev_head_t = info["dev_head_t"]
    in_device = False
    for i, ch in enumerate(info["chs"]):
        loc = np.asarray(ch["loc"][:3], dtype=float)
        if not np.all(np.isfinite(loc)) or not np.any(loc):
            continue
        frame = ch["coord_frame"]
        if frame == FIFF.FIFFV_COORD_HEAD:
            positions[i] = loc
        elif frame == FIFF.FIFFV_COORD_DEVICE:
            if dev_head_t is None:
                positions[i] = loc
                in_device = True
            else:
                positions[i] = apply_trans(dev_head_t, loc)
    return positions, in_device


def _events_for(raw: mne.io.BaseRaw, events: Any, kw: dict[str, Any], where: str) -> pd.DataFrame:
    if events is None:
        return events_to_trials(raw, **kw)
    if isinstance(events, np.ndarray):
        return events_to_trials(events, sfreq=raw.info["sfreq"], first_samp=raw.first_samp, **kw)
    if isinstance(events, (pd.DataFrame, str, os.PathLike)):
        return events_to_trials(events, **kw)
    raise TypeError(
        f"'events' must be None (the annotations{where}), a BIDS events DataFrame, the path of "
        f"an events.tsv or an mne events array; got {type(events).__name__}."
    )


def _check_inside(trials: pd.DataFrame, raw: mne.io.BaseRaw, where: str) -> None:
    duration = raw.n_times / raw.info["sfreq"]
    onset = trials["onset"].to_numpy(dtype=float)
    outside = np.flatnonzero((onset < 0) | (onset >= duration))
    if outside.size:
        shown = [round(float(x), 6) for x in onset[outside[:5]]]
        more = f" (and {outside.size - 5} more)" if outside.size > 5 else ""
        raise ValueError(
            f"{outside.size} event onsets fall outside the recording{where}, which lasts "
            f"{duration:.6g} s ({raw.n_times} samples at {raw.info['sfreq']:g} Hz): onsets "
            f"{shown}{more} s at trials {outside[:5].tolist()}. Onsets must be in seconds from "
            "the first sample of this recording: check that the events belong to this file and "
            "are not in milliseconds or samples."
        )


def load_meeg(
    fname_or_raw: str | os.PathLike | mne.io.BaseRaw,
    *,
    events: Any = None,
    tmin: float = -0.5,
    tmax: float = 2.5,
    baseline: tuple[float | None, float | None] | None = (None, 0),
    l_freq: float | None = None,
    h_freq: float | None = None,
    sfreq: float | None = None,
    picks: Any = "data",
    epochs: bool = True,
    stimulus_column: str = "stimulus_id",
    subject: str = "01",
    session: str = "01",
    run: int = 1,
    reject_by_annotation: bool = False,
    verbose: bool | str | int | None = False,
) -> Recording:
    """Load an M/EEG recording as event-locked windows or as a continuous time series.

    Parameters
    ----------
    fname_or_raw : path-like | mne.io.BaseRaw
        A file that :func:`read_raw` reads, or a Raw (never changed: the work is done on a copy).
    events : None | DataFrame | path-like | ndarray, shape (n_events, 3)
        The events: ``None`` takes the Raw's annotations; otherwise a BIDS events table, the path
        of a ``*_events.tsv`` or an mne events array (see :func:`events_to_trials`). Onsets are
        in seconds from the first sample of the recording.
    tmin, tmax : float
        The window around each onset in seconds (``kind="epochs"``); both ends are included.
    baseline : (float | None, float | None) | None
        Interval in seconds whose mean is subtracted from each window and channel (``None`` for
        a window edge), as in :class:`mne.Epochs`; ``None`` for no baseline correction.
    l_freq, h_freq : float | None
        Band-pass edges in Hz, applied with :meth:`mne.io.Raw.filter` (zero-phase FIR, mne's
        defaults) before resampling; ``None`` leaves that side open.
    sfreq : float | None
        Resample to this frequency in Hz with :meth:`mne.io.Raw.resample` (after filtering).
    picks : str | list | slice | None
        Channels to keep, as mne understands them (``"data"``, ``"meg"``, ``"eeg"``, names…).
        Channels marked bad in ``info["bads"]`` are left out unless named explicitly.
    epochs : bool
        ``True`` for ``kind="epochs"``, ``False`` for ``kind="timeseries"``.
    stimulus_column : str
        Column of the events that names each stimulus (see :func:`events_to_trials`).
    subject, session : str
        Labels for the trial table (and ``Recording.subject``).
    run : int
        Run number for the trial table.
    reject_by_annotation : bool
        Drop windows that overlap a ``BAD_*`` annotation.
    verbose : bool | str | int | None
        mne's verbosity (``"error"`` silences it).

    Returns
    -------
    recording : Recording
        ``kind="epochs"``: ``data`` float32 ``(n_trials, n_channels, n_times)``, ``times``
        ``(n_times,)`` in seconds from the onset. ``kind="timeseries"``: ``data`` float32
        ``(n_times, n_channels)`` and a trial table listing the events. Both: ``ch_names``,
        ``sfreq`` (after resampling), ``info``, ``sensor_positions`` ``(n_channels, 3)`` in
        metres in head coordinates (``info["chs"][i]["loc"][:3]``, MEG sensors moved from
        device to head coordinates with ``info["dev_head_t"]``; NaN where unknown or zero),
        ``modality`` ``"meg"`` when a MEG channel is picked, else ``"eeg"``.

    Raises
    ------
    ValueError
        ``tmin >= tmax``, a baseline outside the window, onsets outside the recording, a missing
        ``stimulus_column``, or every window dropped.

    Warns
    -----
    BrainAlignWarning
        When windows run past either end of the recording (or overlap a ``BAD_*`` annotation
        with ``reject_by_annotation=True``): mne drops them, and their rows leave the trial
        table. Also when MEG positions stay in device coordinates for lack of
        ``info["dev_head_t"]``.

    Notes
    -----
    Onsets in seconds become samples of the (filtered, resampled) recording as
    ``sample = raw.first_samp + round(onset * sfreq)``: mne counts event samples from the start
    of the acquisition, ``raw.first_samp`` samples before the first sample kept in the file
    (non-zero for FIF files cropped at acquisition or by MaxFilter). Window ``i`` then holds the
    samples ``round(tmin * sfreq)`` to ``round(tmax * sfreq)`` around that sample, both
    included, as :class:`mne.Epochs` cuts them; onsets are not rounded in the trial table.
    Events sharing a sample share one window. SSP projectors in ``info`` are not applied.
    """
    import mne

    if epochs:
        _check_window(tmin, tmax, baseline)
    if sfreq is not None:
        check_positive("sfreq", sfreq)
    if isinstance(fname_or_raw, mne.io.BaseRaw):
        raw = fname_or_raw.copy()  # cheap for a Raw that is not preloaded
        first = raw.filenames[0] if raw.filenames else None
        source = Path(first) if first is not None else None
    elif isinstance(fname_or_raw, (str, os.PathLike)):
        source = Path(fname_or_raw)
        raw = read_raw(source, preload=False, verbose=verbose)
    else:
        raise TypeError(
            "'fname_or_raw' must be the path of an M/EEG recording or an mne Raw, got "
            f"{type(fname_or_raw).__name__}."
        )
    where = f" {str(source)!r}" if source is not None else ""
    # from here on, ``raw`` is our own copy: it may be changed in place

    kw = {"stimulus_column": stimulus_column, "subject": subject, "session": session, "run": run}
    trials = _events_for(raw, events, kw, where)
    _check_inside(trials, raw, where)

    sfreq_original = float(raw.info["sfreq"])
    raw.pick(picks, exclude="bads", verbose=verbose)
    if l_freq is not None or h_freq is not None or sfreq is not None:
        raw.load_data(verbose=verbose)  # mne.Epochs and get_data read unloaded files directly
    if l_freq is not None or h_freq is not None:
        raw.filter(l_freq, h_freq, verbose=verbose)
    if sfreq is not None and not np.isclose(sfreq, raw.info["sfreq"]):
        raw.resample(sfreq, verbose=verbose)

    positions, in_device = _sensor_positions(raw.info)
    if in_device:
        warnings.warn(
            f"The info of the recording{where} has no device-to-head transform "
            "(info['dev_head_t'] is None): MEG sensor positions are given in device "
            "coordinates instead of head coordinates.",
            BrainAlignWarning,
            stacklevel=2,
        )
    types = set(raw.get_channel_types())
    modality = "meg" if types & {"mag", "grad"} else "eeg"
    metadata: dict[str, Any] = {
        "sfreq_original": sfreq_original,
        "first_samp": int(raw.first_samp),
        "l_freq": l_freq,
        "h_freq": h_freq,
    }
    common: dict[str, Any] = {
        "modality": modality,
        "subject": str(subject),
        "ch_names": list(raw.ch_names),
        "sensor_positions": positions,
        "sfreq": float(raw.info["sfreq"]),
        "source": source,
    }

    if not epochs:
        data = np.ascontiguousarray(raw.get_data(verbose=verbose).T, dtype=np.float32)
        return Recording(
            data=data, trials=trials, kind="timeseries", info=raw.info, metadata=metadata, **common
        )

    if len(trials) == 0:
        raise ValueError(
            f"There are no events to cut windows around in the recording{where}. Pass "
            "events= (a BIDS events table or events.tsv path, or an mne events array), or use "
            "epochs=False for the continuous signal."
        )
    new_sfreq = float(raw.info["sfreq"])
    samples = raw.first_samp + np.rint(trials["onset"].to_numpy(dtype=float) * new_sfreq).astype(
        np.int64
    )
    unique, inverse = np.unique(samples, return_inverse=True)
    mne_events = np.column_stack([unique, np.zeros_like(unique), np.ones_like(unique)]).astype(
        np.int64
    )
    cut = mne.Epochs(
        raw,
        mne_events,
        event_id={"trial": 1},
        tmin=tmin,
        tmax=tmax,
        baseline=baseline,
        picks="all",
        preload=True,
        reject_by_annotation=reject_by_annotation,
        proj=False,
        verbose=verbose,
    )
    position = np.full(len(unique), -1)
    position[cut.selection] = np.arange(len(cut.selection))
    trial_position = position[np.ravel(inverse)]
    keep = trial_position >= 0
    if not keep.all():
        reasons: dict[str, int] = {}
        for u in np.ravel(inverse)[~keep]:
            for reason in cut.drop_log[u] or ("unknown",):
                reasons[reason] = reasons.get(reason, 0) + 1
        n_dropped = int((~keep).sum())
        if keep.any():
            warnings.warn(
                f"{n_dropped} of {len(trials)} trials were dropped from the recording{where} "
                f"and its trial table: their window [{tmin}, {tmax}] s runs past an end of the "
                "recording (mne's 'NO_DATA'/'TOO_SHORT') or overlaps a BAD annotation "
                f"(reasons: {reasons}).",
                BrainAlignWarning,
                stacklevel=2,
            )
        else:
            raise ValueError(
                f"All {len(trials)} windows [{tmin}, {tmax}] s were dropped from the "
                f"recording{where} (reasons: {reasons}): they run past an end of the "
                f"recording ({raw.n_times / new_sfreq:.6g} s) or overlap BAD annotations. "
                "Shorten the window (tmin, tmax) or pass reject_by_annotation=False."
            )
        metadata["n_dropped"] = n_dropped
        metadata["drop_reasons"] = reasons
    array = cut.get_data(copy=False)
    index = trial_position[keep]
    if index.size == array.shape[0] and np.array_equal(index, np.arange(index.size)):
        data = array.astype(np.float32)
    else:
        data = array[index].astype(np.float32)
    trials = trials[keep].reset_index(drop=True).rename_axis("trial")
    metadata.update(tmin=float(tmin), tmax=float(tmax), baseline=baseline)
    return Recording(
        data=data,
        trials=trials,
        kind="epochs",
        times=np.asarray(cut.times, dtype=float),
        info=cut.info,
        metadata=metadata,
        **common,
    )


# ----------------------------------------------------------------------------------------------
# BIDS
# ----------------------------------------------------------------------------------------------


def _strip(value: Any, prefix: str) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text[len(prefix) :] if text.startswith(prefix) else text


def _narrow(
    candidates: list[Any], entity: str, value: str | None, what: str, where: str
) -> list[Any]:
    if value is None:
        return candidates

    def same(found: str | None) -> bool:
        if found is None:
            return False
        if entity == "run" and found.isdigit() and value.isdigit():
            return int(found) == int(value)
        return found == value

    kept = [p for p in candidates if same(getattr(p, entity))]
    if not kept:
        available = sorted({str(getattr(p, entity)) for p in candidates if getattr(p, entity)})
        raise ValueError(
            f"There is no {what} {value!r} {where}. Available: {available or 'none'}."
            f"{suggest(value, available)} Pass one of them as {entity}=."
        )
    return kept


def load_bids(
    bids_root: str | os.PathLike,
    *,
    subject: str,
    task: str,
    session: str | None = None,
    run: int | str | None = None,
    datatype: str | None = None,
    **load_meeg_kwargs: Any,
) -> Recording:
    """Load one M/EEG recording of a BIDS dataset with its ``*_events.tsv``.

    The recording is read by :func:`mne_bids.read_raw_bids` (channel types, bad channels and
    electrode positions from the BIDS sidecars) and cut by :func:`load_meeg` around the events of
    its ``*_events.tsv``, with every column of that table (``word``, ``sound``, ``image``,
    ``stim_file``…) kept in the trial table.

    Parameters
    ----------
    bids_root : path-like
        The root folder of the BIDS dataset (it holds ``dataset_description.json``).
    subject, task : str
        Entity labels, without the ``sub-``/``task-`` prefix.
    session : str | None
        Session label; may be left out when the subject has a single session for this task.
    run : int | str | None
        Run index; may be left out when there is a single run.
    datatype : {"meg", "eeg", "ieeg"} | None
        Needed only when the recording exists in several datatypes.
    **load_meeg_kwargs
        Passed to :func:`load_meeg` (``tmin``, ``tmax``, ``sfreq``, ``stimulus_column``,
        ``epochs``…). ``events`` replaces the recording's events file.

    Returns
    -------
    recording : Recording
        As :func:`load_meeg`; ``source`` is the data file, ``metadata["bids_path"]`` its name and
        ``metadata["events_file"]`` the events file used (``None`` for the annotations).

    Raises
    ------
    FileNotFoundError
        ``bids_root`` is not a folder.
    ValueError
        The subject, task, session, run or datatype is absent (the message lists those present),
        or several recordings match.
    """
    import mne_bids

    root = Path(bids_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"The BIDS root given as 'bids_root' is not a folder: {str(root.resolve())!r}. "
            "Pass the folder that holds dataset_description.json and the sub-* folders."
        )
    subject = _strip(subject, "sub-") or ""
    task = _strip(task, "task-") or ""
    session = _strip(session, "ses-")
    run_label = _strip(run, "run-")
    subjects = sorted(mne_bids.get_entity_vals(root, "subject"))
    if subject not in subjects:
        raise ValueError(
            f"There is no subject {subject!r} in the BIDS dataset {str(root)!r}. Available "
            f"subjects: {subjects or 'none'}.{suggest(subject, subjects)} Pass one of them as "
            "subject= (without the 'sub-' prefix)."
        )
    candidates = [
        p
        for p in mne_bids.BIDSPath(root=root, subject=subject).match()
        if p.suffix in _BIDS_DATA_SUFFIXES and p.extension in _BIDS_DATA_EXTENSIONS
    ]
    where = f"for subject {subject!r} in the BIDS dataset {str(root)!r}"
    if not candidates:
        raise ValueError(
            f"There is no M/EEG recording {where} (no file with suffix "
            f"{list(_BIDS_DATA_SUFFIXES)} and a data extension). Check the dataset."
        )
    candidates = _narrow(candidates, "task", task, "task", where)
    where = f"for subject {subject!r}, task {task!r} in the BIDS dataset {str(root)!r}"
    candidates = _narrow(candidates, "session", session, "session", where)
    candidates = _narrow(candidates, "run", run_label, "run", where)
    candidates = _narrow(candidates, "datatype", datatype, "datatype", where)

    def key(p: Any) -> tuple:
        return (p.session, p.run, p.datatype, p.acquisition, p.processing, p.recording)

    recordings: dict[tuple, Any] = {}
    for p in sorted(candidates, key=lambda p: p.basename):
        recordings.setdefault(key(p), p)
    if len(recordings) > 1:
        names = sorted(p.basename for p in recordings.values())
        raise ValueError(
            f"{len(recordings)} recordings match {where}: {names}. Choose one with session=, "
            "run= or datatype=."
        )
    bids_path = next(iter(recordings.values()))
    fpath = Path(bids_path.fpath)
    raw = _call_reader(
        fpath,
        "BIDS " + (bids_path.datatype or "M/EEG"),
        lambda v: mne_bids.read_raw_bids(bids_path, verbose=v),
        load_meeg_kwargs.get("verbose", False),
    )
    events_file = None
    if "events" not in load_meeg_kwargs:
        events_path = Path(
            bids_path.copy().update(suffix="events", extension=".tsv", split=None).fpath
        )
        if events_path.is_file():
            events_file = events_path
            load_meeg_kwargs["events"] = read_bids_events(events_path)
        else:
            load_meeg_kwargs["events"] = None
    recording = load_meeg(
        raw,
        subject=subject,
        session=bids_path.session or "01",
        run=int(bids_path.run) if bids_path.run and str(bids_path.run).isdigit() else 1,
        **load_meeg_kwargs,
    )
    recording.source = fpath
    recording.metadata["bids_path"] = bids_path.basename
    recording.metadata["events_file"] = events_file
    return recording
