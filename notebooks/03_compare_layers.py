# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Which network layer explains which brain region? RSA and topological RSA
#
# In the simulated NSD-like dataset every region of interest is a noisy linear read-out of one
# layer of EfficientNet-Lite0 (early layers drive early regions). An experimenter does not know
# that: they have the measured betas and the stimulus images. This notebook asks the question
# the way a layers-vs-regions study does, and checks the answer against the ground truth, in the
# manner of the simulations of Lin & Kriegeskorte ("The topology and geometry of neural
# representations", PNAS 2024):
#
# 1. features of four layers for the shared test images, and each subject's betas averaged over
#    the repetitions of each test image;
# 2. representational dissimilarity matrices (RDMs, correlation distance) of layers and regions;
# 3. `brainalign.rsa.compare_layers_regions`: Spearman RSA of every region (mean over subjects)
#    with every layer, bootstrap confidence intervals over stimuli, permutation p-values
#    (Holm-corrected across layers) and noise ceilings — once on the RDMs themselves and once on
#    their geo-topological transforms (tRSA);
# 4. which layer wins in each region, and over which geo-topological thresholds the generating
#    layer is identified.
#
# With `BRAINALIGN_SMOKE=1` (used by CI) it builds a small dataset in a temporary folder;
# otherwise it loads (or generates once, about 1.5 minutes) the default dataset from
# brainalign's cache folder.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from brainalign.data.repetitions import average_repetitions
from brainalign.pipelines.simulate_fmri import (
    compute_layer_features,
    default_simulated_fmri,
    simulate_fmri_dataset,
)
from brainalign.rsa import compute_rdms, topological_model_selection
from brainalign.rsa.layers import best_layers, compare_layers_regions
from brainalign.viz import plot_layer_profiles, plot_mds, plot_rdm

SMOKE = os.environ.get("BRAINALIGN_SMOKE", "0") == "1"

if SMOKE:
    workdir = Path(tempfile.mkdtemp(prefix="brainalign-nb03-"))
    IMAGE_SIZE = 64
    dataset = simulate_fmri_dataset(
        workdir / "simulated_fmri",
        seed=1,
        n_stimuli=40,
        n_subjects=3,
        n_test=32,
        resolution_mm=8,
        image_size=IMAGE_SIZE,
        feature_cache_dir=workdir / "cache",
        verbose=False,
    )
    FEATURE_CACHE = workdir / "cache"
    N_PERMUTATIONS, N_BOOTSTRAP = 200, 200
else:
    IMAGE_SIZE = 128
    dataset = default_simulated_fmri()
    FEATURE_CACHE = None
    N_PERMUTATIONS, N_BOOTSTRAP = 1000, 1000
dataset

# %% [markdown]
# ## Layer features and region patterns of the shared test images
#
# The layers are activations of EfficientNet-Lite0, read from the feature cache the generator
# filled: the convolutional layers grid-pooled (4 × 4), `global_pool` (the image embedding) as
# it is. The region patterns are each subject's betas of the test images, averaged over their
# three repetitions; subjects have different voxel counts, so each region is a list of one
# `(n_stimuli, n_voxels)` array per subject.

# %%
truth = dataset.ground_truth.region_layers  # region -> generating layer (hidden from the analysis)
layers = list(dataset.ground_truth.info["layers"])  # in the network's order
regions = list(truth)
features = compute_layer_features(
    dataset.stimuli, layers, image_size=IMAGE_SIZE, cache_dir=FEATURE_CACHE, verbose=False
)
ids = [str(i) for i in dataset.stimuli.ids]
test_ids = [str(i) for i in dataset.test_ids]
rows = [ids.index(i) for i in test_ids]
layer_features = {name: features[name][rows] for name in layers}

region_patterns = {region: [] for region in regions}
for subject in dataset.subjects:
    rec = dataset[subject]
    test = rec.trials["stimulus_id"].astype(str).isin(test_ids).to_numpy()
    averaged = average_repetitions(rec.select(test))
    order = [list(averaged.trials["stimulus_id"].astype(str)).index(i) for i in test_ids]
    data = np.asarray(averaged.data, dtype=np.float64)[order]
    for region in regions:
        region_patterns[region].append(data[:, np.asarray(averaged.roi_labels) == region])

(
    pd.DataFrame(
        {
            "layer features": {name: f.shape[1] for name, f in layer_features.items()},
        }
    ).T.assign(n_stimuli=len(test_ids)),
    pd.DataFrame(
        {r: [x.shape[1] for x in xs] for r, xs in region_patterns.items()},
        index=[f"sub-{s} voxels" for s in dataset.subjects],
    ),
)

# %% [markdown]
# ## RDMs
#
# Correlation-distance RDMs of every layer and, for the first subject, of every region (shown
# as percentiles, which is what a rank-based comparison sees). Stimuli are sorted by category.

# %%
categories = dataset.stimuli.table.set_index(dataset.stimuli.table["stimulus_id"].astype(str))
categories = categories.loc[test_ids, "category"].to_numpy()
by_category = np.argsort(categories, kind="stable")
layer_rdms = compute_rdms([layer_features[n][by_category] for n in layers], "correlation")
region_rdms = compute_rdms([region_patterns[r][0][by_category] for r in regions], "correlation")
fig, axes = plt.subplots(2, len(layers), figsize=(3.2 * len(layers), 6.4))
for ax, name, rdm in zip(axes[0], layers, layer_rdms):
    plot_rdm(rdm, ax=ax, rank=True, colorbar=False, title=f"layer {name}")
for ax, region, rdm in zip(axes[1], regions, region_rdms):
    plot_rdm(rdm, ax=ax, rank=True, colorbar=False, title=f"sub-{dataset.subjects[0]} {region}")
fig.tight_layout()
plt.show()

# %% [markdown]
# An MDS arrangement of the stimuli by the earliest and the deepest layer, and by the
# corresponding regions of the first subject, coloured by stimulus category.

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
first, last = layers[0], layers[-1]
early = next(r for r in regions if truth[r] == first)
late = next(r for r in regions if truth[r] == last)
shown = [
    (layer_rdms[0], f"layer {first}"),
    (layer_rdms[-1], f"layer {last}"),
    (region_rdms[regions.index(early)], f"{early}"),
    (region_rdms[regions.index(late)], f"{late}"),
]
for ax, (rdm, title) in zip(axes, shown):
    plot_mds(rdm, categories=categories[by_category], ax=ax, title=title)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## RSA and topological RSA, layers × regions
#
# `compare_layers_regions` computes every RDM in one batched call, compares each subject's
# region RDM with each layer RDM (Spearman), averages over subjects and adds the inference:
#
# * `ci_low`/`ci_high`: 95 % bootstrap interval over stimuli (the same draws for every region
#   and layer);
# * `p`: permutation test of the stimulus labels (all subjects permuted alike), `p_corrected`
#   Holm-corrected across the layers of each region;
# * `noise_ceiling_low`/`_high`: how well the other subjects' (lower) or all subjects' (upper)
#   average RDM predicts each subject — the best any layer could do; `normalised` is the value
#   as a fraction of the upper ceiling.
#
# tRSA repeats this on geo-topologically transformed RDMs: each RDM's dissimilarities below its
# 10 % quantile collapse to 0 (within noise: neighbours) and those above its 90 % quantile
# saturate at 1 (far apart, however far), keeping the geometry in between.

# %%
common = dict(n_permutations=N_PERMUTATIONS, n_bootstrap=N_BOOTSTRAP, seed=0)
rsa_table = compare_layers_regions(layer_features, region_patterns, **common)
trsa_table = compare_layers_regions(
    layer_features, region_patterns, topological=True, lower=0.1, upper=0.9, **common
)
table = pd.concat([rsa_table, trsa_table], ignore_index=True)
table.round(3)

# %% [markdown]
# The layer profile of each region: the mean RDM similarity of each layer with its bootstrap
# interval, the noise-ceiling band, a star on the best layer and a dashed line at the layer
# that generated the region.

# %%
fig = plot_layer_profiles(table, truth=truth)
plt.show()

# %% [markdown]
# ## Is the generating layer recovered?

# %%
best = best_layers(table)
best["generating layer"] = best["region"].map(truth)
best["recovered"] = best["layer"] == best["generating layer"]
best["analysis"] = np.where(best["transform"] == "none", "RSA", "tRSA")
summary = best[
    [
        "analysis",
        "region",
        "generating layer",
        "layer",
        "recovered",
        "value",
        "ci_low",
        "ci_high",
        "p_corrected",
        "normalised",
        "second_layer",
        "margin",
    ]
].rename(columns={"layer": "best layer", "second_layer": "runner-up"})
print(
    {a: f"{g['recovered'].sum()}/{len(g)} regions" for a, g in summary.groupby("analysis")},
    "recovered",
)
assert summary["recovered"].all(), "a generating layer was not recovered"
summary.round(3)

# %% [markdown]
# ## Over which thresholds does tRSA identify the generating layer?
#
# As in Lin & Kriegeskorte's simulations: every subject's region RDM is a data RDM, the layer
# RDMs are the candidate models, and for every pair of quantile thresholds `lower < upper` on a
# grid the identification accuracy is the fraction of data RDMs whose most similar
# (transformed) layer is the generating one. The top-right corner (`lower = 0`, `upper = 1`) is
# plain RSA on min-max rescaled RDMs.

# %%
data_rdms = compute_rdms([x for r in regions for x in region_patterns[r]], "correlation")
model_rdms = compute_rdms([layer_features[n] for n in layers], "correlation")
true_index = [layers.index(truth[r]) for r in regions for _ in region_patterns[r]]
selection = topological_model_selection(data_rdms, model_rdms, truth=true_index)
steps = np.unique(selection.grid)
accuracy = np.full((len(steps), len(steps)), np.nan)
for (lo, hi), acc in zip(selection.grid, selection.accuracy):
    accuracy[np.searchsorted(steps, hi), np.searchsorted(steps, lo)] = acc
fig, ax = plt.subplots(figsize=(4.8, 4))
im = ax.imshow(accuracy, origin="lower", vmin=0, vmax=1, cmap="magma")
ax.set_xticks(range(len(steps)), [f"{s:.1f}" for s in steps], fontsize=7)
ax.set_yticks(range(len(steps)), [f"{s:.1f}" for s in steps], fontsize=7)
ax.set_xlabel("lower quantile")
ax.set_ylabel("upper quantile")
ax.set_title(f"identification accuracy ({len(true_index)} subject × region RDMs)")
fig.colorbar(im, ax=ax)
fig.tight_layout()
plt.show()
lo, hi = selection.grid[selection.best]
print(
    f"best thresholds: lower={lo:.1f}, upper={hi:.1f} "
    f"(accuracy {selection.accuracy[selection.best]:.2f}; "
    f"plain RSA at lower=0, upper=1: "
    f"{selection.accuracy[np.flatnonzero((selection.grid == [0, 1]).all(1))[0]]:.2f})"
)
