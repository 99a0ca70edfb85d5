"""Experiment-design and events tables, normalised into the standard trial columns.

Every fMRI reader turns its design table (one row per trial of beta maps) or its BIDS-style
events (one row per event of a time series) into the trial table of
:func:`~brainalign.io.recording.make_trial_table` with the helpers here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from brainalign._utils.errors import BrainAlignWarning, CorruptFileError
from brainalign._utils.validation import check_file
from brainalign.io.recording import make_trial_table

__all__ = ["read_design_table"]

#: Column names accepted for each standard trial-table column, by priority (case-insensitive).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "subject": ("subject", "sub", "subject_id", "participant_id"),
    "session": ("session", "ses", "session_id"),
    "run": ("run", "run_id"),
    "onset": ("onset",),
    "duration": ("duration",),
    "stimulus_id": (
        "stimulus_id",
        "stimulus",
        "stim_id",
        "73kid",
        "nsd_id",
        "nsdid",
        "image_id",
        "stim_file",
        "trial_type",
    ),
    "repetition": ("repetition", "rep"),
    "trial_id": ("trial_id", "trial"),
}


def read_table(obj: Any, name: str) -> tuple[pd.DataFrame, str]:
    """A deep copy of a DataFrame, or a CSV/TSV file read with pandas (``n/a`` → NaN).

    Returns the table and a description of where it came from, for messages.
    """
    if isinstance(obj, pd.DataFrame):
        return obj.copy(deep=True), f"(the DataFrame given as {name!r})"
    if not isinstance(obj, str | os.PathLike):
        raise TypeError(
            f"{name!r} must be a CSV/TSV path or a pandas DataFrame, got {type(obj).__name__}."
        )
    path = check_file(obj, name, what="table")
    sep = {".tsv": "\t", ".csv": ","}.get(path.suffix.lower())
    try:
        table = pd.read_csv(path, sep=sep, engine="c" if sep else "python")
    except pd.errors.EmptyDataError as err:
        raise ValueError(
            f"{name!r} ({str(path)!r}) is empty; it needs a header row and one row per trial."
        ) from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CorruptFileError(
            f"{name!r} ({str(path)!r}) cannot be read as a CSV/TSV table: {err}. Check that it "
            "is a text table with one header row (.tsv files are tab-separated)."
        ) from err
    return table, repr(str(path))


def labels(values: Any, prefix: str) -> np.ndarray:
    """Subject/session labels as strings: ``1`` → ``"01"``, ``"sub-03"`` → ``"03"``."""
    out = []
    for v in np.atleast_1d(np.asarray(values, dtype=object)):
        if isinstance(v, int | np.integer) or (
            isinstance(v, float | np.floating) and np.isfinite(v) and float(v).is_integer()
        ):
            out.append(f"{int(v):02d}")
        else:
            out.append(str(v).removeprefix(prefix))
    return np.asarray(out, dtype=object)


def label(value: Any, prefix: str) -> str:
    """One subject/session label as a string without its BIDS prefix."""
    return str(labels([value], prefix)[0])


def stimulus_ids(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Stimulus ids as strings (integral floats → ``"46003"``) and a mask of missing ones."""
    values = np.asarray(values, dtype=object)
    missing = np.asarray(pd.isna(values), bool)
    out = np.empty(values.shape, dtype=object)
    for i, v in enumerate(values):
        if missing[i]:
            out[i] = ""
        elif isinstance(v, float | np.floating) and float(v).is_integer():
            out[i] = str(int(v))
        else:
            out[i] = str(v)
    return out, missing


def normalize_columns(raw: pd.DataFrame) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Split a table into standard columns (found through :data:`_SYNONYMS`) and the rest.

    The source column of each standard column is consumed; the other columns are returned
    unchanged, renamed ``<name>_orig`` if they clash with a standard name.
    """
    lower: dict[str, Any] = {}
    for col in raw.columns:
        lower.setdefault(str(col).strip().lower(), col)
    std: dict[str, np.ndarray] = {}
    used: list = []
    for key, candidates in _SYNONYMS.items():
        for cand in candidates:
            if cand in lower and lower[cand] not in used:
                std[key] = raw[lower[cand]].to_numpy(copy=True)
                used.append(lower[cand])
                break
    extra = raw[[c for c in raw.columns if c not in used]].reset_index(drop=True)
    clash = {*std, *_SYNONYMS, "trial"}
    extra.columns = [f"{c}_orig" if c in clash else c for c in extra.columns]
    return std, extra


def complete_trials(
    std: Mapping[str, np.ndarray],
    extra: pd.DataFrame | None,
    n_rows: int,
    *,
    subject: str,
    session: str,
    where: str,
) -> pd.DataFrame:
    """Build the trial table (:func:`make_trial_table`) from normalised columns and defaults."""
    stim = None
    if "stimulus_id" in std:
        stim, missing = stimulus_ids(std["stimulus_id"])
        if missing.any():
            raise ValueError(
                f"The table {where} has no stimulus id in rows "
                f"{np.flatnonzero(missing)[:10].tolist()}; fill them in or drop those rows."
            )
    sessions: Any = labels(std["session"], "ses-") if "session" in std else session
    table = make_trial_table(
        n_rows,
        subject=subject,
        session=sessions,
        run=std.get("run", 1),
        onset=np.asarray(std.get("onset", np.nan), dtype=float),
        duration=np.asarray(std.get("duration", np.nan), dtype=float),
        stimulus_id=stim,
        repetition=std.get("repetition"),
    )
    if "trial_id" in std:
        table["trial_id"] = std["trial_id"]
    if extra is not None:
        for col in extra.columns:
            table[col] = extra[col].to_numpy()
    return table


def _check_rows(
    std: Mapping[str, np.ndarray], n_found: int, n_trials: int | None, where: str, *, public=False
) -> None:
    """Duplicated trial ids and the row count."""
    if "trial_id" in std:
        scope = [k for k in ("subject", "session", "run") if k in std]
        keys = pd.DataFrame({k: std[k] for k in (*scope, "trial_id")})
        dup = keys.duplicated(keep=False).to_numpy()
        if dup.any():
            ids = sorted({str(v) for v in keys.loc[dup, "trial_id"]})
            within = f" within the same {'/'.join(scope)}" if scope else ""
            raise ValueError(
                f"The design table {where} has duplicated trial ids{within}: {ids[:20]}"
                f"{' …' if len(ids) > 20 else ''} ({int(dup.sum())} rows). Each trial must "
                "appear once: remove the repeated rows, or add the 'session'/'run' column that "
                "tells them apart."
            )
    if n_trials is not None and n_found != n_trials:
        found = f"n_trials={n_trials}" if public else f"the betas have {n_trials} trials"
        raise ValueError(
            f"The design table {where} has {n_found} rows but {found}; "
            "it needs one row per trial, in the order of the betas. Select the rows of these "
            "betas (e.g. one session) or check that the two files belong together."
        )


def design_trials(
    design: Any, n_trials: int | None, *, subject: str, session: str, name: str = "design"
) -> tuple[pd.DataFrame, str, set[str]]:
    """Read, check and normalise a design table for beta maps.

    Returns the trial table, where it came from (for messages) and the standard columns the
    design had (before defaults were filled in). ``subject`` fills the subject column (a
    design ``subject`` column must hold only that subject); ``session`` is the default for a
    design without a session column.
    """
    raw, where = read_table(design, name)
    std, extra = normalize_columns(raw)
    _check_rows(std, len(raw), n_trials, where)
    if "subject" in std:
        found = sorted(set(labels(std["subject"], "sub-")))
        if found != [subject]:
            raise ValueError(
                f"The design table {where} lists subjects {found} but subject={subject!r}; "
                "select the rows of this subject, or pass the right 'subject'."
            )
    table = complete_trials(std, extra, len(raw), subject=subject, session=session, where=where)
    return table, where, set(std)


def read_design_table(path_or_df: Any, n_trials: int | None = None) -> pd.DataFrame:
    """Read an experiment-design table and normalise it into the standard trial columns.

    Column names are matched case-insensitively: ``stimulus_id`` from ``stimulus_id``,
    ``stimulus``, ``stim_id``, ``73KID``, ``nsd_id``, ``image_id``, ``stim_file`` or
    ``trial_type`` (the first found; ids are kept as given, e.g. NSD's 1-based 73KID);
    ``subject`` from ``subject``/``sub``/``participant_id``; ``session`` from
    ``session``/``ses``; ``run``, ``onset`` (s), ``duration`` (s), ``repetition``; and
    ``trial_id`` from ``trial_id`` or ``trial``. Missing standard columns get the defaults of
    :func:`~brainalign.io.make_trial_table` (subject and session ``"01"``, run 1, NaN onsets,
    repetitions counted per stimulus). Numeric subject/session labels become two-digit strings
    (``1`` → ``"01"``, prefixes ``sub-``/``ses-`` are removed) and numeric stimulus ids are
    written without a decimal point. Other columns follow unchanged (renamed ``<name>_orig``
    when they clash with a standard name).

    Parameters
    ----------
    path_or_df : str | path-like | DataFrame
        A CSV or TSV file (``.csv``/``.tsv``; other suffixes are sniffed), or a DataFrame
        (copied, never changed).
    n_trials : int | None
        When given, the number of rows the table must have (one per trial of the betas).

    Returns
    -------
    table : DataFrame, shape (n_trials, n_columns)
        The columns of :data:`~brainalign.io.TRIAL_COLUMNS`, then ``trial_id`` (when the table
        has one), then the other columns; index ``trial`` (0-based row position).

    Raises
    ------
    ValueError
        When trial ids repeat within the same subject/session/run (trial numbers may restart
        in each run, as in NSD's ``responses.tsv``; the message lists the repeated ids), when
        the row count differs from ``n_trials``, or when stimulus ids are missing.
    """
    raw, where = read_table(path_or_df, "path_or_df")
    std, extra = normalize_columns(raw)
    _check_rows(std, len(raw), n_trials, where, public=True)
    table = complete_trials(std, extra, len(raw), subject="01", session="01", where=where)
    if "subject" in std:
        table["subject"] = labels(std["subject"], "sub-")
        table["repetition"] = (
            std["repetition"]
            if "repetition" in std
            else table.groupby(["subject", "stimulus_id"]).cumcount().to_numpy()
        )
    return table


def events_trials(events: Any, n_runs: int, *, subject: str, session: str) -> pd.DataFrame:
    """The trial table of BIDS-style events tables, one per run (onsets in s from run start).

    ``events`` is one table per run (list), or one table with a 1-based ``run`` column.
    Events without a stimulus (``n/a``) are dropped with a warning; repetitions are counted per
    stimulus across runs.
    """
    if events is None:
        return make_trial_table(0, subject=subject, session=session)
    tables = list(events) if isinstance(events, list | tuple) else [events]
    if len(tables) == 1 and n_runs > 1:
        raw, where = read_table(tables[0], "events")
        std, _ = normalize_columns(raw)
        if "run" not in std:
            raise ValueError(
                f"One events table {where} was given for {n_runs} runs, but it has no 'run' "
                f"column; add one (values 1..{n_runs}) or pass a list of one table per run."
            )
        runs = pd.to_numeric(pd.Series(std["run"]), errors="coerce").to_numpy()
        if not np.isin(runs, np.arange(1, n_runs + 1)).all():
            raise ValueError(
                f"The 'run' column of the events {where} must hold 1..{n_runs} (one value per "
                f"run of 'func'), got {sorted({str(r) for r in std['run']})[:10]}."
            )
        per_run = [(raw[runs == r], where) for r in range(1, n_runs + 1)]
    elif len(tables) != n_runs:
        raise ValueError(
            f"'events' has {len(tables)} tables but 'func' has {n_runs} runs; pass one events "
            "table per run, in the same order."
        )
    else:
        per_run = [read_table(t, f"events[{i}]") for i, t in enumerate(tables)]
    parts, n_missing, given_repetition = [], 0, True
    for run, (raw, where) in enumerate(per_run, start=1):
        std, extra = normalize_columns(raw)
        given_repetition &= "repetition" in std
        lacking = [c for c in ("onset", "stimulus_id") if c not in std]
        if lacking:
            raise ValueError(
                f"The events table {where} lacks {lacking}; it has the columns "
                f"{[str(c) for c in raw.columns]}. It needs 'onset' (s) and a stimulus column "
                "('stimulus_id', 'stim_file' or 'trial_type'), as BIDS events.tsv files do."
            )
        onset = pd.to_numeric(pd.Series(std["onset"]), errors="coerce").to_numpy(float)
        if not np.isfinite(onset).all():
            raise ValueError(
                f"The events table {where} has missing or non-numeric onsets in rows "
                f"{np.flatnonzero(~np.isfinite(onset))[:10].tolist()}; fix or drop those rows."
            )
        std["onset"], std["run"] = onset, np.full(len(raw), run)
        keep = ~stimulus_ids(std["stimulus_id"])[1]
        n_missing += int((~keep).sum())
        std = {k: v[keep] for k, v in std.items()}
        extra = extra[keep].reset_index(drop=True)
        parts.append(
            complete_trials(
                std, extra, int(keep.sum()), subject=subject, session=session, where=where
            )
        )
    if n_missing:
        warnings.warn(
            f"Dropped {n_missing} events without a stimulus (n/a) from the events tables.",
            BrainAlignWarning,
            stacklevel=3,
        )
    table = pd.concat(parts, ignore_index=True).rename_axis("trial")
    if not given_repetition:
        table["repetition"] = table.groupby(["subject", "stimulus_id"]).cumcount()
    return table
