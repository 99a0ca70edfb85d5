"""Geo-topological transforms against the paper's formula, rsatoolbox and scipy's shortest paths."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from scipy.spatial.distance import squareform
from scipy.stats import rankdata

from brainalign.rsa import (
    compute_rdms,
    default_grid,
    geodesic,
    geotopological,
    topological_model_selection,
)
from brainalign.rsa.condensed import pair_indices
from brainalign.rsa.topology import _floyd_warshall, _gt, rdm_quantiles

rsatoolbox = pytest.importorskip("rsatoolbox")
from rsatoolbox.rdm import RDMs  # noqa: E402
from rsatoolbox.rdm.transform import geodesic_transform, geotopological_transform  # noqa: E402


def paper_gt(d, lower, upper):
    """Lin & Kriegeskorte's transform of one RDM with its own quantile thresholds."""
    lo, up = np.quantile(d, [lower, upper])
    out = np.empty_like(d)
    for k, x in enumerate(d):
        if x <= lo:
            out[k] = 0.0
        elif x >= up:
            out[k] = 1.0
        else:
            out[k] = (x - lo) / (up - lo)
    return out


@pytest.mark.parametrize(("lower", "upper"), [(0.0, 1.0), (0.2, 0.8), (0.1, 0.35), (0.5, 0.5)])
def test_geotopological_equals_the_formula_per_rdm(rng, lower, upper):
    d = rng.random((4, 21)) * [
        [1],
        [10],
        [0.1],
        [3],
    ]  # scales differ: pooled quantiles would not do
    d[3] = np.round(d[3])  # ties
    out = geotopological(d, lower, upper)
    for k in range(4):
        np.testing.assert_allclose(out[k], paper_gt(d[k], lower, upper), atol=1e-14)
    assert out.min() >= 0
    assert out.max() <= 1


def test_quantiles_match_numpy(rng):
    x = rng.random((5, 36))
    x[1] = np.round(x[1] * 4)
    qs = (0.0, 0.03, 0.25, 0.5, 0.61, 0.97, 1.0)
    got = rdm_quantiles(torch.from_numpy(x), qs).numpy()
    np.testing.assert_array_equal(got, np.quantile(x, qs, axis=1).T)
    x[2, 4] = np.nan
    got = rdm_quantiles(torch.from_numpy(x), qs).numpy()
    np.testing.assert_array_equal(got[2], np.nanquantile(x[2], qs))


def test_equals_rsatoolbox_for_one_rdm_where_its_definition_agrees(rng):
    # rsatoolbox pools quantiles over all RDMs and then overwrites values above the *raw* upper
    # threshold: for one RDM with upper threshold >= 1 it computes the same transform
    d = 1 + 5 * rng.random(36)
    r = RDMs(d[None].copy())
    np.testing.assert_allclose(
        geotopological(d, 0.2, 0.8),
        geotopological_transform(r, 0.2, 0.8).get_vectors()[0],
        atol=1e-14,
    )


def test_thresholds_are_per_rdm_not_pooled(rng):
    d = np.stack([rng.random(21), 10 + rng.random(21)])
    out = geotopological(d, 0.25, 0.75)
    # each RDM spans [0, 1] on its own; pooled thresholds would give all 0s and all 1s
    assert out[0].max() == 1
    assert out[0].min() == 0
    assert out[1].max() == 1
    assert out[1].min() == 0


def test_values_and_rank_options(rng):
    d = rng.random(28)
    out = geotopological(d, 0.3, 0.6, quantiles=False)
    np.testing.assert_allclose(out, np.clip((d - 0.3) / 0.3, 0, 1), atol=1e-15)
    # rank=True follows the paper's code: rank, min-max scale, then quantile thresholds
    r = rankdata(d)
    r = (r - r.min()) / (r.max() - r.min())
    np.testing.assert_allclose(
        geotopological(d, 0.2, 0.9, rank=True), paper_gt(r, 0.2, 0.9), atol=1e-14
    )
    binary = geotopological(d, 0.5, 0.5)
    assert set(np.unique(binary)) == {0.0, 1.0}
    assert binary.sum() == np.sum(d > np.quantile(d, 0.5))


def test_square_in_square_out_and_nothing_mutated(rng):
    d = rng.random((2, 15))
    squares = np.stack([squareform(v) for v in d])
    before = squares.copy()
    out = geotopological(squares, 0.1, 0.9)
    assert out.shape == (2, 6, 6)
    np.testing.assert_array_equal(squares, before)
    np.testing.assert_allclose(out[1], squareform(geotopological(d[1], 0.1, 0.9)), atol=0)
    g = geodesic(squares[0], 0.1, 0.9)
    assert g.shape == (6, 6)
    assert np.all(np.diag(g) == 0)
    np.testing.assert_array_equal(squares, before)


def test_nans_are_kept_and_ignored_by_the_quantiles(rng):
    d = rng.random(21)
    d[[3, 9]] = np.nan
    out = geotopological(d, 0.2, 0.7)
    assert np.isnan(out[[3, 9]]).all()
    keep = ~np.isnan(d)
    np.testing.assert_allclose(out[keep], paper_gt(d[keep], 0.2, 0.7), atol=1e-14)


def test_geodesic_without_zero_edges_equals_rsatoolbox(rng):
    d = rng.random((3, 36))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = geodesic_transform(RDMs(d.copy())).get_vectors()
    np.testing.assert_allclose(geodesic(d, keep_zero_edges=False), ref, atol=1e-14)


@pytest.mark.parametrize(("lower", "upper"), [(0.0, 1.0), (0.2, 0.5), (0.1, 0.2)])
def test_geodesic_equals_scipy_shortest_paths_on_the_gt_graph(rng, lower, upper):
    d = rng.random((2, 45))
    out = geodesic(d, lower, upper)
    n = 10
    i, j = np.triu_indices(n, 1)
    for k in range(2):
        w = paper_gt(d[k], lower, upper)
        edge = w < 1
        # explicit zeros of a sparse graph are edges of length 0
        graph = csr_matrix((w[edge], (i[edge], j[edge])), shape=(n, n))
        ref = shortest_path(graph, directed=False)[i, j]
        np.testing.assert_allclose(out[k], ref, atol=1e-14)
    if upper == 0.2:
        assert np.isinf(out).any()  # few edges: disconnected stimuli


def test_floyd_warshall_path_equals_scipy_path(device, rng):
    d = torch.from_numpy(rng.random((3, 36)))
    i, j = pair_indices(9)
    gt = _gt(d, 0.1, 0.4, True, False)
    for keep in (True, False):
        fw = _floyd_warshall(gt.to(device), i.to(device), j.to(device), 9, keep)
        ref = torch.from_numpy(geodesic(d.numpy(), 0.1, 0.4, keep_zero_edges=keep))
        np.testing.assert_allclose(fw.cpu().numpy(), ref.numpy(), rtol=0, atol=1e-14)
    out = geodesic(d.to(device), 0.1, 0.4)
    assert out.device.type == device


def test_model_selection_finds_the_generating_layer(rng):
    # two "networks" (seeds) with 4 layers each: the data are noisy copies of network A's layers
    n_stim = 12
    layers = [rng.standard_normal((n_stim, 20)) for _ in range(4)]
    models = compute_rdms([x + 0.3 * rng.standard_normal(x.shape) for x in layers], "correlation")
    data = compute_rdms([x + 0.3 * rng.standard_normal(x.shape) for x in layers], "correlation")
    truth = np.arange(4)
    grid = default_grid(0.25)
    sel = topological_model_selection(data, models, grid=grid, truth=truth)
    assert sel.similarity.shape == (len(grid), 4, 4)
    assert sel.best_model.shape == (len(grid), 4)
    assert sel.accuracy[sel.best] == sel.accuracy.max() == 1.0
    full = next(g for g, (lo, up) in enumerate(grid) if lo == 0 and up == 1)
    np.testing.assert_allclose(
        sel.similarity[full],
        np.corrcoef(rankdata(data, axis=1), rankdata(models, axis=1))[:4, 4:],
        atol=1e-12,
    )
    geo = topological_model_selection(
        data, models, grid=[(0.0, 0.5)], truth=truth, transform="geodesic", method="corr"
    )
    assert np.isfinite(geo.similarity).all()
    assert geo.accuracy.shape == (1,)


def test_default_grid():
    grid = default_grid(0.25)
    assert grid.shape == (10, 2)
    assert np.all(grid[:, 0] < grid[:, 1])
    assert len(default_grid(0.5, include_equal=True)) == 4


def test_bad_inputs(rng):
    d = rng.random(21)
    with pytest.raises(ValueError, match="must not exceed 'upper'"):
        geotopological(d, 0.8, 0.2)
    with pytest.raises(ValueError, match=r"quantiles in \[0, 1\].*quantiles=False"):
        geotopological(d, 0.1, 1.5)
    bad = d.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="contains NaN; shortest paths"):
        geodesic(bad)
    with pytest.raises(ValueError, match="'transform' parameter"):
        topological_model_selection(d, d, transform="rgdm")
    with pytest.raises(ValueError, match=r"'grid' must be a non-empty \(n_grid, 2\)"):
        topological_model_selection(d, d, grid=[0.1, 0.2])
    with pytest.raises(ValueError, match="'truth' must give"):
        topological_model_selection(d, d, truth=[3])
    with pytest.raises(ValueError, match="'step' must be in"):
        default_grid(0)
