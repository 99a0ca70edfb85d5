"""Simulated M/EEG: TRFs, envelope, forward projection, SNR, noise ceiling, BIDS round trip.

The features here are synthetic arrays (no speech synthesiser is needed); the speech pipeline is
tested in tests/pipelines/test_simulate_meeg.py.
"""

from __future__ import annotations

import json

import mne
import numpy as np
import pandas as pd
import pytest
from scipy import signal, stats

from brainalign.data.simulate.meeg import (
    DERIVATIVES,
    EEG_MONTAGES,
    READ_OPTIONS,
    MEEGNoise,
    NoiseCeiling,
    SimulatedSubject,
    SourceSpec,
    compute_envelope,
    compute_noise_ceiling,
    compute_snr,
    default_meeg_sources,
    gamma_trf,
    make_meeg_info,
    make_source_time_courses,
    mni_to_head,
    quantize_pcm16,
    read_meeg_ground_truth,
    simulate_meeg_subject,
    word_onset_impulses,
    write_meeg_manifest,
    write_noise_ceiling,
    write_simulated_meeg,
)
from brainalign.io import load_audio, load_bids, read_bids_events, validate_dataset

SFREQ = 120.0
N_TIMES = 2400  # 20 s
WORD_ONSETS = np.round(np.arange(1.0, 16.0, 0.37), 4)  # 41 words inside the recording


def _features(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sos = signal.butter(4, 8.0, fs=SFREQ, output="sos")
    envelope = np.abs(signal.sosfiltfilt(sos, rng.standard_normal(N_TIMES)))
    mel = signal.sosfiltfilt(sos, rng.standard_normal((7, N_TIMES)), axis=-1)
    return {
        "envelope": envelope,
        "mel": mel,
        "word_onset": word_onset_impulses(WORD_ONSETS, SFREQ, N_TIMES),
    }


@pytest.fixture(scope="module")
def time_courses():
    return make_source_time_courses(_features(), SFREQ, seed=0)


@pytest.fixture(scope="module")
def meg_subject(time_courses):
    return simulate_meeg_subject(
        time_courses, modality="meg", seed=3, snr=0.4, n_channels=24, n_dipoles_per_patch=3
    )


# ----------------------------------------------------------------------------------------------
# building blocks


def test_gamma_trf_is_the_gamma_density_peaking_at_the_latency():
    latency, k = 0.1, 8.0
    trf = gamma_trf(SFREQ, latency, k)
    t = np.arange(len(trf)) / SFREQ
    density = stats.gamma.pdf(t, a=k, scale=latency / (k - 1))
    np.testing.assert_allclose(
        trf, density / stats.gamma.pdf(latency, a=k, scale=latency / (k - 1))
    )
    assert np.argmax(trf) == round(latency * SFREQ)
    assert trf[-1] < 1e-3 <= trf.max()
    assert len(gamma_trf(SFREQ, latency, k, duration=0.5)) == 61


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latency": 0.1, "shape": 1.0}, "'shape' must be > 1"),
        ({"latency": -0.1, "shape": 4.0}, "'latency' must be positive"),
    ],
)
def test_gamma_trf_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gamma_trf(SFREQ, **kwargs)


def test_compute_envelope_recovers_amplitude_modulation():
    fs = 16_000.0
    t = np.arange(int(4 * fs)) / fs
    modulation = 1.0 + 0.5 * np.sin(2 * np.pi * 2.0 * t)
    wave = modulation * np.sin(2 * np.pi * 1000.0 * t)
    env = compute_envelope(wave, fs, 100.0)
    assert env.shape == (400,)
    truth = 1.0 + 0.5 * np.sin(2 * np.pi * 2.0 * np.arange(400) / 100.0)
    np.testing.assert_allclose(env[20:-20], truth[20:-20], atol=0.01)
    # full-wave rectification then low-pass: the mean of |sin| is 2/pi
    rect = compute_envelope(wave, fs, 100.0, method="rectify", cutoff=10.0, n_times=390)
    assert rect.shape == (390,)
    np.testing.assert_allclose(rect[20:-20], 2 / np.pi * truth[20:370], atol=0.02)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.ones(100), 1000.0, 100.0), {"method": "hilbrt"}, "Did you mean 'hilbert'"),
        ((np.ones((2, 100)), 1000.0, 100.0), {}, "mono signal"),
        ((np.ones(100), 1000.0, 100.0), {"cutoff": 60.0}, "below the Nyquist"),
    ],
)
def test_compute_envelope_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compute_envelope(*args, **kwargs)


def test_word_onset_impulses():
    out = word_onset_impulses([0.1, 0.5, 0.5], 100.0, 90, values=[1.0, 2.0, 3.0])
    expected = np.zeros(90)
    expected[10], expected[50] = 1.0, 5.0
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="outside the 90 samples"):
        word_onset_impulses([0.2, 1.0], 100.0, 90)
    with pytest.raises(ValueError, match="one value per onset"):
        word_onset_impulses([0.2], 100.0, 90, values=[1.0, 2.0])


def test_mni_to_head_puts_the_fiducials_on_the_head_axes():
    """Head coordinates are defined by the fiducials: nasion on +y, ears on the x axis."""
    fids, _ = mne.io.read_fiducials(
        mne.__path__[0] + "/data/fsaverage/fsaverage-fiducials.fif", verbose="error"
    )
    mri = {int(f["ident"]): f["r"] * 1000 for f in fids}  # mm
    lpa, nasion, rpa = (mni_to_head(mri[i]) for i in (1, 2, 3))
    np.testing.assert_allclose(nasion[[0, 2]], 0.0, atol=1e-6)
    assert nasion[1] > 0.08
    np.testing.assert_allclose(lpa[1:], 0.0, atol=1e-6)
    np.testing.assert_allclose(rpa[1:], 0.0, atol=1e-6)
    np.testing.assert_allclose((lpa + rpa)[0], 0.0, atol=1e-6)
    assert mni_to_head(np.zeros((4, 3))).shape == (4, 3)
    with pytest.raises(ValueError, match="3 coordinates"):
        mni_to_head([1.0, 2.0])


def test_source_time_courses_are_scaled_trf_convolutions(time_courses):
    feats = _features()
    assert time_courses.names == [s.name for s in default_meeg_sources(feats)]
    for i, spec in enumerate(time_courses.sources):
        feat = feats[spec.feature]
        if feat.ndim == 2:
            w = np.asarray(spec.weights)
            assert np.all(w >= 0)
            np.testing.assert_allclose(np.linalg.norm(w), 1.0)
            z = (feat - feat.mean(1, keepdims=True)) / feat.std(1, keepdims=True)
            drive = w @ z
        else:
            drive = feat
            assert spec.weights is None
        drive = (drive - drive.mean()) / drive.std()
        np.testing.assert_allclose(time_courses.drives[i], drive, atol=1e-12)
        naive = np.convolve(drive, gamma_trf(SFREQ, spec.latency, spec.shape))[:N_TIMES]
        expected = spec.amplitude * naive / naive.std()
        np.testing.assert_allclose(time_courses.data[i], expected, rtol=1e-9, atol=1e-20)
        np.testing.assert_allclose(time_courses.data[i].std(), spec.amplitude)


def test_make_source_time_courses_rejects_bad_input():
    feats = _features()
    with pytest.raises(ValueError, match="not among the features given"):
        make_source_time_courses(
            feats, SFREQ, [SourceSpec("a", "auditory", (-52, -22, 8), "envelop")]
        )
    with pytest.raises(ValueError, match="same number of samples"):
        make_source_time_courses({"envelope": np.ones(10), "mel": np.ones((2, 11))}, SFREQ)
    spec = SourceSpec("a", "auditory", (-52, -22, 8), "envelope")
    with pytest.raises(ValueError, match="unique"):
        make_source_time_courses(feats, SFREQ, [spec, spec])
    with pytest.raises(ValueError, match="'latency' must be a positive"):
        SourceSpec("a", "auditory", (0, 0, 0), "envelope", latency=0.0)
    with pytest.raises(ValueError, match="has 2 weights"):
        make_source_time_courses(
            feats, SFREQ, [SourceSpec("m", "auditory", (0, 0, 40), "mel", weights=(1.0, 1.0))]
        )
    with pytest.raises(ValueError, match="None of the default sources"):
        default_meeg_sources(["pitch"])


def test_embeddings_drive_the_language_sources_when_given():
    """Fast version of the speech-model test of the pipeline (which imports transformers)."""
    feats = {**_features(), "embedding": np.random.default_rng(5).standard_normal((16, N_TIMES))}
    by_name = {s.name: s for s in default_meeg_sources(feats)}
    assert by_name["mtg_left"].feature == "embedding"
    assert by_name["ifg_left"].feature == "embedding"
    assert by_name["auditory_left"].feature == "envelope"
    tc = make_source_time_courses(feats, SFREQ, seed=1)
    specs = {s.name: s for s in tc.sources}
    assert len(specs["mtg_left"].weights) == 16
    assert specs["mtg_left"].weights != specs["ifg_left"].weights
    no_embedding = {s.name: s.feature for s in default_meeg_sources(_features())}
    assert no_embedding["mtg_left"] == "word_onset"


# ----------------------------------------------------------------------------------------------
# sensors and forward model


def test_meg_sensors_on_the_kit_helmet_outside_the_head():
    info = make_meeg_info("meg", SFREQ, seed=0)
    assert len(info["ch_names"]) == 208
    assert {ch["coil_type"] for ch in info["chs"]} == {
        mne.io.constants.FIFF.FIFFV_COIL_POINT_MAGNETOMETER
    }
    pos = mne.transforms.apply_trans(
        info["dev_head_t"], np.array([ch["loc"][:3] for ch in info["chs"]])
    )
    scalp = np.array([d["r"] for d in info["dig"] if d["kind"] == 4])  # FIFFV_POINT_EXTRA
    distance = np.linalg.norm(pos[:, None] - scalp[None], axis=-1).min(axis=1)
    assert distance.min() > 0.005  # every sensor at least 5 mm from the scalp
    other = make_meeg_info("meg", SFREQ, seed=1)
    assert not np.allclose(info["dev_head_t"]["trans"], other["dev_head_t"]["trans"])
    same = make_meeg_info("meg", SFREQ, seed=0)
    np.testing.assert_array_equal(info["dev_head_t"]["trans"], same["dev_head_t"]["trans"])
    centred = make_meeg_info("meg", SFREQ, seed=1, variability=0.0)
    np.testing.assert_allclose(centred["dev_head_t"]["trans"][:3, :3], np.eye(3), atol=1e-12)


def test_eeg_montages_and_subsets_differ_between_subjects():
    infos = [make_meeg_info("eeg", SFREQ, subject_index=i, seed=i) for i in range(3)]
    names = [set(info["ch_names"]) for info in infos]
    assert names[0] != names[1] != names[2] != names[0]
    for info, montage in zip(infos, EEG_MONTAGES):
        assert set(info["ch_names"]) == set(mne.channels.make_standard_montage(montage).ch_names)
    subset = make_meeg_info("eeg", SFREQ, subject_index=0, n_channels=16, seed=0)
    assert len(subset["ch_names"]) == 16
    assert set(subset["ch_names"]) < names[0]
    with pytest.raises(ValueError, match="exceeds the 64 electrodes"):
        make_meeg_info("eeg", SFREQ, n_channels=65)
    with pytest.raises(ValueError, match="Allowed values are 'meg', 'eeg'"):
        make_meeg_info("ieeg", SFREQ)


@pytest.mark.parametrize("modality", ["meg", "eeg"])
def test_clean_signal_is_the_forward_solution_times_the_dipoles(time_courses, modality):
    sim = simulate_meeg_subject(
        time_courses, modality=modality, seed=5, n_channels=16, n_dipoles_per_patch=2
    )
    n_dip = len(sim.dipoles)
    g = sim.forward["sol"]["data"][:, : 3 * n_dip]
    projected = (sim.channel_gain * sim.subject_gain)[:, None] * (g @ sim.dipole_moments())
    if modality == "eeg":
        projected -= projected.mean(axis=0)  # average reference
    np.testing.assert_allclose(
        sim.clean, projected, rtol=1e-10, atol=1e-12 * np.abs(projected).max()
    )
    np.testing.assert_allclose(sim.clean, sim.gain @ sim.source_activity, rtol=1e-10)


def test_projection_of_one_dipole_equals_fwd_sol_times_moment(time_courses):
    """Simplest case: one source, one dipole, nominal gains: clean == G[:, 0:3] @ moment."""
    one = make_source_time_courses(
        {"envelope": _features()["envelope"]},
        SFREQ,
        [SourceSpec("a1", "auditory", (-52, -22, 8), "envelope", 0.1)],
    )
    sim = simulate_meeg_subject(
        one, modality="meg", seed=0, n_channels=12, n_dipoles_per_patch=1, variability=0.0
    )
    assert sim.subject_gain == 1.0
    np.testing.assert_array_equal(sim.channel_gain, 1.0)
    ori = sim.sources[["ox", "oy", "oz"]].to_numpy()[0]
    moment = ori[:, None] * one.data[0][None, :]  # (3, n_times) A·m
    np.testing.assert_allclose(sim.clean, sim.forward["sol"]["data"][:, :3] @ moment, rtol=1e-12)
    np.testing.assert_array_equal(
        sim.dipoles[["x", "y", "z"]].to_numpy()[0], sim.sources[["x", "y", "z"]].to_numpy()[0]
    )


def test_snr_is_achieved_and_agrees_with_welch(meg_subject):
    sim = meg_subject
    assert sim.snr_achieved == pytest.approx(0.4, rel=1e-9)
    noise = sim.data - sim.clean
    assert compute_snr(sim.clean, noise, SFREQ, band=sim.snr_band) == pytest.approx(0.4, rel=1e-9)
    # independent estimate: Welch power spectra integrated over the band
    f, p_signal = signal.welch(sim.clean, fs=SFREQ, nperseg=512)
    _, p_noise = signal.welch(noise, fs=SFREQ, nperseg=512)
    band = (f >= 0.5) & (f <= 30.0)
    assert p_signal[:, band].sum() / p_noise[:, band].sum() == pytest.approx(0.4, rel=0.15)
    # the line noise stands out at 50 Hz
    line = np.argmin(np.abs(f - 50.0))
    assert np.median(p_noise[:, line] / p_noise[:, line - 6]) > 10


def test_simulation_is_deterministic(time_courses, meg_subject):
    again = simulate_meeg_subject(
        time_courses, modality="meg", seed=3, snr=0.4, n_channels=24, n_dipoles_per_patch=3
    )
    np.testing.assert_array_equal(again.data, meg_subject.data)
    np.testing.assert_array_equal(again.gain, meg_subject.gain)
    pd.testing.assert_frame_equal(again.sources, meg_subject.sources)
    other = simulate_meeg_subject(
        time_courses, modality="meg", seed=4, snr=0.4, n_channels=24, n_dipoles_per_patch=3
    )
    assert np.abs(other.data - meg_subject.data).max() > 0.1 * np.abs(meg_subject.data).max()


def test_sensor_correlates_with_the_feature_at_the_trf_latency():
    """A white feature, one auditory source: the cross-correlation peaks at its latency."""
    white = np.random.default_rng(11).standard_normal(N_TIMES)
    latency = 0.1
    one = make_source_time_courses(
        {"envelope": white},
        SFREQ,
        [SourceSpec("a1", "auditory", (-52, -22, 8), "envelope", latency)],
    )
    sim = simulate_meeg_subject(one, modality="meg", seed=2, snr=2.0, n_channels=32)
    best = int(np.argmax(np.abs(sim.gain[:, 0])))
    sensor = sim.data[best] - sim.data[best].mean()
    lags = np.arange(0, 61)
    xcorr = np.array([np.dot(sensor[lag:], white[: N_TIMES - lag]) for lag in lags])
    peak = lags[np.argmax(np.abs(xcorr))]
    assert abs(peak - round(latency * SFREQ)) <= 1


def test_simulate_meeg_subject_rejects_bad_parameters(time_courses):
    with pytest.raises(ValueError, match="'snr' must be positive"):
        simulate_meeg_subject(time_courses, snr=0.0)
    with pytest.raises(ValueError, match="snr_band"):
        simulate_meeg_subject(time_courses, snr_band=(1.0, 70.0))
    with pytest.raises(ValueError, match="'n_dipoles_per_patch' must be between 1 and 7"):
        simulate_meeg_subject(time_courses, n_dipoles_per_patch=8)
    with pytest.raises(ValueError, match="brain_fraction must be in"):
        MEEGNoise(brain_fraction=1.5)
    deep = make_source_time_courses(
        {"envelope": _features()["envelope"]},
        SFREQ,
        [SourceSpec("out", "auditory", (-95, -22, 8), "envelope")],
    )
    with pytest.raises(ValueError, match="outside its inner shell"):
        simulate_meeg_subject(deep, n_channels=8)
    radial = make_source_time_courses(
        {"envelope": _features()["envelope"]},
        SFREQ,
        [SourceSpec("r", "auditory", (-52, -22, 8), "envelope", orientation=(-1, 0, 0.1))],
    )
    with pytest.raises(ValueError, match="almost radial"):
        simulate_meeg_subject(radial, n_channels=8, variability=0.0)


# ----------------------------------------------------------------------------------------------
# noise ceiling


def _naive_ceiling(clean, noisy, k):
    n_seg, n_ch, _ = clean.shape
    corr = np.array(
        [np.corrcoef(clean[:, c].ravel(), noisy[:, c].ravel())[0, 1] for c in range(n_ch)]
    )
    ranks = []
    for i in range(n_seg):
        scores = [np.corrcoef(noisy[i].ravel(), clean[j].ravel())[0, 1] for j in range(n_seg)]
        ranks.append(sum(s > scores[i] for s in scores))
    ranks = np.array(ranks)
    return corr, np.mean(ranks < k), np.mean(ranks < 1)


def test_noise_ceiling_matches_a_naive_implementation():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal((9, 7, 8))
    noisy = clean + 4.0 * rng.standard_normal((9, 7, 8))
    ceiling = compute_noise_ceiling(clean, noisy, top_k=3, chunk_size=4)
    corr, top_k, top1 = _naive_ceiling(clean, noisy, 3)
    np.testing.assert_allclose(ceiling.channel_correlation, corr, rtol=1e-12)
    assert ceiling.mean_correlation == pytest.approx(corr.mean())
    assert ceiling.top_k_accuracy == pytest.approx(top_k)
    assert ceiling.top1_accuracy == pytest.approx(top1)
    assert 0 < ceiling.top1_accuracy < 1  # the case is not trivial
    assert NoiseCeiling.from_dict(ceiling.to_dict()).top_k_accuracy == ceiling.top_k_accuracy
    perfect = compute_noise_ceiling(clean, clean, top_k=1)
    np.testing.assert_allclose(perfect.channel_correlation, 1.0)
    assert perfect.top1_accuracy == 1.0


@pytest.mark.parametrize(
    ("shape_noisy", "top_k", "match"),
    [
        ((9, 7, 9), 3, "same shape"),
        ((9, 7, 8), 9, "'top_k' must be between 1 and n_segments - 1 = 8"),
    ],
)
def test_noise_ceiling_rejects_bad_input(shape_noisy, top_k, match):
    with pytest.raises(ValueError, match=match):
        compute_noise_ceiling(np.zeros((9, 7, 8)), np.zeros(shape_noisy), top_k=top_k)


# ----------------------------------------------------------------------------------------------
# writing and reading back


def _words_and_sounds(events_onsets):
    """A 'sound' of noise bursts (a fixture, not speech) and one word per onset in it."""
    fs = 16_000.0
    sound_start = 0.5
    n = int(17.0 * fs)
    wave = quantize_pcm16(np.random.default_rng(1).uniform(-0.5, 0.5, n))
    sound_onset = events_onsets - sound_start
    words = pd.DataFrame(
        {
            "stimulus_id": [f"w{i:05d}" for i in range(len(sound_onset))],
            "file": "audio/story_000.wav",
            "onset": sound_onset,
            "duration": 0.3,
            "word": [f"word{i % 5}" for i in range(len(sound_onset))],
            "sentence": np.arange(len(sound_onset)) // 6,
            "word_index": np.arange(len(sound_onset)) % 6,
        }
    )
    events = pd.DataFrame(
        {
            "onset": events_onsets,
            "duration": 0.3,
            "stimulus_id": words["stimulus_id"],
            "word": words["word"],
            "sound": "stimuli/audio/story_000.wav",
            "sound_onset": sound_onset,
            "sentence": words["sentence"],
            "word_index": words["word_index"],
        }
    )
    return words, events, {"stimuli/audio/story_000.wav": (wave, fs)}


@pytest.fixture(scope="module", params=["meg", "eeg"])
def written(request, tmp_path_factory, time_courses):
    modality = request.param
    sims = [
        simulate_meeg_subject(
            time_courses,
            modality=modality,
            subject=f"{i + 1:02d}",
            subject_index=i,
            seed=10 + i,
            snr=0.3,
            n_channels=16,
            n_dipoles_per_patch=1,
        )
        for i in range(2)
    ]
    words, events, sounds = _words_and_sounds(WORD_ONSETS)
    root = tmp_path_factory.mktemp(f"sim_{modality}")
    write_simulated_meeg(
        root,
        iter(sims),
        time_courses,
        events=events,
        features=_features(),
        sounds=sounds,
        words=words,
        parameters={"seed": 10},
    )
    return root, sims, events, words


def test_round_trip_through_load_bids(written):
    root, sims, events, _ = written
    for sim in sims:
        rec = load_bids(
            root, subject=sim.subject, task="listen", datatype=sim.modality, epochs=False
        )
        assert rec.modality == sim.modality
        assert rec.ch_names == sim.ch_names
        assert rec.data.shape == (N_TIMES, len(sim.ch_names))
        if sim.modality == "meg":  # FIF float32: the float32 values exactly
            np.testing.assert_array_equal(rec.data, sim.data.T.astype(np.float32))
        else:  # BrainVision float32 in µV
            np.testing.assert_allclose(rec.data, sim.data.T, rtol=1e-6, atol=1e-7 * 1e-6)
        np.testing.assert_array_equal(rec.trials["onset"].to_numpy(), events["onset"].to_numpy())
        assert rec.trials["word"].tolist() == events["word"].tolist()
        assert rec.trials["stimulus_id"].tolist() == events["stimulus_id"].tolist()
        positions = rec.sensor_positions
        assert np.isfinite(positions).all()
    pos = [
        load_bids(root, subject=s.subject, task="listen", epochs=False).sensor_positions
        for s in sims
    ]
    assert not np.allclose(pos[0], pos[1])  # head position (MEG) or montage (EEG) differ


def test_events_file_holds_the_word_columns(written):
    root, sims, events, _ = written
    sim = sims[0]
    table = read_bids_events(
        root / f"sub-{sim.subject}" / sim.modality / f"sub-{sim.subject}_task-listen_events.tsv"
    )
    assert list(table.columns[:9]) == [
        "onset",
        "duration",
        "trial_type",
        "stimulus_id",
        "word",
        "sound",
        "sound_onset",
        "sentence",
        "word_index",
    ]
    assert (table["trial_type"] == "word").all()
    np.testing.assert_array_equal(table["sound_onset"], events["sound_onset"])


def test_ground_truth_reads_back(written):
    root, sims, _, words = written
    truth = read_meeg_ground_truth(root)
    assert truth.subjects == ("01", "02")
    assert truth.sfreq == SFREQ
    assert truth.n_times == N_TIMES
    assert truth.noise_ceiling is None
    for name, feat in _features().items():
        np.testing.assert_array_equal(truth.features[name], feat)
    for sim in sims:
        arrays = truth.arrays(sim.subject)
        np.testing.assert_array_equal(arrays["gain"], sim.gain)
        np.testing.assert_array_equal(arrays["source_activity"], sim.source_activity)
        assert arrays["ch_names"].tolist() == sim.ch_names
        clean = truth.clean_raw(sim.subject).get_data()
        np.testing.assert_array_equal(clean, sim.clean.astype(np.float32))
        assert truth.snr_achieved[sim.subject] == pytest.approx(sim.snr_achieved)
        rows = truth.sources[truth.sources["subject"] == sim.subject].reset_index(drop=True)
        np.testing.assert_allclose(rows[["x", "y", "z"]], sim.sources[["x", "y", "z"]])
    assert [s.name for s in truth.source_specs] == list(sims[0].sources["source"])
    stimuli = load_audio(root / "stimuli" / "words.tsv")
    assert list(stimuli.ids) == words["stimulus_id"].tolist()
    wave, fs = stimuli.load("w00003")
    assert fs == 16_000.0
    assert wave.shape == (round(0.3 * fs),)
    with pytest.raises(ValueError, match="No subject '03'"):
        truth.arrays("03")


def test_noise_ceiling_and_manifest_are_written_and_validated(written):
    root, sims, events, _ = written
    ceilings = {}
    for sim in sims:
        rec = load_bids(root, subject=sim.subject, task="listen", **READ_OPTIONS)
        clean = mne.io.RawArray(sim.clean, sim.info, verbose="error")
        from brainalign.io import load_meeg

        clean_rec = load_meeg(clean, events=events, **READ_OPTIONS)
        assert clean_rec.data.shape == rec.data.shape == (len(events), 16, 361)
        ceilings[sim.subject] = compute_noise_ceiling(clean_rec.data, rec.data, top_k=5)
    write_noise_ceiling(root, ceilings, settings=READ_OPTIONS)
    path = write_meeg_manifest(root)
    truth = read_meeg_ground_truth(root)
    assert truth.noise_ceiling["01"].top_k_accuracy == ceilings["01"].top_k_accuracy
    report = validate_dataset(path, root, progress=False)
    assert report.ok, str(report)
    content = json.loads((root / DERIVATIVES / "noise_ceiling.json").read_text())
    assert set(content["subjects"]) == {"01", "02"}
    from brainalign.io import load_manifest

    manifest = load_manifest(path)
    assert manifest.reader.name == "load_bids"
    assert manifest.modality == sims[0].modality
    assert manifest.preprocessing.sfreq == 120.0


def test_write_refuses_to_clobber(tmp_path, time_courses):
    words, events, sounds = _words_and_sounds(WORD_ONSETS)
    (tmp_path / "notes.txt").write_text("mine")
    sim = simulate_meeg_subject(time_courses, seed=0, n_channels=8, n_dipoles_per_patch=1)
    kwargs = {"events": events, "features": _features(), "sounds": sounds, "words": words}
    with pytest.raises(FileExistsError, match="does not hold a brainalign simulation"):
        write_simulated_meeg(tmp_path, [sim], time_courses, **kwargs)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    out = tmp_path / "sim"
    write_simulated_meeg(out, [sim], time_courses, **kwargs)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_simulated_meeg(out, [sim], time_courses, **kwargs)
    write_simulated_meeg(out, [sim], time_courses, overwrite=True, **kwargs)
    with pytest.raises(ValueError, match="'subjects' is empty"):
        write_simulated_meeg(tmp_path / "empty", [], time_courses, **kwargs)
    with pytest.raises(ValueError, match="lacks the columns"):
        write_simulated_meeg(
            tmp_path / "x", [sim], time_courses, **{**kwargs, "events": events.drop(columns="word")}
        )
    assert isinstance(sim, SimulatedSubject)


def test_read_ground_truth_of_another_folder_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no simulated M/EEG dataset"):
        read_meeg_ground_truth(tmp_path)
    with pytest.raises(FileNotFoundError, match="write it with write_simulated_meeg first"):
        write_meeg_manifest(tmp_path)
