"""sklearn-style decoders from brain responses to target embeddings, NumPy in and out.

* :class:`RidgeDecoder`: the linear baseline, ``Y ≈ X Wᵀ + b`` in closed form with the ridge
  penalty chosen by K-fold cross-validation over a grid (one SVD per fold serves every alpha).
  Equal to :class:`sklearn.linear_model.Ridge` at the chosen alpha.
* :class:`ContrastiveDecoder`: an encoder of :mod:`brainalign.models` trained by
  :func:`brainalign.train.fit` with a contrastive loss.

Both follow sklearn's conventions: ``__init__`` stores the arguments, ``fit`` validates them,
fitted attributes end in ``_``; ``transform`` returns the embeddings and ``score`` the top-1
retrieval accuracy of each row's target among the given targets (cosine similarity).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from brainalign._utils.validation import check_option

__all__ = ["ContrastiveDecoder", "RidgeDecoder", "kfold_splits"]


def _as_2d(value: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name!r} must be a numeric array, got {type(value).__name__}.") from err
    if array.ndim != 2:
        raise ValueError(
            f"{name!r} must have shape (n_samples, n_features), got {array.shape}; reshape a "
            "single sample with x[None] or flatten trailing axes with x.reshape(len(x), -1)."
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name!r} contains NaN or infinite values.")
    return array


def _check_pair(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} samples but Y has {Y.shape[0]}; give one target row per "
            "brain sample."
        )
    return X, Y


def kfold_splits(n_samples: int, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Contiguous K-fold splits, the same as ``sklearn.model_selection.KFold(n_folds)``.

    Returns
    -------
    splits : list of (train_index, test_index)
        The first ``n_samples % n_folds`` folds hold one sample more.
    """
    if not 2 <= n_folds <= n_samples:
        raise ValueError(
            f"'cv' must lie in [2, n_samples={n_samples}], got {n_folds}; use fewer folds."
        )
    sizes = np.full(n_folds, n_samples // n_folds)
    sizes[: n_samples % n_folds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    index = np.arange(n_samples)
    return [
        (np.concatenate([index[:a], index[b:]]), index[a:b]) for a, b in itertools.pairwise(bounds)
    ]


def _ridge_path(
    X: np.ndarray, Y: np.ndarray, alphas: np.ndarray, fit_intercept: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SVD pieces for every alpha: ``W(α) = V diag(s / (s² + α)) Uᵀ Y_c``."""
    x_mean = X.mean(0) if fit_intercept else np.zeros(X.shape[1])
    y_mean = Y.mean(0) if fit_intercept else np.zeros(Y.shape[1])
    Xc = X - x_mean
    U, s, Vt = _thin_svd(Xc)
    if s.size and float(np.min(alphas)) < 1e-8 * float(s[0]) ** 2:
        # the Gram route loses the singular values below ~sqrt(eps) * s[0] that so small a
        # penalty would still use: LAPACK's SVD keeps them
        U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    UtY = U.T @ (Y - y_mean)
    return x_mean, y_mean, s, Vt, UtY


def _thin_svd(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``U, s, Vt`` of ``X`` through the eigendecomposition of its smaller Gram matrix.

    For wide or tall ``X`` (M/EEG windows: 400 × 20,000) LAPACK's SVD costs far more than one
    Gram product (36 s vs 0.5 s measured here). Singular values below about ``sqrt(eps)`` of
    the largest come out inaccurate (the Gram matrix squares the condition number); ridge with
    ``alpha`` above ``1e-8 * s[0]**2`` shrinks those directions to nothing, and
    :func:`_ridge_path` uses LAPACK below that. Directions whose eigenvalue is below ``1e-20``
    of the largest are dropped.
    """
    n, p = X.shape
    wide = n <= p
    gram = X @ X.T if wide else X.T @ X
    w, vecs = np.linalg.eigh(gram)
    w, vecs = w[::-1], vecs[:, ::-1]
    keep = w > (max(w[0], 0.0) * 1e-20 if w.size else 0.0)
    s = np.sqrt(w[keep])
    if wide:
        U = vecs[:, keep]
        return U, s, (U.T @ X) / s[:, None]
    V = vecs[:, keep]
    return (X @ V) / s, s, V.T


def _ridge_weights(s: np.ndarray, Vt: np.ndarray, UtY: np.ndarray, alpha: float) -> np.ndarray:
    """``(n_features, n_targets)`` ridge coefficients at one alpha."""
    return Vt.T @ ((s / (s**2 + alpha))[:, None] * UtY)


def _top1(pred: np.ndarray, Y: np.ndarray) -> float:
    from brainalign.evaluate.retrieval import topk_accuracy

    return cast(float, topk_accuracy(pred, Y, k=1))  # an int k gives a float


class RidgeDecoder:
    """Ridge regression from responses to target embeddings, alpha chosen by K-fold CV.

    Parameters
    ----------
    alphas : float | sequence of float
        Penalties to try (``np.logspace(-2, 5, 8)`` by default); one value skips the CV.
    cv : int
        Number of contiguous folds (``sklearn.model_selection.KFold(cv)``); the alpha with the
        lowest mean over folds of the mean squared error is kept (ties: the first).
    fit_intercept : bool
        Centre ``X`` and ``Y`` (sklearn's default).

    Attributes
    ----------
    coef_ : ndarray, shape (n_targets, n_features)
        The weights, as sklearn's ``Ridge.coef_``.
    intercept_ : ndarray, shape (n_targets,)
    alpha_ : float
        The chosen penalty.
    cv_mse_ : ndarray, shape (n_alphas,)
        Mean over folds of the validation MSE of each alpha (empty with a single alpha).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 7)); W = rng.normal(size=(7, 4))
    >>> dec = RidgeDecoder(alphas=[1e-3, 1.0]).fit(X, X @ W)
    >>> bool(np.allclose(dec.coef_.T, W, atol=1e-2))
    True
    """

    def __init__(
        self,
        alphas: float | Sequence[float] = tuple(np.logspace(-2, 5, 8)),
        *,
        cv: int = 5,
        fit_intercept: bool = True,
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.fit_intercept = fit_intercept

    def fit(self, X: Any, Y: Any) -> RidgeDecoder:
        """Choose alpha by cross-validation, then fit on all of ``X`` (n_samples, n_features).

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Responses.
        Y : array-like, shape (n_samples, n_targets)
            Target embedding of each sample.
        """
        X, Y = _check_pair(X, Y)
        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        if alphas.ndim != 1 or alphas.size == 0 or not (np.isfinite(alphas) & (alphas > 0)).all():
            raise ValueError(f"'alphas' must be positive numbers, got {self.alphas!r}.")
        self.cv_mse_ = np.zeros(0)
        if alphas.size > 1:
            if isinstance(self.cv, bool) or not isinstance(self.cv, int | np.integer):
                raise TypeError(f"'cv' must be an integer number of folds, got {self.cv!r}.")
            mse = np.zeros((len(alphas),))
            splits = kfold_splits(X.shape[0], int(self.cv))
            for train, test in splits:
                x_mean, y_mean, s, Vt, UtY = _ridge_path(
                    X[train], Y[train], alphas, self.fit_intercept
                )
                # project the held-out fold once: (X V) diag(s / (s² + α)) Uᵀ Y per alpha never
                # forms the (n_features, n_targets) weights, the cost for wide inputs
                XV = (X[test] - x_mean) @ Vt.T
                for i, alpha in enumerate(alphas):
                    pred = (XV * (s / (s**2 + alpha))) @ UtY + y_mean
                    mse[i] += np.mean((pred - Y[test]) ** 2)
            self.cv_mse_ = mse / len(splits)
            self.alpha_ = float(alphas[int(np.argmin(self.cv_mse_))])
        else:
            self.alpha_ = float(alphas[0])
        x_mean, y_mean, s, Vt, UtY = _ridge_path(X, Y, alphas, self.fit_intercept)
        W = _ridge_weights(s, Vt, UtY, self.alpha_)
        self.coef_ = W.T
        self.intercept_ = y_mean - x_mean @ W
        self.n_features_in_ = X.shape[1]
        return self

    #: The attributes fit sets, all a fitted decoder needs (see :meth:`fitted_state`).
    _FITTED = ("coef_", "intercept_", "alpha_", "cv_mse_")

    def fitted_state(self) -> dict[str, np.ndarray]:
        """The fitted attributes as arrays (``np.savez``-able), for :meth:`from_fitted_state`."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("This RidgeDecoder is not fitted yet; call fit(X, Y) first.")
        state = {name: np.asarray(getattr(self, name)) for name in self._FITTED}
        state["alphas"] = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        return state

    @classmethod
    def from_fitted_state(cls, state: Mapping[str, Any], **kwargs: Any) -> RidgeDecoder:
        """A fitted decoder from :meth:`fitted_state` (``kwargs``: ``cv``, ``fit_intercept``);
        its predictions equal the original's to the bit."""
        missing = [name for name in (*cls._FITTED, "alphas") if name not in state]
        if missing:
            raise ValueError(f"The ridge state lacks {missing}; give fitted_state()'s output.")
        dec = cls(alphas=tuple(np.asarray(state["alphas"], dtype=np.float64).tolist()), **kwargs)
        dec.coef_ = np.asarray(state["coef_"])
        dec.intercept_ = np.asarray(state["intercept_"])
        dec.alpha_ = float(state["alpha_"])
        dec.cv_mse_ = np.asarray(state["cv_mse_"])
        dec.n_features_in_ = dec.coef_.shape[1]
        return dec

    def _check_fitted(self, X: Any) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, Y) first."
            )
        X = _as_2d(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features but the decoder was fitted on {self.n_features_in_}."
            )
        return X

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, shape ``(n_samples, n_targets)``."""
        X = self._check_fitted(X)
        return X @ self.coef_.T + self.intercept_  # type: ignore[no-any-return]

    def transform(self, X: Any) -> np.ndarray:
        """Same as :meth:`predict` (the decoded embeddings)."""
        return self.predict(X)

    def score(self, X: Any, Y: Any) -> float:
        """Top-1 retrieval: the fraction of rows whose prediction is closest to its own ``Y`` row.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        Y : array-like, shape (n_samples, n_targets)
            The candidates; row ``i`` is the true target of ``X[i]`` (chance ``1 / n_samples``).
        """
        X, Y = _check_pair(X, Y)
        return _top1(self.predict(X), Y)


class ContrastiveDecoder:
    """An encoder of :mod:`brainalign.models` trained by :func:`~brainalign.train.fit`.

    Parameters
    ----------
    model : str
        Registered recipe (``"mindeye2"``, ``"mindeye1"``, ``"linear"``); its sizes
        (``n_voxels``, ``target_shape``) come from the data.
    model_kwargs : dict | None
        Other constructor arguments (``hidden``, ``n_blocks``, ``dropout`` …).
    loss : str
        ``TrainConfig.loss`` (``"clip"``, ``"softclip"``, ``"mindeye"`` …).
    epochs, batch_size, lr, weight_decay : int, int, float, float
        As in :class:`~brainalign.train.TrainConfig`.
    regression_weight : float | None
        Weight of the backbone's mean squared error to the targets added to the contrastive
        loss (:attr:`TrainConfig.regression_weight <brainalign.train.TrainConfig>`; 0: none).
        ``None``: ``config``'s (0 without a config).
    config : TrainConfig | None
        Every other training setting; the arguments above override its fields.
    seed : int
        Seed of the initialisation and of the training.
    verbose : bool
        Show the training progress.

    Attributes
    ----------
    model_ : BrainEncoder
        The trained encoder (on the configured device).
    result_ : FitResult
        What :func:`~brainalign.train.fit` returned.
    subjects_ : tuple of str
        Subjects seen in ``fit``.
    """

    def __init__(
        self,
        model: str = "mindeye2",
        model_kwargs: Mapping[str, Any] | None = None,
        *,
        loss: str = "clip",
        epochs: int = 20,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        regression_weight: float | None = None,
        config: Any = None,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.model_kwargs = model_kwargs
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.regression_weight = regression_weight
        self.config = config
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------ the data
    @staticmethod
    def _split(X: Any, subjects: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``{subject: X rows}`` and ``{subject: row indices}`` from the accepted inputs."""
        if isinstance(X, Mapping):
            if subjects is not None:
                raise ValueError("Pass 'subjects' only with an array X (a dict X names them).")
            blocks = {str(s): _as_2d(v, f"X[{s!r}]") for s, v in X.items()}
            rows, start = {}, 0
            for s, v in blocks.items():
                rows[s] = np.arange(start, start + len(v))
                start += len(v)
            return blocks, rows
        X = _as_2d(X, "X")
        if subjects is None:
            return {"0": X}, {"0": np.arange(len(X))}
        subjects = np.asarray(subjects).astype(str)
        if subjects.shape != (len(X),):
            raise ValueError(
                f"'subjects' must give one id per row of X ({len(X)}), got shape {subjects.shape}."
            )
        out, rows = {}, {}
        for s in dict.fromkeys(subjects.tolist()):
            rows[s] = np.flatnonzero(subjects == s)
            out[s] = X[rows[s]]
        return out, rows

    def _dataset(self, X: Any, Y: Any, subjects: Any) -> tuple[Any, dict[str, np.ndarray]]:
        from brainalign.train.data import BrainTargetDataset

        blocks, rows = self._split(X, subjects)
        n = sum(len(v) for v in blocks.values())
        if Y is None:
            Y = np.zeros((n, 1))
        elif isinstance(Y, Mapping):
            Y = np.concatenate([_as_2d(Y[s], f"Y[{s!r}]") for s in blocks])
        Y = _as_2d(Y, "Y")
        if len(Y) != n:
            raise ValueError(f"X has {n} samples but Y has {len(Y)}; give one target per sample.")
        return BrainTargetDataset(blocks, rows, Y), rows

    # ---------------------------------------------------------------- API
    def fit(self, X: Any, Y: Any, subjects: Any = None) -> ContrastiveDecoder:
        """Train the encoder.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features) | dict of str to array-like
            Responses; a dict ``{subject: (n_s, n_features_s)}`` when subjects differ in size.
        Y : array-like, shape (n_samples, n_targets) | dict of str to array-like
            Target embedding of each sample (a dict matching ``X``'s).
        subjects : array-like of str, shape (n_samples,) | None
            Subject of each row of an array ``X`` (one subject, ``"0"``, when ``None``).
        """
        import torch

        from brainalign.models import build_model
        from brainalign.train.config import TrainConfig
        from brainalign.train.loop import fit

        check_option("loss", self.loss, ("clip", "softclip", "siglip", "dcl", "mindeye"))
        data, _ = self._dataset(X, Y, subjects)
        base = self.config if self.config is not None else TrainConfig()
        if not isinstance(base, TrainConfig):
            raise TypeError(f"'config' must be a TrainConfig or None, got {type(base).__name__}.")
        kwargs = {**base.model_kwargs, **dict(self.model_kwargs or {})}
        kwargs.update(n_voxels=data.n_features, target_shape=data.target_shape)
        config = base.replace(
            model=self.model,
            model_kwargs=kwargs,
            loss=self.loss,
            epochs=self.epochs,
            batch_size=min(self.batch_size, len(data)),
            lr=self.lr,
            weight_decay=self.weight_decay,
            regression_weight=(
                base.regression_weight if self.regression_weight is None else self.regression_weight
            ),
            seed=self.seed,
        )
        torch.manual_seed(self.seed)
        model = build_model(config.model, **config.model_kwargs)
        self.result_ = fit(model, data, None, config, verbose=self.verbose)
        self.model_ = self.result_.model
        self.subjects_ = data.subjects
        self.config_ = config
        return self

    def transform(self, X: Any, subjects: Any = None) -> np.ndarray | dict[str, np.ndarray]:
        """The brain embeddings (the model's projected output, flattened).

        Returns
        -------
        embeddings : ndarray, shape (n_samples, n_targets) | dict of str to ndarray
            In the order of ``X`` (a dict for a dict ``X``).
        """
        from brainalign.train.loop import encode

        if not hasattr(self, "model_"):
            raise RuntimeError("This ContrastiveDecoder is not fitted yet; call fit(X, Y) first.")
        data, rows = self._dataset(X, None, subjects)
        unknown = [s for s in data.subjects if s not in self.subjects_]
        if unknown:
            raise ValueError(
                f"Unknown subjects {unknown}; the decoder was fitted on {list(self.subjects_)}."
            )
        emb = encode(self.model_, data).numpy()
        out = np.empty_like(emb)
        out[data.trial_stimuli().numpy()] = emb
        if isinstance(X, Mapping):
            return {s: out[r] for s, r in rows.items()}
        return out

    def score(self, X: Any, Y: Any, subjects: Any = None) -> float:
        """Top-1 retrieval of each sample's own target among the rows of ``Y`` (cosine)."""
        emb = self.transform(X, subjects)
        if isinstance(emb, dict):
            emb = np.concatenate(list(emb.values()))
            Y = np.concatenate([_as_2d(Y[s], f"Y[{s!r}]") for s in X])
        Y = _as_2d(Y, "Y")
        if len(Y) != len(emb):
            raise ValueError(f"X has {len(emb)} samples but Y has {len(Y)}.")
        return _top1(emb, Y)
