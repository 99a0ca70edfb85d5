"""Layers versus regions: which network layer best explains each brain region?

:func:`compare_layers_regions` runs the whole analysis of Net2Brain / THINGSvision-style studies in
one call, batched through the RSA core:

1. RDMs of every layer and of every region in every subject (:func:`~brainalign.rsa.compute_rdms`,
   one batched call; subjects may have different voxel counts);
2. optionally the geo-topological transform of every RDM (topological RSA,
   :func:`~brainalign.rsa.geotopological`, thresholds at quantiles of each RDM);
3. the comparison of each subject's region RDM with each layer RDM, averaged over subjects;
4. a permutation test of the stimulus labels (:func:`~brainalign.rsa.permutation_test`, every
   subject permuted alike), corrected across layers within each region
   (:func:`~brainalign.rsa.correct_pvalues`);
5. a bootstrap confidence interval over stimuli or subjects (:func:`~brainalign.rsa.bootstrap`,
   the same draws for every region and layer);
6. the region's noise ceiling (:func:`~brainalign.rsa.noise_ceiling`) and the value as a fraction
   of its upper bound.

The result is a tidy table (one row per region and layer); :func:`best_layers` reads the best
layer of each region from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from brainalign._utils.seeding import check_random_state
from brainalign._utils.validation import check_option, check_type
from brainalign.rsa._backend import as_tensor, target_device, threads_for
from brainalign.rsa.ceiling import noise_ceiling
from brainalign.rsa.compare import COMPARE_METHODS, compare_rdms
from brainalign.rsa.condensed import n_stimuli_from_pairs
from brainalign.rsa.correction import correct_pvalues
from brainalign.rsa.inference import (
    BOOTSTRAP_OVER,
    _interval,
    _null,
    _permutation_p,
    _stimulus_bootstrap,
    bootstrap,
)
from brainalign.rsa.rdm import METRICS, compute_rdms
from brainalign.rsa.topology import geotopological

__all__ = [
    "LAYER_TABLE_COLUMNS",
    "best_layers",
    "compare_layers_regions",
    "layer_rdms_from_model",
]

#: Columns of the table :func:`compare_layers_regions` returns, in order.
LAYER_TABLE_COLUMNS = (
    "region",
    "layer",
    "method",
    "transform",
    "n_subjects",
    "value",
    "ci_low",
    "ci_high",
    "p",
    "p_corrected",
    "noise_ceiling_low",
    "noise_ceiling_high",
    "normalised",
)

#: RDM metrics usable here (the cross-validated ones need trial-level data and folds).
RDM_METRICS = tuple(m for m in METRICS if m not in ("crossnobis", "poisson_cv"))
CORRECTIONS = ("holm", "bonferroni", "fdr_bh", None)


def compare_layers_regions(
    layer_features: Any,
    region_patterns: Mapping[str, Any],
    *,
    method: str = "spearman",
    rdm_metric: str = "correlation",
    subject_axis: int = 0,
    n_permutations: int = 1000,
    n_bootstrap: int = 1000,
    bootstrap_over: str = "stimuli",
    confidence: float = 0.95,
    correction: str | None = "holm",
    ceiling: bool = True,
    topological: bool = False,
    lower: float = 0.1,
    upper: float = 0.9,
    seed: int | np.random.Generator | None = 0,
    device: Any = "auto",
) -> pd.DataFrame:
    """RSA (or topological RSA) of every brain region against every network layer.

    Parameters
    ----------
    layer_features : mapping of str to array or tensor
        Layer name → features ``(n_stimuli, n_features)`` (any feature count per layer), or a
        precomputed condensed RDM ``(n_pairs,)`` (e.g. from :func:`layer_rdms_from_model`). A
        :class:`~brainalign.targets.FeatureSet` is accepted too. Layers keep their order.
    region_patterns : mapping of str to array, tensor or list of them
        Region name → responses to the same stimuli (same order): ``(n_subjects, n_stimuli,
        n_voxels)`` (subjects along ``subject_axis``), a list with one ``(n_stimuli,
        n_voxels_s)`` array per subject (voxel counts may differ between subjects), or one
        ``(n_stimuli, n_voxels)`` array (a single subject).
    method : str
        RDM comparison (:func:`~brainalign.rsa.compare_rdms`): ``"spearman"``, ``"corr"``,
        ``"cosine"``, ``"rho-a"``, ``"tau-a"``, ``"kendall"``, ``"corr_cov"``, ``"cosine_cov"``.
    rdm_metric : str
        Dissimilarity of the RDMs (:func:`~brainalign.rsa.compute_rdms`), the same for layers and
        regions; the cross-validated metrics are not available here.
    subject_axis : int
        Axis of the subjects in 3-D region arrays (0, 1 or 2; the other two are stimuli then
        voxels, in that order).
    n_permutations : int
        Permutations of the stimulus labels for ``p`` (0: no test, ``p`` is NaN).
    n_bootstrap : int
        Bootstrap samples for the confidence interval (0: none, ``ci_*`` are NaN).
    bootstrap_over : {"stimuli", "subjects", "both"}
        What the interval generalises over (see :func:`~brainalign.rsa.bootstrap`). The same
        draws serve every region and layer, so their intervals are paired.
    confidence : float
        Level of the percentile interval.
    correction : {"holm", "bonferroni", "fdr_bh", None}
        Multiple-comparison correction of ``p`` across the layers of each region.
    ceiling : bool
        Compute each region's noise ceiling (needs at least 2 subjects; NaN otherwise).
    topological : bool
        Topological RSA: compare geo-topologically transformed RDMs
        (:func:`~brainalign.rsa.geotopological`), with thresholds at the ``lower`` and ``upper``
        quantiles of each RDM's own dissimilarities. Dissimilarities below ``lower`` collapse to
        0 (treated as noise), those above ``upper`` saturate at 1. Permutations, bootstrap and
        noise ceiling then act on the transformed RDMs (the transform commutes with relabelling
        the stimuli; bootstrap samples reuse the thresholds of the full stimulus set).
    lower, upper : float
        Quantiles in [0, 1] with ``lower <= upper`` (used with ``topological=True``).
    seed : int, Generator or None
        Seed of the permutations and bootstrap draws.
    device : str or torch.device
        ``"auto"``: the device of torch inputs; for NumPy inputs CUDA when present, else CPU.

    Returns
    -------
    table : DataFrame
        One row per (region, layer), regions then layers in input order, with the columns of
        :data:`LAYER_TABLE_COLUMNS`:

        ``region``, ``layer``; ``method`` (the comparison); ``transform`` (``"none"`` or
        ``"geotopological"``); ``n_subjects``; ``value``, the comparison averaged over subjects;
        ``ci_low``/``ci_high``, the bootstrap percentile interval of that mean; ``p``, the
        one-sided (greater) permutation p-value of that mean; ``p_corrected``, adjusted across
        the region's layers; ``noise_ceiling_low``/``noise_ceiling_high``, the region's lower
        (leave-one-subject-out) and upper ceiling; ``normalised`` = ``value /
        noise_ceiling_high``. ``table.attrs`` holds the settings.

    Notes
    -----
    Everything is computed in float64. Each region takes one batched permutation call and one
    batched bootstrap call (no Python loop over permutations or samples).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> layers = {"early": rng.normal(size=(30, 50)), "late": rng.normal(size=(30, 20))}
    >>> regions = {"V1": [layers["early"] @ rng.normal(size=(50, n)) for n in (40, 45, 50)]}
    >>> table = compare_layers_regions(layers, regions, n_permutations=200, n_bootstrap=100)
    >>> best_layers(table)["layer"].tolist()
    ['early']
    """
    check_option("method", method, COMPARE_METHODS)
    check_option("rdm_metric", rdm_metric, RDM_METRICS)
    check_option("bootstrap_over", bootstrap_over, BOOTSTRAP_OVER)
    check_option("correction", correction, CORRECTIONS)
    check_option("subject_axis", subject_axis, (0, 1, 2, -1, -2, -3))
    for name, value in (("n_permutations", n_permutations), ("n_bootstrap", n_bootstrap)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name!r} must be a non-negative integer, got {value!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"'confidence' must be in (0, 1), got {confidence!r}.")
    if topological and not 0 <= lower <= upper <= 1:
        raise ValueError(
            f"'lower' and 'upper' must be quantiles with 0 <= lower <= upper <= 1, got "
            f"lower={lower!r}, upper={upper!r}."
        )

    layers = _layer_items(layer_features)
    check_type("region_patterns", region_patterns, Mapping, "a mapping of region name to arrays")
    if not region_patterns:
        raise ValueError("'region_patterns' is empty: give at least one region.")
    dev = target_device(device, *[t for _, t in layers], *_flat_values(region_patterns))
    layers = [
        (name, as_tensor(t, f"layer_features[{name!r}]", device=dev, dtype=torch.float64))
        for name, t in layers
    ]
    regions = {
        name: _region_subjects(name, value, subject_axis, dev)
        for name, value in region_patterns.items()
    }

    # stimulus counts must agree everywhere
    n_stim = _n_stimuli_of_layers(layers)
    for region, subjects in regions.items():
        for s, x in enumerate(subjects):
            if x.shape[0] != n_stim:
                raise ValueError(
                    f"region_patterns[{region!r}] (subject {s}) has {x.shape[0]} stimuli, but "
                    f"layer_features has {n_stim}: both must hold the same stimuli in the "
                    "same order."
                )
    if n_stim < 3:
        raise ValueError(f"RSA needs at least 3 stimuli, got {n_stim}.")

    # 1. every RDM in one batched call (precomputed layer RDMs are kept as they are)
    feature_layers = [t for _, t in layers if t.ndim == 2]
    patterns = feature_layers + [x for subjects in regions.values() for x in subjects]
    rdms = compute_rdms(patterns, rdm_metric, device=dev)
    n_feat = len(feature_layers)
    it = iter(rdms[:n_feat])
    layer_rdms = torch.stack([next(it) if t.ndim == 2 else t for _, t in layers])
    region_rdms: dict[str, torch.Tensor] = {}
    start = n_feat
    for region, subjects in regions.items():
        region_rdms[region] = rdms[start : start + len(subjects)]
        start += len(subjects)

    # 2. topological RSA: each RDM transformed with its own quantile thresholds
    transform = "none"
    if topological:
        transform = "geotopological"
        layer_rdms = geotopological(layer_rdms, lower, upper, device=dev)
        region_rdms = {
            r: geotopological(v, lower, upper, device=dev) for r, v in region_rdms.items()
        }

    rng = np.random.default_rng(seed)
    perm_seed, boot_seed = (int(s) for s in rng.integers(0, 2**63 - 1, size=2))
    stimulus_draws = None
    if n_bootstrap and bootstrap_over in ("stimuli", "both"):
        # shared by every region: the intervals of all regions and layers are paired
        stimulus_draws = rng.integers(0, n_stim, size=(n_bootstrap, n_stim))

    layer_names = [name for name, _ in layers]
    n_layers = len(layer_names)
    # Every region's subjects in one stack: the layers' RDMs are then transformed (ranked) once,
    # and every region shares the same permutations and stimulus draws (the same seeds as one
    # call per region would use), so each is drawn and applied once for all regions.
    all_data = torch.cat([v.to(torch.float64) for v in region_rdms.values()])
    models64 = layer_rdms.to(torch.float64)
    spans, start = {}, 0
    for region, data in region_rdms.items():
        spans[region] = slice(start, start + data.shape[0])
        start += data.shape[0]
    # 3. observed values of every subject
    observed = compare_rdms(all_data, layer_rdms, method, device=dev)
    null = per_data = None
    with threads_for((all_data.shape[0] + models64.shape[0]) * all_data.shape[1], dev):
        # 4. permutation null of every region's subject mean, every subject permuted alike
        if n_permutations:
            rng_perm = check_random_state(perm_seed)
            groups = list(spans.values())
            null = _null(all_data, models64, method, n_permutations, rng_perm, n_stim, groups)
        # 5. stimulus bootstrap of every subject (other schemes: per region below)
        if n_bootstrap and bootstrap_over == "stimuli" and stimulus_draws is not None:
            per_data = _stimulus_bootstrap(all_data, models64, method, stimulus_draws, n_stim)
    frames = []
    for k, (region, data) in enumerate(region_rdms.items()):
        n_subjects = data.shape[0]
        span = spans[region]
        # 3. observed values (mean over subjects)
        value = observed[span].mean(dim=0)
        value = value.detach().cpu().numpy().astype(np.float64)
        # 4. permutation test of the subject mean
        p = np.full(n_layers, np.nan)
        if null is not None:
            obs = observed[span].to(torch.float64).mean(dim=0).cpu().numpy()
            p = _permutation_p(obs, null[:, k].cpu().numpy(), "greater")
        p_corr = correct_pvalues(p, correction) if n_permutations else p.copy()
        # 5. bootstrap interval of the subject mean
        ci = np.full((2, n_layers), np.nan)
        if per_data is not None:
            ci = _interval(per_data[:, span].mean(dim=1).cpu().numpy(), confidence)[0]
        elif n_bootstrap:
            if bootstrap_over != "stimuli" and n_subjects < 2:
                raise ValueError(
                    f"bootstrap_over={bootstrap_over!r} needs at least 2 subjects, but region "
                    f"{region!r} has {n_subjects}; use bootstrap_over='stimuli'."
                )
            boot = bootstrap(
                data,
                layer_rdms,
                method,
                n_bootstraps=n_bootstrap,
                over=bootstrap_over,
                confidence=confidence,
                seed=boot_seed,
                stimulus_draws=stimulus_draws,
                device=dev,
            )
            ci = np.asarray(boot.ci, dtype=np.float64)
        # 6. noise ceiling of the region
        nc_low = nc_high = np.nan
        if ceiling and n_subjects >= 2:
            nc = noise_ceiling(data, method, device=dev)
            nc_low, nc_high = nc.lower, nc.upper
        with np.errstate(divide="ignore", invalid="ignore"):
            normalised = value / nc_high if nc_high else np.full(n_layers, np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "region": region,
                    "layer": layer_names,
                    "method": method,
                    "transform": transform,
                    "n_subjects": n_subjects,
                    "value": value,
                    "ci_low": ci[0],
                    "ci_high": ci[1],
                    "p": p,
                    "p_corrected": p_corr,
                    "noise_ceiling_low": nc_low,
                    "noise_ceiling_high": nc_high,
                    "normalised": normalised,
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)[list(LAYER_TABLE_COLUMNS)]
    table.attrs = {
        "rdm_metric": rdm_metric,
        "n_stimuli": n_stim,
        "n_permutations": n_permutations,
        "n_bootstrap": n_bootstrap,
        "bootstrap_over": bootstrap_over,
        "confidence": confidence,
        "correction": correction,
        "lower": lower if topological else None,
        "upper": upper if topological else None,
    }
    return table


def best_layers(table: pd.DataFrame, *, by: str = "value") -> pd.DataFrame:
    """The best layer of every region (per comparison method and transform).

    Parameters
    ----------
    table : DataFrame
        From :func:`compare_layers_regions` (several results may be concatenated, e.g. RSA and
        tRSA: each ``method``/``transform`` combination is ranked separately).
    by : str
        Column to maximise (``"value"`` or ``"normalised"``).

    Returns
    -------
    best : DataFrame
        One row of ``table`` per region (and method/transform), regions in their order of
        appearance, plus ``margin``: how much the best layer's ``by`` exceeds the second best
        (NaN with a single layer), and ``second_layer``.
    """
    check_type("table", table, pd.DataFrame, "a DataFrame from compare_layers_regions")
    missing = {"region", "layer", by} - set(table.columns)
    if missing:
        raise ValueError(
            f"'table' lacks the column(s) {sorted(missing)}; pass the table that "
            "compare_layers_regions returns."
        )
    keys = ["region"] + [c for c in ("method", "transform") if c in table.columns]
    rows = []
    for _, group in table.groupby(keys, sort=False):
        ordered = group.sort_values(by, ascending=False, kind="stable")
        best = ordered.iloc[0].copy()
        if len(ordered) > 1:
            best["second_layer"] = ordered["layer"].iloc[1]
            best["margin"] = ordered[by].iloc[0] - ordered[by].iloc[1]
        else:
            best["second_layer"] = None
            best["margin"] = np.nan
        rows.append(best)
    return pd.DataFrame(rows).reset_index(drop=True)


def layer_rdms_from_model(
    model: Any,
    stimuli: Any,
    layers: Sequence[str],
    *,
    pooling: str = "avg",
    rdm_metric: str = "correlation",
    device: Any = "auto",
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = False,
    **extract_kwargs: Any,
) -> dict[str, np.ndarray]:
    """RDMs of network layers for a stimulus set (features from :mod:`brainalign.targets`).

    Parameters
    ----------
    model : str or torch.nn.Module
        As :func:`~brainalign.targets.extract_features` (default weights work offline for
        ``"efficientnet_lite0"``).
    stimuli : folder, file or sequence
        The stimuli (images, audio files, texts), in the order of the brain data.
    layers : sequence of str
        Layer names (:func:`~brainalign.targets.list_layers`).
    pooling : {"avg", "none", "grid", "random", "pca"}
        Pooling of each layer's activations before the RDM.
    rdm_metric : str
        Dissimilarity (:func:`~brainalign.rsa.compute_rdms`).
    device : str
        Where the network and the RDMs run.
    cache_dir : path-like, optional
        Feature cache folder (default brainalign's).
    verbose : bool
        Progress bar of the extraction.
    **extract_kwargs
        Further arguments of :func:`~brainalign.targets.extract_features` (``weights``,
        ``grid_size``, ``batch_size``, ``transform`` …).

    Returns
    -------
    rdms : dict of str to ndarray, (n_pairs,) float64
        Condensed RDM of each layer, in the order of ``layers``; pass it to
        :func:`compare_layers_regions` as ``layer_features``.
    """
    from brainalign.targets import extract_features

    check_option("rdm_metric", rdm_metric, RDM_METRICS)
    if isinstance(layers, str):
        layers = [layers]
    feats = extract_features(
        model,
        list(layers),
        stimuli,
        pooling=pooling,
        device=device,
        cache_dir=cache_dir,
        verbose=verbose,
        **extract_kwargs,
    )
    arrays = [np.asarray(feats[name], dtype=np.float64).reshape(len(feats), -1) for name in layers]
    rdms = compute_rdms(arrays, rdm_metric, device=device)
    return {name: np.asarray(rdms[k]) for k, name in enumerate(layers)}


# --------------------------------------------------------------------------- helpers


def _layer_items(layer_features: Any) -> list[tuple[str, Any]]:
    features = getattr(layer_features, "features", layer_features)
    if not isinstance(features, Mapping):
        raise TypeError(
            "'layer_features' must be a mapping of layer name to a (n_stimuli, n_features) "
            f"array (or a FeatureSet), got {type(layer_features).__name__}."
        )
    if not features:
        raise ValueError("'layer_features' is empty: give at least one layer.")
    items = []
    for name, value in features.items():
        ndim = value.ndim if hasattr(value, "ndim") else np.ndim(value)
        if ndim > 2:  # unpooled activations: flatten the feature axes
            value = (
                np.asarray(value).reshape(len(value), -1)
                if not torch.is_tensor(value)
                else (value.reshape(value.shape[0], -1))
            )
        elif ndim == 0:
            raise ValueError(
                f"layer_features[{name!r}] must be a (n_stimuli, n_features) array or a "
                "condensed (n_pairs,) RDM, got a scalar."
            )
        items.append((str(name), value))
    return items


def _n_stimuli_of_layers(layers: list[tuple[str, torch.Tensor]]) -> int:
    counts = {}
    for name, t in layers:
        counts[name] = (
            t.shape[0]
            if t.ndim == 2
            else n_stimuli_from_pairs(t.shape[0], f"layer_features[{name!r}]")
        )
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"The layers hold different numbers of stimuli ({counts}); 'layer_features' must "
            "describe the same stimuli."
        )
    return next(iter(counts.values()))


def _flat_values(region_patterns: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for value in region_patterns.values():
        if isinstance(value, (list, tuple)):
            out.extend(value)
        else:
            out.append(value)
    return out


def _region_subjects(
    region: str, value: Any, subject_axis: int, dev: torch.device
) -> list[torch.Tensor]:
    """The ``(n_stimuli, n_voxels_s)`` patterns of each subject of one region."""
    name = f"region_patterns[{region!r}]"
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} is an empty list: give one array per subject.")
        out = []
        for s, x in enumerate(value):
            t = as_tensor(x, f"{name}[{s}]", device=dev, dtype=torch.float64)
            if t.ndim != 2:
                raise ValueError(
                    f"{name}[{s}] must be a (n_stimuli, n_voxels) array, got shape "
                    f"{tuple(t.shape)}."
                )
            out.append(t)
    else:
        t = as_tensor(value, name, device=dev, dtype=torch.float64)
        if t.ndim == 2:
            out = [t]
        elif t.ndim == 3:
            t = torch.movedim(t, subject_axis, 0)
            out = list(t)
        else:
            raise ValueError(
                f"{name} must be (n_subjects, n_stimuli, n_voxels), a list of (n_stimuli, "
                f"n_voxels) arrays or one (n_stimuli, n_voxels) array, got shape "
                f"{tuple(t.shape)}."
            )
    for s, t in enumerate(out):
        if t.shape[1] == 0:
            raise ValueError(f"{name} (subject {s}) has no voxels.")
    return out
