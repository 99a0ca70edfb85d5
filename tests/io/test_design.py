"""Design tables: column normalisation, repetitions, duplicated trial ids, bad files."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from brainalign._utils.atomic import file_sha256
from brainalign._utils.errors import CorruptFileError
from brainalign.io.design import read_design_table
from brainalign.io.recording import TRIAL_COLUMNS


def _naive_repetitions(ids):
    seen: dict = {}
    out = []
    for s in ids:
        out.append(seen.get(s, 0))
        seen[s] = seen.get(s, 0) + 1
    return out


def test_nsd_like_columns_are_normalised(rng):
    ids = rng.integers(1, 6, size=9)
    raw = pd.DataFrame(
        {
            "SUBJECT": [1] * 9,
            "SESSION": [1] * 5 + [2] * 4,
            "RUN": [1, 1, 2, 2, 2, 1, 1, 1, 2],
            "TRIAL": [1, 2, 1, 2, 3, 1, 2, 3, 1],
            "73KID": ids.astype(float),  # floats (as pandas reads a column with gaps)
            "ISCORRECT": rng.integers(0, 2, size=9),
        }
    )
    raw_copy = raw.copy(deep=True)
    table = read_design_table(raw, n_trials=9)
    assert list(table.columns) == [*TRIAL_COLUMNS, "trial_id", "ISCORRECT"]
    assert table.index.name == "trial"
    assert list(table["stimulus_id"]) == [str(i) for i in ids]
    assert list(table["subject"]) == ["01"] * 9
    assert list(table["session"]) == ["01"] * 5 + ["02"] * 4
    assert list(table["run"]) == list(raw["RUN"])
    assert list(table["repetition"]) == _naive_repetitions(list(ids))
    assert list(table["trial_id"]) == list(raw["TRIAL"])
    assert table["onset"].isna().all()
    pd.testing.assert_frame_equal(raw, raw_copy)


def test_bids_tsv_uses_stim_file_before_trial_type(tmp_path):
    path = tmp_path / "design.tsv"
    path.write_text(
        "onset\tduration\ttrial_type\tstim_file\n"
        "0.5\t3\tface\tstim/f1.png\n"
        "4.5\t3\thouse\tstim/h1.png\n"
        "8.5\t3\tface\tstim/f1.png\n"
    )
    before = (file_sha256(path), os.stat(path).st_mtime_ns)
    table = read_design_table(path)
    assert list(table["stimulus_id"]) == ["stim/f1.png", "stim/h1.png", "stim/f1.png"]
    assert list(table["trial_type"]) == ["face", "house", "face"]
    np.testing.assert_allclose(table["onset"], [0.5, 4.5, 8.5])
    np.testing.assert_allclose(table["duration"], [3, 3, 3])
    assert list(table["repetition"]) == [0, 0, 1]
    assert (file_sha256(path), os.stat(path).st_mtime_ns) == before


def test_csv_with_sub_and_ses_prefixes(tmp_path):
    path = tmp_path / "design.csv"
    path.write_text("participant_id,ses,stimulus,rep\nsub-07,ses-3,a,4\nsub-07,ses-3,b,0\n")
    table = read_design_table(path)
    assert list(table["subject"]) == ["07", "07"]
    assert list(table["session"]) == ["3", "3"]
    assert list(table["repetition"]) == [4, 0]  # given repetitions are kept


def test_duplicated_trial_ids_are_listed():
    raw = pd.DataFrame({"trial_id": [1, 3, 3, 7, 2, 7], "stimulus_id": list("abcdef")})
    with pytest.raises(ValueError, match=r"duplicated trial ids: \['3', '7'\] \(4 rows\)"):
        read_design_table(raw)


def test_trial_ids_may_restart_in_each_run():
    raw = pd.DataFrame({"run": [1, 1, 2, 2], "trial": [1, 2, 1, 2], "stimulus_id": list("abab")})
    assert list(read_design_table(raw)["trial_id"]) == [1, 2, 1, 2]
    raw.loc[3, "run"] = 1
    with pytest.raises(ValueError, match=r"within the same run: \['2'\]"):
        read_design_table(raw)


def test_row_count_and_missing_ids():
    raw = pd.DataFrame({"stimulus_id": ["a", None, "c"]})
    with pytest.raises(ValueError, match=r"has 3 rows but n_trials=4"):
        read_design_table(raw, n_trials=4)
    with pytest.raises(ValueError, match=r"no stimulus id in rows \[1\]"):
        read_design_table(raw)


def test_without_stimulus_column_each_row_is_its_own_stimulus():
    table = read_design_table(pd.DataFrame({"onset": [0.0, 1.0, 2.0]}))
    assert list(table["stimulus_id"]) == ["0", "1", "2"]
    assert list(table["repetition"]) == [0, 0, 0]


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'path_or_df' does not exist.*design\.tsv"):
        read_design_table(tmp_path / "design.tsv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv.*is empty"):
        read_design_table(empty)
    binary = tmp_path / "design.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CorruptFileError, match=r"design\.csv.*cannot be read as a CSV/TSV"):
        read_design_table(binary)
    with pytest.raises(TypeError, match=r"'path_or_df' must be a CSV/TSV path or a pandas"):
        read_design_table(np.arange(3))
