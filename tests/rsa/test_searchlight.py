"""Searchlight RSA over voxel spheres and M/EEG sensor × time windows, against a naive loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from brainalign.rsa.searchlight import (
    neighbourhoods,
    searchlight_meeg,
    searchlight_rsa,
    time_windows,
)


def _grid(shape=(5, 4, 3), spacing=3.0):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    return ijk * spacing


def test_neighbourhoods_equal_brute_force(rng):
    coords = rng.uniform(0, 30, size=(60, 3))
    spheres = neighbourhoods(coords, 7.5)
    dist = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    for c, sphere in enumerate(spheres):
        assert sphere.tolist() == np.flatnonzero(dist[c] <= 7.5).tolist()
    assert [s.tolist() for s in neighbourhoods(coords, 7.5, centres=[3, 7])] == [
        spheres[3].tolist(),
        spheres[7].tolist(),
    ]


def test_volume_searchlight_equals_naive_loop(rng):
    coords = _grid()
    n_stim = 13
    patterns = rng.normal(size=(n_stim, len(coords)))
    models = np.stack([pdist(rng.normal(size=(n_stim, 4)), "correlation") for _ in range(3)])
    result = searchlight_rsa(patterns, coords, models, radius=4.0, chunk_size=7, verbose=False)
    assert result.shape == (len(coords), 3)
    for c, sphere in enumerate(neighbourhoods(coords, 4.0)):
        rdm = pdist(patterns[:, sphere], "correlation")
        for m in range(3):
            expected = spearmanr(rdm, models[m]).statistic
            assert result[c, m] == pytest.approx(expected, abs=1e-10)


def test_searchlight_finds_the_informative_region(rng):
    coords = _grid((8, 8, 4))
    n_stim = 20
    latent = rng.normal(size=(n_stim, 6))
    model = pdist(latent, "correlation")
    patterns = rng.normal(size=(n_stim, len(coords)))
    inside = np.linalg.norm(coords - coords[100], axis=1) <= 6.0
    patterns[:, inside] += 3 * latent @ rng.normal(size=(6, inside.sum()))
    result = searchlight_rsa(patterns, coords, model, radius=4.5, verbose=False)[:, 0]
    assert result[inside].mean() > result[~inside].mean() + 0.3
    assert inside[np.argmax(result)]


def test_torch_in_torch_out(rng):
    coords = _grid((3, 3, 2))
    patterns = torch.from_numpy(rng.normal(size=(9, len(coords))))
    model = torch.from_numpy(pdist(rng.normal(size=(9, 3))))
    out = searchlight_rsa(patterns, coords, model, radius=3.5, verbose=False, device="cpu")
    assert isinstance(out, torch.Tensor)
    ref = searchlight_rsa(patterns.numpy(), coords, model.numpy(), radius=3.5, verbose=False)
    np.testing.assert_allclose(out.numpy(), ref)


def test_meeg_searchlight_equals_naive_loop(rng):
    n_stim, n_ch, n_times = 11, 8, 20
    epochs = rng.normal(size=(n_stim, n_ch, n_times))
    positions = rng.normal(size=(n_ch, 3))
    positions = 0.09 * positions / np.linalg.norm(positions, axis=1, keepdims=True)
    models = np.stack([pdist(rng.normal(size=(n_stim, 3)), "correlation") for _ in range(2)])
    out = searchlight_meeg(
        epochs, positions, models, radius=0.08, width=5, step=3, chunk_size=5, verbose=False
    )
    windows = time_windows(n_times, 5, 3)
    groups = neighbourhoods(positions, 0.08)
    assert out.shape == (n_ch, len(windows), 2)
    for g, group in enumerate(groups):
        for w, window in enumerate(windows):
            rdm = pdist(epochs[:, group, window].reshape(n_stim, -1), "correlation")
            for m in range(2):
                expected = spearmanr(rdm, models[m]).statistic
                assert out[g, w, m] == pytest.approx(expected, abs=1e-10)


def test_time_windows():
    assert time_windows(10, 4) == [slice(0, 4), slice(4, 8)]
    assert time_windows(10, 4, 2) == [slice(0, 4), slice(2, 6), slice(4, 8), slice(6, 10)]
    with pytest.raises(ValueError, match="longer than the epochs"):
        time_windows(3, 4)


def test_bad_inputs(rng):
    coords = _grid((3, 3, 2))
    patterns = rng.normal(size=(9, len(coords)))
    model = pdist(rng.normal(size=(9, 3)))
    with pytest.raises(ValueError, match="'coords' has 17 voxels"):
        searchlight_rsa(patterns, coords[:-1], model, verbose=False)
    with pytest.raises(ValueError, match=r"'model_rdms' must be condensed RDMs \(n_models, 36\)"):
        searchlight_rsa(patterns, coords, model[:-1], verbose=False)
    with pytest.raises(ValueError, match="fewer than min_size=3"):
        searchlight_rsa(patterns, coords, model, radius=0.5, min_size=3, verbose=False)
    with pytest.raises(ValueError, match="'radius' must be positive"):
        neighbourhoods(coords, 0.0)
    with pytest.raises(ValueError, match="'positions' has 2 sensors"):
        searchlight_meeg(rng.normal(size=(9, 3, 10)), np.zeros((2, 3)), model, verbose=False)
