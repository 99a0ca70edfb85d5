"""The simulated listening dataset end to end: eSpeak NG speech, BIDS on disk, the readers.

Needs the ``espeak-ng`` program (Debian/Ubuntu package ``espeak-ng``); skipped without it.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import mne
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import signal

from brainalign.data.simulate.meeg import (
    DERIVATIVES,
    READ_OPTIONS,
    compute_envelope,
    compute_snr,
    default_meeg_sources,
    gamma_trf,
)
from brainalign.io import load_bids, load_meeg, read_bids_events, validate_dataset
from brainalign.pipelines.simulate_meeg import (
    DEFAULT_TEXT,
    load_simulated_meeg,
    simulate_meeg_dataset,
    synthesize_speech,
)

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)",
)

SFREQ = 120.0
SNR = 0.5
SMALL = {
    "seed": 0,
    "n_subjects": 2,
    "modality": "meg",
    "duration": 20.0,
    "snr": SNR,
    "sfreq": SFREQ,
    "n_channels": 24,
    "n_dipoles_per_patch": 3,
    "verbose": False,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return simulate_meeg_dataset(tmp_path_factory.mktemp("sim") / "meg", **SMALL)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_words_start_exactly_at_their_onsets():
    speech = synthesize_speech("The quick brown fox. It jumps over the lazy dog!", duration=3.0)
    words = speech.words
    assert words["word"].tolist()[:4] == ["the", "quick", "brown", "fox"]
    assert words["sentence"].tolist()[:5] == [0, 0, 0, 0, 1]
    assert words["stimulus_id"].is_unique
    fs = speech.sfreq
    for _, row in words.iterrows():
        wave = speech.sounds[row["sound"]]
        start = round(row["onset"] * fs)
        assert start == pytest.approx(row["onset"] * fs, abs=1e-6)  # a whole sample
        clip = wave[start : start + round(row["duration"] * fs)]
        loud = np.flatnonzero(np.abs(clip) > 0.02 * np.abs(clip).max())
        # the word is audible from its onset, within 5 ms (+ 1 ms for the resampling filter)
        assert loud[0] <= 0.006 * fs
        before = wave[max(start - round(0.03 * fs), 0) : start]
        assert np.abs(before).max(initial=0.0) < 0.05 * np.abs(clip).max()
    again = synthesize_speech("The quick brown fox. It jumps over the lazy dog!", duration=3.0)
    for name, wave in speech.sounds.items():
        np.testing.assert_array_equal(again.sounds[name], wave)


def test_synthesize_speech_repeats_a_short_text_with_a_warning():
    from brainalign._utils.errors import BrainAlignWarning

    with pytest.warns(BrainAlignWarning, match="spoken again from the start"):
        speech = synthesize_speech("One two.", duration=2.0)
    assert speech.duration >= 2.0
    assert speech.words["sentence"].max() >= 1
    with pytest.raises(ValueError, match="no words to speak"):
        synthesize_speech("...", duration=1.0)
    with pytest.raises(FileNotFoundError, match="apt-get install espeak-ng"):
        synthesize_speech("hello", executable="no-such-espeak")
    with pytest.raises(ValueError, match="Check the voice name"):
        synthesize_speech("hello", voice="xx-no-such-voice")
    with pytest.raises(ValueError, match="'word_gap' must be"):
        synthesize_speech("hello", word_gap=(0.2, 0.1))
    assert len(DEFAULT_TEXT.split()) > 1000


def test_recordings_are_read_back_as_word_windows(dataset):
    assert dataset.subjects == ("01", "02")
    assert dataset.modality == "meg"
    for subject, rec in dataset.recordings.items():
        assert rec.kind == "epochs"
        assert rec.sfreq == 120.0
        assert rec.data.dtype == np.float32
        assert rec.data.shape[1:] == (24, 361)  # -0.5 to 2.5 s at 120 Hz
        events = read_bids_events(dataset.ground_truth.files[subject]["events"])
        np.testing.assert_array_equal(rec.trials["onset"].to_numpy(), events["onset"].to_numpy())
        assert rec.trials["stimulus_id"].tolist() == list(dataset.stimuli.ids)
        # the word's audio starts at its onset in its sound file
        sound_start = (events["onset"] - events["sound_onset"]).round(9)
        assert (sound_start.groupby(events["sound"]).nunique() == 1).all()
        assert all((dataset.root / s).is_file() for s in events["sound"].unique())
        direct = load_bids(
            dataset.root, subject=subject, task="listen", datatype="meg", **READ_OPTIONS
        )
        np.testing.assert_array_equal(direct.data, rec.data)
    wave, fs = dataset.stimuli.load(dataset.stimuli.ids[0])
    assert fs == 16_000.0
    assert wave.size > 0


def test_same_seed_same_dataset(dataset, tmp_path):
    again = simulate_meeg_dataset(tmp_path / "again", **SMALL)
    truth, truth2 = dataset.ground_truth, again.ground_truth
    for subject in dataset.subjects:
        raw = mne.io.read_raw_fif(truth.files[subject]["data"], verbose="error")
        raw2 = mne.io.read_raw_fif(truth2.files[subject]["data"], verbose="error")
        np.testing.assert_array_equal(raw.get_data(), raw2.get_data())
        assert _sha256(truth.files[subject]["events"]) == _sha256(truth2.files[subject]["events"])
        for key, value in truth.arrays(subject).items():
            np.testing.assert_array_equal(truth2.arrays(subject)[key], value)
        np.testing.assert_array_equal(
            again.recordings[subject].data, dataset.recordings[subject].data
        )
    for wav in sorted((dataset.root / "stimuli" / "audio").glob("*.wav")):
        assert _sha256(wav) == _sha256(tmp_path / "again" / "stimuli" / "audio" / wav.name)
    for name in ("noise_ceiling.json", "features.npz"):
        assert _sha256(dataset.root / DERIVATIVES / name) == _sha256(
            tmp_path / "again" / DERIVATIVES / name
        )


def test_snr_measured_from_the_files(dataset):
    truth = dataset.ground_truth
    for subject in dataset.subjects:
        noisy = mne.io.read_raw_fif(truth.files[subject]["data"], verbose="error").get_data()
        clean = truth.clean_raw(subject).get_data()
        assert compute_snr(clean, noisy - clean, SFREQ, band=truth.snr_band) == pytest.approx(
            SNR, rel=1e-3
        )
        f, p_clean = signal.welch(clean, fs=SFREQ, nperseg=512)
        _, p_noise = signal.welch(noisy - clean, fs=SFREQ, nperseg=512)
        band = (f >= truth.snr_band[0]) & (f <= truth.snr_band[1])
        assert p_clean[:, band].sum() / p_noise[:, band].sum() == pytest.approx(SNR, rel=0.15)


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
    settings = truth.noise_ceiling_settings
    assert settings["sfreq"] == 120.0
    assert settings["tmin"] == -0.5
    for subject in dataset.subjects:
        arrays = truth.arrays(subject)
        clean = arrays["gain"] @ arrays["source_activity"]  # (n_channels, n_times)
        info = truth.clean_raw(subject).info
        raw = mne.io.RawArray(clean, info, verbose="error")
        events = read_bids_events(truth.files[subject]["events"])
        windows = load_meeg(raw, events=events, **READ_OPTIONS).data
        noisy = dataset.recordings[subject].data
        corr, top_k, top1 = _naive_ceiling(windows.astype(float), noisy.astype(float), 10)
        saved = truth.noise_ceiling[subject]
        np.testing.assert_allclose(saved.channel_correlation, corr, rtol=1e-4, atol=1e-6)
        assert saved.top_k_accuracy == pytest.approx(top_k)
        assert saved.top1_accuracy == pytest.approx(top1)
        assert saved.n_segments == len(events)
        assert 0 < saved.mean_correlation < 1


def _trf(estimate, envelope, n_lags=61, ridge=0.1):
    """Least-squares TRF of ``estimate`` on the z-scored envelope, lags 0 to n_lags - 1."""
    env = (envelope - envelope.mean()) / envelope.std()
    lagged = np.stack([np.r_[np.zeros(k), env[: len(env) - k]] for k in range(n_lags)], axis=1)
    gram = lagged.T @ lagged
    return np.linalg.solve(
        gram + ridge * np.trace(gram) / n_lags * np.eye(n_lags), lagged.T @ estimate
    )


def test_auditory_source_follows_the_envelope_at_its_latency(dataset):
    """Unmix the sensors with the true gain and estimate the TRF on the speech envelope.

    Noise-free recording (read from its FIF): the TRF peaks at the source's latency (100 ms,
    sample 12) ± 1 sample. Noisy recording (20 s at SNR 0.5): the estimate still follows the
    true kernel (correlation > 0.5) and peaks within ± 3 samples (25 ms).
    """
    truth = dataset.ground_truth
    names = [s.name for s in truth.source_specs]
    index = names.index("auditory_left")
    spec = truth.source_specs[index]
    assert spec.feature == "envelope"
    lag = round(spec.latency * SFREQ)
    kernel = gamma_trf(SFREQ, spec.latency, spec.shape)
    kernel = np.r_[kernel, np.zeros(61 - len(kernel))]
    envelope = truth.features["envelope"]
    for subject in dataset.subjects:
        unmix = np.linalg.pinv(truth.arrays(subject)["gain"])
        clean = load_meeg(truth.clean_path(subject), epochs=False).data.T.astype(float)
        trf = _trf((unmix @ clean)[index], envelope, ridge=1e-3)
        assert abs(int(np.argmax(trf)) - lag) <= 1
        assert np.corrcoef(trf, kernel)[0, 1] > 0.99
        noisy = load_bids(dataset.root, subject=subject, task="listen", epochs=False)
        trf = _trf((unmix @ noisy.data.T.astype(float))[index], envelope)
        assert abs(int(np.argmax(trf)) - lag) <= 3
        assert np.corrcoef(trf, kernel)[0, 1] > 0.5


def test_envelope_feature_is_the_hilbert_envelope_of_the_audio(dataset):
    truth = dataset.ground_truth
    events = read_bids_events(truth.files["01"]["events"])
    audio = np.zeros(round(truth.n_times / SFREQ * 16_000), dtype=np.float32)
    for sound, group in events.groupby("sound"):
        full, fs = sf.read(dataset.root / sound, dtype="float32")
        start = round((group["onset"] - group["sound_onset"]).iloc[0] * fs)
        audio[start : start + len(full)] = full
    envelope = compute_envelope(audio, 16_000.0, SFREQ, n_times=truth.n_times)
    np.testing.assert_allclose(truth.features["envelope"], envelope, rtol=1e-6, atol=1e-9)
    windows = dataset.feature_windows("mel")
    assert windows.shape == (len(events), 40, 361)
    assert truth.features["word_onset"].sum() == len(events)


def test_manifest_validates_and_reloading_gives_the_same_dataset(dataset):
    report = validate_dataset(dataset.root / "manifest.yaml", dataset.root, progress=False)
    assert report.ok, str(report)
    assert dataset.manifest.reader.name == "load_bids"
    assert dataset.manifest.reader.options == {"task": "listen", "datatype": "meg"}
    assert dataset.manifest.subjects == ("01", "02")
    again = load_simulated_meeg(dataset.root)
    for subject in dataset.subjects:
        np.testing.assert_array_equal(
            again.recordings[subject].data, dataset.recordings[subject].data
        )
        np.testing.assert_array_equal(
            again.clean_recordings[subject].data, dataset.clean_recordings[subject].data
        )
        assert again.noise_ceiling[subject].to_dict() == dataset.noise_ceiling[subject].to_dict()
    content = json.loads((dataset.root / DERIVATIVES / "ground_truth.json").read_text())
    assert content["parameters"]["seed"] == 0
    assert [s["name"] for s in content["sources"]] == [
        s.name for s in default_meeg_sources(["envelope", "mel", "word_onset"])
    ]


def test_eeg_dataset_with_a_montage_per_subject(tmp_path):
    ds = simulate_meeg_dataset(
        tmp_path / "eeg", **{**SMALL, "modality": "eeg", "duration": 8.0, "n_channels": 16}
    )
    assert (tmp_path / "eeg" / "sub-01" / "eeg" / "sub-01_task-listen_eeg.vhdr").is_file()
    recs = ds.recordings
    assert recs["01"].modality == "eeg"
    assert recs["01"].ch_names != recs["02"].ch_names
    assert not np.allclose(recs["01"].sensor_positions, recs["02"].sensor_positions)
    for subject in ds.subjects:
        assert ds.ground_truth.snr_achieved[subject] == pytest.approx(SNR)
        assert ds.clean_recordings[subject].data.shape == recs[subject].data.shape


@pytest.mark.slow  # importing transformers alone takes 6-20 s on the CI machines
def test_speech_model_embeddings_drive_the_language_sources(tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    config = transformers.Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    )
    torch.manual_seed(0)
    model = transformers.Wav2Vec2Model(config).eval()
    from brainalign.targets import load_speech_model

    ds = simulate_meeg_dataset(
        tmp_path / "emb",
        **{**SMALL, "n_subjects": 1, "duration": 6.0, "n_channels": 12},
        speech_model=load_speech_model(model),
    )
    truth = ds.ground_truth
    assert truth.features["embedding"].shape == (16, truth.n_times)
    by_name = {s.name: s for s in truth.source_specs}
    assert by_name["mtg_left"].feature == "embedding"
    assert len(by_name["mtg_left"].weights) == 16


def test_bad_arguments_are_reported(dataset, tmp_path):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        simulate_meeg_dataset(dataset.root, **SMALL)
    with pytest.raises(ValueError, match="Allowed values are 'meg', 'eeg'"):
        simulate_meeg_dataset(tmp_path / "x", modality="fmri")
    with pytest.raises(ValueError, match="snr_band"):
        simulate_meeg_dataset(tmp_path / "x", sfreq=50.0)
    with pytest.raises(FileNotFoundError, match=r"manifest\.yaml"):
        load_simulated_meeg(tmp_path)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_default_size_dataset(tmp_path):
    ds = simulate_meeg_dataset(tmp_path / "default", verbose=False)
    assert len(ds.subjects) == 2
    assert ds.recordings["01"].data.shape[1] == 208
    ceiling = ds.noise_ceiling["01"]
    assert 0.0 < ceiling.mean_correlation < 1.0
    assert ceiling.top_k_accuracy > 10 / ceiling.n_segments
    assert isinstance(ds.ground_truth.sources, pd.DataFrame)
