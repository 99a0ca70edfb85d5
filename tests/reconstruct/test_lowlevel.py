"""Low-level ridge decoder: equals scikit-learn's Ridge and recovers a linear image model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from brainalign.reconstruct.lowlevel import LowLevelDecoder


def test_matches_sklearn_ridge_and_recovers_images(rng):
    n, p, r = 40, 9, 8
    brain = rng.normal(size=(n, p))
    mixing = rng.normal(size=(p, 3 * r * r)) * 0.05
    flat = np.clip(0.5 + brain @ mixing, 0, 1)
    images = flat.reshape(n, 3, r, r)  # channels-first float images
    dec = LowLevelDecoder(alpha=0.5, resolution=r, device="cpu").fit(brain, images)
    z = (brain - brain.mean(0)) / brain.std(0)
    ref = Ridge(alpha=0.5).fit(z, flat)
    np.testing.assert_allclose(dec.coef_.numpy(), ref.coef_.T, atol=1e-8)
    pred = dec.predict(brain)
    assert pred.shape == (n, r, r, 3)
    truth = images.transpose(0, 2, 3, 1)
    assert np.corrcoef(pred.ravel(), truth.ravel())[0, 1] > 0.95
    wide = LowLevelDecoder(alpha=0.5, resolution=r, device="cpu").fit(brain[:6], images[:6])
    assert wide.predict(brain[:6]).shape == (6, r, r, 3)  # dual solution, p > n


def test_penalty_grid_is_chosen_as_sklearn_grid_search_does(rng):
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n, r = 47, 4
    alphas = [0.1, 3.0, 100.0, 1e4]
    for p in (9, 60):  # primal (p < n) and dual (p > n) within the folds
        brain = rng.normal(size=(n, p))
        mixing = rng.normal(size=(p, 3 * r * r)) * 0.03
        flat = np.clip(0.5 + brain @ mixing + 0.05 * rng.normal(size=(n, 3 * r * r)), 0, 1)
        images = flat.reshape(n, 3, r, r)
        dec = LowLevelDecoder(alpha=alphas, resolution=r, device="cpu", cv=5).fit(brain, images)
        search = GridSearchCV(
            make_pipeline(StandardScaler(), Ridge()),
            {"ridge__alpha": alphas},
            cv=KFold(5),
            scoring="neg_mean_squared_error",
        ).fit(brain, flat)
        np.testing.assert_allclose(dec.cv_mse_, -search.cv_results_["mean_test_score"], rtol=1e-8)
        assert dec.alpha_ == search.best_params_["ridge__alpha"]
        refit = LowLevelDecoder(alpha=dec.alpha_, resolution=r, device="cpu").fit(brain, images)
        np.testing.assert_allclose(dec.coef_.numpy(), refit.coef_.numpy())


def test_bad_penalties(rng):
    brain, images = rng.normal(size=(10, 3)), rng.random(size=(10, 4, 4, 3))
    with pytest.raises(ValueError, match=r"'alpha' must be positive, got 0.0"):
        LowLevelDecoder(alpha=[0.0, 1.0], resolution=4).fit(brain, images)
    with pytest.raises(ValueError, match=r"'alpha' must be a number or a list"):
        LowLevelDecoder(alpha=[], resolution=4).fit(brain, images)
    with pytest.raises(ValueError, match=r"'cv' must lie in \[2, n_samples=10\]"):
        LowLevelDecoder(alpha=[1.0, 2.0], resolution=4, cv=11).fit(brain, images)
