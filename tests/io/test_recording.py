"""The Recording container and trial tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainalign.io.recording import TRIAL_COLUMNS, Recording, make_trial_table


@pytest.fixture
def recording(rng):
    trials = make_trial_table(9, stimulus_id=["a", "b", "c"] * 3, run=np.repeat([1, 2, 3], 3))
    mask = np.zeros((7, 8, 9), bool)
    mask.flat[[3, 50, 100, 200, 300, 400, 500]] = True
    return Recording(
        data=rng.normal(size=(9, 7)),
        trials=trials,
        modality="fmri",
        kind="trials",
        mask=mask,
        voxel_coords=np.argwhere(mask).astype(float),
        roi_labels=np.array(["V1"] * 3 + ["FFA"] * 4),
    )


def test_trial_table_columns_and_repetitions():
    table = make_trial_table(6, stimulus_id=[1, 2, 1, 3, 1, 2])
    assert tuple(table.columns[: len(TRIAL_COLUMNS)]) == TRIAL_COLUMNS
    assert table["repetition"].tolist() == [0, 0, 1, 0, 2, 1]
    assert table["stimulus_id"].tolist() == ["1", "2", "1", "3", "1", "2"]


def test_select_trials_and_features_is_consistent(recording):
    sub = recording.select(trials=recording.trials["run"] == 2, features=[1, 4, 6])
    np.testing.assert_array_equal(sub.data, recording.data[3:6][:, [1, 4, 6]])
    assert sub.trials["run"].tolist() == [2, 2, 2]
    assert sub.roi_labels.tolist() == ["V1", "FFA", "FFA"]
    # the mask keeps exactly the selected voxels, in C order
    np.testing.assert_array_equal(np.argwhere(sub.mask), recording.voxel_coords[[1, 4, 6]])
    # the original is untouched
    assert recording.data.shape == (9, 7)
    assert recording.mask.sum() == 7


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"modality": "pet"}, "'modality' parameter"),
        ({"kind": "epochs"}, "must have 3 dimensions"),
        ({"trials": make_trial_table(8)}, "8 rows but the data have 9 trials"),
        ({"roi_labels": np.array(["x"] * 6)}, "'roi_labels' has 6 rows"),
        ({"trials": pd.DataFrame({"onset": np.zeros(9)})}, "lacks the columns"),
    ],
)
def test_bad_recordings_are_explained(recording, change, match):
    fields = {
        "data": recording.data,
        "trials": recording.trials,
        "modality": "fmri",
        "kind": "trials",
        "roi_labels": recording.roi_labels,
    }
    fields.update(change)
    with pytest.raises(ValueError, match=match):
        Recording(**fields)


def test_repr(recording):
    assert repr(recording) == "<Recording fmri sub-01 trials 9×7, 9 trials, 3 stimuli>"
