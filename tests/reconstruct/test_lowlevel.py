"""Low-level ridge decoder: equals scikit-learn's Ridge and recovers a linear image model."""

from __future__ import annotations

import numpy as np
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
