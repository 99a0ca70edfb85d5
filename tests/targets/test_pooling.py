"""Pooling operators against direct torch / scikit-learn computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainalign.targets.pooling import make_pooling


@pytest.fixture
def conv_acts(rng):
    return torch.from_numpy(rng.standard_normal((7, 8, 9, 10)).astype(np.float32))


def test_avg_and_grid(conv_acts):
    np.testing.assert_allclose(
        make_pooling("avg").transform(conv_acts), conv_acts.mean(dim=(2, 3)), atol=1e-6
    )
    tokens = conv_acts[:, :, :, 0].transpose(1, 2)  # (7, 9 tokens, 8 channels)
    np.testing.assert_allclose(make_pooling("avg").transform(tokens), tokens.mean(1), atol=1e-6)
    grid = make_pooling("grid", grid_size=3).transform(conv_acts)
    # adaptive pooling of 9 rows into 3 = means of rows 0-2, 3-5, 6-8; 10 cols -> 0-3, 3-6, 6-9
    ref = torch.stack(
        [
            torch.stack(
                [
                    conv_acts[:, :, r : r + 3, c0:c1].mean(dim=(2, 3))
                    for c0, c1 in ((0, 4), (3, 7), (6, 10))
                ],
                dim=-1,
            )
            for r in (0, 3, 6)
        ],
        dim=-2,
    )  # (7, 8, 3, 3)
    np.testing.assert_allclose(grid, ref.flatten(1), atol=1e-6)
    assert grid.shape == (7, 8 * 9)
    with pytest.raises(ValueError, match="needs activations \\(n, channels, height, width\\)"):
        make_pooling("grid").transform(tokens)
    assert make_pooling("none").transform(conv_acts) is conv_acts


def test_random_projection_is_seeded_and_norm_preserving(rng):
    x = torch.from_numpy(rng.standard_normal((7, 64, 10, 10)).astype(np.float32))
    a = make_pooling("random", n_components=512, seed=3)
    b = make_pooling("random", n_components=512, seed=3)
    c = make_pooling("random", n_components=512, seed=4)
    ya, yb, yc = a.transform(x), b.transform(x), c.transform(x)
    torch.testing.assert_close(ya, yb)
    assert not torch.allclose(ya, yc)
    flat = x.flatten(1)
    torch.testing.assert_close(ya, flat @ a.matrix(flat.shape[1]))
    r = a.matrix(flat.shape[1])
    assert abs(r.std().item() - 512**-0.5) < 0.01 * 512**-0.5
    ratio = (ya.norm(dim=1) / flat.norm(dim=1)) ** 2  # JL: E|Rx|^2 = |x|^2
    assert torch.all((ratio > 0.8) & (ratio < 1.2))
    with pytest.raises(ValueError, match=r"GiB matrix"):
        make_pooling("random", n_components=10**6).transform(x)


def test_incremental_pca_recovers_the_pca_subspace(rng):
    """On data of rank 4, streamed incremental PCA with 4 components equals full PCA."""
    from sklearn.decomposition import PCA

    basis = rng.standard_normal((4, 3 * 5 * 6))
    coefs = rng.standard_normal((53, 4)) * np.array([5.0, 3.0, 2.0, 1.0])
    data = (coefs @ basis + rng.standard_normal(90)).astype(np.float32)  # + a constant offset
    acts = torch.from_numpy(data.reshape(53, 3, 5, 6))
    pool = make_pooling("pca", n_components=4)
    for start in range(0, 53, 7):  # batches of 7 (fewer than 2 x 4 at the end)
        pool.partial_fit(acts[start : start + 7])
    pool.finish_fit()
    ours = pool.transform(acts).numpy()
    ref = PCA(n_components=4).fit_transform(data.astype(np.float64))
    signs = np.sign((ours * ref).sum(0))
    np.testing.assert_allclose(ours * signs, ref, atol=2e-3 * np.abs(ref).max())
    np.testing.assert_allclose(pool.explained_variance_ratio_.sum(), 1.0, atol=1e-5)


def test_pca_errors(rng):
    acts = torch.from_numpy(rng.standard_normal((3, 2, 2, 2)).astype(np.float32))
    pool = make_pooling("pca", n_components=5)
    pool.partial_fit(acts)
    with pytest.raises(ValueError, match=r"at least that many stimuli, got 3"):
        pool.finish_fit()
    with pytest.raises(ValueError, match=r"only 8 features"):
        make_pooling("pca", n_components=9).partial_fit(acts)
    with pytest.raises(RuntimeError, match=r"must be fitted"):
        make_pooling("pca", n_components=2).transform(acts)
    with pytest.raises(ValueError, match=r"Allowed values are 'none', 'avg'"):
        make_pooling("max")
