"""Layers versus regions: the table of compare_layers_regions against naive scipy computations.

The synthetic network is a small random hierarchy (each layer a rectified random projection of
the previous one, so neighbouring layers are correlated, as in a real network); each region is a
noisy linear read-out of one layer, with a different voxel count in every subject. The axes all
differ in size (31 stimuli; layers of 17-29 units; 19-25 voxels) so that a transposed axis
cannot pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from brainalign.rsa import correct_pvalues
from brainalign.rsa.layers import (
    LAYER_TABLE_COLUMNS,
    best_layers,
    compare_layers_regions,
    layer_rdms_from_model,
)

N_STIMULI = 31
LAYER_SIZES = {"conv1": 17, "conv2": 23, "conv3": 29, "fc": 13}
TRUTH = {"V1": "conv1", "V4": "conv2", "IT": "conv3", "PFC": "fc"}
VOXELS = (19, 22, 25)


def _network(rng: np.random.Generator) -> dict[str, np.ndarray]:
    x = rng.normal(size=(N_STIMULI, 11))
    layers = {}
    for name, size in LAYER_SIZES.items():
        x = np.maximum(x @ rng.normal(size=(x.shape[1], size)), 0) + 0.3 * rng.normal(
            size=(N_STIMULI, size)
        )
        layers[name] = x
    return layers


def _regions(rng: np.random.Generator, layers: dict, noise: float = 1.0) -> dict[str, list]:
    out = {}
    for region, layer in TRUTH.items():
        f = layers[layer]
        f = (f - f.mean(0)) / f.std(0)
        out[region] = [
            f @ rng.normal(size=(f.shape[1], n)) / np.sqrt(f.shape[1])
            + noise * rng.normal(size=(N_STIMULI, n))
            for n in VOXELS
        ]
    return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    layers = _network(rng)
    return layers, _regions(rng, layers)


@pytest.fixture(scope="module")
def tables(data):
    layers, regions = data
    kw = dict(n_permutations=500, n_bootstrap=300, seed=3, device="cpu")
    return {
        False: compare_layers_regions(layers, regions, **kw),
        True: compare_layers_regions(layers, regions, topological=True, **kw),
    }


def _gt(d: np.ndarray, lower: float, upper: float) -> np.ndarray:
    lo, hi = np.quantile(d, [lower, upper])
    return np.clip((d - lo) / (hi - lo), 0, 1)


@pytest.mark.parametrize("topological", [False, True], ids=["rsa", "trsa"])
def test_values_equal_naive_scipy(data, tables, topological):
    layers, regions = data
    table = tables[topological]
    lower, upper = 0.1, 0.9
    for region, subjects in regions.items():
        for layer, feats in layers.items():
            model = pdist(feats, "correlation")
            per_subject = []
            for x in subjects:
                rdm = pdist(x, "correlation")
                if topological:
                    rdm, m = _gt(rdm, lower, upper), _gt(model, lower, upper)
                else:
                    m = model
                per_subject.append(spearmanr(rdm, m).statistic)
            row = table[(table["region"] == region) & (table["layer"] == layer)]
            assert len(row) == 1
            np.testing.assert_allclose(row["value"].item(), np.mean(per_subject), atol=1e-10)


@pytest.mark.parametrize("topological", [False, True], ids=["rsa", "trsa"])
def test_generating_layer_ranks_first(tables, topological):
    table = tables[topological]
    best = best_layers(table)
    assert list(best["region"]) == list(TRUTH)
    assert dict(zip(best["region"], best["layer"])) == TRUTH
    assert (best["margin"] > 0).all()
    assert set(best["second_layer"]) <= set(LAYER_SIZES)
    assert (best["transform"] == ("geotopological" if topological else "none")).all()
    # the generating layer is significant after correction, and its CI holds its value
    assert (best["p_corrected"] < 0.01).all()
    assert (best["ci_low"] <= best["value"]).all()
    assert (best["value"] <= best["ci_high"]).all()


def test_table_layout(tables, data):
    layers, regions = data
    table = tables[False]
    assert isinstance(table, pd.DataFrame)
    assert tuple(table.columns) == LAYER_TABLE_COLUMNS
    assert len(table) == len(regions) * len(layers)
    # regions then layers, in input order
    assert list(table["region"]) == [r for r in regions for _ in layers]
    assert list(table["layer"]) == list(layers) * len(regions)
    assert (table["method"] == "spearman").all()
    assert (table["n_subjects"] == len(VOXELS)).all()
    assert table.attrs["rdm_metric"] == "correlation"
    assert table.attrs["n_stimuli"] == N_STIMULI
    # permutation p-values live on the grid (1 + k) / (1 + n_permutations)
    k = table["p"] * 501 - 1
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    for _, rows in table.groupby("region", sort=False):
        np.testing.assert_allclose(rows["p_corrected"], correct_pvalues(rows["p"], "holm"))
        # one ceiling per region, upper >= lower
        assert rows["noise_ceiling_low"].nunique() == 1
        assert (rows["noise_ceiling_high"] >= rows["noise_ceiling_low"]).all()
        np.testing.assert_allclose(rows["normalised"], rows["value"] / rows["noise_ceiling_high"])
    assert (table["ci_low"] <= table["ci_high"]).all()


def test_noise_ceiling_equals_naive(data, tables):
    """Upper ceiling: Spearman of each subject's RDM with the mean rank-transformed RDM."""
    _, regions = data
    from scipy.stats import rankdata

    for region, subjects in regions.items():
        rdms = np.array([pdist(x, "correlation") for x in subjects])
        ranks = np.array([rankdata(r) for r in rdms])
        upper = np.mean([spearmanr(ranks.mean(0), r).statistic for r in rdms])
        lower = np.mean(
            [
                spearmanr(np.delete(ranks, s, axis=0).mean(0), rdms[s]).statistic
                for s in range(len(rdms))
            ]
        )
        row = tables[False][tables[False]["region"] == region].iloc[0]
        np.testing.assert_allclose(row["noise_ceiling_high"], upper, atol=1e-10)
        np.testing.assert_allclose(row["noise_ceiling_low"], lower, atol=1e-10)


def test_input_forms_agree(data):
    """3-D arrays (any subject axis), lists and precomputed layer RDMs give the same values."""
    layers, regions = data
    n = min(VOXELS)
    same = {r: [x[:, :n] for x in xs] for r, xs in regions.items()}
    kw = dict(n_permutations=0, n_bootstrap=0, device="cpu")
    ref = compare_layers_regions(layers, same, **kw)
    stacked = {r: np.stack(xs) for r, xs in same.items()}  # (subjects, stimuli, voxels)
    np.testing.assert_allclose(compare_layers_regions(layers, stacked, **kw)["value"], ref["value"])
    moved = {r: np.moveaxis(x, 0, 2) for r, x in stacked.items()}  # (stimuli, voxels, subjects)
    got = compare_layers_regions(layers, moved, subject_axis=2, **kw)
    np.testing.assert_allclose(got["value"], ref["value"])
    rdms = {name: pdist(f, "correlation") for name, f in layers.items()}
    got = compare_layers_regions(rdms, same, **kw)
    np.testing.assert_allclose(got["value"], ref["value"], atol=1e-12)
    # without permutations or bootstrap, those columns are NaN
    assert ref[["p", "p_corrected", "ci_low", "ci_high"]].isna().all().all()


def test_one_subject_and_other_options(data):
    layers, regions = data
    one = {r: xs[0] for r, xs in regions.items()}  # a single (n_stimuli, n_voxels) array
    table = compare_layers_regions(
        layers, one, method="corr", rdm_metric="euclidean", n_permutations=99, n_bootstrap=50
    )
    assert (table["n_subjects"] == 1).all()
    assert table[["noise_ceiling_low", "noise_ceiling_high", "normalised"]].isna().all().all()
    r, layer = "V1", "conv1"
    x = pdist(regions[r][0], "sqeuclidean") / VOXELS[0]
    m = pdist(layers[layer], "sqeuclidean") / LAYER_SIZES[layer]
    row = table[(table["region"] == r) & (table["layer"] == layer)]
    np.testing.assert_allclose(row["value"].item(), np.corrcoef(x, m)[0, 1], atol=1e-10)
    # bootstrap over subjects, FDR correction
    table = compare_layers_regions(
        layers,
        regions,
        n_permutations=99,
        n_bootstrap=50,
        bootstrap_over="subjects",
        correction="fdr_bh",
    )
    assert table[["ci_low", "ci_high"]].notna().all().all()
    for _, rows in table.groupby("region", sort=False):
        np.testing.assert_allclose(rows["p_corrected"], correct_pvalues(rows["p"], "fdr_bh"))


def test_seeded(data):
    layers, regions = data
    kw = dict(n_permutations=50, n_bootstrap=40, seed=11, device="cpu")
    a = compare_layers_regions(layers, regions, **kw)
    b = compare_layers_regions(layers, regions, **kw)
    pd.testing.assert_frame_equal(a, b)


def test_does_not_modify_inputs(data):
    layers, regions = data
    before = {r: [x.copy() for x in xs] for r, xs in regions.items()}
    compare_layers_regions(
        layers, regions, topological=True, n_permutations=10, n_bootstrap=10, device="cpu"
    )
    for r, xs in regions.items():
        for x, y in zip(xs, before[r]):
            np.testing.assert_array_equal(x, y)


def test_bad_input_errors(data):
    layers, regions = data
    short = {"V1": [x[:-1] for x in regions["V1"]]}
    with pytest.raises(ValueError, match=r"region_patterns\['V1'\].*30 stimuli.*31"):
        compare_layers_regions(layers, short)
    with pytest.raises(ValueError, match=r"'method' parameter.*'spearmn'.*Did you mean"):
        compare_layers_regions(layers, regions, method="spearmn")
    with pytest.raises(ValueError, match="'rdm_metric' parameter"):
        compare_layers_regions(layers, regions, rdm_metric="crossnobis")
    with pytest.raises(ValueError, match="'bootstrap_over' parameter"):
        compare_layers_regions(layers, regions, bootstrap_over="trials")
    with pytest.raises(ValueError, match="'correction' parameter"):
        compare_layers_regions(layers, regions, correction="fdr")
    with pytest.raises(ValueError, match="'n_permutations'"):
        compare_layers_regions(layers, regions, n_permutations=-1)
    with pytest.raises(ValueError, match="'lower' and 'upper'"):
        compare_layers_regions(layers, regions, topological=True, lower=0.8, upper=0.2)
    uneven = dict(layers, conv2=layers["conv2"][:-2])
    with pytest.raises(ValueError, match="different numbers of stimuli"):
        compare_layers_regions(uneven, regions)
    with pytest.raises(TypeError, match="'layer_features' must be a mapping"):
        compare_layers_regions(list(layers.values()), regions)
    with pytest.raises(TypeError, match="'region_patterns' must be a mapping"):
        compare_layers_regions(layers, regions["V1"])
    with pytest.raises(ValueError, match=r"region_patterns\['V1'\]\[1\] must be"):
        compare_layers_regions(layers, {"V1": [regions["V1"][0], regions["V1"][1][:, 0]]})
    with pytest.raises(ValueError, match="bootstrap_over='subjects' needs at least 2"):
        compare_layers_regions(layers, {"V1": regions["V1"][0]}, bootstrap_over="subjects")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['layer'\]"):
        best_layers(pd.DataFrame({"region": ["a"], "value": [1.0]}))


def test_layer_rdms_from_model(tmp_path):
    """The RDMs of real EfficientNet-Lite0 layers, through extract_features and its cache."""
    from brainalign.targets import extract_features

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8) for _ in range(6)]
    kw = dict(cache_dir=tmp_path, device="cpu", batch_size=8)
    rdms = layer_rdms_from_model("efficientnet_lite0", images, ["blocks.1", "blocks.3"], **kw)
    assert list(rdms) == ["blocks.1", "blocks.3"]
    feats = extract_features(
        "efficientnet_lite0", ["blocks.1", "blocks.3"], images, pooling="avg", verbose=False, **kw
    )
    for name, rdm in rdms.items():
        assert rdm.shape == (15,)
        f = np.asarray(feats[name], dtype=np.float64)
        np.testing.assert_allclose(rdm, pdist(f, "correlation"), atol=1e-10)
