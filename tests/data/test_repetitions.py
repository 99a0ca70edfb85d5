"""Repetitions: averaging and splitting compared with naive pandas/NumPy references."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest

from brainalign._utils.errors import BrainAlignWarning
from brainalign.data.repetitions import (
    average_repetitions,
    handle_repetitions,
    split_repetitions,
)
from brainalign.io.recording import Recording, make_trial_table

N_STIMULI, N_REPS = 7, 3


def _trials(rng, n_reps=N_REPS, n_stimuli=N_STIMULI):
    ids = np.repeat([f"stim{i}" for i in range(n_stimuli)], n_reps)
    rng.shuffle(ids)
    n = len(ids)
    return make_trial_table(
        n,
        run=np.repeat(np.arange(1, 4), -(-n // 3))[:n],
        onset=np.arange(n) * 4.0,
        duration=3.0,
        condition=rng.integers(0, 5, size=n),
        stimulus_id=ids,
    )


@pytest.fixture
def recording(rng):
    """fMRI betas: 21 trials (7 stimuli × 3 repetitions, shuffled) × 9 voxels."""
    trials = _trials(rng)
    return Recording(rng.normal(size=(len(trials), 9)), trials, modality="fmri", kind="trials")


@pytest.fixture
def epochs(rng):
    """EEG epochs: 21 trials × 8 channels × 9 times, float32."""
    trials = _trials(rng)
    data = rng.normal(size=(len(trials), 8, 9)).astype(np.float32)
    return Recording(
        data,
        trials,
        modality="eeg",
        kind="epochs",
        ch_names=[f"E{i}" for i in range(8)],
        sfreq=100.0,
        times=np.arange(9) / 100.0,
    )


def _groupby_mean(recording, rows=None):
    """The naive reference: pandas groupby-mean over stimulus ids, in order of first appearance."""
    trials = recording.trials if rows is None else recording.trials[rows]
    data = recording.data if rows is None else recording.data[rows]
    frame = pd.DataFrame(data.reshape(len(data), -1).astype(np.float64))
    frame["stimulus_id"] = trials["stimulus_id"].to_numpy()
    mean = frame.groupby("stimulus_id", sort=False).mean()
    return mean.index.to_numpy(), mean.to_numpy().reshape((len(mean), *data.shape[1:]))


def _snapshot(recording):
    return recording.data.copy(), recording.trials.copy(), copy.deepcopy(recording.metadata)


def _assert_unchanged(recording, snapshot):
    data, trials, metadata = snapshot
    np.testing.assert_array_equal(recording.data, data)
    pd.testing.assert_frame_equal(recording.trials, trials)
    assert recording.metadata == metadata


def test_average_matches_pandas_groupby_mean(recording):
    recording.metadata["note"] = "kept"
    snapshot = _snapshot(recording)
    averaged = average_repetitions(recording)
    _assert_unchanged(recording, snapshot)
    ids, reference = _groupby_mean(recording)
    assert averaged.trials["stimulus_id"].tolist() == ids.tolist()
    np.testing.assert_allclose(averaged.data, reference, rtol=1e-12, atol=1e-12)
    assert averaged.data.dtype == np.float64
    assert averaged.n_trials == N_STIMULI
    assert averaged.metadata == {"note": "kept"}
    assert averaged.metadata is not recording.metadata


def test_average_trial_table(recording):
    averaged = average_repetitions(recording)
    table = averaged.trials
    original = recording.trials
    assert table.index.name == "trial"
    assert table.index.tolist() == list(range(N_STIMULI))
    assert table["n_repetitions"].tolist() == [N_REPS] * N_STIMULI
    assert table["repetition"].tolist() == [0] * N_STIMULI
    for _, row in table.iterrows():
        members = original.index[original["stimulus_id"] == row["stimulus_id"]].tolist()
        assert list(row["source_trials"]) == members
        first = original.loc[members[0]]
        # every other column comes from the first trial of the stimulus
        for column in ("subject", "session", "run", "onset", "duration", "condition"):
            assert row[column] == first[column]
    np.testing.assert_array_equal(
        averaged.data[2], recording.data[list(table["source_trials"].iloc[2])].mean(axis=0)
    )


def test_average_epochs_float32(epochs):
    snapshot = _snapshot(epochs)
    averaged = average_repetitions(epochs)
    _assert_unchanged(epochs, snapshot)
    assert averaged.kind == "epochs"
    assert averaged.data.shape == (N_STIMULI, 8, 9)
    assert averaged.data.dtype == np.float32
    ids, reference = _groupby_mean(epochs)
    assert averaged.trials["stimulus_id"].tolist() == ids.tolist()
    np.testing.assert_allclose(averaged.data, reference, rtol=1e-5, atol=1e-6)
    # channels and times are untouched
    assert averaged.ch_names == epochs.ch_names
    np.testing.assert_array_equal(averaged.times, epochs.times)


def test_average_unequal_repetitions_integers_and_other_groupings(rng):
    trials = make_trial_table(8, stimulus_id=list("abacbdaa"), run=[1, 1, 1, 1, 2, 2, 2, 2])
    data = rng.integers(-5, 5, size=(8, 9))
    recording = Recording(data, trials, modality="fmri", kind="trials")
    averaged = average_repetitions(recording)
    assert averaged.data.dtype == np.float64
    assert averaged.trials["stimulus_id"].tolist() == ["a", "b", "c", "d"]
    assert averaged.trials["n_repetitions"].tolist() == [4, 2, 1, 1]
    np.testing.assert_allclose(averaged.data[0], data[[0, 2, 6, 7]].mean(axis=0))
    # averaging within each run
    per_run = average_repetitions(recording, by=("stimulus_id", "run"))
    keys = list(zip(per_run.trials["stimulus_id"], per_run.trials["run"]))
    assert keys == [("a", 1), ("b", 1), ("c", 1), ("b", 2), ("d", 2), ("a", 2)]
    np.testing.assert_allclose(per_run.data[5], data[[6, 7]].mean(axis=0))
    np.testing.assert_allclose(average_repetitions(recording, by="stimulus_id").data, averaged.data)


def test_average_nan_policy(recording):
    data = recording.data.copy()
    first_a = np.flatnonzero(recording.trials["stimulus_id"] == "stim0")
    data[first_a[0], 3] = np.nan  # one repetition missing at voxel 3
    data[first_a, 5] = np.nan  # every repetition missing at voxel 5
    with_nan = Recording(data, recording.trials, modality="fmri", kind="trials")
    propagate = average_repetitions(with_nan)
    row = propagate.trials.index[propagate.trials["stimulus_id"] == "stim0"][0]
    np.testing.assert_array_equal(propagate.data[row], data[first_a].mean(axis=0))
    assert np.isnan(propagate.data[row, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice"
        skip = average_repetitions(with_nan, skipna=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = np.nanmean(data[first_a], axis=0)
    np.testing.assert_allclose(skip.data[row], reference)
    assert not np.isnan(skip.data[row, 3])
    assert np.isnan(skip.data[row, 5])
    others = np.ones(N_STIMULI, bool)
    others[row] = False
    np.testing.assert_allclose(skip.data[others], propagate.data[others])


def test_average_errors(recording):
    series = Recording(recording.data, recording.trials, modality="fmri", kind="timeseries")
    with pytest.raises(ValueError, match=r"kind 'trials' or 'epochs'.*'timeseries'"):
        average_repetitions(series)
    with pytest.raises(ValueError, match=r"'by' parameter.*no column \['image'\]"):
        average_repetitions(recording, by=("subject", "image"))
    with pytest.raises(TypeError, match="'recording' must be a brainalign Recording"):
        average_repetitions(recording.data)
    empty = recording.select(trials=np.zeros(recording.n_trials, bool))
    with pytest.raises(ValueError, match="without trials"):
        average_repetitions(empty)
    with pytest.raises(ValueError, match="without trials"):
        split_repetitions(empty, train_repetitions=1)


def test_split_train_on_two_repetitions_test_on_the_average_of_the_rest(recording):
    snapshot = _snapshot(recording)
    train, test = split_repetitions(recording, train_repetitions=2)
    _assert_unchanged(recording, snapshot)
    reps = recording.trials["repetition"].to_numpy()
    in_train = reps < 2
    # training trials: repetitions 0 and 1, kept one by one, in table order
    assert train.n_trials == 2 * N_STIMULI
    np.testing.assert_array_equal(train.data, recording.data[in_train])
    assert train.trials["repetition"].tolist() == reps[in_train].tolist()
    assert train.trials["onset"].tolist() == recording.trials["onset"][in_train].tolist()
    # test: the average of the held-out repetition(s) of each stimulus
    ids, reference = _groupby_mean(recording, ~in_train)
    assert test.trials["stimulus_id"].tolist() == ids.tolist()
    np.testing.assert_allclose(test.data, reference, rtol=1e-12)
    assert test.trials["n_repetitions"].tolist() == [1] * N_STIMULI
    # source_trials are positions in the input table, not in the held-out subset
    for sid, (pos,) in zip(test.trials["stimulus_id"], test.trials["source_trials"]):
        assert recording.trials["stimulus_id"].iloc[pos] == sid
        assert recording.trials["repetition"].iloc[pos] == 2
    assert set(train.trials["stimulus_id"]) == set(test.trials["stimulus_id"])


def test_split_explicit_repetitions_and_options(rng):
    trials = _trials(rng, n_reps=4)
    recording = Recording(rng.normal(size=(len(trials), 9)), trials, modality="meg", kind="trials")
    reps = trials["repetition"].to_numpy()
    train, test = split_repetitions(recording, train_repetitions=[0, 2], train="average")
    ids, reference = _groupby_mean(recording, np.isin(reps, [0, 2]))
    assert train.trials["stimulus_id"].tolist() == ids.tolist()
    np.testing.assert_allclose(train.data, reference)
    ids, reference = _groupby_mean(recording, np.isin(reps, [1, 3]))
    np.testing.assert_allclose(test.data, reference)
    assert test.trials["n_repetitions"].tolist() == [2] * N_STIMULI
    train, kept = split_repetitions(recording, train_repetitions=[3], test="keep")
    np.testing.assert_array_equal(kept.data, recording.data[reps != 3])
    np.testing.assert_array_equal(train.data, recording.data[reps == 3])


def test_split_epochs(epochs):
    train, test = split_repetitions(epochs, train_repetitions=1)
    reps = epochs.trials["repetition"].to_numpy()
    np.testing.assert_array_equal(train.data, epochs.data[reps == 0])
    _, reference = _groupby_mean(epochs, reps > 0)
    assert test.data.shape == (N_STIMULI, 8, 9)
    np.testing.assert_allclose(test.data, reference, rtol=1e-5, atol=1e-6)


def test_split_with_too_few_repetitions(recording):
    # drop the third repetition of two stimuli: they have nothing left to test on
    short = recording.trials["stimulus_id"].isin(["stim1", "stim4"]) & (
        recording.trials["repetition"] == 2
    )
    partial = recording.select(trials=~short.to_numpy())
    with pytest.raises(ValueError, match=r"2 of 7 stimuli cannot be split") as info:
        split_repetitions(partial, train_repetitions=2)
    message = str(info.value)
    assert "subject='01', stimulus_id='stim1': repetitions [0, 1]" in message
    assert "stimulus_id='stim4'" in message
    assert "stim0" not in message
    assert "missing='drop'" in message
    with pytest.warns(BrainAlignWarning, match=r"dropped 2 of 7 stimuli"):
        train, test = split_repetitions(partial, train_repetitions=2, missing="drop")
    assert set(test.trials["stimulus_id"]) == {f"stim{i}" for i in (0, 2, 3, 5, 6)}
    assert set(train.trials["stimulus_id"]) == set(test.trials["stimulus_id"])
    assert train.n_trials == 10
    # asking for a repetition that does not exist
    with pytest.raises(ValueError, match=r"7 of 7 stimuli.*training repetitions \[5\]"):
        split_repetitions(recording, train_repetitions=[5])
    with pytest.raises(ValueError, match="no stimulus left to split"):
        split_repetitions(recording, train_repetitions=[5], missing="drop")


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, ValueError, "at least 1"),
        ([0, 0], ValueError, "distinct non-negative"),
        ([-1], ValueError, "distinct non-negative"),
        ("01", TypeError, "an int .* or a sequence"),
        (True, TypeError, "an int .* or a sequence"),
        (1.5, TypeError, "an int .* or a sequence"),
    ],
)
def test_split_bad_train_repetitions(recording, value, error, match):
    with pytest.raises(error, match=match):
        split_repetitions(recording, train_repetitions=value)


def test_split_bad_options(recording):
    with pytest.raises(ValueError, match=r"'test' parameter.*'average', 'keep'.*'mean'"):
        split_repetitions(recording, train_repetitions=1, test="mean")
    with pytest.raises(ValueError, match=r"'missing' parameter.*'raise', 'drop'"):
        split_repetitions(recording, train_repetitions=1, missing="ignore")


def test_handle_repetitions_dispatches(recording):
    snapshot = _snapshot(recording)
    kept = handle_repetitions(recording)
    assert kept is not recording
    assert kept.trials is not recording.trials
    np.testing.assert_array_equal(kept.data, recording.data)
    pd.testing.assert_frame_equal(kept.trials, recording.trials)
    averaged = handle_repetitions(recording, "average", skipna=True)
    np.testing.assert_array_equal(averaged.data, average_repetitions(recording).data)
    train, test = handle_repetitions(recording, mode="split", train_repetitions=2)
    reference = split_repetitions(recording, train_repetitions=2)
    np.testing.assert_array_equal(train.data, reference[0].data)
    np.testing.assert_array_equal(test.data, reference[1].data)
    _assert_unchanged(recording, snapshot)
    with pytest.raises(ValueError, match=r"'mode' parameter.*Did you mean 'average'"):
        handle_repetitions(recording, mode="averge")
    with pytest.raises(TypeError, match=r"mode='keep'\) takes no options.*'skipna'"):
        handle_repetitions(recording, skipna=True)
    with pytest.raises(TypeError, match="train_repetitions"):
        handle_repetitions(recording, mode="split")
