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
# # Reconstructing the seen images from the simulated fMRI responses
#
# Notebook 02 decoded every test response into an image embedding and *retrieved* the image.
# Here the embeddings are turned into *pictures* and scored with MindEye's metrics (PixCorr,
# SSIM, 2-way identification on network features), with bootstrap CIs over the test images.
#
# **Read the images and numbers with this in mind.** Offline there are no pretrained
# diffusion decoders, so the pictures come from the **stand-in decoder**: a small
# convolutional network trained here, on the dataset's *own training images* and their
# embeddings, to draw an image from an embedding (no test image is seen). It can only draw
# blurry pictures in the style of the training set. The metrics are therefore **not comparable
# with published reconstruction numbers** (MindEye, Brain Diffuser, …); they are compared with
# this decoder's own **ceiling**: its drawing of the *true* embedding of each test image.
#
# Then the pieces of the MindEye path, on the same data: the **low-level start** (a blurry image
# regressed from the voxels that the decoder starts from), a diffusion prior trained to map
# brain-decoded embeddings to image embeddings (first trained afterwards, then **trained jointly
# with the encoder**, as MindEye does), sampled with classifier-free guidance, and the diffusers
# decoder interface (a tiny *random* Kandinsky 2.2 pipeline), img2img start included.
#
# With `BRAINALIGN_SMOKE=1` (used by CI) a tiny dataset is generated in a temporary folder and
# everything is trained for a few steps; otherwise the default dataset is loaded (or generated
# once) and decoded with the shipped `configs/decode_simulated_fmri.yaml`.

# %%
import os
import tempfile
import time
from importlib.resources import as_file, files
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from diffusers.utils import logging as diffusers_logging

from brainalign.data.repetitions import average_repetitions
from brainalign.data.simulate.fmri import FMRISimulationConfig
from brainalign.models import build_model
from brainalign.pipelines.decode import (
    PREPROCESSING_NAME,
    DecodeConfig,
    decode_simulated_fmri,
    evaluate_checkpoint,
)
from brainalign.pipelines.reconstruct import plot_reconstructions, reconstruct_from_decoding
from brainalign.pipelines.simulate_fmri import default_simulated_fmri, simulate_fmri_dataset
from brainalign.reconstruct import (
    EmbeddingDecoder,
    PriorConfig,
    build_joint_prior,
    build_prior,
    load_image_decoder,
    reconstruction_metrics,
    sample,
    train_prior,
)
from brainalign.train import BrainTargetDataset, RidgeDecoder, fit, latest_checkpoint

# quieter diffusers (no loading bars or accelerate hints)
diffusers_logging.set_verbosity_error()
diffusers_logging.disable_progress_bar()

SMOKE = os.environ.get("BRAINALIGN_SMOKE", "0") == "1"
# on a small shared CPU one thread is often faster for these matrix sizes than two
torch.set_num_threads(1)
t_start = time.perf_counter()

workdir = Path(tempfile.mkdtemp(prefix="brainalign-nb04-"))
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
            "n_draws": 3,
            "n_bootstrap": 50,
            "ridge_alphas": [10.0, 100.0, 1000.0],
            "train": {
                "model": "mindeye2",
                "model_kwargs": {"hidden": 48, "n_blocks": 1, "projector_hidden": 32},
                "lr": 3e-3,
                "epochs": 8,
                "batch_size": 32,
                "restore_best": True,
                "device": "cpu",
            },
        }
    )
else:
    dataset = default_simulated_fmri()
    with as_file(files("brainalign") / "configs" / "decode_simulated_fmri.yaml") as path:
        config = DecodeConfig.from_yaml(path)
# sizes of everything trained below (smoke: seconds; full: minutes on a CPU)
SIZES = {
    "image_size": 32 if SMOKE else 64,
    "decoder_channels": 32 if SMOKE else 128,
    "decoder_epochs": 8 if SMOKE else 30,
    "n_bootstrap": 100 if SMOKE else 1000,
    "prior": (dict(width=64, depth=2, n_heads=4) if SMOKE else dict(width=256, depth=4, n_heads=8)),
    "prior_steps": 150 if SMOKE else 3000,
    "sample_steps": 10 if SMOKE else 50,
    # the low-level start: share of the result that comes from the embedding
    "strength": 0.75,
    # the prior trained jointly with the encoder: its loss weight (MindEye's) and the epochs
    "prior_weight": 30.0,
    "joint_epochs": 8 if SMOKE else config.train.epochs,
}
dataset

# %% [markdown]
# ## Decode the test responses
#
# The decoding job of notebook 02: a contrastive encoder (MindEye2-style) and a ridge baseline
# per subject, both predicting the standardised EfficientNet-Lite0 embedding (the offline
# stand-in for CLIP) of the averaged test responses.

# %%
results = decode_simulated_fmri(dataset, config=config, out_dir=workdir / "run", verbose=False)
print(f"decoding: {results.train_seconds:.1f} s of training")
print(f"targets: {results.targets.shape[1]}-d embeddings of {len(results.stimulus_ids)} stimuli")
results.summary("n-way").round(3)

# %% [markdown]
# ## Reconstruct the test images
#
# `reconstruct_from_decoding` trains the stand-in decoder on the **training** images and their
# target embeddings (cached in the output folder), draws every subject's decoded test
# embeddings and the true test embeddings (the ceiling), and scores them against the seen images.
# An encoder trained with a regression term (the shipped config's `regression_weight`) is
# drawn from its backbone, its regression of the embedding; without one, from the projector.
# Again: the images come from the offline stand-in decoder trained on this dataset's own
# training images, so they look like averages of training images, and the numbers below are not
# comparable with published ones.

# %%
recon_dir = workdir / "reconstruction"
recon = reconstruct_from_decoding(
    results,
    dataset,
    model="contrastive",
    image_size=SIZES["image_size"],
    channels=SIZES["decoder_channels"],
    epochs=SIZES["decoder_epochs"],
    n_bootstrap=SIZES["n_bootstrap"],
    out_dir=recon_dir,
    device="cpu",
    verbose=False,
)
print(recon.decoder_label)

# %% [markdown]
# Top row: the images the subjects saw; then each subject's reconstruction from the decoded
# embedding; last row: the decoder's drawing of the true embedding — the best this decoder can
# do.

# %%
fig = plot_reconstructions(recon, n_images=8)
plt.show()

# %% [markdown]
# ## Metrics against the decoder's own ceiling
#
# PixCorr (pixel correlation), SSIM and 2-way identification on EfficientNet-Lite0 features
# (chance 0.5), with 95 % bootstrap intervals over the test images. `of ceiling` is the subject
# mean divided by the ceiling (for the 2-way metric, above chance: `(x - 0.5) / (c - 0.5)`;
# NaN where the ceiling is not above chance — with the tiny smoke dataset it often is not).


# %%
def metrics_with_ci(table: pd.DataFrame) -> pd.DataFrame:
    """``value [ci_low, ci_high]`` per source (rows) and metric (columns)."""
    cell = table.apply(
        lambda r: f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]", axis=1
    )
    return table.assign(cell=cell).pivot(index="source", columns="metric", values="cell")


metrics_with_ci(recon.metrics)

# %%
summary = recon.summary()
chance = pd.Series({m: (0.5 if "two_way" in m or "2way" in m else 0.0) for m in summary.columns})
headroom = summary.loc["ceiling"] - chance
# undefined (NaN) where the ceiling itself is not above chance
of_ceiling = (summary.loc["mean"] - chance) / headroom.where(headroom > 1e-6)
pd.concat([summary, of_ceiling.to_frame("of ceiling").T]).round(3)

# %% [markdown]
# ## The low-level start
#
# MindEye also regresses a *blurry* version of the seen image from the voxels and starts the
# diffusion decoder from it (img2img), so that layout and colours survive the semantic decoding.
# With `low_level=True`, a ridge map per subject (`LowLevelDecoder`, penalty by 5-fold
# cross-validation over the run's `ridge_alphas`) predicts 16-px images from the subject's
# non-test trials, and each reconstruction starts from the prediction for its test response.
# With a diffusers decoder this is img2img: the blurry image is noised to `strength` and
# denoised under the embedding. **The stand-in decoder is not a diffusion model and cannot
# start from an image**, so with it the low-level start is a documented *pixel blend*,
# `(1 - strength) · blurry + strength · drawing`; `strength` keeps its img2img meaning, the share
# of the result that comes from the embedding (1 ignores the start). The ceiling stays the
# decoder's drawing of the true embedding alone.

# %%
recon_low = reconstruct_from_decoding(
    results,
    dataset,
    model="contrastive",
    low_level=True,
    strength=SIZES["strength"],
    image_size=SIZES["image_size"],
    channels=SIZES["decoder_channels"],
    epochs=SIZES["decoder_epochs"],
    n_bootstrap=SIZES["n_bootstrap"],
    out_dir=recon_dir,  # the stand-in decoder trained above is loaded from here
    device="cpu",
    verbose=False,
)
print(recon_low.method)
fig = plot_reconstructions(recon_low, n_images=8)
plt.show()

# %%
pd.concat(
    {
        "drawn directly": recon.summary().loc[["mean"]],
        f"low-level start, strength {SIZES['strength']:g}": recon_low.summary().loc[["mean"]],
        "ceiling": recon.summary().loc[["ceiling"]],
    }
).droplevel(1).round(3)

# %% [markdown]
# ## The MindEye path: a diffusion prior from brain embeddings to image embeddings
#
# MindEye does not draw the brain encoder's output directly: a diffusion prior first maps it
# into the image-embedding space the decoder was trained on. Training the prior needs pairs
# (brain-decoded embedding, image embedding) that are *not* test data, and whose brain side is
# as noisy as at test time. The decoding run only keeps embeddings of the test responses, and
# the encoder's (or ridge's) predictions of its own training trials would be too clean
# (in-sample), so the conditions used here are **cross-fitted ridge predictions of the training
# stimuli**: the training stimuli are split into 5 folds; for each fold a ridge decoder (same
# preprocessing and penalties as the run's baseline) is fitted on the single trials of the
# other folds and predicts the held-out stimuli's repetition-averaged responses, as the test
# responses are averaged. Every subject's pairs are pooled. At test time the prior is
# conditioned on the run's ridge predictions of the test responses — the same space. (The
# contrastive encoder's projected outputs live in another space, so they are not used here.)
# No test stimulus enters the prior's training.

# %%
stats = np.load(results.out_dir / PREPROCESSING_NAME)
row_of = {s: i for i, s in enumerate(results.stimulus_ids)}
test_set = set(results.test_ids)
rng = np.random.default_rng(0)
conditions, prior_targets = [], []
for sub in dataset.subjects:
    rec = dataset[sub]
    trials = rec.trials
    stim = trials["stimulus_id"].astype(str).to_numpy()
    keep = np.flatnonzero(trials["split"].astype(str).to_numpy() != "test")
    X = (np.asarray(rec.data, dtype=np.float32) - stats[f"mean/{sub}"]) / stats[f"std/{sub}"]
    train_stimuli = np.unique(stim[keep])
    fold_of = dict(zip(train_stimuli, rng.permutation(len(train_stimuli)) % 5))
    for fold in range(5):
        held = [s for s in train_stimuli if fold_of[s] == fold]
        fit_rows = keep[[fold_of[s] != fold for s in stim[keep]]]
        ridge = RidgeDecoder(alphas=config.ridge_alphas).fit(
            X[fit_rows], results.targets[[row_of[s] for s in stim[fit_rows]]]
        )
        pred_rows = keep[np.isin(stim[keep], held)]
        avg = average_repetitions(rec.select(trials=pred_rows))
        avg_ids = avg.trials["stimulus_id"].astype(str).to_numpy()
        Xa = (np.asarray(avg.data, dtype=np.float32) - stats[f"mean/{sub}"]) / stats[f"std/{sub}"]
        conditions.append(ridge.predict(Xa).astype(np.float32))
        prior_targets.append(results.targets[[row_of[s] for s in avg_ids]])
conditions = np.concatenate(conditions)
prior_targets = np.concatenate(prior_targets).astype(np.float32)
print(f"{len(conditions)} (cross-fitted ridge prediction, target) pairs for the prior")

# %% [markdown]
# A small prior (MindEye's is depth 6, width 768 on 257 tokens; this one works on the pooled
# embedding): 100 diffusion steps with a cosine schedule, predicting the clean embedding, with
# the condition dropped 20 % of the time so that it can be sampled with classifier-free
# guidance.

# %%
dim = results.targets.shape[1]
prior = build_prior(
    PriorConfig(target_dim=dim, cond_dim=dim, num_train_timesteps=100, **SIZES["prior"]), seed=0
)
t0 = time.perf_counter()
losses = train_prior(
    prior, conditions, prior_targets, n_steps=SIZES["prior_steps"], batch_size=64, lr=1e-3
)
print(f"prior: {sum(p.numel() for p in prior.parameters()):,} parameters, "
      f"{SIZES['prior_steps']} steps in {time.perf_counter() - t0:.1f} s")  # fmt: skip
fig, ax = plt.subplots(figsize=(5, 2.5))
ax.plot(losses, lw=0.8)
ax.set_xlabel("step")
ax.set_ylabel("prior loss (MSE on x_0)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Sampling with classifier-free guidance
#
# DDIM sampling of the test images' embeddings from the run's ridge predictions of the test
# responses, without guidance (`s = 1`) and with `s = 3`. The table compares, per subject mean,
# the cosine similarity with the true embedding and the top-1 identification among the test
# images for the ridge predictions themselves and for the prior's samples. With the smoke
# settings (a few dozen pairs, 150 steps) the prior is far from trained and its samples are
# usually *worse* than the ridge predictions it is conditioned on; MindEye trains its prior on
# tens of thousands of trials.


# %%
def identification(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Mean cosine with the true embedding and top-1 among the test images."""
    p = pred / np.linalg.norm(pred, axis=1, keepdims=True)
    t = true / np.linalg.norm(true, axis=1, keepdims=True)
    sim = p @ t.T
    return float(np.diag(sim).mean()), float((sim.argmax(1) == np.arange(len(p))).mean())


true_test = results.targets[[row_of[s] for s in results.test_ids]]
ridge_test = results.embeddings["ridge"]
samples = {}
rows = []
for scale in (1.0, 3.0):
    for sub, cond in ridge_test.items():
        emb = sample(
            prior,
            cond,
            num_inference_steps=SIZES["sample_steps"],
            guidance_scale=scale,
            scheduler="ddim",
            seed=0,
        ).numpy()
        samples[(sub, scale)] = emb
        rows.append((f"prior, s={scale:g}", sub, *identification(emb, true_test)))
for sub, cond in ridge_test.items():
    rows.append(("ridge (no prior)", sub, *identification(cond, true_test)))
prior_table = pd.DataFrame(rows, columns=["embedding", "subject", "cosine", "top1"])
prior_table.groupby("embedding")[["cosine", "top1"]].mean().round(3)

# %% [markdown]
# ### Drawing the prior's samples with the stand-in decoder
#
# The same stand-in decoder as above (loaded from its cache in the reconstruction folder) draws
# the guided samples; they are scored like the reconstructions. The same caveat holds: these
# are stand-in-decoder images, not diffusion-decoder images.

# %%
image_decoder = load_image_decoder(next(recon_dir.glob("image_decoder-*")), device="cpu")
first = dataset.subjects[0]
guided = image_decoder.decode(samples[(first, 3.0)])
direct = image_decoder.decode(ridge_test[first])
tables = []
for source, imgs in (("ridge, direct", direct), ("ridge → prior (s=3)", guided)):
    t = reconstruction_metrics(
        imgs, recon.seen, resolution=None, n_bootstrap=SIZES["n_bootstrap"], device="cpu"
    )
    tables.append(t.assign(source=f"sub-{first}: {source}"))
ceiling = recon.metrics[recon.metrics["source"] == "ceiling"].assign(source="ceiling")
metrics_with_ci(pd.concat([*tables, ceiling], ignore_index=True))

# %%
grid = {
    "seen": recon.seen,
    "ridge,\ndirect": direct,
    "ridge →\nprior s=3": guided,
    "true\nembedding": recon.images["ceiling"],
}
n_show = min(8, len(recon.test_ids))
fig, axes = plt.subplots(len(grid), n_show, figsize=(1.3 * n_show, 1.35 * len(grid)),
                         squeeze=False, layout="constrained")  # fmt: skip
for r, (label, imgs) in enumerate(grid.items()):
    for c in range(n_show):
        axes[r, c].imshow(np.clip(imgs[c], 0, 1))
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
    axes[r, 0].set_ylabel(label, fontsize=8)
fig.suptitle(f"sub-{first}, stand-in decoder (trained on the dataset's own training images)",
             fontsize=8)  # fmt: skip
plt.show()

# %% [markdown]
# ## A prior trained jointly with the encoder (MindEye)
#
# MindEye does not train its prior afterwards: the prior's loss is added to the contrastive loss
# (`loss = contrastive + prior_weight · prior`, weight 30 in the paper) and both are trained
# together, the prior conditioned on the encoder's *backbone* output (the projector only feeds
# the contrastive loss), denoising the target embedding. `TrainConfig.prior_weight > 0` turns
# this on, with the prior network from `build_joint_prior(config, target_shape)` given to `fit`
# (its shape from `TrainConfig.prior_kwargs`); the prior's loss is logged next to the
# contrastive loss and the prior is saved in every checkpoint. The shipped recipe also adds a
# regression of the target from the backbone (`regression_weight`, Benchetrit et al. 2024), so
# here each step minimises `contrastive + regression_weight · mse + prior_weight · prior`, each
# term logged on its own.
#
# Here the run's encoder recipe is trained again, with a prior, on the same standardised
# responses (all the non-test trials, no validation split), into a `train_joint/` folder of
# the run. `evaluate_checkpoint` reads that checkpoint like any other, and
# `reconstruct_from_decoding` finds the prior in it and uses it: the backbone output of each
# averaged test response → the jointly trained prior (DDIM, seeded) → the stand-in decoder.

# %%
brain, stimulus_rows = {}, {}
for sub in dataset.subjects:
    rec = dataset[sub]
    stim = rec.trials["stimulus_id"].astype(str).to_numpy()
    keep = rec.trials["split"].astype(str).to_numpy() != "test"
    X = (np.asarray(rec.data, dtype=np.float32) - stats[f"mean/{sub}"]) / stats[f"std/{sub}"]
    brain[sub] = X[keep]
    stimulus_rows[sub] = np.array([row_of[s] for s in stim[keep]])
joint_data = BrainTargetDataset(brain, stimulus_rows, results.targets)
joint_config = results.config.train.replace(
    prior_weight=SIZES["prior_weight"],
    prior_kwargs=SIZES["prior"],
    epochs=SIZES["joint_epochs"],
    patience=None,
    restore_best=False,
    out_dir=str(results.out_dir / "train_joint"),
)
torch.manual_seed(joint_config.seed)
t0 = time.perf_counter()
joint = fit(
    build_model(joint_config.model, **joint_config.model_kwargs),
    joint_data,
    None,
    joint_config,
    prior=build_joint_prior(joint_config, joint_data.target_shape),
    verbose=False,
)
print(f"encoder + prior: {joint.n_steps} steps in {time.perf_counter() - t0:.1f} s")
history = pd.DataFrame(joint.history)
terms = [f"train_{t}_loss" for t in ("contrastive", "regression", "prior")]
terms = [key for key in terms if key in history]
fig, axes = plt.subplots(1, len(terms), figsize=(3.5 * len(terms), 2.5), layout="constrained")
for ax, key in zip(axes, terms, strict=True):
    ax.plot(history["epoch"], history[key], marker="o", ms=3)
    ax.set_xlabel("epoch")
    ax.set_title(key.replace("train_", "").replace("_", " "), fontsize=9)
plt.show()

# %%
joint_results = evaluate_checkpoint(
    latest_checkpoint(joint_config.out_dir), dataset, ridge=False, verbose=False
)
recon_joint = reconstruct_from_decoding(
    joint_results,
    dataset,
    sample_kwargs={"num_inference_steps": SIZES["sample_steps"]},
    image_size=SIZES["image_size"],
    channels=SIZES["decoder_channels"],
    epochs=SIZES["decoder_epochs"],
    n_bootstrap=SIZES["n_bootstrap"],
    out_dir=recon_dir,
    device="cpu",
    verbose=False,
)
print(recon_joint.method)
pd.concat(
    {
        "run's encoder, drawn directly": recon.summary().loc[["mean"]],
        "joint encoder → joint prior": recon_joint.summary().loc[["mean"]],
        "ceiling": recon.summary().loc[["ceiling"]],
    }
).droplevel(1).round(3)

# %% [markdown]
# ## A diffusers decoder: Kandinsky 2.2 through `EmbeddingDecoder`
#
# With a network, the prior's samples would go to a pretrained decoder, e.g.
# `EmbeddingDecoder.from_pretrained("kandinsky-community/kandinsky-2-2-decoder")` (1,280-d
# CLIP ViT-bigG/14 image embeddings: the prior would then be trained on those targets). Offline,
# a Kandinsky 2.2 pipeline is built from tiny **random** components whose UNet takes this
# dataset's embedding width, to show the whole path running end to end: prior samples →
# `EmbeddingDecoder` → images. **The weights are random, so the images are noise**; only the
# shapes, the checks and the plumbing are demonstrated.

# %%
from brainalign.reconstruct import random_kandinsky_pipeline

pipe_dir = workdir / "tiny-kandinsky"
random_kandinsky_pipeline(dim).save_pretrained(pipe_dir)

kandinsky = EmbeddingDecoder.from_pretrained(pipe_dir)
kandinsky.check_prior(prior)  # the prior's output width is what the UNet expects
print(kandinsky)
t0 = time.perf_counter()
noise_images = kandinsky(
    samples[(first, 3.0)][:4], num_inference_steps=2, height=32, width=32, guidance_scale=4.0
)
print(f"{noise_images.shape} images in {time.perf_counter() - t0:.2f} s (random weights: noise)")
fig, axes = plt.subplots(1, 4, figsize=(5.2, 1.5), layout="constrained")
for ax, img in zip(axes, noise_images):
    ax.imshow(img)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("tiny random Kandinsky 2.2 decoder: noise by construction", fontsize=8)
plt.show()

# %% [markdown]
# The same decoder in the reconstruction job, started from the low-level images: with a
# diffusers decoder, `low_level=True` runs img2img (the blurry image noised to `strength`, then
# denoised under the embedding), and the run's standardised embeddings are mapped back to the
# targets' own scale first. Still random weights: the images (and so their metrics) are noise.

# %%
recon_kandinsky = reconstruct_from_decoding(
    results,
    dataset,
    decoder=kandinsky,
    decoder_kwargs={"num_inference_steps": 4, "height": 32, "width": 32},
    low_level=True,
    strength=0.5,
    image_size=SIZES["image_size"],
    n_bootstrap=20,
    device="cpu",
    verbose=False,
)
print(recon_kandinsky.method)
print({sub: imgs.shape for sub, imgs in recon_kandinsky.images.items()})

# %%
print(f"notebook ran in {time.perf_counter() - t_start:.0f} s")
