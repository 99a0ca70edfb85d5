"""Speech targets: mel spectrogram vs a naive NumPy reference; wav2vec2 layers at the brain rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from brainalign._utils.errors import BrainAlignWarning
from brainalign.targets.extract import extract_features
from brainalign.targets.speech import (
    compute_mel_spectrogram,
    compute_speech_embeddings,
    load_speech_model,
    mel_filterbank,
    resample_audio,
    segment_features,
)

# ----------------------------------------------------------------------------- naive references


def _hz_to_mel(f):
    return 2595.0 * math.log10(1.0 + f / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def naive_filterbank(n_freqs, sfreq, n_mels, f_min, f_max):
    """Triangles written out element by element (HTK scale, peak 1, no area normalisation)."""
    edges = [
        _mel_to_hz(_hz_to_mel(f_min) + i * (_hz_to_mel(f_max) - _hz_to_mel(f_min)) / (n_mels + 1))
        for i in range(n_mels + 2)
    ]
    fb = np.zeros((n_freqs, n_mels))
    for k in range(n_freqs):
        f = k * (sfreq / 2) / (n_freqs - 1)
        for m in range(n_mels):
            lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
            if lo <= f <= centre:
                fb[k, m] = (f - lo) / (centre - lo)
            elif centre < f <= hi:
                fb[k, m] = (hi - f) / (hi - centre)
    return fb


def naive_log_mel(wave, sfreq, n_mels, n_fft, hop, eps=1e-5):
    x = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    pad = n_fft // 2
    x = np.concatenate([x[1 : pad + 1][::-1], x, x[-pad - 1 : -1][::-1]])  # reflect
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
    n_frames = 1 + len(wave) // hop
    power = np.empty((n_fft // 2 + 1, n_frames))
    for t in range(n_frames):
        frame = x[t * hop : t * hop + n_fft] * window
        power[:, t] = np.abs(np.fft.rfft(frame)) ** 2 / np.sum(window**2)
    fb = naive_filterbank(n_fft // 2 + 1, sfreq, n_mels, 0.0, sfreq / 2)
    return np.log10(fb.T @ power + eps)


def test_filterbank_matches_naive():
    ours = mel_filterbank(257, 16000, n_mels=40).numpy()
    ref = naive_filterbank(257, 16000, 40, 0.0, 8000.0)
    assert ours.shape == (257, 40)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    sub = mel_filterbank(129, 8000, n_mels=10, f_min=100.0, f_max=3000.0).numpy()
    np.testing.assert_allclose(sub, naive_filterbank(129, 8000, 10, 100.0, 3000.0), atol=1e-6)
    with pytest.raises(ValueError, match=r"Need 0 <= f_min < f_max <= sfreq/2"):
        mel_filterbank(129, 8000, f_max=5000.0)


def test_mel_spectrogram_matches_naive(rng):
    t = np.arange(7000) / 16000
    wave = np.sin(2 * np.pi * 440 * t) + 0.3 * rng.standard_normal(7000)
    ours = compute_mel_spectrogram(wave.astype(np.float32), 16000, n_mels=40, n_fft=512)
    ref = naive_log_mel(wave, 16000, 40, 512, 128)
    assert ours.shape == (40, 1 + 7000 // 128)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    # the 440 Hz tone lands in the filter whose centre is closest to 440 Hz
    centres = [_mel_to_hz(_hz_to_mel(0) + (i + 1) * _hz_to_mel(8000) / 41) for i in range(40)]
    clean = compute_mel_spectrogram(np.sin(2 * np.pi * 440 * t).astype(np.float32), 16000)
    assert clean[:, 10:-10].mean(1).argmax() == int(np.argmin(np.abs(np.array(centres) - 440)))


def test_resample_audio_keeps_a_tone(rng):
    t8 = np.arange(8000) / 8000
    up = resample_audio(np.sin(2 * np.pi * 440 * t8), 8000, 16000)
    t16 = np.arange(16000) / 16000
    assert up.shape == (16000,)
    np.testing.assert_allclose(up[200:-200], np.sin(2 * np.pi * 440 * t16)[200:-200], atol=1e-2)
    odd = resample_audio(rng.standard_normal(4410), 44100, 16000)
    assert odd.shape == (1600,)


def test_segment_features_cuts_epoch_windows():
    feats = np.arange(3 * 50, dtype=np.float32).reshape(3, 50)  # 3 dims, 50 samples at 10 Hz
    win = segment_features(feats, 10.0, onsets=[1.0, 2.5], tmin=-0.5, tmax=1.0)
    assert win.shape == (2, 3, 15)
    np.testing.assert_array_equal(win[0], feats[:, 5:20])
    np.testing.assert_array_equal(win[1], feats[:, 20:35])
    with pytest.warns(BrainAlignWarning, match=r"1 of 2 windows extend beyond the audio"):
        edge = segment_features(feats, 10.0, onsets=[0.2, 4.0], tmin=-0.5, tmax=0.5, n_times=10)
    np.testing.assert_array_equal(edge[0, :, :3], 0)
    np.testing.assert_array_equal(edge[0, :, 3:], feats[:, :7])
    with pytest.raises(ValueError, match=r"'tmax' \(0.0\) must be greater"):
        segment_features(feats, 10.0, [1.0], tmin=0.0, tmax=0.0)


def test_mel_extractor_on_files(tmp_path, rng):
    waves = [rng.standard_normal(8000).astype(np.float32) * 0.1 for _ in range(3)]
    for i, w in enumerate(waves):
        sf.write(tmp_path / f"seg{i}.wav", w, 16000, subtype="FLOAT")
    out = extract_features(
        "mel",
        None,
        tmp_path,
        cache_dir=tmp_path / "cache",
        verbose=False,
        device="cpu",
        sfreq_out=100.0,
    )
    mel = out["mel"]
    assert mel.shape == (3, 40, 50)  # 0.5 s at 100 Hz
    ref = compute_mel_spectrogram(waves[2], 16000)  # (40, 63 frames)
    idx = np.floor(np.arange(50) * ref.shape[1] / 50).astype(int)  # nearest
    np.testing.assert_allclose(mel[2], ref[:, idx], atol=3e-4)
    (tmp_path / "other").mkdir()
    sf.write(tmp_path / "other" / "a.wav", waves[0], 16000)
    sf.write(tmp_path / "other" / "b.wav", waves[1][:6000], 16000)
    with pytest.raises(ValueError, match=r"'a.wav' and 'b.wav' give model inputs of shapes"):
        extract_features("mel", None, tmp_path / "other", cache=False, verbose=False)


# ----------------------------------------------------------------------------- wav2vec 2.0


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    import torch

    config = transformers.Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=3,
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
    folder = tmp_path_factory.mktemp("w2v")
    model.save_pretrained(folder)
    return model, folder


def _direct_hidden(model, wave, layers):
    """Hidden states averaged by hand: do_normalize, forward, NumPy mean over the layers."""
    import torch

    x = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    with torch.inference_mode():
        hidden = model(
            torch.from_numpy(x[None].astype(np.float32)), output_hidden_states=True
        ).hidden_states
    return np.mean([hidden[i][0].numpy() for i in layers], axis=0).T  # (16, n_frames)


def test_speech_embeddings_match_direct_computation(tiny_wav2vec2, rng):
    model, folder = tiny_wav2vec2
    speech = load_speech_model(folder)
    assert speech.n_hidden_states == 4
    wave = rng.standard_normal(12000).astype(np.float32)  # 0.75 s at 16 kHz
    ours = compute_speech_embeddings(
        wave, 16000, speech, layers=(1, 2, 3), sfreq_out=120.0, device="cpu"
    )
    direct = _direct_hidden(model, wave, (1, 2, 3))
    n_frames = direct.shape[1]
    assert ours.shape == (16, 90)  # 0.75 s at 120 Hz
    idx = np.floor(np.arange(90) * n_frames / 90).astype(int)
    np.testing.assert_allclose(ours, direct[:, idx], atol=3e-4)
    linear = compute_speech_embeddings(
        wave, 16000, speech, layers=(1, 2, 3), sfreq_out=120.0, interpolation="linear", device="cpu"
    )
    src = np.clip((np.arange(90) + 0.5) * n_frames / 90 - 0.5, 0, n_frames - 1)
    ref = np.stack([np.interp(src, np.arange(n_frames), row) for row in direct])
    np.testing.assert_allclose(linear, ref, atol=3e-4)
    single = compute_speech_embeddings(wave, 16000, speech, layers=(2,), device="cpu")
    np.testing.assert_allclose(single, _direct_hidden(model, wave, (2,))[:, idx], atol=3e-4)


def test_speech_files_are_resampled_with_a_warning(tiny_wav2vec2, tmp_path, rng):
    model, folder = tiny_wav2vec2
    waves = [rng.standard_normal(4000).astype(np.float32) * 0.1 for _ in range(2)]
    for i, w in enumerate(waves):
        sf.write(tmp_path / f"s{i}.wav", w, 8000, subtype="FLOAT")
    with pytest.warns(BrainAlignWarning, match=r"Audio at 8000 Hz .*s0.wav.* resampled to 16000"):
        out = extract_features(
            f"wav2vec2:{folder}",
            [1, 3],
            tmp_path,
            device="cpu",
            cache_dir=tmp_path / "cache",
            verbose=False,
        )
    feats = out["hidden_states"]
    assert feats.shape == (2, 16, 60)  # 0.5 s at 120 Hz
    up = resample_audio(waves[1], 8000, 16000)
    direct = _direct_hidden(model, up, (1, 3))
    idx = np.floor(np.arange(60) * direct.shape[1] / 60).astype(int)
    np.testing.assert_allclose(feats[1], direct[:, idx], atol=3e-4)
    again = extract_features(
        f"wav2vec2:{folder}",
        [1, 3],
        tmp_path,
        cache_dir=tmp_path / "cache",
        device="cpu",
        verbose=False,
    )
    assert again.from_cache == {"hidden_states": True}
    by_weights = extract_features(
        "wav2vec2",
        [1, 3],
        tmp_path,
        weights=str(folder),
        cache_dir=tmp_path / "cache",
        device="cpu",
        verbose=False,
    )
    assert by_weights.from_cache == {"hidden_states": True}  # same model, same key
    with pytest.raises(ValueError, match=r"model='wav2vec2' needs the model"):
        extract_features("wav2vec2", None, tmp_path, cache=False, verbose=False)


def test_speech_model_errors(tiny_wav2vec2, tmp_path):
    _, folder = tiny_wav2vec2
    with pytest.raises(FileNotFoundError, match=r"does not exist: .*nowhere"):
        load_speech_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no config.json"):
        load_speech_model(tmp_path / "empty")
    speech = load_speech_model(folder)
    with pytest.raises(ValueError, match=r"Invalid hidden-state indices \[4\] .* has 4 hidden"):
        compute_speech_embeddings(np.zeros(1600, np.float32), 16000, speech, layers=(1, 4))
    with pytest.raises(ValueError, match=r"pass 'sfreq'"):
        compute_speech_embeddings(np.zeros(1600, np.float32), None, speech, layers=(1,))


@pytest.mark.network
def test_hub_model_at_the_brain_rate(rng):
    pytest.importorskip("transformers")
    speech = load_speech_model("facebook/wav2vec2-base")
    feats = compute_speech_embeddings(
        rng.standard_normal(48000).astype(np.float32), 16000, speech, layers=(8, 9, 10)
    )
    assert feats.shape == (768, 360)  # 3 s at 120 Hz
