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
# # A simulated NSD-like fMRI dataset with known ground truth
#
# brainalign ships no brain data, but it can make some that behaves like the Natural Scenes
# Dataset (NSD) — and whose answers are known. This notebook generates it and looks inside:
#
# * **stimuli**: real natural images that installable packages ship (faces and non-faces from
#   scikit-image's `lfw_subset`, crops of the scikit-image and scikit-learn photographs);
# * **responses**: single-trial betas of several subjects in four regions of interest placed in
#   MNI space (early visual cortex, lateral occipital, intraparietal, ventral
#   occipito-temporal), each a noisy linear read-out of one layer of EfficientNet-Lite0 (early
#   layers drive early regions);
# * **files** in NSD's formats (int16 HDF5 betas scaled by 300, design tables, NIfTI masks), read
#   back with the ordinary readers;
# * **ground truth**: which layer drives which region, the noise-free responses, the SNR of
#   every voxel, NSD's noise ceilings and the best identification accuracy any decoder could
#   reach.
#
# With `BRAINALIGN_SMOKE=1` (used by CI) it builds a tiny version in a temporary folder;
# otherwise it loads (or generates once, about 1.5 minutes) the default dataset from
# brainalign's cache folder.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from brainalign.pipelines.simulate_fmri import (
    compute_layer_features,
    default_simulated_fmri,
    simulate_fmri_dataset,
)

SMOKE = os.environ.get("BRAINALIGN_SMOKE", "0") == "1"

if SMOKE:
    workdir = Path(tempfile.mkdtemp(prefix="brainalign-nb01-"))
    IMAGE_SIZE = 64
    dataset = simulate_fmri_dataset(
        workdir / "simulated_fmri",
        n_stimuli=24,
        n_subjects=2,
        n_test=6,
        resolution_mm=8,
        image_size=IMAGE_SIZE,
        feature_cache_dir=workdir / "cache",
        verbose=False,
    )
    FEATURE_CACHE = workdir / "cache"
else:
    IMAGE_SIZE = 128
    dataset = default_simulated_fmri()
    FEATURE_CACHE = None
dataset

# %% [markdown]
# ## The stimuli
#
# Every stimulus is a PNG file in the dataset folder, listed in `stimuli/stimuli.tsv` with its
# category and where it comes from.

# %%
table = dataset.stimuli.table
print(table["category"].value_counts().to_string())
rng = np.random.default_rng(0)
shown = rng.choice(len(table), size=min(24, len(table)), replace=False)
fig, axes = plt.subplots(3, 8, figsize=(12, 5))
for ax, i in zip(axes.flat, shown):
    ax.imshow(dataset.stimuli.load(table["stimulus_id"].iloc[i]))
    ax.set_title(table["category"].iloc[i], fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The regions of interest
#
# Each region is a pair of spheres around approximate MNI centres, jittered per subject (so
# voxel counts differ between subjects). `rois.tsv` says which layer drives which region.

# %%
from nilearn import plotting

print(dataset.rois[["label", "name", "layer", "radius_mm", "description"]].to_string(index=False))
sub = dataset.subjects[0]
roi_img = dataset.paths(sub)["roi"]
display = plotting.plot_roi(
    str(roi_img),
    cut_coords=(-40, -70, 0),
    cmap="tab10",
    title=f"sub-{sub}: regions of interest",
    colorbar=True,
)
plt.show()
print({s: dataset[s].n_features for s in dataset.subjects}, "voxels per subject")

# %% [markdown]
# ## Responses
#
# The recordings were read back from the HDF5 betas by `brainalign.io.load_nsd_betas`: one row
# per trial (percent signal change), one column per voxel, with the design table as
# `trials` and the region of each voxel in `roi_labels`.

# %%
rec = dataset[sub]
order = np.argsort(rec.roi_labels, kind="stable")
fig, ax = plt.subplots(figsize=(10, 4))
im = ax.imshow(rec.data[:120, order], aspect="auto", cmap="RdBu_r", vmin=-4, vmax=4)
bounds = np.flatnonzero(np.diff(pd.factorize(rec.roi_labels[order])[0])) + 0.5
for b in bounds:
    ax.axvline(b, color="k", lw=0.8)
ax.set_xlabel("voxel (grouped by region: " + ", ".join(dict.fromkeys(rec.roi_labels[order])) + ")")
ax.set_ylabel("trial")
fig.colorbar(im, ax=ax, label="% signal change")
plt.show()
rec.trials.head()

# %% [markdown]
# **Test-retest.** Every stimulus was shown three times. For the most reliable voxel of each
# region, the response to the first presentation against the second, over all the subject's
# stimuli:

# %%
gt = dataset.ground_truth
truth = gt.subject(sub)
trials = rec.trials
first = trials.index[trials["repetition"] == 0].to_numpy()
second_of = pd.Series(
    trials.index[trials["repetition"] == 1],
    index=trials.loc[trials["repetition"] == 1, "stimulus_id"],
)
second = second_of.loc[trials.loc[first, "stimulus_id"]].to_numpy()
fig, axes = plt.subplots(1, len(gt.region_layers), figsize=(13, 3.2))
for ax, region in zip(axes, gt.region_layers):
    cols = np.flatnonzero(rec.roi_labels == region)
    best = cols[np.argmax(truth["nc_data"][cols])]
    x, y = rec.data[first, best], rec.data[second, best]
    ax.scatter(x, y, s=6, alpha=0.6)
    ax.set_title(f"{region}: r = {np.corrcoef(x, y)[0, 1]:.2f}", fontsize=10)
    ax.set_xlabel("repetition 1")
axes[0].set_ylabel("repetition 2")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Noise ceilings
#
# For every voxel the ground truth holds NSD's noise ceiling for responses averaged over the
# three repetitions, `NC = 100 · ncsnr² / (ncsnr² + 1/3)` (percent of explainable variance),
# computed from the betas as NSD does (`nc_data`) and analytically from the SNR the voxel was
# given (`nc_true`). They agree up to estimation noise.

# %%
rows = []
for s in dataset.subjects:
    t = gt.subject(s)
    for region in gt.region_layers:
        cols = t["voxel_region"] == region
        rows.append(
            {
                "subject": s,
                "region": region,
                "layer": gt.region_layers[region],
                "n_voxels": int(cols.sum()),
                "median SNR": np.median(t["snr_achieved"][cols]),
                "median NC (data)": np.median(t["nc_data"][cols]),
                "median NC (true)": np.median(t["nc_true"][cols]),
            }
        )
summary = pd.DataFrame(rows)
fig, ax = plt.subplots(figsize=(7, 3.5))
regions = list(gt.region_layers)
ax.boxplot(
    [truth["nc_data"][truth["voxel_region"] == r] for r in regions],
    tick_labels=regions,
    showfliers=False,
)
ax.plot(
    range(1, len(regions) + 1),
    [np.median(truth["nc_true"][truth["voxel_region"] == r]) for r in regions],
    "r_",
    ms=30,
    label="median analytic NC",
)
ax.set_ylabel("noise ceiling (% variance)")
ax.set_title(f"sub-{sub}: voxel noise ceilings per region")
ax.legend()
plt.show()
summary.round(2)

# %% [markdown]
# **The oracle.** The best top-1 identification of the shared test stimuli (averaged over
# repetitions) that any decoder could reach: the maximum-likelihood choice under the known
# noise (Mahalanobis), and the usual correlation-based one, with all voxels and per region.

# %%
oracle = pd.DataFrame(
    {
        s: {
            "all voxels (Mahalanobis)": info["oracle"]["top1_mahalanobis"],
            "all voxels (correlation)": info["oracle"]["top1_correlation"],
            **{
                f"{r} (correlation)": v["top1_correlation"]
                for r, v in info["oracle"]["regions"].items()
            },
        }
        for s, info in gt.info["subjects"].items()
    }
)
print(f"{len(gt.test_ids)}-way identification, chance = {1 / len(gt.test_ids):.3f}")
oracle

# %% [markdown]
# ## Which layer drives which region?
#
# RSA recovers the ground truth: the representational dissimilarity matrix (correlation
# distance) of each region's noise-free responses is compared (Spearman) with that of every
# layer's features.

# %%
layers = list(gt.info["layers"])  # the generating layers, in the network's order
features = compute_layer_features(
    dataset.stimuli, layers, image_size=IMAGE_SIZE, cache_dir=FEATURE_CACHE, verbose=False
)
ids = list(dataset.stimuli.ids)
pos = [ids.index(i) for i in truth["stimulus_ids"]]
layer_rdms = {}
for name, f in features.items():
    f = f[pos]
    layer_rdms[name] = pdist((f - f.mean(0)) / (f.std(0) + 1e-12), "correlation")
scores = pd.DataFrame(index=regions, columns=layers, dtype=float)
for region in regions:
    clean = truth["clean"][:, truth["voxel_region"] == region].astype(float)
    rdm = pdist(clean - clean.mean(0), "correlation")
    for name in layers:
        scores.loc[region, name] = spearmanr(rdm, layer_rdms[name]).statistic
fig, ax = plt.subplots(figsize=(5, 3.5))
im = ax.imshow(scores.to_numpy(), cmap="viridis")
ax.set_xticks(range(len(layers)), layers)
ax.set_yticks(range(len(regions)), [f"{r} ({gt.region_layers[r]})" for r in regions])
fig.colorbar(im, ax=ax, label="Spearman ρ")
ax.set_title("region (generating layer) × layer RSA")
fig.tight_layout()
plt.show()
assert all(scores.loc[r].idxmax() == gt.region_layers[r] for r in regions)
scores.round(3)
