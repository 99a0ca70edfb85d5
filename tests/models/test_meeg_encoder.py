"""MEEGEncoder and its spatial attention against brainmagick's recipe, written out naively."""

from __future__ import annotations

import math

import mne
import numpy as np
import pytest
import torch
from scipy.special import erf
from tests.models.models_testing import positions_3d

from brainalign.io import load_meeg
from brainalign.models import (
    FMRIEncoder,
    LinearEncoder,
    MEEGEncoder,
    SpatialAttention,
    build_model,
    fourier_features,
    sensor_layout,
)

EEG_NAMES = ["Fp1", "AF3", "F7", "F3", "FC1", "FC5", "T7", "C3", "CP1"]


# ----------------------------------------------------------------- naive reference (NumPy)
def gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def conv1d(x, w, b, dilation):
    """Same-length dilated convolution by explicit shifted sums: x (C_in, T), w (C_out, C_in, K)."""
    _, _n_in, k = w.shape
    t = x.shape[1]
    pad = k // 2 * dilation
    xp = np.pad(x, ((0, 0), (pad, pad)))
    out = np.tile(b[:, None], (1, t))
    for j in range(k):
        out = out + w[:, :, j] @ xp[:, j * dilation : j * dilation + t]
    return out


def naive_fourier(layout, n, margin):
    k, l_ = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    feats = []
    for x, y in layout:
        phase = 2 * np.pi * (k * (x + margin) + l_ * (y + margin)) / (1 + 2 * margin)
        feats.append(np.concatenate([np.cos(phase).ravel(), np.sin(phase).ravel()]))
    return np.array(feats)


def naive_brainmagick(model: MEEGEncoder, x: np.ndarray, subject: str) -> np.ndarray:
    """One window through the published recipe, eval mode, float64; x (C, T)."""
    c = model.config
    p = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    layout = np.array(c.sensor_positions[subject])
    scores = p["attention.heads"] @ naive_fourier(layout, c.n_freqs, c.fourier_margin).T
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    z = weights @ x[: len(layout)]  # (heads, T)
    z = p["initial.weight"][:, :, 0] @ z + p["initial.bias"][:, None]
    z = p[f"adapter.layers.sub-{subject}.weight"] @ z
    for k in range(c.depth):
        pre = f"encoder.layers.{k}."
        y = conv1d(z, p[pre + "0.weight"], p[pre + "0.bias"], 2 ** (k % c.dilation_period))
        mean, var = p[pre + "1.running_mean"], p[pre + "1.running_var"]
        y = (y - mean[:, None]) / np.sqrt(var[:, None] + 1e-5) * p[pre + "1.weight"][:, None]
        y = gelu(y + p[pre + "1.bias"][:, None])
        z = y + z if y.shape == z.shape else y
        if (k + 1) % c.glu_every == 0:
            g = conv1d(z, p[f"encoder.glus.{k}.0.weight"], p[f"encoder.glus.{k}.0.bias"], 1)
            a, b = np.split(g, 2)
            z = a / (1 + np.exp(-b))
    z = gelu(p["head.0.weight"][:, :, 0] @ z + p["head.0.bias"][:, None])
    return p["head.2.weight"][:, :, 0] @ z + p["head.2.bias"][:, None]  # (target_dim, T)


def tiny(**kw):
    defaults = dict(
        n_times=16, sfreq=100.0, target_dim=5, n_target_times=16,
        sensor_positions={"a": positions_3d(9, 1), "b": positions_3d(6, 2)},
        n_heads=6, n_freqs=4, hidden=8, depth=4, dilation_period=3,
    )  # fmt: skip
    torch.manual_seed(0)
    model = MEEGEncoder(**{**defaults, **kw})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
            if isinstance(m, torch.nn.Linear) and m.weight.shape[0] == m.weight.shape[1]:
                m.weight.add_(0.1 * torch.randn_like(m.weight))  # subject layers off identity
    return model.eval()


def test_forward_matches_naive_recipe():
    model = tiny().double()
    rng = np.random.default_rng(0)
    for subject, n in [("a", 9), ("b", 6)]:
        x = rng.normal(size=(2, n, 16))
        got = model(torch.from_numpy(x), subject).backbone.detach().numpy()
        for i in range(2):
            np.testing.assert_allclose(
                got[i], naive_brainmagick(model, x[i], subject), rtol=1e-9, atol=1e-9
            )


def test_time_resolution_of_the_output():
    full = tiny()
    x = torch.randn(3, 9, 16)
    ref = full(x, "a").backbone  # (3, 5, 16)
    state = full.state_dict()
    for n_target, expected in [
        (8, ref.reshape(3, 5, 8, 2).mean(-1)),  # adaptive average pooling: pairs
        (None, ref.mean(-1)),  # a vector: mean over time
    ]:
        model = tiny(n_target_times=n_target)
        model.load_state_dict(state)
        torch.testing.assert_close(model(x, "a").backbone, expected)
    model = tiny(n_target_times=32)
    model.load_state_dict(state)
    src = np.clip((np.arange(32) + 0.5) / 2 - 0.5, 0, 15)  # align_corners=False sampling points
    expected = np.apply_along_axis(
        lambda r: np.interp(src, np.arange(16), r), -1, ref.detach().numpy()
    )
    np.testing.assert_allclose(
        model(x, "a").backbone.detach().numpy(), expected, rtol=1e-5, atol=1e-6
    )


def test_inference_of_sizes_and_missing_arguments():
    pos = positions_3d(7)
    model = MEEGEncoder(
        sfreq=120.0,
        window_duration=3.0,
        target_dim=4,
        target_sfreq=60.0,
        sensor_positions=pos,
        hidden=8,
        n_heads=4,
        depth=2,
    )
    c = model.config
    assert (c.n_channels, c.n_times, c.n_target_times) == (7, 360, 180)
    assert model.subjects == ("0",)
    model = MEEGEncoder(
        n_times=50, window_duration=0.5, target_dim=4, sensor_positions=pos, n_subjects=3, depth=2
    )
    assert model.config.sfreq == 100.0
    assert model.subjects == ("0", "1", "2")
    assert model.config.sensor_positions["2"] == model.config.sensor_positions["0"]
    assert (c.n_heads, c.hidden, c.depth, c.kernel_size, c.n_freqs) == (4, 8, 2, 3, 32)
    defaults = build_model(
        "brainmagick", n_times=360, sfreq=120.0, target_dim=1024, sensor_positions=pos
    ).config
    assert (defaults.n_heads, defaults.hidden, defaults.depth, defaults.spatial_dropout) == (
        270,
        320,
        10,
        0.2,
    )
    with pytest.raises(
        ValueError,
        match=r"missing n_times, sfreq:\n  - n_times: pass n_times, or sfreq and window_duration",
    ):
        MEEGEncoder(7, target_dim=4)
    with pytest.raises(
        ValueError,
        match=r"missing n_channels, target_dim:\n  - n_channels: pass n_channels, or sensor_",
    ):
        MEEGEncoder(n_times=10, sfreq=10.0)
    with pytest.raises(ValueError, match="n_subjects=3 but sensor_positions has 1 subjects"):
        MEEGEncoder(n_times=10, sfreq=10.0, target_dim=2, sensor_positions={"a": pos}, n_subjects=3)
    with pytest.raises(ValueError, match=r"more channels than n_channels=5"):
        MEEGEncoder(5, 10, 10.0, target_dim=2, sensor_positions=pos)
    with pytest.raises(ValueError, match=r"'depth' must be a positive integer, got 0"):
        MEEGEncoder(n_times=10, sfreq=10.0, target_dim=2, sensor_positions=pos, depth=0)
    with pytest.raises(ValueError, match=r"'conv_dropout' must lie in \[0, 1\)"):
        MEEGEncoder(n_times=10, sfreq=10.0, target_dim=2, sensor_positions=pos, conv_dropout=1.0)
    with pytest.raises(ValueError, match=r"'kernel_size' must be odd"):
        MEEGEncoder(n_times=10, sfreq=10.0, target_dim=2, sensor_positions=pos, kernel_size=4)
    with pytest.raises(
        ValueError, match=r"shape \(n_channels, 3\) or \(n_channels, 2\), got \(7, 4\)"
    ):
        MEEGEncoder(n_times=10, sfreq=10.0, target_dim=2, sensor_positions=np.zeros((7, 4)))


def test_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match=r"looks transposed"):
        model(torch.randn(2, 16, 9), "a")
    with pytest.raises(
        ValueError,
        match=r"x has 9 channels but the batch's subjects have \{'b': 6\}; it must have 6",
    ):
        model(torch.randn(2, 9, 16), "b")
    with pytest.raises(ValueError, match=r"'positions' must have shape \(2 or 1, 9, 2\)"):
        model(torch.randn(2, 9, 16), "a", positions=torch.rand(2, 8, 2))
    model.add_subject("c")
    with pytest.raises(ValueError, match=r"Subjects \['c'\] have no stored sensor positions"):
        model(torch.randn(2, 9, 16), "c")
    out = model(torch.randn(2, 9, 16), "c", positions=torch.rand(9, 2))
    assert out.backbone.shape == (2, 5, 16)
    flat = MEEGEncoder(
        9, 16, 100.0, target_dim=3, spatial_attention=False, n_heads=4, hidden=8, depth=2
    )
    assert flat(torch.randn(2, 9, 16)).backbone.shape == (2, 3)  # a vector target
    with pytest.raises(ValueError, match="x has 8 channels; this model takes 9"):
        flat(torch.randn(2, 8, 16))


def test_positions_given_with_the_batch_equal_stored_ones():
    model = tiny()
    x = torch.randn(3, 9, 16)
    layout = torch.tensor(model.config.sensor_positions["a"])
    stored = model(x, "a").backbone
    torch.testing.assert_close(model(x, "a", positions=layout).backbone, stored)
    torch.testing.assert_close(model(x, "a", positions=layout.expand(3, 9, 2)).backbone, stored)
    # one layout per row, two montages (b's padded with NaN): the same as the stored layouts
    x[1, 6:] = float("nan")
    layout_b = torch.full((9, 2), float("nan"))
    layout_b[:6] = torch.tensor(model.config.sensor_positions["b"])
    per_row = torch.stack([layout, layout_b, layout])
    subjects = ["a", "b", "a"]
    stored = model(x, subjects).backbone
    torch.testing.assert_close(model(x, subjects, positions=per_row).backbone, stored)


# -------------------------------------------------------------------- spatial attention
def test_fourier_features_match_formula():
    layout = np.random.default_rng(0).uniform(size=(7, 2))
    got = fourier_features(torch.from_numpy(layout), n_freqs=5, margin=0.2).numpy()
    np.testing.assert_allclose(got, naive_fourier(layout, 5, 0.2), rtol=1e-12, atol=1e-12)
    assert fourier_features(torch.rand(3, 2)).shape == (3, 2048)  # brainmagick's size


def attention_weights(att, layouts, index, n_channels):
    """The attention's weights: feed an identity 'signal' (n_times = n_channels)."""
    eye = torch.eye(n_channels, dtype=layouts.dtype).expand(len(index), -1, -1)
    return att(eye, layouts, index)  # (B, heads, C)


def test_absent_sensors_get_no_weight_and_are_not_read():
    torch.manual_seed(0)
    att = SpatialAttention(5, n_freqs=4).eval()
    layout = torch.rand(1, 8, 2, dtype=torch.float64)
    layout[0, [2, 6]] = float("nan")
    att.double()
    w = attention_weights(att, layout, torch.zeros(2, dtype=torch.long), 8)
    assert (w[:, :, [2, 6]] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    x = torch.randn(2, 8, 4, dtype=torch.float64)
    x[:, [2, 6]] = float("nan")
    assert torch.isfinite(att(x, layout, torch.zeros(2, dtype=torch.long))).all()
    with pytest.raises(ValueError, match="no sensor with a finite position"):
        att(
            x,
            torch.full((1, 8, 2), float("nan"), dtype=torch.float64),
            torch.zeros(2, dtype=torch.long),
        )


def test_spatial_dropout_removes_the_sensors_near_a_random_point():
    torch.manual_seed(0)
    att = SpatialAttention(5, n_freqs=4, dropout_radius=0.3).double().train()
    layout = torch.rand(1, 40, 2, dtype=torch.float64)
    index = torch.zeros(6, dtype=torch.long)
    torch.manual_seed(7)
    w = attention_weights(att, layout, index, 40)
    torch.manual_seed(7)
    centre = torch.rand(6, 1, 2, dtype=torch.float64)  # the draw the module makes
    dropped = (layout[0] - centre).norm(dim=-1) <= 0.3  # (6, 40)
    assert dropped.any()
    assert (~dropped).any()
    assert (w.permute(0, 2, 1)[dropped] == 0).all()
    assert (w.permute(0, 2, 1)[~dropped] > 0).all()
    # a montage entirely inside the radius keeps all its sensors
    huge = SpatialAttention(5, n_freqs=4, dropout_radius=5.0).double().train()
    w = attention_weights(huge, layout, index, 40)
    torch.testing.assert_close(w, attention_weights(huge.eval(), layout, index, 40))


def test_sensor_layout_matches_mne_topomap_coords():
    from mne.channels.layout import _find_topomap_coords

    info = mne.create_info(EEG_NAMES, 100.0, "eeg")
    info.set_montage("biosemi32")
    pos = np.array([ch["loc"][:3] for ch in info["chs"]])
    before = pos.copy()
    for origin in [(0.0, 0.0, 0.0), (0.001, -0.01, 0.04)]:
        sphere = (*origin, 0.095)
        ref = _find_topomap_coords(info, None, sphere=sphere)
        got = sensor_layout(pos, origin=origin, scale=False)
        np.testing.assert_allclose(got, ref - np.array(origin[:2]), rtol=1e-12, atol=1e-12)
        ref01 = (ref - ref.min(0)) / (ref.max(0) - ref.min(0))
        np.testing.assert_allclose(sensor_layout(pos, origin=origin), ref01, atol=1e-12)
    np.testing.assert_array_equal(pos, before)  # the input is not changed
    with_nan = pos.copy()
    with_nan[3] = np.nan
    out = sensor_layout(with_nan)
    assert np.isnan(out[3]).all()
    assert np.isfinite(np.delete(out, 3, 0)).all()
    assert out[np.isfinite(out[:, 0])].min() == 0.0
    assert np.nanmax(out) == 1.0
    np.testing.assert_array_equal(sensor_layout(out), out)  # idempotent on a layout
    with pytest.raises(ValueError, match="Every sensor position is NaN"):
        sensor_layout(np.full((3, 3), np.nan))


# ------------------------------------------------------------------------ from_recordings
def write_fif(path, names, seed):
    rng = np.random.default_rng(seed)
    info = mne.create_info(names, 50.0, "eeg")
    raw = mne.io.RawArray(rng.normal(size=(len(names), 800)) * 1e-6, info, verbose="error")
    raw.set_montage("biosemi32")
    raw.set_annotations(mne.Annotations([2.0, 5.0, 9.0], [0.0] * 3, ["x", "y", "z"]))
    raw.save(path, verbose="error")
    return path


def test_from_recordings_reads_montages_sfreq_and_n_times(tmp_path):
    rec1 = load_meeg(
        write_fif(tmp_path / "a_raw.fif", EEG_NAMES[:7], 0), tmin=-0.2, tmax=0.5, subject="01"
    )
    rec2 = load_meeg(
        write_fif(tmp_path / "b_raw.fif", EEG_NAMES, 1), tmin=-0.2, tmax=0.5, subject="02"
    )
    model = MEEGEncoder.from_recordings([rec1, rec2], target_dim=3, n_heads=4, hidden=8, depth=2)
    c = model.config
    assert (c.n_channels, c.n_times, c.sfreq) == (9, rec1.data.shape[2], 50.0)
    for rec in (rec1, rec2):
        np.testing.assert_array_equal(
            np.array(c.sensor_positions[rec.subject]), sensor_layout(rec.sensor_positions)
        )
    out = model.eval()(torch.as_tensor(rec1.data), "01")
    assert out.backbone.shape == (3, 3)
    lin = LinearEncoder.from_recordings([rec1, rec2], target_dim=3)
    assert lin.config.n_voxels == {"01": 7 * 36, "02": 9 * 36}
    assert lin(torch.as_tensor(rec2.data), "02").backbone.shape == (3, 3)
    with pytest.raises(ValueError, match="has modality 'eeg'; this model takes \\['fmri'\\]"):
        FMRIEncoder.from_recordings(rec1, target_dim=3)
    with pytest.raises(ValueError, match="Subject '01' has recordings with different montages"):
        MEEGEncoder.from_recordings([rec1, rec1.select(features=np.arange(5))], target_dim=3)
    with pytest.raises(ValueError, match=r"different sfreq \[40.0, 50.0\]"):
        MEEGEncoder.from_recordings([rec1, _with(rec2, sfreq=40.0)], target_dim=3)
    with pytest.raises(ValueError, match="sub-02 has no sensor positions"):
        MEEGEncoder.from_recordings([rec1, _with(rec2, sensor_positions=None)], target_dim=3)


def _with(rec, **changes):
    import dataclasses

    return dataclasses.replace(rec, **changes)
