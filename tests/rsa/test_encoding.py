"""Cross-validated ridge encoding models against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeCV

from brainalign.rsa.encoding import (
    DEFAULT_ALPHAS,
    encoding_layers_regions,
    make_folds,
    ridge_encoding,
)

ALPHAS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4)


def _problem(rng, n=83, p=17, v=29, noise=1.0):
    x = rng.normal(size=(n, p))
    w = rng.normal(size=(p, v)) * rng.uniform(0.0, 1.0, size=v)  # voxels of different SNR
    y = x @ w + noise * rng.normal(size=(n, v)) + 3.0
    return x, y


@pytest.mark.parametrize(("n", "p"), [(83, 17), (40, 120)])  # more samples or more features
def test_out_of_fold_predictions_equal_sklearn_ridgecv_per_target(rng, n, p):
    x, y = _problem(rng, n=n, p=p)
    result = ridge_encoding(x, y, alphas=ALPHAS, n_folds=4, seed=3, chunk_size=7)
    folds = make_folds(n, 4, seed=3)
    expected = np.empty_like(y)
    for k in range(4):
        tr, te = folds != k, folds == k
        model = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x[tr], y[tr])
        expected[te] = model.predict(x[te])
        np.testing.assert_array_equal(result.alphas[k], model.alpha_)
    np.testing.assert_allclose(result.predictions, expected, rtol=1e-8, atol=1e-8)
    r = [np.corrcoef(expected[:, j], y[:, j])[0, 1] for j in range(y.shape[1])]
    np.testing.assert_allclose(result.correlation, r, atol=1e-10)
    assert isinstance(result.correlation, np.ndarray)
    assert "EncodingResult" in repr(result)


def test_torch_in_torch_out_and_inputs_untouched(rng):
    x, y = _problem(rng)
    xt, yt = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())
    result = ridge_encoding(xt, yt, alphas=ALPHAS, n_folds=3, device="cpu")
    assert isinstance(result.correlation, torch.Tensor)
    assert torch.equal(xt, torch.from_numpy(x))
    assert torch.equal(yt, torch.from_numpy(y))
    numpy_result = ridge_encoding(x, y, alphas=ALPHAS, n_folds=3)
    np.testing.assert_allclose(result.predictions.numpy(), numpy_result.predictions)


def test_informative_voxels_are_predicted_and_noise_is_not(rng):
    x = rng.normal(size=(200, 10))
    y = np.column_stack([x @ rng.normal(size=10) + 0.5 * rng.normal(size=200) for _ in range(5)])
    y = np.column_stack([y, rng.normal(size=(200, 5))])
    r = ridge_encoding(x, y, n_folds=5).correlation
    assert np.all(r[:5] > 0.9)
    assert np.all(np.abs(r[5:]) < 0.3)
    assert len(DEFAULT_ALPHAS) == 21


def test_groups_stay_in_one_fold(rng):
    groups = np.repeat(np.arange(10), 3)
    folds = make_folds(30, 5, groups=groups, seed=0)
    for g in range(10):
        assert len(set(folds[groups == g])) == 1
    assert sorted(np.bincount(folds)) == [6] * 5
    x, y = _problem(rng, n=30)
    assert ridge_encoding(x, y, groups=groups, n_folds=5).folds.tolist() == folds.tolist()


def test_constant_voxel_gives_nan(rng):
    x, y = _problem(rng)
    y[:, 0] = 1.0
    r = ridge_encoding(x, y, n_folds=3).correlation
    assert np.isnan(r[0])
    assert np.isfinite(r[1:]).all()


def test_layers_regions_table_puts_the_generating_layer_first(rng):
    n = 120
    layers = {name: rng.normal(size=(n, 12)) for name in ("early", "middle", "late")}
    regions = {
        region: [
            layers[layer] @ rng.normal(size=(12, n_vox)) + 2.0 * rng.normal(size=(n, n_vox))
            for n_vox in (15, 22)  # two subjects, different voxel counts
        ]
        for region, layer in {"V1": "early", "LO": "middle", "IT": "late"}.items()
    }
    table = encoding_layers_regions(layers, regions, n_folds=4, verbose=False)
    assert list(table.columns) == ["layer", "region", "subject", "mean_r", "median_r", "n_voxels"]
    assert len(table) == 3 * 3 * 2
    assert set(table.loc[table["subject"] == "02", "n_voxels"]) == {22}
    best = table.groupby(["region", "layer"])["mean_r"].mean().unstack().idxmax(axis=1)
    assert best.to_dict() == {"V1": "early", "LO": "middle", "IT": "late"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alphas": [1.0, -1.0]}, "'alphas' must be positive"),
        ({"n_folds": 1}, "'n_folds' must be between 2"),
        ({"chunk_size": 0}, "'chunk_size' must be positive"),
    ],
)
def test_bad_arguments(rng, kwargs, match):
    x, y = _problem(rng)
    with pytest.raises(ValueError, match=match):
        ridge_encoding(x, y, **kwargs)


def test_bad_shapes(rng):
    x, y = _problem(rng)
    with pytest.raises(ValueError, match="same stimuli in the same order"):
        ridge_encoding(x[:-1], y)
    with pytest.raises(ValueError, match=r"\(n_stimuli, n_features\)"):
        ridge_encoding(x[:, 0], y)
    y[0, 0] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        ridge_encoding(x, y)
    with pytest.raises(ValueError, match="'groups' has 3 entries"):
        make_folds(10, 2, groups=[0, 1, 2])
