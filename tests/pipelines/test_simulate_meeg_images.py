"""The simulated image (THINGS-EEG-like RSVP) dataset end to end: images, BIDS, the readers.

Tiny on purpose: 12 natural images at 64 px, 16 electrodes, 100 Hz, about 12 s of recording.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import mne
import numpy as np
import pytest
from scipy import signal

from brainalign.data.simulate.meeg import (
    DERIVATIVES,
    IMAGE_READ_OPTIONS,
    SourceSpec,
    compute_snr,
    default_visual_sources,
)
from brainalign.io import load_bids, load_meeg, read_bids_events, validate_dataset
from brainalign.pipelines.simulate_meeg import (
    load_simulated_meeg,
    simulate_meeg_images_dataset,
)

SFREQ = 100.0
SNR = 0.5
N_TEST, N_TEST_REPS, N_TRAIN_REPS = 3, 5, 2
TINY = {
    "seed": 3,
    "n_subjects": 2,
    "modality": "eeg",
    "n_images": 12,
    "n_test_images": N_TEST,
    "n_test_repetitions": N_TEST_REPS,
    "n_train_repetitions": N_TRAIN_REPS,
    "sequence_length": 8,
    "snr": SNR,
    "sfreq": SFREQ,
    "n_channels": 16,
    "image_size": 64,
    "n_dipoles_per_patch": 3,
    "device": "cpu",
    "verbose": False,
}
N_PRESENTATIONS = N_TEST * N_TEST_REPS + (12 - N_TEST) * N_TRAIN_REPS


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("sim") / "eeg"
    return simulate_meeg_images_dataset(out, feature_cache_dir=cache, **TINY)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zscore(x, axis):
    std = x.std(axis=axis, keepdims=True)
    return np.where(std > 0, (x - x.mean(axis=axis, keepdims=True)) / np.where(std > 0, std, 1), 0)


def test_epochs_are_locked_to_image_onsets(dataset):
    assert dataset.paradigm == "images"
    assert dataset.subjects == ("01", "02")
    ids = set(dataset.stimuli.ids)
    assert dataset.stimuli.kind == "image"
    assert len(ids) == 12
    for subject, rec in dataset.recordings.items():
        assert rec.kind == "epochs"
        assert rec.sfreq == SFREQ
        assert rec.data.shape == (N_PRESENTATIONS, 16, 101)  # -0.2 to 0.8 s at 100 Hz
        np.testing.assert_allclose(rec.times[[0, -1]], [-0.2, 0.8])
        events = read_bids_events(dataset.ground_truth.files[subject]["events"])
        assert len(events) == N_PRESENTATIONS
        assert (events["trial_type"] == "image").all()
        np.testing.assert_array_equal(rec.trials["onset"].to_numpy(), events["onset"].to_numpy())
        assert rec.trials["stimulus_id"].tolist() == events["stimulus_id"].tolist()
        assert set(rec.trials["stimulus_id"]) <= ids
        # every image file named in the events is the stimulus table's image
        table = dataset.stimuli.table.set_index("stimulus_id")
        for sid, image in zip(events["stimulus_id"], events["image"]):
            assert (dataset.root / image).resolve() == Path(table.loc[sid, "path"]).resolve()
        # design: test images repeated, training images shown twice, 200 ms apart in a sequence
        counts = events.groupby("stimulus_id").size()
        split = events.groupby("stimulus_id")["split"].first()
        assert (counts[split == "test"] == N_TEST_REPS).all()
        assert (counts[split == "train"] == N_TRAIN_REPS).all()
        assert (split == "test").sum() == N_TEST
        assert (events.groupby("stimulus_id")["repetition"].max() == counts - 1).all()
        within = events.groupby("sequence")["onset"].diff().dropna()
        np.testing.assert_allclose(within, 0.2, atol=1e-9)
        assert (events["duration"] == 0.1).all()
        direct = load_bids(
            dataset.root, subject=subject, task="rsvp", datatype="eeg", **IMAGE_READ_OPTIONS
        )
        np.testing.assert_array_equal(direct.data, rec.data)
    pixels = np.asarray(dataset.stimuli.load(dataset.stimuli.ids[0]))
    assert pixels.shape[:2] == (64, 64)


def test_same_seed_same_files(dataset, cache, tmp_path):
    again = simulate_meeg_images_dataset(tmp_path / "again", feature_cache_dir=cache, **TINY)
    files = sorted(p for p in dataset.root.rglob("*") if p.is_file())
    assert sorted(p.relative_to(again.root) for p in again.root.rglob("*") if p.is_file()) == [
        p.relative_to(dataset.root) for p in files
    ]
    for path in files:
        rel = path.relative_to(dataset.root)
        if path.suffix == ".fif" or rel.name == "manifest.yaml":  # FIF ids may hold a time
            continue
        assert _sha256(path) == _sha256(again.root / rel), rel
    for subject in dataset.subjects:
        np.testing.assert_array_equal(
            again.ground_truth.clean_raw(subject).get_data(),
            dataset.ground_truth.clean_raw(subject).get_data(),
        )
    other = simulate_meeg_images_dataset(
        tmp_path / "other", feature_cache_dir=cache, **{**TINY, "seed": 4, "n_subjects": 1}
    )
    assert not np.array_equal(other.recordings["01"].data, dataset.recordings["01"].data)


def _band_power(x, band):
    sos = signal.butter(4, band, btype="bandpass", fs=SFREQ, output="sos")
    return np.mean(np.var(signal.sosfiltfilt(sos, x, axis=-1), axis=-1))


def test_snr_measured_from_the_files(dataset):
    truth = dataset.ground_truth
    for subject in dataset.subjects:
        noisy = mne.io.read_raw_brainvision(truth.files[subject]["data"], verbose="error")
        noisy = noisy.get_data()
        clean = truth.clean_raw(subject).get_data()
        assert compute_snr(clean, noisy - clean, SFREQ, band=truth.snr_band) == pytest.approx(
            SNR, rel=1e-3
        )
        naive = _band_power(clean, truth.snr_band) / _band_power(noisy - clean, truth.snr_band)
        assert naive == pytest.approx(SNR, rel=1e-3)
        assert truth.snr_achieved[subject] == pytest.approx(SNR, rel=1e-9)


def test_source_responses_follow_their_layer_readout(dataset):
    """Readouts recomputed from the saved layer features and weights; each source's response to
    an image, unmixed from noise-free epochs read back at its TRF peak, follows the readout."""
    truth = dataset.ground_truth
    saved = truth.image_readouts()
    ids = list(saved["stimulus_ids"])
    specs = truth.source_specs
    assert [s.name for s in specs] == [s.name for s in default_visual_sources()]
    assert list(saved["source_layers"]) == [s.feature for s in specs]
    latencies = {s.feature: s.latency for s in specs}
    assert latencies["blocks.1"] < latencies["blocks.3"] < latencies["blocks.6"]
    for i, subject in enumerate(dataset.subjects):
        events = read_bids_events(truth.files[subject]["events"])
        image = np.array([ids.index(s) for s in events["stimulus_id"]])
        epochs = load_meeg(
            truth.clean_path(subject),
            events=events,
            **{**IMAGE_READ_OPTIONS, "baseline": None},
        )
        unmix = np.linalg.pinv(truth.arrays(subject)["gain"])
        sources = np.einsum("sc,ect->est", unmix, epochs.data.astype(float))
        for j, spec in enumerate(specs):
            z = _zscore(saved[f"layer__{spec.feature}"].astype(float), axis=0)
            readout = _zscore(z @ saved[f"weights__{spec.name}"][i], axis=0)
            np.testing.assert_allclose(saved["readouts"][i, j], readout, atol=1e-9)
            peak = int(np.argmin(np.abs(epochs.times - spec.latency)))
            assert np.corrcoef(sources[:, j, peak], readout[image])[0, 1] > 0.9, spec.name
            # before the image has any effect, the response does not follow it
            assert abs(np.corrcoef(sources[:, j, 20], readout[image])[0, 1]) < 0.9
    # subjects read the layers out differently, but alike
    r = saved["readouts"]
    for j in range(len(specs)):
        assert 0.3 < np.corrcoef(r[0, j], r[1, j])[0, 1] < 0.999


def test_eeg_subjects_get_different_montages(dataset):
    recs = dataset.recordings
    assert recs["01"].modality == "eeg"
    assert recs["01"].ch_names != recs["02"].ch_names
    assert not np.allclose(recs["01"].sensor_positions, recs["02"].sensor_positions)
    arrays = dataset.ground_truth.arrays("01")
    assert list(arrays["ch_names"]) == recs["01"].ch_names
    assert arrays["gain"].shape == (16, len(default_visual_sources()))


def _naive_ceiling(clean, noisy, k):
    n_seg, n_ch, _ = clean.shape
    corr = np.array(
        [np.corrcoef(clean[:, c].ravel(), noisy[:, c].ravel())[0, 1] for c in range(n_ch)]
    )
    scores = np.corrcoef(noisy.reshape(n_seg, -1), clean.reshape(n_seg, -1))[:n_seg, n_seg:]
    ranks = (scores > np.diag(scores)[:, None]).sum(axis=1)
    return corr, np.mean(ranks < k), np.mean(ranks < 1)


def test_noise_ceiling_recomputed_from_the_saved_ground_truth(dataset):
    truth = dataset.ground_truth
    assert truth.noise_ceiling_settings["tmin"] == -0.2
    for subject in dataset.subjects:
        arrays = truth.arrays(subject)
        clean = arrays["gain"] @ arrays["source_activity"]
        raw = mne.io.RawArray(clean, truth.clean_raw(subject).info, verbose="error")
        events = read_bids_events(truth.files[subject]["events"])
        windows = load_meeg(raw, events=events, **IMAGE_READ_OPTIONS).data
        noisy = dataset.recordings[subject].data
        corr, top_k, top1 = _naive_ceiling(windows.astype(float), noisy.astype(float), 10)
        saved = truth.noise_ceiling[subject]
        np.testing.assert_allclose(saved.channel_correlation, corr, rtol=1e-4, atol=1e-6)
        assert saved.top_k_accuracy == pytest.approx(top_k)
        assert saved.top1_accuracy == pytest.approx(top1)
        assert saved.n_segments == N_PRESENTATIONS
        assert 0 < saved.mean_correlation < 1


def test_manifest_validates_and_reloading_gives_the_same_dataset(dataset):
    report = validate_dataset(dataset.root / "manifest.yaml", dataset.root, progress=False)
    assert report.ok, str(report)
    manifest = dataset.manifest
    assert manifest.reader.options == {"task": "rsvp", "datatype": "eeg"}
    assert manifest.stimuli.kind == "image"
    assert manifest.stimuli.n_stimuli == 12
    assert manifest.split.method == "column"
    assert manifest.preprocessing.tmin == -0.2
    again = load_simulated_meeg(dataset.root)
    assert again.paradigm == "images"
    assert list(again.stimuli.ids) == list(dataset.stimuli.ids)
    for subject in dataset.subjects:
        np.testing.assert_array_equal(
            again.recordings[subject].data, dataset.recordings[subject].data
        )
    assert (dataset.root / DERIVATIVES / "image_readouts.npz").is_file()
    with pytest.raises(ValueError, match="only image datasets"):
        type(dataset.ground_truth)(
            **{**dataset.ground_truth.__dict__, "paradigm": "speech"}
        ).image_readouts()


def test_bad_arguments_are_reported(dataset, cache, tmp_path):
    out = tmp_path / "x"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        simulate_meeg_images_dataset(dataset.root, feature_cache_dir=cache, **TINY)
    with pytest.raises(ValueError, match=r"'soa'.*whole number of samples"):
        simulate_meeg_images_dataset(out, soa=0.205, sfreq=100.0)
    with pytest.raises(ValueError, match="'image_duration' must be in"):
        simulate_meeg_images_dataset(out, image_duration=0.3)
    with pytest.raises(ValueError, match="'n_images' must be an integer above"):
        simulate_meeg_images_dataset(out, n_images=5, n_test_images=5)
    with pytest.raises(ValueError, match="'n_test_repetitions' must be a positive integer"):
        simulate_meeg_images_dataset(out, n_test_repetitions=0)
    with pytest.raises(ValueError, match="Allowed values are 'meg', 'eeg'"):
        simulate_meeg_images_dataset(out, modality="fmri")
    bad = SourceSpec("v1", "early visual", (-10, -94, 2), "blocks.9", 0.1)
    with pytest.raises(ValueError, match="EfficientNet-Lite0 lacks"):
        simulate_meeg_images_dataset(out, sources=[bad])
    assert not out.exists()
