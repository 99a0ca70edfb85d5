"""RSA plots: the artists they draw (images, collections, lines, patches, tick labels)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from brainalign.viz import classical_mds, plot_layer_profiles, plot_mds, plot_rdm  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture
def points(rng):
    return rng.normal(size=(9, 7))


def test_importing_viz_does_not_import_matplotlib():
    code = "import sys, brainalign.viz; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("form", ["condensed", "square"])
def test_plot_rdm(points, form):
    d = pdist(points, "correlation")
    rdm = d if form == "condensed" else squareform(d)
    labels = [f"s{i}" for i in range(9)]
    ax = plot_rdm(rdm, labels=labels, title="layer")
    assert len(ax.images) == 1
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (9, 9)
    assert np.isnan(np.diag(shown)).all()
    np.testing.assert_allclose(shown[~np.eye(9, dtype=bool)], squareform(d)[~np.eye(9, dtype=bool)])
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert ax.get_title() == "layer"
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar


def test_plot_rdm_rank_on_given_axes(points):
    fig, ax = plt.subplots()
    d = pdist(points)
    out = plot_rdm(d, ax=ax, rank=True, colorbar=False)
    assert out is ax
    assert len(fig.axes) == 1
    shown = np.asarray(ax.images[0].get_array())
    off = shown[~np.eye(9, dtype=bool)]
    assert off.min() == 0
    assert off.max() == 100
    assert ax.get_xticklabels() == []


def test_plot_rdm_errors(points):
    with pytest.raises(ValueError, match="not the length of a condensed RDM"):
        plot_rdm(np.ones(7))
    with pytest.raises(ValueError, match="'labels' has 3 entries but the RDM has 9"):
        plot_rdm(pdist(points), labels=["a", "b", "c"])


def test_classical_mds_recovers_euclidean_configuration(rng):
    x = rng.normal(size=(8, 2))
    xy = classical_mds(pdist(x), 2)
    np.testing.assert_allclose(pdist(xy), pdist(x), atol=1e-10)


@pytest.mark.parametrize("method", ["classical", "metric"])
def test_plot_mds(points, method):
    categories = ["face", "body", "object"] * 3
    labels = [f"s{i}" for i in range(9)]
    ax = plot_mds(pdist(points), labels=labels, categories=categories, method=method)
    assert len(ax.collections) == 3  # one scatter per category
    assert sum(len(c.get_offsets()) for c in ax.collections) == 9
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["face", "body", "object"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(labels)


def test_plot_mds_errors(points):
    with pytest.raises(ValueError, match="'method' parameter"):
        plot_mds(pdist(points), method="tsne")
    with pytest.raises(ValueError, match="'categories' has 2 entries"):
        plot_mds(pdist(points), categories=["a", "b"])


def _table(transform: str = "none", shift: float = 0.0) -> pd.DataFrame:
    layers = ["l1", "l2", "l3", "l4", "l5"]
    rows = []
    for r_i, region in enumerate(["V1", "V4", "IT"]):
        for k, layer in enumerate(layers):
            value = 0.5 - 0.1 * abs(k - r_i) + shift
            rows.append(
                {
                    "region": region,
                    "layer": layer,
                    "method": "spearman",
                    "transform": transform,
                    "value": value,
                    "ci_low": value - 0.05,
                    "ci_high": value + 0.04,
                    "noise_ceiling_low": 0.6,
                    "noise_ceiling_high": 0.8,
                    "normalised": value / 0.8,
                }
            )
    return pd.DataFrame(rows)


def _star_x(ax) -> list[float]:
    return [
        float(line.get_xdata()[0]) for line in ax.lines if line.get_marker() == "*"
    ]  # fmt: skip


def test_plot_layer_profiles_one_panel_per_region():
    truth = {"V1": "l1", "V4": "l2", "IT": "l3"}
    fig = plot_layer_profiles(_table(), truth=truth)
    assert len(fig.axes) == 3
    for r_i, (ax, region) in enumerate(zip(fig.axes, truth)):
        assert ax.get_title() == f"{region} ({truth[region]})"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["l1", "l2", "l3", "l4", "l5"]
        # one ceiling band
        assert len(ax.patches) == 1
        # error bars: one LineCollection with 5 bars
        bars = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(bars) == 1
        assert len(bars[0].get_segments()) == 5
        # the best layer starred, at the generating layer; the truth as a dashed vertical line
        assert _star_x(ax) == [r_i]
        dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
        assert len(dashed) == 1
        assert dashed[0].get_xdata()[0] == r_i


def test_plot_layer_profiles_series_and_shared_axes():
    both = pd.concat([_table(), _table("geotopological", -0.1)], ignore_index=True)
    fig = plot_layer_profiles(both)
    ax = fig.axes[0]
    assert len(ax.patches) == 2  # a ceiling band per series
    assert _star_x(ax) == [0, 0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "spearman",
        "spearman geotopological",
    ]
    # every region on one given Axes
    fig2, ax2 = plt.subplots()
    out = plot_layer_profiles(_table(), ax=ax2, ceiling=False)
    assert out is fig2
    assert len(ax2.patches) == 0
    assert sorted(_star_x(ax2)) == [0, 1, 2]
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == ["V1", "V4", "IT"]


def test_plot_layer_profiles_normalised_and_errors():
    fig = plot_layer_profiles(_table(), y="normalised", regions=["IT"])
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    band = ax.patches[0]
    np.testing.assert_allclose([band.get_y(), band.get_y() + band.get_height()], [0.75, 1.0])
    assert ax.get_ylabel() == "fraction of upper noise ceiling"
    with pytest.raises(ValueError, match="'y' parameter"):
        plot_layer_profiles(_table(), y="p")
    with pytest.raises(ValueError, match="not in the table"):
        plot_layer_profiles(_table(), regions=["MT"])
    with pytest.raises(TypeError, match="'table' must be a DataFrame"):
        plot_layer_profiles({"region": []})
    _, axes = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="'ax' has 2 Axes but there are 3 regions"):
        plot_layer_profiles(_table(), ax=axes)


def test_plot_layer_profiles_on_a_real_table(rng):
    from brainalign.rsa.layers import compare_layers_regions

    layers = {"a": rng.normal(size=(12, 5)), "b": rng.normal(size=(12, 6))}
    regions = {"R": [layers["a"] @ rng.normal(size=(5, n)) for n in (7, 8)]}
    table = compare_layers_regions(layers, regions, n_permutations=20, n_bootstrap=20)
    fig = plot_layer_profiles(table, truth={"R": "a"})
    assert _star_x(fig.axes[0]) == [0]
    assert len(fig.axes[0].patches) == 1
