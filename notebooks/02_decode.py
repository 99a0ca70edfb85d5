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
# # Decoding images from simulated fMRI, and speech from simulated MEG
#
# Part 1 decodes images from fMRI; part 2 decodes speech from MEG with the same API.
#
# MindEye's recipe on data whose answer is known: an encoder maps every subject's single-trial
# betas (through a per-subject linear adapter into a shared space) to the embedding of the image
# the subject saw, trained with a contrastive loss (with the default config, plus a regression
# of the embedding itself, as Benchetrit et al. 2024 train their MEG decoder); the test images
# are then *retrieved* from the responses averaged over repetitions — and the responses from
# the images.
#
# * **targets**: the 1,280-value image embedding of EfficientNet-Lite0 (`global_pool`), the
#   offline stand-in for CLIP (with a network, `target_model="ViT-L-14"`,
#   `target_weights="openai"`, `target_layer="image"` decodes into CLIP instead);
# * **baseline**: ridge regression per subject on the same training trials;
# * **ceiling**: the simulation's oracle, the maximum-likelihood identification of the test
#   stimuli under the known noise — no decoder can beat it in expectation.
#
# With `BRAINALIGN_SMOKE=1` (used by CI) a tiny dataset is generated in a temporary folder and
# trained for a few epochs; otherwise the default dataset is loaded (or generated once, about
# 1.5 minutes) and trained with `configs/decode_simulated_fmri.yaml`.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from brainalign.data.simulate.fmri import FMRISimulationConfig
from brainalign.pipelines.decode import (
    DecodeConfig,
    decode_simulated_fmri,
    plot_retrieval_vs_gallery,
    plot_retrieved_images,
)
from brainalign.pipelines.simulate_fmri import default_simulated_fmri, simulate_fmri_dataset

SMOKE = os.environ.get("BRAINALIGN_SMOKE", "0") == "1"
# on a small shared CPU one thread is often faster for these matrix sizes than two
torch.set_num_threads(1)

workdir = Path(tempfile.mkdtemp(prefix="brainalign-nb02-"))
if SMOKE:
    dataset = simulate_fmri_dataset(
        workdir / "simulated_fmri",
        n_stimuli=48,
        n_subjects=2,
        n_test=10,
        snr=2.0,
        resolution_mm=8,
        image_size=64,
        config=FMRISimulationConfig(train_overlap=1.0),
        verbose=False,
    )
    config = DecodeConfig.from_dict(
        {
            "n_draws": 5,
            "n_bootstrap": 100,
            "train": {
                "model": "mindeye2",
                "model_kwargs": {"hidden": 48, "n_blocks": 1, "projector_hidden": 32},
                "lr": 3e-3,
                "epochs": 10,
                "batch_size": 32,
                "restore_best": True,
            },
        }
    )
else:
    dataset = default_simulated_fmri()
    config_path = Path("../configs/decode_simulated_fmri.yaml")
    if not config_path.is_file():  # run from the repository root
        config_path = Path("configs/decode_simulated_fmri.yaml")
    config = DecodeConfig.from_yaml(config_path)
dataset

# %% [markdown]
# ## Train and evaluate
#
# Every subject's training trials (all single trials of the training stimuli, except a
# validation tenth of the stimuli) train one model; ridge is fitted per subject on the same
# trials. The run folder holds the config, the preprocessing, the checkpoints (resumable) and
# the tidy results table.

# %%
results = decode_simulated_fmri(dataset, config=config, out_dir=workdir / "run", verbose=False)
print(f"training: {results.train_seconds:.1f} s; checkpoint: {results.checkpoint}")
for note in results.notes:
    print("note:", note)

# %% [markdown]
# ## Retrieval: contrastive model, ridge and the ceiling
#
# Mean over subjects. *N-way*: top-k among `N = min(300, n_test)` test items (MindEye's
# protocol); *full gallery*: brain → image among the images of every stimulus of the dataset
# (the training images are distractors), image → brain among the subject's test responses.

# %%
results.summary("n-way").round(3)

# %%
results.summary("full-gallery").round(3)

# %% [markdown]
# The tidy table has one row per subject, model, protocol, direction and metric, with
# bootstrap confidence intervals over the test stimuli:

# %%
table = results.table
table[(table["protocol"] == "n-way") & (table["metric"] == "top1")].round(3)

# %% [markdown]
# ## Accuracy against the number of candidates
#
# Retrieval gets harder as the gallery grows; chance is `1 / N`. The star is the ceiling at
# `N = n_test`.

# %%
fig = plot_retrieval_vs_gallery(results)
plt.show()

# %% [markdown]
# ## What the decoder retrieves
#
# For a few test responses of the first subject: the image seen (left) and the five test images
# whose embeddings are closest to the decoded one (the true image framed in green).

# %%
fig = plot_retrieved_images(results, dataset, n_queries=4, k=5)
plt.show()

# %% [markdown]
# ## Training curve
#
# Validation top-1 (brain → image among the validation stimuli) after every epoch; the weights
# of the best epoch are the ones evaluated (`restore_best`).

# %%
history = results.history
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], label="train loss")
ax2 = ax.twinx()
ax2.plot(
    [h["epoch"] for h in history],
    [h.get("val_top1_brain_to_target", float("nan")) for h in history],
    color="C1",
    label="validation top-1",
)
ax.set_xlabel("epoch")
ax.set_ylabel("train loss")
ax2.set_ylabel("validation top-1")
fig.legend(loc="upper center", fontsize=8)
fig.tight_layout()
plt.show()


# %% [markdown]
# ## Part 2: decoding speech from simulated MEG
#
# brainmagick's protocol: one 3-s window (-0.5 to 2.5 s) per word of a story the subjects
# listen to, an encoder with spatial attention over the sensor layout and subject layers
# maps it to the mel spectrogram of the same window (averaged to 10 Hz), trained with the CLIP
# loss; at test time every test window is identified among *all* test segments (overlapping
# windows of consecutive words), top-1 and top-10.
#
# * **baseline**: ridge per subject from the window (channels × time at 30 Hz) to the
#   flattened mel window;
# * **ceiling**: the oracle that knows the noise-free recordings and whitens with the true
#   noise covariance (spatial and temporal) before correlating. The plain correlation oracle
#   saved with the dataset is *not* a bound: a decoder that learns spatial filters beats it.
#
# Blocks of whole sentences (at least 30 s) are held out, and windows that cross a block's edge
# are dropped, so no sample of a test window's audio or recording is ever trained on.

# %%
from brainalign.pipelines.decode_meeg import MEEGDecodeConfig, decode_simulated_meeg
from brainalign.pipelines.simulate_meeg import (
    default_simulated_meeg,
    simulate_meeg_dataset,
)

if SMOKE:
    meg = simulate_meeg_dataset(
        workdir / "simulated_meg",
        duration=60.0,
        n_channels=24,
        snr=1.0,
        n_dipoles_per_patch=3,
        verbose=False,
    )
    meg_config = MEEGDecodeConfig.from_dict(
        {
            "test_fraction": 0.3,
            "val_fraction": 0.2,
            "block_duration": 8.0,
            "n_bootstrap": 100,
            "n_draws": 5,
            "train": {
                "model_kwargs": {"n_heads": 8, "hidden": 16, "depth": 2, "n_freqs": 4},
                "epochs": 3,
                "batch_size": 16,
            },
        }
    )
else:
    meg = default_simulated_meeg()
    meg_path = config_path.parent / "decode_simulated_meg.yaml"
    meg_config = MEEGDecodeConfig.from_yaml(meg_path)
meg

# %%
meg_results = decode_simulated_meeg(
    meg, config=meg_config, out_dir=workdir / "meg-run", verbose=False
)
print(f"training: {meg_results.train_seconds:.1f} s")
for note in meg_results.notes:
    print("note:", note)
meg_results.summary("segments").round(3)

# %% [markdown]
# Top-1 against the number of candidate segments, and one decoded mel window beside the true
# one (first subject, standardised bands × 10-Hz bins):

# %%
fig = plot_retrieval_vs_gallery(meg_results)
plt.show()

# %%
n_bands = meg.ground_truth.features[meg_config.target].shape[0]
first = meg_results.subjects[0]
pos = {s: i for i, s in enumerate(meg_results.stimulus_ids)}
query = 0
true = meg_results.targets[pos[meg_results.test_ids[query]]].reshape(n_bands, -1)
decoded = meg_results.embeddings["contrastive"][first][query].reshape(n_bands, -1)
fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
for ax, image, title in zip(axes, (true, decoded), ("true mel window", "decoded (contrastive)")):
    ax.imshow(image, aspect="auto", origin="lower", cmap="magma")
    ax.set_title(f"{title}: {meg_results.test_ids[query]}")
    ax.set_xlabel("time bin (0.1 s, from -0.5 s)")
axes[0].set_ylabel("mel band")
fig.tight_layout()
plt.show()
