"""Plots of RSA results: RDM heatmaps, MDS arrangements and layer profiles of brain regions.

Every function draws on a given matplotlib ``Axes`` (or makes a figure) and returns what it drew
on, so that plots compose into larger figures. NumPy arrays and torch tensors are accepted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from brainalign._utils.optional import import_optional
from brainalign._utils.validation import check_option

__all__ = ["MDS_METHODS", "classical_mds", "plot_layer_profiles", "plot_mds", "plot_rdm"]

#: Embeddings of :func:`plot_mds`.
MDS_METHODS = ("classical", "metric", "nonmetric")
_MAX_TICK_LABELS = 60


def _pyplot() -> Any:
    return import_optional("matplotlib.pyplot", pip_name="matplotlib", purpose="plotting")


def _numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.dtype == object:
        raise TypeError(f"{name!r} must be a numeric array, got {type(x).__name__}.")
    return arr


def _square(rdm: Any, name: str = "rdm") -> np.ndarray:
    """A square RDM from a condensed vector ``(n_pairs,)`` or a square ``(n, n)`` matrix."""
    d = _numpy(rdm, name)
    if d.ndim == 1:
        n = (1 + math.isqrt(1 + 8 * d.size)) // 2
        if n * (n - 1) // 2 != d.size:
            raise ValueError(
                f"{name!r} has {d.size} values, which is not the length of a condensed RDM "
                "(n (n - 1) / 2 for an integer n)."
            )
        out = np.zeros((n, n))
        i, j = np.triu_indices(n, 1)
        out[i, j] = d
        out[j, i] = d
        return out
    if d.ndim == 2 and d.shape[0] == d.shape[1]:
        return d
    raise ValueError(
        f"{name!r} must be a condensed (n_pairs,) vector or a square (n_stimuli, n_stimuli) "
        f"matrix, got shape {d.shape}."
    )


def _get_ax(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is None:
        _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def plot_rdm(
    rdm: Any,
    labels: Sequence[str] | None = None,
    ax: Any = None,
    *,
    cmap: str = "viridis",
    rank: bool = False,
    colorbar: bool = True,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Any:
    """Show an RDM as a square heatmap.

    Parameters
    ----------
    rdm : array or tensor
        Condensed ``(n_pairs,)`` (``scipy.spatial.distance.squareform`` order) or square
        ``(n_stimuli, n_stimuli)``.
    labels : sequence of str, optional
        One per stimulus, written on both axes when there are at most 60.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    cmap : str
        Colour map.
    rank : bool
        Show the percentile of every dissimilarity among the off-diagonal ones (rsatoolbox's
        ``rank_transform`` display) instead of its value.
    colorbar : bool
        Add a colour bar.
    title : str, optional
    vmin, vmax : float, optional
        Colour limits (default: the off-diagonal range).

    Returns
    -------
    ax : matplotlib Axes
        Its first image (``ax.images[0]``) is the heatmap.
    """
    d = _square(rdm).copy()
    n = d.shape[0]
    if labels is not None and len(labels) != n:
        raise ValueError(f"'labels' has {len(labels)} entries but the RDM has {n} stimuli.")
    if rank:
        from scipy.stats import rankdata

        i, j = np.triu_indices(n, 1)
        values = (d[i, j] + d[j, i]) / 2
        ok = ~np.isnan(values)
        ranked = np.full_like(values, np.nan)
        ranked[ok] = (rankdata(values[ok]) - 1) / max(1, ok.sum() - 1) * 100
        d[i, j] = d[j, i] = ranked
    np.fill_diagonal(d, np.nan)
    finite = d[np.isfinite(d)]
    if vmin is None and finite.size:
        vmin = float(finite.min())
    if vmax is None and finite.size:
        vmax = float(finite.max())
    ax = _get_ax(ax, (4.5, 4))
    im = ax.imshow(d, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if labels is not None and n <= _MAX_TICK_LABELS:
        ticks = np.arange(n)
        ax.set_xticks(ticks, [str(lab) for lab in labels], rotation=90, fontsize=7)
        ax.set_yticks(ticks, [str(lab) for lab in labels], fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if colorbar:
        ax.figure.colorbar(
            im, ax=ax, fraction=0.046, pad=0.04, label="percentile" if rank else "dissimilarity"
        )
    if title is not None:
        ax.set_title(title)
    return ax


def classical_mds(rdm: Any, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS of a dissimilarity matrix.

    Parameters
    ----------
    rdm : array or tensor
        Condensed or square, NaN-free. Entries are read as distances.
    n_components : int
        Dimensions of the embedding.

    Returns
    -------
    coords : (n_stimuli, n_components) array
        The top eigenvectors of ``-J D² J / 2`` scaled by the square roots of their (positive)
        eigenvalues; the sign of each axis is fixed so that its largest coordinate is positive.
    """
    d = _square(rdm)
    if np.isnan(d[~np.eye(len(d), dtype=bool)]).any():
        raise ValueError("'rdm' holds NaN dissimilarities; MDS needs a complete matrix.")
    n = d.shape[0]
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (d**2) @ j
    vals, vecs = np.linalg.eigh((b + b.T) / 2)
    order = np.argsort(vals)[::-1][:n_components]
    coords = vecs[:, order] * np.sqrt(np.clip(vals[order], 0, None))
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), np.arange(coords.shape[1])])
    return coords * np.where(signs == 0, 1, signs)


def plot_mds(
    rdm: Any,
    labels: Sequence[str] | None = None,
    categories: Sequence[Any] | None = None,
    ax: Any = None,
    *,
    method: str = "classical",
    seed: int = 0,
    title: str | None = None,
    max_labels: int = 30,
) -> Any:
    """Arrange the stimuli in 2-D so that their distances approximate the RDM.

    Parameters
    ----------
    rdm : array or tensor
        Condensed ``(n_pairs,)`` or square ``(n_stimuli, n_stimuli)``, NaN-free.
    labels : sequence of str, optional
        Text written next to each point (when there are at most ``max_labels`` stimuli).
    categories : sequence, optional
        A category per stimulus: one colour (one scatter collection) and one legend entry each.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    method : {"classical", "metric", "nonmetric"}
        Classical (Torgerson) MDS, or scikit-learn's SMACOF metric or non-metric MDS.
    seed : int
        Seed of scikit-learn's MDS.
    title : str, optional
    max_labels : int
        Most stimuli that get a text label.

    Returns
    -------
    ax : matplotlib Axes
        One scatter collection per category (one in all without categories).
    """
    check_option("method", method, MDS_METHODS)
    d = _square(rdm)
    n = d.shape[0]
    for name, values in (("labels", labels), ("categories", categories)):
        if values is not None and len(values) != n:
            raise ValueError(f"{name!r} has {len(values)} entries but the RDM has {n} stimuli.")
    if method == "classical":
        xy = classical_mds(d, 2)
    else:
        manifold = import_optional("sklearn.manifold", pip_name="scikit-learn", purpose="MDS")
        import inspect

        params = inspect.signature(manifold.MDS).parameters
        kwargs: dict[str, Any] = {"n_components": 2, "random_state": seed, "n_init": 4}
        if "metric_mds" in params:  # scikit-learn >= 1.8
            kwargs.update(metric_mds=method == "metric", metric="precomputed")
        else:
            kwargs.update(metric=method == "metric", dissimilarity="precomputed")
        if "init" in params:
            kwargs["init"] = "random"
        mds = manifold.MDS(**kwargs)
        sym = (d + d.T) / 2
        np.fill_diagonal(sym, 0)
        xy = mds.fit_transform(sym)
    ax = _get_ax(ax, (4.5, 4))
    if categories is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=20)
    else:
        cats = np.asarray([str(c) for c in categories])
        for cat in dict.fromkeys(cats):
            keep = cats == cat
            ax.scatter(xy[keep, 0], xy[keep, 1], s=20, label=cat)
        ax.legend(fontsize=7, frameon=False)
    if labels is not None and n <= max_labels:
        for (x, y), lab in zip(xy, labels):
            ax.annotate(str(lab), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_layer_profiles(
    table: Any,
    ax: Any = None,
    *,
    truth: Mapping[str, str] | None = None,
    y: str = "value",
    regions: Sequence[str] | None = None,
    ceiling: bool = True,
) -> Any:
    """Layer profile of each region: RSA value per layer, CIs, noise-ceiling band, best layer.

    Parameters
    ----------
    table : DataFrame
        From :func:`brainalign.rsa.compare_layers_regions` (columns ``region``, ``layer``,
        ``value``, ``ci_low``, ``ci_high``, ``noise_ceiling_low``, ``noise_ceiling_high``;
        ``method``/``transform`` optional). Several results may be concatenated (e.g. RSA and
        tRSA): each method/transform combination is one series per region. Layers are shown
        in their order of appearance.
    ax : matplotlib Axes or sequence of Axes, optional
        ``None``: a new figure with one panel per region. One Axes: every region on it. A
        sequence: one Axes per region.
    truth : mapping of str to str, optional
        Region → generating (true) layer: marked by a dashed vertical line in that region's
        panel.
    y : {"value", "normalised"}
        Raw values (with the ceiling band) or values as a fraction of the upper ceiling (the
        band then spans ``lower/upper`` to 1).
    regions : sequence of str, optional
        Regions to show (default all, in order of appearance).
    ceiling : bool
        Draw the noise-ceiling band (a patch) of each series, when the table has one.

    Returns
    -------
    fig : matplotlib Figure
        Per series: an error-bar line (CI bars when the table has them) and a star on the best
        layer; per panel with ``truth``: one dashed vertical line.
    """
    import pandas as pd

    check_option("y", y, ("value", "normalised"))
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"'table' must be a DataFrame from compare_layers_regions, got {type(table).__name__}."
        )
    missing = {"region", "layer", y} - set(table.columns)
    if missing:
        raise ValueError(f"'table' lacks the column(s) {sorted(missing)}.")
    plt = _pyplot()
    all_regions = list(dict.fromkeys(table["region"]))
    if regions is None:
        regions = all_regions
    unknown = [r for r in regions if r not in all_regions]
    if unknown:
        raise ValueError(f"'regions' names {unknown}, which are not in the table: {all_regions}.")
    layers = list(dict.fromkeys(table["layer"]))
    x_of = {layer: k for k, layer in enumerate(layers)}
    keys = [c for c in ("method", "transform") if c in table.columns]

    if ax is None:
        fig, axes = plt.subplots(
            1, len(regions), figsize=(3.2 * len(regions) + 0.6, 3.4), sharey=True, squeeze=False
        )
        panels = {r: a for r, a in zip(regions, axes[0])}
    elif isinstance(ax, (Sequence, np.ndarray)):
        flat = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(flat) != len(regions):
            raise ValueError(f"'ax' has {len(flat)} Axes but there are {len(regions)} regions.")
        panels = dict(zip(regions, flat))
        fig = flat[0].figure
    else:
        panels = {r: ax for r in regions}
        fig = ax.figure
    shared = len(set(map(id, panels.values()))) == 1 and len(regions) > 1
    several = bool(keys) and len(table.drop_duplicates(keys)) > 1  # name the series

    colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for r_i, region in enumerate(regions):
        a = panels[region]
        sub = table[table["region"] == region]
        groups = list(sub.groupby(keys, sort=False)) if keys else [((), sub)]
        for g_i, (key, rows) in enumerate(groups):
            rows = rows.assign(_x=rows["layer"].map(x_of)).sort_values("_x")
            colour = colours[(r_i if shared else g_i) % len(colours)]
            parts = [str(k) for k in (key if isinstance(key, tuple) else (key,))] if several else []
            parts = [p for p in parts if p != "none"]
            label = " ".join(([region] if shared else []) + parts) or region
            values = rows[y].to_numpy(dtype=float)
            scale = 1.0
            if y == "normalised" and "noise_ceiling_high" in rows:
                scale = float(rows["noise_ceiling_high"].iloc[0])
            yerr = None
            if {"ci_low", "ci_high"} <= set(rows.columns) and rows["ci_low"].notna().any():
                low = rows["ci_low"].to_numpy(dtype=float) / scale
                high = rows["ci_high"].to_numpy(dtype=float) / scale
                yerr = np.vstack([values - low, high - values]).clip(min=0)
            a.errorbar(
                rows["_x"], values, yerr=yerr, marker="o", ms=4, capsize=3, color=colour,
                label=label,
            )  # fmt: skip
            best = int(np.nanargmax(values))
            a.plot(
                rows["_x"].iloc[best], values[best], marker="*", ms=14, color=colour,
                markeredgecolor="k", linestyle="none",
            )  # fmt: skip
            if ceiling and {"noise_ceiling_low", "noise_ceiling_high"} <= set(rows.columns):
                lo = float(rows["noise_ceiling_low"].iloc[0])
                hi = float(rows["noise_ceiling_high"].iloc[0])
                if np.isfinite(lo) and np.isfinite(hi):
                    if y == "normalised":
                        lo, hi = lo / hi, 1.0
                    a.axhspan(lo, hi, color=colour, alpha=0.15, lw=0)
        if truth is not None and region in truth and truth[region] in x_of:
            a.axvline(x_of[truth[region]], color="0.3", ls="--", lw=1)
        if not shared:
            title = (
                region if truth is None or region not in truth else f"{region} ({truth[region]})"
            )
            a.set_title(title, fontsize=10)
            if len(groups) > 1:
                a.legend(fontsize=7, frameon=False)
        a.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        a.axhline(0, color="0.7", lw=0.5)
    first = panels[regions[0]]
    first.set_ylabel("fraction of upper noise ceiling" if y == "normalised" else _ylabel(table))
    if shared:
        first.legend(fontsize=7, frameon=False)
    if ax is None:
        fig.tight_layout()
    return fig


def _ylabel(table: Any) -> str:
    if "method" in table.columns and table["method"].nunique() == 1:
        return f"RDM similarity ({table['method'].iloc[0]})"
    return "RDM similarity"
