"""M/EEG readers, checked on files written by mne, edfio, pybv, eeglabio and mne-bids."""

from __future__ import annotations

import datetime
import hashlib
import shutil
import warnings

import mne
import mne_bids
import numpy as np
import pandas as pd
import pytest

from brainalign._utils.errors import BrainAlignWarning, CorruptFileError
from brainalign.io.meeg import (
    events_to_trials,
    load_bids,
    load_meeg,
    read_bids_events,
    read_raw,
)
from brainalign.io.recording import TRIAL_COLUMNS, Recording

QUIET = "error"
SFREQ = 128.0
N_TIMES = 640  # 5 s
CH_NAMES = ["Fp1", "Fz", "Cz", "Pz", "Oz", "C3", "C4", "T7", "T8"]  # 9 channels


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_raw(data: np.ndarray, *, first_samp: int = 0, montage: str = "standard_1020"):
    info = mne.create_info(CH_NAMES, SFREQ, "eeg")
    info["line_freq"] = 50.0
    raw = mne.io.RawArray(data, info, first_samp=first_samp, verbose=QUIET)
    raw.set_montage(mne.channels.make_standard_montage(montage), verbose=QUIET)
    return raw


def _ramp(n_times: int = N_TIMES) -> np.ndarray:
    """Every sample distinct and checkable: channel c, sample t holds (c + 1) µV + t * 10 nV."""
    return (np.arange(len(CH_NAMES))[:, None] + 1) * 1e-6 + np.arange(n_times)[None] * 1e-8


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(7).normal(scale=1e-5, size=(len(CH_NAMES), N_TIMES))


@pytest.fixture(scope="module")
def files(tmp_path_factory, noise):
    """The same recording written as FIF, FIF.gz, EDF, BrainVision and EEGLAB."""
    folder = tmp_path_factory.mktemp("meeg")
    raw = _make_raw(noise)
    raw.set_annotations(mne.Annotations([0.5, 1.25, 2.5], [0.1, 0.1, 0.1], ["cat", "dog", "cat"]))
    paths = {"fif": folder / "rec_raw.fif", "fif.gz": folder / "rec_raw.fif.gz"}
    raw.save(paths["fif"], verbose=QUIET)
    raw.save(paths["fif.gz"], verbose=QUIET)
    for fmt, ext in (("edf", "edf"), ("brainvision", "vhdr"), ("eeglab", "set")):
        paths[ext] = folder / f"rec.{ext}"
        mne.export.export_raw(paths[ext], raw, fmt=fmt, verbose=QUIET)
    paths["bdf"] = _write_bdf(folder / "rec.bdf", noise)
    return raw, paths


def _write_bdf(path, data: np.ndarray):
    """BioSemi BDF (24-bit) written by edfio, in µV as BioSemi systems write it."""
    from edfio import Bdf, BdfSignal

    microvolts = data * 1e6
    span = float(np.abs(microvolts).max()) * 1.01
    signals = [
        BdfSignal(row, SFREQ, label=name, physical_dimension="uV", physical_range=(-span, span))
        for name, row in zip(CH_NAMES, microvolts)
    ]
    Bdf(signals, data_record_duration=1.0).write(path)
    return path


# ----------------------------------------------------------------------------------------------
# read_raw
# ----------------------------------------------------------------------------------------------


def _tolerance(ext: str, data: np.ndarray) -> float:
    if ext == "edf":
        # 16-bit integers spanning the physical range of the channel type: one quantisation step
        # (rounding costs half of one; the range written as 8 characters a little more)
        return float(data.max() - data.min()) / (2**16 - 1)
    if ext == "bdf":
        # 24-bit integers over the physical range (plus its 8-character rounding)
        return 2.1 * float(np.abs(data).max()) / (2**24 - 1) + 1e-12
    # FIF, BrainVision and EEGLAB store float32 here
    return 1e-6 * float(np.abs(data).max())


@pytest.mark.parametrize("ext", ["fif", "fif.gz", "edf", "bdf", "vhdr", "set"])
def test_read_raw_round_trip_and_leaves_file_alone(files, noise, ext):
    _, paths = files
    path = paths[ext]
    before = _sha256(path)
    got = read_raw(path, verbose=QUIET)
    assert isinstance(got, mne.io.BaseRaw)
    assert got.ch_names == CH_NAMES
    assert got.info["sfreq"] == SFREQ
    assert got.get_data().shape == (9, N_TIMES)
    np.testing.assert_allclose(got.get_data(), noise, rtol=0, atol=_tolerance(ext, noise))
    assert _sha256(path) == before


def test_read_raw_not_preloaded(files, noise):
    _, paths = files
    got = read_raw(paths["fif"], preload=False, verbose=QUIET)
    assert not got.preload
    np.testing.assert_allclose(got.get_data(), noise, rtol=1e-6)


def test_read_raw_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'fname' does not exist: .*nope_raw\.fif"):
        read_raw(tmp_path / "nope_raw.fif")


def test_read_raw_unknown_extension(tmp_path):
    path = tmp_path / "rec.xyz"
    path.write_bytes(b"data")
    with pytest.raises(
        ValueError, match=r"Unknown M/EEG file extension '\.xyz'.*rec\.xyz.*'\.vhdr'"
    ):
        read_raw(path)
    companion = tmp_path / "rec.eeg"
    companion.write_bytes(b"data")
    with pytest.raises(ValueError, match=r"BrainVision data file: pass its '\.vhdr' header"):
        read_raw(companion)


@pytest.mark.parametrize("preload", [True, False])
@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_read_raw_truncated_fif(files, tmp_path, preload, fraction):
    _, paths = files
    content = paths["fif"].read_bytes()
    path = tmp_path / "cut_raw.fif"
    path.write_bytes(content[: int(len(content) * fraction)])
    with pytest.raises(CorruptFileError, match=r"cut_raw\.fif.*(truncated|cannot be read as FIF)"):
        read_raw(path, preload=preload, verbose=QUIET)


@pytest.mark.parametrize(("ext", "fmt"), [("edf", "EDF"), ("bdf", "BDF")])
def test_read_raw_truncated_edf_or_bdf(files, tmp_path, ext, fmt):
    _, paths = files
    content = paths[ext].read_bytes()
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(CorruptFileError, match=rf"{fmt} file .*cut\.{ext}' is truncated.*again"):
        read_raw(path, verbose=QUIET)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("junk_raw.fif", "FIF"),
        ("junk.edf", "EDF"),
        ("junk.bdf", "BDF"),
        ("junk.vhdr", "BrainVision"),
        ("junk.set", "EEGLAB"),
    ],
)
def test_read_raw_garbage_bytes(tmp_path, name, fmt):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(3).bytes(4096))
    with pytest.raises(CorruptFileError, match=rf"{name}' cannot be read as {fmt} .*again"):
        read_raw(path, verbose=QUIET)


def test_read_raw_missing_companion(files, tmp_path):
    _, paths = files
    shutil.copy(paths["vhdr"], tmp_path / "rec.vhdr")  # without its .eeg
    with pytest.raises(FileNotFoundError, match=r"rec\.vhdr' refers to a file.*rec\.eeg"):
        read_raw(tmp_path / "rec.vhdr", verbose=QUIET)


def test_read_raw_epoched_eeglab(tmp_path):
    info = mne.create_info(CH_NAMES, SFREQ, "eeg")
    path = tmp_path / "ep.set"
    mne.EpochsArray(np.zeros((4, 9, 50)), info, verbose=QUIET).export(path, verbose=QUIET)
    with pytest.raises(ValueError, match=r"ep\.set' holds epochs, not a continuous.*read_epochs"):
        read_raw(path, verbose=QUIET)


def test_read_raw_passes_on_mne_warnings_unless_silenced(files, tmp_path):
    _, paths = files
    for ext in ("vhdr", "eeg"):  # no .vmrk: mne warns and reads on
        shutil.copy(paths["vhdr"].with_suffix(f".{ext}"), tmp_path / f"rec.{ext}")
    with pytest.warns(RuntimeWarning, match=r"rec\.vmrk' not found"):
        read_raw(tmp_path / "rec.vhdr", verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = read_raw(tmp_path / "rec.vhdr", verbose="error")
    assert raw.n_times == N_TIMES


# ----------------------------------------------------------------------------------------------
# events
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("meas_date", [None, datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)])
def test_events_from_annotations_match_mne(meas_date):
    raw = _make_raw(_ramp(), first_samp=37)
    raw.set_meas_date(meas_date)
    onsets = np.array([0.5, 1.25, 3.0, 2.0])
    raw.set_annotations(
        mne.Annotations(
            np.r_[onsets, 1.0], 0.2, ["cat", "dog", "cat", "cow", "BAD_blink"], orig_time=None
        )
    )
    trials = events_to_trials(raw, subject="07", run=2)
    assert tuple(trials.columns[:7]) == TRIAL_COLUMNS
    events, event_id = mne.events_from_annotations(raw, verbose=QUIET)
    names = {v: k for k, v in event_id.items()}
    # mne's reference: samples since the start of acquisition; ours: seconds from the first sample
    np.testing.assert_allclose(trials["onset"], (events[:, 0] - raw.first_samp) / SFREQ)
    np.testing.assert_allclose(np.sort(trials["onset"]), np.sort(onsets))
    assert trials["stimulus_id"].tolist() == [names[c] for c in events[:, 2]]
    assert "BAD_blink" not in trials["trial_type"].tolist()
    assert trials["repetition"].tolist() == [0, 0, 0, 1]
    assert set(trials["subject"]) == {"07"}
    assert set(trials["run"]) == {2}


def test_events_from_array_with_event_id():
    events = np.array([[137, 0, 1], [237, 0, 2], [300, 0, 9], [437, 0, 1]])
    trials = events_to_trials(events, event_id={"cat": 1, "dog": 2}, sfreq=100.0, first_samp=37)
    np.testing.assert_allclose(trials["onset"], [1.0, 2.0, 4.0])
    assert trials["stimulus_id"].tolist() == ["cat", "dog", "cat"]
    assert trials["value"].tolist() == [1, 2, 1]
    assert trials["sample"].tolist() == [137, 237, 437]
    with pytest.raises(ValueError, match=r"needs sfreq= \(Hz\).*raw\.info\['sfreq'\]"):
        events_to_trials(events)
    with pytest.raises(ValueError, match=r"event_id=\{'x': 5\}.*codes are \[1, 2, 9\]"):
        events_to_trials(events, event_id={"x": 5}, sfreq=100.0)
    with pytest.raises(ValueError, match=r"shape \(n_events, 3\).*got shape \(4, 2\)"):
        events_to_trials(events[:, :2], sfreq=100.0)


def _bids_like_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "onset": [0.5, 1.0, 1.5, 2.0, 3.0],
            "duration": [0.3, 0.3, np.nan, 0.2, 0.3],
            "trial_type": ["word", "word", "sound", "word", "word"],
            "value": [1, 1, 2, 1, 1],
            "word": ["the", "cat", np.nan, "the", "sat"],
            "sound": ["a.wav", "a.wav", "a.wav", "a.wav", "b.wav"],
        }
    )


def test_events_from_bids_table_keeps_columns_and_input():
    table = _bids_like_events()
    copy = table.copy()
    with pytest.warns(BrainAlignWarning, match=r"1 of 5 events .*column 'word'.*dropped"):
        trials = events_to_trials(table, stimulus_column="word", session="02")
    pd.testing.assert_frame_equal(table, copy)
    assert trials["stimulus_id"].tolist() == ["the", "cat", "the", "sat"]
    assert trials["repetition"].tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(trials["onset"], [0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(trials["duration"], [0.3, 0.3, 0.2, 0.3])
    assert trials["sound"].tolist() == ["a.wav", "a.wav", "a.wav", "b.wav"]
    assert {"trial_type", "value", "word"} <= set(trials.columns)
    assert set(trials["session"]) == {"02"}
    # default stimulus column falls back to trial_type; event_id selects trial types
    sounds = events_to_trials(table, event_id=["sound"])
    assert sounds["stimulus_id"].tolist() == ["sound"]


def test_events_meg_masc_dict_trial_type():
    table = pd.DataFrame(
        {
            "onset": [0.1, 0.4, 0.9],
            "duration": [0.1, 0.05, 0.2],
            "trial_type": [
                "{'kind': 'word', 'word': 'The', 'sound': 'stimuli/audio/lw1_0.wav'}",
                "{'kind': 'phoneme', 'phoneme': 'dh_B', 'sound': 'stimuli/audio/lw1_0.wav'}",
                "{'kind': 'word', 'word': 'boy', 'sound': 'stimuli/audio/lw1_0.wav'}",
            ],
        }
    )
    with pytest.warns(BrainAlignWarning, match="1 of 3 events"):
        trials = events_to_trials(table, stimulus_column="word")
    assert trials["stimulus_id"].tolist() == ["The", "boy"]
    assert trials["kind"].tolist() == ["word", "word"]
    np.testing.assert_allclose(trials["onset"], [0.1, 0.9])


def test_events_stimulus_column_absent():
    with pytest.raises(
        ValueError,
        match=r"stimulus_column='wrd' is not a column of the events table; its columns are "
        r"\['onset', .*'word', 'sound'\]\. Did you mean 'word'",
    ):
        events_to_trials(_bids_like_events(), stimulus_column="wrd")
    with pytest.raises(ValueError, match=r"no 'onset' column; its columns are \['start'\]"):
        events_to_trials(pd.DataFrame({"start": [1.0]}))
    with pytest.raises(ValueError, match=r"1 onsets of the events table .*rows \[1\] hold \['x'\]"):
        events_to_trials(pd.DataFrame({"onset": [1.0, "x"], "trial_type": ["a", "b"]}))
    with pytest.raises(TypeError, match="'raw_or_events' must be an mne Raw"):
        events_to_trials([1.0, 2.0])


# ----------------------------------------------------------------------------------------------
# read_bids_events
# ----------------------------------------------------------------------------------------------


def test_read_bids_events(tmp_path):
    path = tmp_path / "sub-01_task-x_events.tsv"
    path.write_text(
        "onset\tduration\ttrial_type\tword\tstim_file\n"
        "0.5\t0.3\tword\tNA\tn/a\n"
        "1.5\tn/a\tword\tnull\timages/cat.png\n"
        "2.5\t0.3\tsound\tn/a\t\n"
    )
    before = _sha256(path)
    table = read_bids_events(path)
    assert table["onset"].tolist() == [0.5, 1.5, 2.5]
    assert np.isnan(table["duration"][1])
    assert table["word"][:2].tolist() == ["NA", "null"]  # words, not missing values
    assert table["word"].isna().tolist() == [False, False, True]
    assert table["stim_file"].isna().tolist() == [True, False, True]
    assert _sha256(path) == before


def test_read_bids_events_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'path' does not exist: .*missing_events\.tsv"):
        read_bids_events(tmp_path / "missing_events.tsv")
    empty = tmp_path / "empty_events.tsv"
    empty.write_text("")
    with pytest.raises(CorruptFileError, match=r"empty_events\.tsv' is empty.*header line"):
        read_bids_events(empty)
    binary = tmp_path / "bin_events.tsv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 100)
    with pytest.raises(CorruptFileError, match=r"bin_events\.tsv' is not a text file"):
        read_bids_events(binary)
    comma = tmp_path / "comma_events.tsv"
    comma.write_text("onset,duration\n1.0,0.5\n")
    with pytest.raises(
        ValueError, match=r"comma_events\.tsv' has no 'onset' column.*tab-separated"
    ):
        read_bids_events(comma)
    ragged = tmp_path / "ragged_events.tsv"
    ragged.write_text("onset\tduration\n1.0\t0.5\n2.0\t0.5\t7\t8\n")
    with pytest.raises(CorruptFileError, match=r"ragged_events\.tsv' is not a valid tab-separated"):
        read_bids_events(ragged)
    text = tmp_path / "text_events.tsv"
    text.write_text("onset\tduration\n1.0\t0.5\nsoon\t0.5\n")
    with pytest.raises(ValueError, match=r"1 onsets of the events file .*text_events.*\['soon'\]"):
        read_bids_events(text)


# ----------------------------------------------------------------------------------------------
# load_meeg
# ----------------------------------------------------------------------------------------------


def _windows_by_slicing(data, onsets, sfreq, tmin, tmax):
    """Reference: slice the raw array at the nearest sample of each onset."""
    start, stop = round(tmin * sfreq), round(tmax * sfreq)
    out = []
    for onset in onsets:
        sample = round(onset * sfreq)
        out.append(data[:, sample + start : sample + stop + 1])
    return np.stack(out)


def test_epochs_equal_slicing_of_fif_with_first_samp(tmp_path):
    data = _ramp()
    raw = _make_raw(data, first_samp=211)
    path = tmp_path / "ramp_raw.fif"
    raw.save(path, fmt="double", verbose=QUIET)
    onsets = [0.503, 1.0, 2.2461, 1.0, 4.1]  # off the sample grid, one repeated
    events = pd.DataFrame({"onset": onsets, "duration": 0.0, "stim_file": list("abcbd")})
    rec = load_meeg(
        path, events=events, tmin=-0.25, tmax=0.5, baseline=None, stimulus_column="stim_file",
        verbose=QUIET,
    )  # fmt: skip
    assert isinstance(rec, Recording)
    assert rec.kind == "epochs"
    assert rec.modality == "eeg"
    assert rec.data.dtype == np.float32
    assert rec.data.shape == (5, 9, 97)
    expected = _windows_by_slicing(data, onsets, SFREQ, -0.25, 0.5)
    np.testing.assert_allclose(rec.data, expected, rtol=1e-6)
    np.testing.assert_allclose(rec.times, np.arange(-32, 65) / SFREQ)
    assert rec.trials["stimulus_id"].tolist() == list("abcbd")
    assert rec.trials["repetition"].tolist() == [0, 0, 0, 1, 0]
    assert rec.ch_names == CH_NAMES
    assert rec.sfreq == SFREQ
    assert rec.source == path
    assert rec.info["sfreq"] == SFREQ


def test_epochs_baseline_matches_mean_before_zero():
    data = _ramp() + np.random.default_rng(1).normal(scale=1e-6, size=(9, N_TIMES))
    raw = _make_raw(data)
    events = pd.DataFrame({"onset": [1.0, 2.5], "trial_type": ["a", "b"]})
    rec = load_meeg(raw, events=events, tmin=-0.2, tmax=0.3, verbose=QUIET)
    windows = _windows_by_slicing(data, [1.0, 2.5], SFREQ, -0.2, 0.3)
    n_pre = round(0.2 * SFREQ) + 1  # samples from tmin to 0, both included
    expected = windows - windows[:, :, :n_pre].mean(axis=2, keepdims=True)
    np.testing.assert_allclose(rec.data, expected, rtol=1e-5, atol=1e-12)


def test_filtering_equals_mne_filter_data(noise):
    raw = _make_raw(noise)
    rec = load_meeg(raw, events=None, epochs=False, l_freq=2.0, h_freq=30.0, verbose=QUIET)
    assert rec.kind == "timeseries"
    assert rec.data.shape == (N_TIMES, 9)
    expected = mne.filter.filter_data(noise, SFREQ, 2.0, 30.0, verbose=QUIET)
    np.testing.assert_allclose(rec.data, expected.T, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_resampling_equals_mne_resample(noise):
    raw = _make_raw(noise)
    rec = load_meeg(raw, epochs=False, sfreq=64.0, verbose=QUIET)
    expected = raw.copy().resample(64.0, verbose=QUIET).get_data()
    assert rec.sfreq == 64.0
    assert rec.metadata["sfreq_original"] == SFREQ
    np.testing.assert_allclose(rec.data, expected.T, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    # windows are cut from the resampled signal at the resampled onset sample
    events = pd.DataFrame({"onset": [1.0, 2.02], "trial_type": ["a", "b"]})
    rec = load_meeg(raw, events=events, sfreq=64.0, tmin=-0.5, tmax=1.0, baseline=None,
                    verbose=QUIET)  # fmt: skip
    windows = _windows_by_slicing(expected, [1.0, 2.02], 64.0, -0.5, 1.0)
    np.testing.assert_allclose(rec.data, windows, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_user_raw_and_events_are_unchanged(noise):
    raw = _make_raw(noise.copy())
    raw.set_annotations(mne.Annotations([1.0, 2.0], [0.1, 0.1], ["a", "b"]))
    raw.info["bads"] = ["Oz"]
    events = _bids_like_events().drop(columns="word")
    events_copy = events.copy()
    info_before = (raw.ch_names.copy(), raw.info["sfreq"], list(raw.info["bads"]))
    rec = load_meeg(raw, events=events, l_freq=1.0, h_freq=40.0, sfreq=64.0, tmin=-0.1,
                    tmax=0.4, verbose=QUIET)  # fmt: skip
    assert rec.data.shape == (5, 8, 33)  # the bad channel is left out
    assert "Oz" not in rec.ch_names
    np.testing.assert_array_equal(raw.get_data(), noise)
    assert (raw.ch_names, raw.info["sfreq"], raw.info["bads"]) == info_before
    assert raw.annotations.description.tolist() == ["a", "b"]
    pd.testing.assert_frame_equal(events, events_copy)


def test_sensor_positions_equal_montage_positions(files):
    _, paths = files
    montage = mne.channels.make_standard_montage("standard_1020")
    to_head = mne.channels.compute_native_head_t(montage)
    ch_pos = montage.get_positions()["ch_pos"]
    expected = mne.transforms.apply_trans(to_head, np.array([ch_pos[c] for c in CH_NAMES]))
    for path in (paths["fif"], paths["set"]):
        rec = load_meeg(path, tmin=-0.1, tmax=0.2, verbose=QUIET)
        assert rec.sensor_positions.shape == (9, 3)
        np.testing.assert_allclose(rec.sensor_positions, expected, atol=1e-6)
        assert rec.trials["stimulus_id"].tolist() == ["cat", "dog", "cat"]
    # EDF holds no positions: NaN
    rec = load_meeg(paths["edf"], tmin=-0.1, tmax=0.2, verbose=QUIET)
    assert np.isnan(rec.sensor_positions).all()
    # biosemi montage too
    biosemi = mne.channels.make_standard_montage("biosemi16")
    raw16 = _make_raw(_ramp(), montage="biosemi16")
    rec = load_meeg(raw16, epochs=False, verbose=QUIET)
    pos = biosemi.get_positions()["ch_pos"]
    expected = mne.transforms.apply_trans(
        mne.channels.compute_native_head_t(biosemi), np.array([pos[c] for c in CH_NAMES])
    )
    np.testing.assert_allclose(rec.sensor_positions, expected, atol=1e-9)


def _meg_raw(dev_head_t):
    rng = np.random.default_rng(5)
    info = mne.create_info(
        [f"MEG{i:03d}" for i in range(7)] + ["STI"], 100.0, ["mag"] * 7 + ["stim"]
    )
    locs = rng.normal(scale=0.05, size=(7, 3)) + np.array([0.0, 0.0, 0.04])
    for ch, loc in zip(info["chs"], locs):
        ch["loc"][:12] = np.r_[loc, np.eye(3).ravel()]
    info["dev_head_t"] = dev_head_t
    return mne.io.RawArray(rng.normal(scale=1e-13, size=(8, 300)), info, verbose=QUIET), locs


def test_meg_positions_in_head_coordinates():
    rotation = mne.transforms.rotation(0.1, -0.2, 0.3)[:3, :3]
    translation = np.array([0.001, -0.02, 0.03])
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rotation, translation
    raw, locs = _meg_raw(mne.transforms.Transform("meg", "head", matrix))
    rec = load_meeg(raw, epochs=False, verbose=QUIET)
    assert rec.modality == "meg"
    assert rec.ch_names == [f"MEG{i:03d}" for i in range(7)]  # picks="data" leaves STI out
    np.testing.assert_allclose(rec.sensor_positions, locs @ rotation.T + translation, atol=1e-12)
    raw, locs = _meg_raw(None)
    with pytest.warns(BrainAlignWarning, match=r"no device-to-head transform.*device coordinates"):
        rec = load_meeg(raw, epochs=False, verbose=QUIET)
    np.testing.assert_allclose(rec.sensor_positions, locs)


def test_windows_past_the_end_are_dropped_with_warning():
    raw = _make_raw(_ramp())
    events = pd.DataFrame({"onset": [0.1, 1.0, 2.0, 4.9], "trial_type": list("abcd")})
    with pytest.warns(BrainAlignWarning, match=r"2 of 4 trials were dropped.*'NO_DATA'"):
        rec = load_meeg(raw, events=events, tmin=-0.5, tmax=0.5, baseline=None, verbose=QUIET)
    assert rec.trials["stimulus_id"].tolist() == ["b", "c"]
    assert rec.trials.index.tolist() == [0, 1]
    np.testing.assert_allclose(
        rec.data, _windows_by_slicing(_ramp(), [1.0, 2.0], SFREQ, -0.5, 0.5), rtol=1e-6
    )
    assert rec.metadata["n_dropped"] == 2
    with pytest.raises(ValueError, match=r"All 1 windows \[-3.0, 0.5\] s were dropped"):
        load_meeg(raw, events=events.iloc[[1]], tmin=-3.0, tmax=0.5, verbose=QUIET)


def test_reject_by_annotation_drops_trials():
    raw = _make_raw(_ramp())
    raw.set_annotations(mne.Annotations([2.9], [0.3], ["BAD_jump"]))
    events = pd.DataFrame({"onset": [1.0, 2.0, 3.0], "trial_type": list("abc")})
    rec = load_meeg(raw, events=events, tmin=-0.2, tmax=0.5, verbose=QUIET)
    assert rec.n_trials == 3
    with pytest.warns(BrainAlignWarning, match=r"1 of 3 trials.*BAD_jump"):
        rec = load_meeg(raw, events=events, tmin=-0.2, tmax=0.5, reject_by_annotation=True,
                        verbose=QUIET)  # fmt: skip
    assert rec.trials["stimulus_id"].tolist() == ["a", "b"]


def test_timeseries_keeps_events_and_signal(files, noise):
    _, paths = files
    rec = load_meeg(paths["fif"], epochs=False, verbose=QUIET)
    assert rec.kind == "timeseries"
    np.testing.assert_allclose(rec.data, noise.T, rtol=1e-6)
    np.testing.assert_allclose(rec.trials["onset"], [0.5, 1.25, 2.5])
    assert rec.times is None


def test_load_meeg_bad_arguments(files, tmp_path):
    raw, paths = files
    with pytest.raises(ValueError, match=r"tmin \(1.0 s\) must be smaller than tmax \(0.5 s\)"):
        load_meeg(raw, tmin=1.0, tmax=0.5)
    with pytest.raises(ValueError, match=r"baseline=\(None, 0\) means \[0.1, 0.0\].*baseline=None"):
        load_meeg(raw, tmin=0.1, tmax=0.5)
    events = pd.DataFrame({"onset": [1.0, 7.5, -0.2, 2.0], "trial_type": list("abcd")})
    with pytest.raises(
        ValueError,
        match=r"2 event onsets fall outside the recording '.*rec_raw\.fif', which lasts 5 s "
        r"\(640 samples at 128 Hz\): onsets \[7\.5, -0\.2\] s at trials \[1, 2\].*milliseconds",
    ):
        load_meeg(paths["fif"], events=events, verbose=QUIET)
    with pytest.raises(ValueError, match=r"stimulus_column='image' is not a column of the "):
        load_meeg(paths["fif"], stimulus_column="image", verbose=QUIET)
    with pytest.raises(FileNotFoundError, match=r"absent\.edf"):
        load_meeg(tmp_path / "absent.edf")
    with pytest.raises(TypeError, match="'events' must be None"):
        load_meeg(raw, events=[1.0, 2.0], verbose=QUIET)
    with pytest.raises(ValueError, match="'sfreq' must be positive"):
        load_meeg(raw, sfreq=0)


def test_load_meeg_events_array_and_tsv(files, tmp_path):
    raw, paths = files
    events, _ = mne.events_from_annotations(raw, verbose=QUIET)
    from_array = load_meeg(paths["fif"], events=events, tmin=-0.1, tmax=0.2, verbose=QUIET)
    from_annotations = load_meeg(paths["fif"], tmin=-0.1, tmax=0.2, verbose=QUIET)
    np.testing.assert_array_equal(from_array.data, from_annotations.data)
    tsv = tmp_path / "rec_events.tsv"
    tsv.write_text("onset\tduration\ttrial_type\timage\n0.5\t0.1\tcat\tcat.png\n")
    from_tsv = load_meeg(paths["fif"], events=tsv, stimulus_column="image", tmin=-0.1, tmax=0.2,
                         verbose=QUIET)  # fmt: skip
    np.testing.assert_array_equal(from_tsv.data, from_annotations.data[:1])
    assert from_tsv.trials["stimulus_id"].tolist() == ["cat.png"]


# ----------------------------------------------------------------------------------------------
# BIDS
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory, noise):
    root = tmp_path_factory.mktemp("bids")
    raw = _make_raw(noise)
    raw.set_annotations(
        mne.Annotations([0.5, 1.0, 1.5, 3.0], 0.25, ["word", "word", "sound", "word"])
    )
    path = mne_bids.BIDSPath(
        subject="01", session="1", task="listen", run=1, datatype="eeg", root=root
    )
    mne_bids.write_raw_bids(
        raw, path, format="BrainVision", allow_preload=True, overwrite=True, verbose=QUIET
    )
    # the word of each word onset, as in MEG-MASC / Broderick-style events files
    events_path = path.copy().update(suffix="events", extension=".tsv").fpath
    table = pd.read_csv(events_path, sep="\t")
    table["word"] = ["the", "cat", "n/a", "sat"]
    table.to_csv(events_path, sep="\t", index=False)
    # a second run, so that leaving run out is ambiguous
    mne_bids.write_raw_bids(
        raw, path.copy().update(run=2), format="BrainVision", allow_preload=True, verbose=QUIET
    )
    return root


def test_load_bids_uses_events_file(bids_root, noise):
    with pytest.warns(BrainAlignWarning, match="1 of 4 events"):
        rec = load_bids(bids_root, subject="01", task="listen", run=1, stimulus_column="word",
                        tmin=-0.2, tmax=0.4, baseline=None, verbose=QUIET)  # fmt: skip
    assert rec.trials["stimulus_id"].tolist() == ["the", "cat", "sat"]
    assert rec.trials["session"].tolist() == ["1"] * 3
    assert rec.trials["run"].tolist() == [1] * 3
    np.testing.assert_allclose(rec.trials["onset"], [0.5, 1.0, 3.0])
    expected = _windows_by_slicing(noise, [0.5, 1.0, 3.0], SFREQ, -0.2, 0.4)
    np.testing.assert_allclose(rec.data, expected, rtol=0, atol=1e-6 * np.abs(noise).max())
    assert rec.source.name == "sub-01_ses-1_task-listen_run-1_eeg.vhdr"
    assert rec.metadata["events_file"].name == "sub-01_ses-1_task-listen_run-1_events.tsv"
    montage = mne.channels.make_standard_montage("standard_1020")
    pos = montage.get_positions()["ch_pos"]
    expected_pos = mne.transforms.apply_trans(
        mne.channels.compute_native_head_t(montage), np.array([pos[c] for c in CH_NAMES])
    )
    np.testing.assert_allclose(rec.sensor_positions, expected_pos, atol=1e-6)


def test_load_bids_missing_entities(bids_root, tmp_path):
    with pytest.raises(ValueError, match=r"no subject '02' .*Available subjects: \['01'\]"):
        load_bids(bids_root, subject="02", task="listen")
    with pytest.raises(ValueError, match=r"no task 'listn' .*\['listen'\]\. Did you mean 'listen'"):
        load_bids(bids_root, subject="sub-01", task="listn")
    with pytest.raises(ValueError, match=r"no session '2' .*Available: \['1'\]"):
        load_bids(bids_root, subject="01", task="listen", session="2")
    with pytest.raises(ValueError, match=r"no run '3' .*Available: \['1', '2'\]"):
        load_bids(bids_root, subject="01", task="listen", run=3)
    with pytest.raises(ValueError, match=r"2 recordings match .*run-1_eeg.vhdr.*run-2.*run="):
        load_bids(bids_root, subject="01", task="listen")
    with pytest.raises(FileNotFoundError, match=r"'bids_root' is not a folder: .*nowhere"):
        load_bids(tmp_path / "nowhere", subject="01", task="listen")
