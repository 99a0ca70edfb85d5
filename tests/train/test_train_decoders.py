"""RidgeDecoder against sklearn; ContrastiveDecoder on a synthetic linear problem."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold

from brainalign.train import ContrastiveDecoder, RidgeDecoder
from brainalign.train.decoders import kfold_splits


def _linear_problem(n=90, n_features=13, n_targets=6, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    W = rng.normal(size=(n_features, n_targets))
    b = rng.normal(size=n_targets)
    return X, X @ W + b + noise * rng.normal(size=(n, n_targets)), W, b


def test_kfold_matches_sklearn():
    for train, test in zip(kfold_splits(23, 5), KFold(5).split(np.zeros(23)), strict=True):
        np.testing.assert_array_equal(train[0], test[0])
        np.testing.assert_array_equal(train[1], test[1])


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_ridge_equals_sklearn(fit_intercept):
    X, Y, _, _ = _linear_problem()
    alphas = [0.01, 1.0, 30.0, 1000.0]
    ours = RidgeDecoder(alphas, cv=4, fit_intercept=fit_intercept).fit(X, Y)
    search = GridSearchCV(
        Ridge(fit_intercept=fit_intercept), {"alpha": alphas}, cv=KFold(4),
        scoring="neg_mean_squared_error",
    ).fit(X, Y)  # fmt: skip
    assert ours.alpha_ == search.best_params_["alpha"]
    np.testing.assert_allclose(-ours.cv_mse_, search.cv_results_["mean_test_score"], rtol=1e-8)
    for alpha in alphas:
        ref = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(X, Y)
        dec = RidgeDecoder(alpha, fit_intercept=fit_intercept).fit(X, Y)
        np.testing.assert_allclose(dec.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(dec.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(dec.predict(X), ref.predict(X), rtol=1e-8, atol=1e-10)


def test_ridge_recovers_the_linear_map():
    X, Y, W, b = _linear_problem(n=400, noise=0.05)
    dec = RidgeDecoder(cv=5).fit(X, Y)
    np.testing.assert_allclose(dec.coef_.T, W, atol=0.02)
    np.testing.assert_allclose(dec.intercept_, b, atol=0.02)
    X_test = np.random.default_rng(1).normal(size=(60, X.shape[1]))
    Y_test = X_test @ W + b
    assert dec.score(X_test, Y_test) > 0.95
    np.testing.assert_array_equal(dec.transform(X_test), dec.predict(X_test))


def test_ridge_errors():
    X, Y, _, _ = _linear_problem()
    with pytest.raises(ValueError, match="X has 90 samples but Y has 89"):
        RidgeDecoder().fit(X, Y[:-1])
    with pytest.raises(ValueError, match="'alphas' must be positive"):
        RidgeDecoder([1.0, -1.0]).fit(X, Y)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        RidgeDecoder().predict(X)
    with pytest.raises(ValueError, match="fitted on 13"):
        RidgeDecoder().fit(X, Y).predict(X[:, :5])
    with pytest.raises(ValueError, match=r"'cv' must lie in \[2, n_samples=90\]"):
        RidgeDecoder(cv=1).fit(X, Y)


def test_contrastive_decoder_beats_chance():
    rng = np.random.default_rng(0)
    n_train, n_test, n_voxels, d = 300, 50, 24, 16
    latent = rng.normal(size=(n_train + n_test, d))
    A = rng.normal(size=(d, n_voxels))
    X = latent @ A + 0.1 * rng.normal(size=(len(latent), n_voxels))
    Y = latent
    dec = ContrastiveDecoder(
        model_kwargs={"hidden": 32, "n_blocks": 1, "dropout": 0.0}, epochs=30,
        batch_size=50, lr=3e-3,
    ).fit(X[:n_train], Y[:n_train])  # fmt: skip
    emb = dec.transform(X[n_train:])
    assert emb.shape == (n_test, d)
    assert isinstance(emb, np.ndarray)
    score = dec.score(X[n_train:], Y[n_train:])
    assert score > 0.5, score  # chance: 1 / 50
    # two subjects given per row, with the same voxel count
    subjects = np.where(np.arange(n_train) % 2, "a", "b")
    dec2 = ContrastiveDecoder(model_kwargs={"hidden": 8, "n_blocks": 0}, epochs=1, batch_size=50)
    dec2.fit(X[:n_train], Y[:n_train], subjects=subjects)
    assert dec2.subjects_ == ("b", "a")
    out = dec2.transform(X[:4], subjects=["a", "b", "a", "b"])
    single = dec2.transform(X[1:2], subjects=["b"])
    np.testing.assert_allclose(out[1:2], single, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown subjects"):
        dec2.transform(X[:2], subjects=["c", "c"])
    with pytest.raises(RuntimeError, match="not fitted"):
        ContrastiveDecoder().transform(X)


@pytest.mark.parametrize(("n", "p", "rank"), [(40, 300, 40), (40, 300, 5), (300, 40, 40)])
@pytest.mark.parametrize("alpha", [1e-9, 1.0, 100.0])
def test_ridge_equals_sklearn_for_wide_tall_and_rank_deficient_inputs(n, p, rank, alpha):
    """The Gram-matrix route for wide/tall inputs, and LAPACK's SVD for tiny penalties."""
    rng = np.random.default_rng(n + p + rank)
    X = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, p))
    Y = rng.normal(size=(n, 3))
    ours = RidgeDecoder(alphas=alpha).fit(X, Y)
    ref = Ridge(alpha=alpha, solver="svd").fit(X, Y)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-5, atol=1e-8)


def test_ridge_fitted_state_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(60, 9)), rng.normal(size=(60, 4))
    dec = RidgeDecoder(alphas=[0.1, 10.0]).fit(X, Y)
    np.savez(tmp_path / "ridge.npz", **dec.fitted_state())
    with np.load(tmp_path / "ridge.npz") as saved:
        again = RidgeDecoder.from_fitted_state(saved)
    np.testing.assert_array_equal(again.predict(X), dec.predict(X))
    assert again.alpha_ == dec.alpha_
    assert again.alphas == (0.1, 10.0)
    np.testing.assert_array_equal(again.cv_mse_, dec.cv_mse_)
    with pytest.raises(RuntimeError, match="not fitted"):
        RidgeDecoder().fitted_state()
    with pytest.raises(ValueError, match=r"lacks \['coef_'"):
        RidgeDecoder.from_fitted_state({"alphas": [1.0]})
