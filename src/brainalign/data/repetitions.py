"""Repeated presentations of a stimulus: keep them, average them, or split them.

NSD shows each image up to 3 times, THINGS-EEG 4 (training) or 80 (test) times. Analyses either
keep every trial, average the repetitions of each stimulus (higher SNR, one response per
stimulus), or train on some repetitions and test on the average of the others. All three go
through :func:`handle_repetitions`; none changes the Recording it is given.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._utils.errors import BrainAlignWarning
from .._utils.validation import check_option, check_type
from ..io.recording import Recording

__all__ = ["average_repetitions", "handle_repetitions", "split_repetitions"]

#: What :func:`handle_repetitions` can do.
REPETITION_MODES = ("keep", "average", "split")

_N_LISTED = 20


def _check_trial_kind(recording: Recording, func: str) -> None:
    check_type("recording", recording, Recording, "a brainalign Recording")
    if recording.kind == "timeseries":
        raise ValueError(
            f"{func} needs a Recording of kind 'trials' or 'epochs' (one response per trial); "
            "this one is a 'timeseries'. Estimate trial responses (betas) or cut epochs first."
        )


def _check_by(trials: pd.DataFrame, by: str | Sequence[str]) -> list[str]:
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise ValueError("'by' must name at least one trial-table column, e.g. 'stimulus_id'.")
    missing = [c for c in by if c not in trials.columns]
    if missing:
        raise ValueError(
            f"Invalid value for the 'by' parameter: the trial table has no column {missing} (it "
            f"has {list(trials.columns)}). Group by columns of the trial table, e.g. "
            "('subject', 'stimulus_id')."
        )
    return by


def _group_codes(trials: pd.DataFrame, by: list[str]) -> np.ndarray:
    """Group number of each row, groups numbered in order of first appearance."""
    return trials.groupby(by, sort=False, dropna=False).ngroup().to_numpy(dtype=np.int64)


def _average(recording: Recording, by: list[str], skipna: bool, positions: np.ndarray) -> Recording:
    """Average ``recording``'s trials per group of ``by``; ``positions`` label its rows."""
    data = np.asarray(recording.data)
    trials = recording.trials
    codes = _group_codes(trials, by)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    counts = np.bincount(codes, minlength=n_groups)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - starts[codes[order]]

    dtype = np.result_type(data.dtype, np.float32)
    total = np.zeros((n_groups, *data.shape[1:]), dtype=dtype)
    n_valid = np.zeros(total.shape, dtype=np.int64) if skipna else None
    # the k-th trial of every group at once: each group appears at most once per pass
    for k in range(int(counts.max()) if n_groups else 0):
        rows = np.flatnonzero(rank == k)
        values = data[rows].astype(dtype, copy=False)
        if n_valid is not None:
            valid = ~np.isnan(values)
            n_valid[codes[rows]] += valid
            values = np.where(valid, values, 0)
        total[codes[rows]] += values
    if n_valid is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_valid > 0, total / np.maximum(n_valid, 1), np.nan).astype(dtype)
    else:
        mean = total / counts.reshape((-1,) + (1,) * (data.ndim - 1)).astype(dtype)

    first = order[starts]
    table = trials.iloc[first].reset_index(drop=True).rename_axis("trial")
    table["repetition"] = 0
    table["n_repetitions"] = counts.astype(np.int64)
    members = np.split(positions[order], np.cumsum(counts)[:-1]) if n_groups else []
    table["source_trials"] = pd.Series([tuple(int(i) for i in m) for m in members], dtype=object)
    return dataclasses.replace(
        recording, data=mean, trials=table, metadata=dict(recording.metadata)
    )


def average_repetitions(
    recording: Recording,
    *,
    by: str | Sequence[str] = ("subject", "stimulus_id"),
    skipna: bool = False,
) -> Recording:
    """Average the repeated trials of each stimulus.

    Parameters
    ----------
    recording : Recording
        Of kind ``"trials"`` (``data`` ``(n_trials, n_features)``) or ``"epochs"``
        (``(n_trials, n_channels, n_times)``). It is not modified.
    by : str | sequence of str
        Trial-table columns whose equal values make one group (one averaged trial).
    skipna : bool
        ``False``: a NaN in any repetition makes the average NaN at that voxel/sample (as
        :func:`numpy.mean`). ``True``: NaNs are left out of each mean (as :func:`numpy.nanmean`);
        where every repetition is NaN the average is NaN, without a warning.

    Returns
    -------
    averaged : Recording
        ``data`` of shape ``(n_stimuli, ...)`` with the mean over repetitions (float32 stays
        float32; integers become float64). The trial table has one row per group, in the order
        of each group's first trial. Every column (``run``, ``session``, ``onset``,
        ``duration``, extra columns) takes the value of the group's first trial, except
        ``repetition``, which is 0 (each stimulus now has a single trial), and two new columns:
        ``n_repetitions`` (how many trials were averaged) and ``source_trials`` (tuple of their
        0-based row positions in the input trial table, in table order; use it to recover each
        repetition's run or onset). Everything else (mask, channels, times…) is unchanged.

    Raises
    ------
    ValueError
        For a ``"timeseries"`` Recording, or ``by`` naming a column the trial table lacks.
    """
    _check_trial_kind(recording, "average_repetitions")
    by = _check_by(recording.trials, by)
    if recording.n_trials == 0:
        raise ValueError("average_repetitions got a Recording without trials; nothing to average.")
    return _average(recording, by, bool(skipna), np.arange(recording.n_trials))


def _train_set(train_repetitions: Any) -> list[int]:
    if isinstance(train_repetitions, bool | str) or not isinstance(
        train_repetitions, int | np.integer | Sequence | set | frozenset | np.ndarray
    ):
        raise TypeError(
            "'train_repetitions' must be an int (train on repetitions 0 … n-1) or a sequence of "
            f"repetition numbers, got {type(train_repetitions).__name__} {train_repetitions!r}."
        )
    if isinstance(train_repetitions, int | np.integer):
        if train_repetitions < 1:
            raise ValueError(
                f"'train_repetitions' must be at least 1 (the number of repetitions of each "
                f"stimulus to train on), got {train_repetitions}."
            )
        return list(range(int(train_repetitions)))
    reps = [int(r) for r in train_repetitions]
    if not reps or min(reps) < 0 or len(set(reps)) != len(reps):
        raise ValueError(
            "'train_repetitions' must list distinct non-negative repetition numbers (0-based, "
            f"as in the trial table's 'repetition' column), got {list(train_repetitions)!r}."
        )
    return sorted(reps)


def split_repetitions(
    recording: Recording,
    *,
    train_repetitions: int | Sequence[int],
    test: str = "average",
    train: str = "keep",
    by: str | Sequence[str] = ("subject", "stimulus_id"),
    missing: str = "raise",
    skipna: bool = False,
) -> tuple[Recording, Recording]:
    """Train on some repetitions of each stimulus, test on the others (usually averaged).

    Parameters
    ----------
    recording : Recording
        Of kind ``"trials"`` or ``"epochs"``; its trial table's ``repetition`` column (0-based,
        see :func:`~brainalign.io.make_trial_table`) says which repetition each trial is. It is
        not modified.
    train_repetitions : int | sequence of int
        An int ``n``: the repetitions ``0 … n-1`` of each stimulus go to the training set. A
        sequence: those repetition numbers (e.g. ``[0, 2]``). Every other repetition is held out
        for testing.
    test : {"average", "keep"}
        The held-out repetitions of each stimulus averaged into one test trial, or kept as
        separate trials.
    train : {"keep", "average"}
        The training repetitions kept as separate trials, or averaged per stimulus.
    by : str | sequence of str
        Trial-table columns that identify a stimulus (see :func:`average_repetitions`).
    missing : {"raise", "drop"}
        What to do with stimuli that lack one of the training repetitions or have no held-out
        repetition: a ``ValueError`` listing them, or drop them (with a ``BrainAlignWarning``
        saying how many).
    skipna : bool
        Passed to the averaging (see :func:`average_repetitions`).

    Returns
    -------
    train_recording, test_recording : Recording
        Trials of the training and test sets, each in the order of the input trial table
        (averaged trials in the order of each stimulus's first trial; their ``source_trials``
        are positions in the input trial table).

    Raises
    ------
    ValueError
        Stimuli lack the requested repetitions (``missing="raise"``): the message says how many
        and lists which (the first 20) with the repetitions they have.
    """
    _check_trial_kind(recording, "split_repetitions")
    check_option("test", test, ("average", "keep"))
    check_option("train", train, ("keep", "average"))
    check_option("missing", missing, ("raise", "drop"))
    by = _check_by(recording.trials, by)
    train_reps = _train_set(train_repetitions)

    trials = recording.trials
    if recording.n_trials == 0:
        raise ValueError("split_repetitions got a Recording without trials; nothing to split.")
    codes = _group_codes(trials, by)
    n_groups = int(codes.max()) + 1
    repetition = pd.to_numeric(trials["repetition"], errors="coerce").to_numpy(dtype=float)
    is_train = np.isin(repetition, train_reps)
    per_group = pd.DataFrame({"code": codes, "repetition": repetition, "is_train": is_train})
    n_train = per_group[is_train].groupby("code")["repetition"].nunique().reindex(range(n_groups))
    n_held = per_group[~is_train].groupby("code").size().reindex(range(n_groups))
    bad = (n_train.fillna(0).to_numpy() < len(train_reps)) | (n_held.fillna(0).to_numpy() == 0)
    if bad.any():
        n_bad = int(bad.sum())
        if missing == "raise":
            lines = []
            for g in np.flatnonzero(bad)[:_N_LISTED]:
                rows = np.flatnonzero(codes == g)
                key = ", ".join(f"{c}={trials[c].iloc[rows[0]]!r}" for c in by)
                have = sorted({int(r) if r == r else r for r in repetition[rows]})
                lines.append(f"  {key}: repetitions {have}")
            more = f"\n  … and {n_bad - _N_LISTED} more" if n_bad > _N_LISTED else ""
            raise ValueError(
                f"{n_bad} of {n_groups} stimuli cannot be split into the training repetitions "
                f"{train_reps} and at least one held-out repetition:\n"
                + "\n".join(lines)
                + more
                + "\nRequest fewer training repetitions, select the stimuli that have enough "
                "repetitions first (Recording.select), or pass missing='drop' to drop them."
            )
        if bad.all():
            raise ValueError(
                f"split_repetitions has no stimulus left to split: none of the {n_groups} "
                f"stimuli has the training repetitions {train_reps} and a held-out one; check "
                "'train_repetitions' against the trial table's 'repetition' column."
            )
        warnings.warn(
            f"split_repetitions dropped {n_bad} of {n_groups} stimuli that lack one of the "
            f"training repetitions {train_reps} or have no held-out repetition.",
            BrainAlignWarning,
            stacklevel=2,
        )
    keep = ~bad[codes]
    positions = np.arange(recording.n_trials)
    train_rows = keep & is_train
    test_rows = keep & ~is_train

    def part(rows: np.ndarray, how: str) -> Recording:
        subset = recording.select(trials=rows)
        if how == "average":
            return _average(subset, by, bool(skipna), positions[rows])
        return subset

    return part(train_rows, train), part(test_rows, test)


def handle_repetitions(
    recording: Recording, mode: str = "keep", **kwargs: Any
) -> Recording | tuple[Recording, Recording]:
    """Keep, average or split the repeated trials of each stimulus.

    Parameters
    ----------
    recording : Recording
        Of kind ``"trials"`` or ``"epochs"`` (any kind for ``"keep"``). It is not modified.
    mode : {"keep", "average", "split"}
        ``"keep"``: every trial as it is; ``"average"``: :func:`average_repetitions`;
        ``"split"``: :func:`split_repetitions`.
    **kwargs
        Options of the function ``mode`` calls (none for ``"keep"``).

    Returns
    -------
    result : Recording | tuple of Recording
        A new Recording (``"keep"``: sharing the data array, with a copy of the trial table;
        ``"average"``), or ``(train_recording, test_recording)`` for ``"split"``.
    """
    check_option("mode", mode, REPETITION_MODES)
    if mode == "average":
        return average_repetitions(recording, **kwargs)
    if mode == "split":
        return split_repetitions(recording, **kwargs)
    check_type("recording", recording, Recording, "a brainalign Recording")
    if kwargs:
        raise TypeError(
            f"handle_repetitions(mode='keep') takes no options, got {sorted(kwargs)}; they "
            "belong to mode='average' or mode='split'."
        )
    return dataclasses.replace(
        recording, trials=recording.trials.copy(), metadata=dict(recording.metadata)
    )
