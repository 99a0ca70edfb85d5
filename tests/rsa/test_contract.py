"""One contract for every public function of brainalign.rsa, and batched RDMs against rsatoolbox.

Every function that takes arrays returns NumPy for NumPy inputs and torch (same device) for torch
inputs, and never writes into its inputs. The batched and cross-validated RDM paths are checked
against rsatoolbox RDM by RDM.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from scipy.spatial.distance import squareform
from scipy.stats import binom

import brainalign.rsa as rsa

rsatoolbox = pytest.importorskip("rsatoolbox")
from rsatoolbox.data import Dataset  # noqa: E402
from rsatoolbox.data.noise import prec_from_residuals  # noqa: E402
from rsatoolbox.rdm import RDMs, calc_rdm, compare  # noqa: E402
from rsatoolbox.rdm.transform import geotopological_transform  # noqa: E402

ATOL = 1e-10
N_STIM = 9  # 36 pairs
N_PAIRS = N_STIM * (N_STIM - 1) // 2


def quiet(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def _inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    rdms = rng.random((4, N_PAIRS))
    models = rng.random((3, N_PAIRS))
    models[2] = np.round(models[2] * 3)
    return {
        "patterns": rng.standard_normal((2, N_STIM, 7)),
        "rdms": rdms,
        "models": models,
        "squares": np.stack([squareform(v) for v in rdms]),
        "residuals": rng.standard_normal((20, 7)),
    }


# name -> (function of the inputs dict, names of the inputs it reads)
ARRAY_FUNCTIONS: dict[str, tuple[Callable[[dict[str, Any]], Any], tuple[str, ...]]] = {
    "compute_rdms": (lambda d: rsa.compute_rdms(d["patterns"], "correlation"), ("patterns",)),
    "compute_rdms_crossnobis": (
        lambda d: rsa.compute_rdms(
            d["patterns"], "crossnobis", descriptors=np.tile(np.arange(3), 3)
        ),
        ("patterns",),
    ),
    "noise_covariance": (lambda d: rsa.noise_covariance(d["residuals"]), ("residuals",)),
    "noise_precision": (lambda d: rsa.noise_precision(d["residuals"]), ("residuals",)),
    "to_square": (lambda d: rsa.to_square(d["rdms"]), ("rdms",)),
    "to_condensed": (lambda d: rsa.to_condensed(d["squares"]), ("squares",)),
    "compare_rdms": (
        lambda d: rsa.compare_rdms(d["rdms"], d["models"], "tau-a"),
        ("rdms", "models"),
    ),
    "geotopological": (lambda d: rsa.geotopological(d["rdms"], 0.2, 0.7), ("rdms",)),
    "geotopological_square": (lambda d: rsa.geotopological(d["squares"], 0.2, 0.7), ("squares",)),
    "geodesic": (lambda d: rsa.geodesic(d["rdms"], 0.1, 0.6), ("rdms",)),
}


@pytest.mark.parametrize("name", sorted(ARRAY_FUNCTIONS))
def test_numpy_in_numpy_out_and_inputs_untouched(rng, name):
    fn, used = ARRAY_FUNCTIONS[name]
    inputs = _inputs(rng)
    if name == "compute_rdms_crossnobis":
        inputs["patterns"] = rng.standard_normal((2, 9, 7))
    before = {k: v.copy() for k, v in inputs.items()}
    for v in inputs.values():
        v.setflags(write=False)  # a write into an input raises
    out = fn(inputs)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float64
    for k in used:
        np.testing.assert_array_equal(inputs[k], before[k])


@pytest.mark.parametrize("name", sorted(ARRAY_FUNCTIONS))
def test_torch_in_torch_out_and_inputs_untouched(rng, device, name):
    fn, used = ARRAY_FUNCTIONS[name]
    inputs = _inputs(rng)
    if name == "compute_rdms_crossnobis":
        inputs["patterns"] = rng.standard_normal((2, 9, 7))
    ref = fn(inputs)
    tensors = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
    before = {k: v.clone() for k, v in tensors.items()}
    out = fn(tensors)
    assert isinstance(out, torch.Tensor)
    assert out.device.type == device
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.cpu().numpy(), ref, rtol=1e-9, atol=1e-12)
    for k in used:
        assert torch.equal(tensors[k], before[k])


def test_geotopological_does_not_mutate_where_rsatoolbox_does(rng):
    d = 1 + rng.random((1, N_PAIRS))
    given = d.copy()
    r = RDMs(given)
    expected = geotopological_transform(r, 0.2, 0.8).get_vectors()
    # rsatoolbox writes the transform into the RDMs object it was given
    assert not np.array_equal(r.get_vectors(), d)
    for x in (d.copy(), torch.from_numpy(d.copy())):
        x0 = x.copy() if isinstance(x, np.ndarray) else x.clone()
        out = rsa.geotopological(x, 0.2, 0.8)
        np.testing.assert_allclose(np.asarray(out), expected, atol=1e-14)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(x0))


@pytest.mark.parametrize("method", rsa.COMPARE_METHODS)
def test_all_vs_all_shapes(rng, method):
    a, b = rng.random((2, N_PAIRS)), rng.random((5, N_PAIRS))
    assert rsa.compare_rdms(a, b, method).shape == (2, 5)
    assert rsa.compare_rdms(b, a, method).shape == (5, 2)
    np.testing.assert_allclose(
        rsa.compare_rdms(b, a, method), rsa.compare_rdms(a, b, method).T, atol=1e-12
    )
    assert rsa.compare_rdms(a[0], b[1], method).shape == (1, 1)
    assert rsa.compare_rdms(b, method=method).shape == (5, 5)


# ---------------------------------------------------------------------------------------------
# batched RDMs against rsatoolbox, one RDM at a time


def rsa_rdm(x: np.ndarray, method: str, **kw: Any) -> np.ndarray:
    obs = kw.pop("obs", None)
    return quiet(calc_rdm, Dataset(x, obs_descriptors=obs), method=method, **kw).get_vectors()[0]


def precision(rng: np.random.Generator, p: int) -> np.ndarray:
    a = rng.standard_normal((p, p))
    return a @ a.T / p + np.eye(p)


@pytest.mark.parametrize(
    ("metric", "remove_mean"),
    [
        ("correlation", False),
        ("euclidean", False),
        ("euclidean", True),
        ("mahalanobis", False),
        ("mahalanobis", True),
        ("poisson", False),
    ],
)
def test_batched_rdms_equal_rsatoolbox(rng, metric, remove_mean):
    x = rng.standard_normal((3, 11, 8))
    if metric == "poisson":
        x = rng.poisson(3.0, x.shape).astype(float)
    kw: dict[str, Any] = {"remove_mean": True} if remove_mean else {}
    noises = [precision(rng, 8) for _ in range(3)] if metric == "mahalanobis" else None
    ours = rsa.compute_rdms(x, metric, noise=noises, chunk_size=4, **kw)
    assert ours.shape == (3, 55)
    for k in range(3):
        if noises is not None:
            kw["noise"] = noises[k]
        np.testing.assert_allclose(ours[k], rsa_rdm(x[k], metric, **kw), rtol=0, atol=ATOL)


@pytest.mark.parametrize("remove_mean", [False, True])
def test_batched_crossnobis_with_noise_equals_rsatoolbox(rng, remove_mean):
    n_cond, n_folds, p = 7, 3, 8
    cond = np.tile(np.arange(n_cond), n_folds)
    run = np.repeat(np.arange(n_folds), n_cond)
    x = rng.standard_normal((2, cond.size, p))
    noises = [precision(rng, p) for _ in range(2)]
    ours = rsa.compute_rdms(
        x,
        "crossnobis",
        descriptors=cond,
        folds=run,
        noise=noises,
        remove_mean=remove_mean,
        chunk_size=3,
    )
    for k in range(2):
        ref = rsa_rdm(
            x[k],
            "crossnobis",
            obs={"c": cond, "r": run},
            descriptor="c",
            cv_descriptor="r",
            noise=noises[k],
            remove_mean=remove_mean,
        )
        np.testing.assert_allclose(ours[k], ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("method", ["shrinkage_diag", "shrinkage_eye", "diag"])
def test_mahalanobis_with_estimated_noise_equals_rsatoolbox(rng, method):
    residuals = rng.standard_normal((25, 8)) @ rng.standard_normal((8, 8))
    x = rng.standard_normal((10, 8))
    ours = rsa.compute_rdms(x, "mahalanobis", noise=rsa.noise_precision(residuals, method))
    ref = rsa_rdm(x, "mahalanobis", noise=prec_from_residuals(residuals, method=method))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL)


def test_condensed_output_is_squareform_order(rng):
    x = rng.standard_normal((N_STIM, 6))
    square = rsa.compute_rdms(x, "euclidean", condensed=False)
    np.testing.assert_allclose(
        rsa.compute_rdms(x, "euclidean"), squareform(square, checks=False), atol=0
    )
    np.testing.assert_allclose(square, squareform(rsa_rdm(x, "euclidean")), atol=ATOL)


def test_tau_a_many_pairs_equals_rsatoolbox(rng):
    # 50 stimuli: 1225 pairs, several merge levels; half the vectors tied
    a = rng.random((2, 1225))
    b = rng.random((3, 1225))
    b[1:] = np.round(b[1:] * 5)
    a[1] = np.round(a[1] * 7)
    ref = quiet(compare, RDMs(a), RDMs(b), method="tau-a")
    np.testing.assert_allclose(rsa.compare_rdms(a, b, "tau-a"), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("method", "alternative"), [("corr", "two-sided"), ("tau-a", "greater"), ("corr_cov", "less")]
)
def test_permutation_false_positive_rate_is_nominal(rng, method, alternative):
    # independent null data RDMs, each tested on its own: the fraction with p <= 0.05 is
    # binomial(n_data, 0.05) (permutation p-values are exact-valid)
    n_data = 160
    data = rng.random((n_data, N_PAIRS))
    model = rng.random(N_PAIRS)
    res = rsa.permutation_test(
        data, model, method, n_permutations=199, alternative=alternative, seed=4
    )
    assert res.p_values.shape == (n_data, 1)
    false_positives = int((res.p_values[:, 0] <= 0.05).sum())
    lo, hi = binom.ppf([0.005, 0.995], n_data, 0.05)
    assert lo <= false_positives <= hi
