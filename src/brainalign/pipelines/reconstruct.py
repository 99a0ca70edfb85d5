"""``brainalign reconstruct RUN``: images from decoded brain embeddings, with MindEye's metrics.

A decoding run (:mod:`brainalign.pipelines.decode`) predicts one image embedding per test
stimulus and subject. This job turns them into pictures and scores them against the seen
images:

1. **the embedding to draw.** When the run trained a diffusion prior jointly with its encoder
   (``TrainConfig.prior_weight > 0``; MindEye), that prior is used by default: it is
   conditioned on the encoder's backbone output for each averaged test response and sampled
   (DDIM, seeded) into the target space. Otherwise the decoded embeddings are drawn directly,
   or through a prior passed by the caller (e.g. one trained after the fact with
   :func:`~brainalign.reconstruct.train_prior`, as notebook 04 does). An encoder trained with a
   regression term (``TrainConfig.regression_weight > 0``) is drawn from its backbone output,
   the regression of the target, as Benchetrit et al. (2024) generate from their MSE head and
   retrieve with their CLIP head: the projector's output only has to point the right way
   (measured on the default dataset with the shipped config: mean cosine with the true
   embedding 0.83 for the backbone and 0.36 for the projector; the stand-in's 2-way / PixCorr /
   SSIM 0.59 / 0.40 / 0.37 from the backbone, 0.51 / 0.19 / 0.25 from the projector, 0.60 /
   0.40 / 0.37 from the true embeddings: a regression shrinks towards the mean, and the smooth
   pictures of shrunk embeddings score well on PixCorr and SSIM);
2. **the low-level start** (optional, ``low_level=True``): per subject, a
   :class:`~brainalign.reconstruct.LowLevelDecoder` (ridge from the training trials to the
   downsampled training images, penalty by cross-validation over the run's ``ridge_alphas``)
   predicts a blurry image of each test stimulus. A diffusers decoder starts from it (img2img:
   the blurry image is noised to ``strength`` and denoised under the embedding). The offline
   stand-in decoder is not a diffusion model and cannot start from an image, so there the
   low-level start is a documented **pixel blend**, ``(1 - strength) · blurry + strength ·
   drawing``: ``strength`` keeps its diffusers meaning, the share of the result that comes from
   the embedding (1: the blurry start is ignored);
3. **the image decoder** draws an image from an embedding. Offline, it is the stand-in
   :class:`~brainalign.reconstruct.image_decoder.ConvImageDecoder` trained here on the training
   stimuli's own images and embeddings (no test image is seen), which can only make blurry
   pictures in the style of the training set — outputs say so. With weights, a diffusers
   decoder (:class:`~brainalign.reconstruct.EmbeddingDecoder`: Kandinsky 2.2, Stable unCLIP) is
   passed as ``decoder``; the (standardised) embeddings are mapped back to the targets' own
   scale first;
4. the reconstructions of each subject, and the decoder's drawing of the true embedding (the
   best this decoder can do from the embedding alone, without prior or low-level start: its
   ceiling), are scored with PixCorr, SSIM and 2-way identification on EfficientNet-Lite0
   features, with bootstrap CIs over test images;
5. a grid of seen vs reconstructed images and the metrics table are written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils.atomic import atomic_write
from .._utils.progress import logger

#: The default share of the result that comes from the embedding on top of the low-level start.
DEFAULT_STRENGTH = 0.75
#: The prior's sampling settings unless ``sample_kwargs`` says otherwise.
SAMPLE_DEFAULTS = {"scheduler": "ddim", "num_inference_steps": 50, "guidance_scale": 1.0}

__all__ = [
    "DEFAULT_STRENGTH",
    "SAMPLE_DEFAULTS",
    "ReconstructionResults",
    "load_stimulus_images",
    "plot_reconstructions",
    "reconstruct_from_decoding",
    "reconstruct_run",
]


@dataclass
class ReconstructionResults:
    """Reconstructions of the test stimuli and their metrics.

    Attributes
    ----------
    test_ids : ndarray of str, shape (n_test,)
        The test stimuli, in the order of the image rows.
    seen : ndarray, shape (n_test, size, size, 3)
        The seen images (float32 in [0, 1]).
    images : dict of str to ndarray
        ``images[subject]``: reconstructions ``(n_test, size, size, 3)``; ``images["ceiling"]``:
        the decoder's drawing of the true embeddings.
    metrics : DataFrame
        One row per (``source``: subject or ``"ceiling"``, ``metric``): ``value``, ``ci_low``,
        ``ci_high``, ``n_images``, ``higher_is_better``, ``decoder``.
    decoder_label : str
        What drew the images (the offline stand-in says so).
    out_dir : Path | None
        Where ``reconstructions.png`` and ``reconstruction_metrics.tsv`` were written.
    method : str
        The path from the brain to the images: which embedding (direct, or through which
        prior), and the low-level start if any (also the ``method`` column of ``metrics``).
    low_level_images : dict of str to ndarray
        ``low_level_images[subject]``: the blurry starts ``(n_test, r, r, 3)`` (empty without
        ``low_level``).
    """

    test_ids: np.ndarray
    seen: np.ndarray
    images: dict[str, np.ndarray]
    metrics: pd.DataFrame
    decoder_label: str
    out_dir: Path | None = None
    method: str = "decoded embeddings drawn directly"
    low_level_images: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Metric values: rows ``source`` (subjects, then ``"mean"`` and ``"ceiling"``)."""
        wide = self.metrics.pivot_table(index="source", columns="metric", values="value")
        subjects = [s for s in wide.index if s != "ceiling"]
        mean = wide.loc[subjects].mean().rename("mean")
        return pd.concat([wide.loc[subjects], mean.to_frame().T, wide.loc[["ceiling"]]])

    def __str__(self) -> str:
        return (
            f"Reconstructions of {len(self.test_ids)} test images ({self.decoder_label})\n"
            f"method: {self.method}\n" + self.summary().round(3).to_string()
        )


def load_stimulus_images(dataset: Any, ids: Any, *, size: int = 64) -> np.ndarray:
    """The images of stimuli ``ids`` of a simulated dataset, ``(n, size, size, 3)`` in [0, 1]."""
    from PIL import Image

    table = dataset.stimuli.table
    path_of = dict(zip(table["stimulus_id"].astype(str), table["path"]))
    missing = [str(sid) for sid in ids if str(sid) not in path_of]
    if missing:
        raise ValueError(f"{len(missing)} stimuli are not in the dataset (e.g. {missing[:3]}).")
    out = np.empty((len(ids), size, size, 3), dtype=np.float32)
    for i, sid in enumerate(ids):
        with Image.open(path_of[str(sid)]) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            out[i] = np.asarray(im, dtype=np.float32) / 255.0
    return out


def reconstruct_from_decoding(
    results: Any,
    dataset: Any,
    *,
    model: str = "contrastive",
    prior: Any = "auto",
    sample_kwargs: dict[str, Any] | None = None,
    low_level: bool | dict[str, Any] = False,
    strength: float = DEFAULT_STRENGTH,
    low_level_resolution: int = 16,
    decoder: Any = None,
    decoder_kwargs: dict[str, Any] | None = None,
    image_size: int = 64,
    channels: int = 128,
    epochs: int = 30,
    decoder_images: int | None = 1000,
    n_bootstrap: int = 1000,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    device: Any = "auto",
    verbose: bool = True,
) -> ReconstructionResults:
    """Reconstruct the test images from a decoding run's embeddings and score them.

    Parameters
    ----------
    results : DecodeResults
        From :func:`~brainalign.pipelines.decode.decode_simulated_fmri` or
        :func:`~brainalign.pipelines.decode.evaluate_checkpoint`.
    dataset : SimulatedFMRI
        The dataset the run decoded (its stimulus images and responses).
    model : str
        Which decoded embeddings to draw (``"contrastive"`` or ``"ridge"``).
    prior : "auto" | DiffusionPrior | None
        ``"auto"``: the diffusion prior the run trained jointly with its encoder, read from
        ``results.checkpoint``, when ``model="contrastive"`` and the run has one; else none.
        A :class:`~brainalign.reconstruct.DiffusionPrior`: that prior, conditioned on the
        encoder's backbone output (``"contrastive"``: what a joint prior is conditioned on)
        or on the ridge predictions (``"ridge"``: what notebook 04's separate prior is trained
        on). ``None``: the decoded embeddings are drawn directly (for ``"contrastive"`` with
        ``regression_weight > 0``, the backbone's regression of the embedding).
    sample_kwargs : dict | None
        Settings of :func:`~brainalign.reconstruct.sample` over :data:`SAMPLE_DEFAULTS`
        (DDIM, 50 steps, no guidance); seeded by ``seed``.
    low_level : bool | dict of str to array-like
        Start each reconstruction from the subject's blurry low-level prediction (img2img for a
        diffusers decoder, a pixel blend for the stand-in; see the module's docstring). A dict
        gives the blurry starts ``{subject: (n_test, r, r, 3)}`` instead of fitting them here
        (e.g. ``low_level_images`` of an earlier result of the same run, to try several
        strengths without refitting).
    strength : float in (0, 1]
        Share of the result that comes from the embedding on top of the low-level start (1:
        the start is ignored). Checked even without ``low_level``.
    low_level_resolution : int
        Side of the blurry predictions, pixels (upsampled to the output size).
    decoder : EmbeddingDecoder | path-like | None
        A diffusers decoder (or a folder / hub id for
        :meth:`~brainalign.reconstruct.EmbeddingDecoder.from_pretrained`) taking embeddings of
        the run's target width; ``None``: the offline stand-in decoder, trained here.
    decoder_kwargs : dict | None
        Passed to the diffusers decoder's call (``num_inference_steps``, ``guidance_scale``,
        ``height``, ``width`` …); its images are resized to ``image_size`` for scoring.
    image_size : int
        Side of the reconstructions, pixels (a power of two).
    channels, epochs : int
        Width and training epochs of the stand-in image decoder (about 4 s per epoch for 1,000
        images of 64 px on 2 CPU cores).
    decoder_images : int | None
        The stand-in decoder learns from at most this many training images (a seeded draw;
        ``None``: all of them): its cost grows with their number, and 1,000 are enough for
        the pixel-level drawing it does.
    n_bootstrap : int
        Bootstrap draws over test images for the CIs.
    out_dir : path-like | None
        Write ``reconstructions.png``, ``reconstruction_metrics.tsv`` and the image decoder
        there (a decoder trained on the same inputs before is loaded, not trained again).
    seed : int
        Seed of the decoder's training, of the prior's and the diffusers decoder's sampling
        and of the bootstrap.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    verbose : bool
        Progress bars.

    Returns
    -------
    results : ReconstructionResults
        ``method`` says which path made the images.
    """
    from ..reconstruct import MINDEYE_FEATURES, compute_image_features, reconstruction_metrics
    from ..reconstruct.image_decoder import DECODER_LABEL

    if model not in results.embeddings:
        raise ValueError(
            f"'model' must be one of {sorted(results.embeddings)} (the decoded embeddings), "
            f"got {model!r}."
        )
    strength = _check_strength(strength)
    if not isinstance(low_level, bool | dict):
        raise TypeError(
            f"'low_level' must be True, False or a dict of blurry images per subject, got "
            f"{low_level!r}."
        )
    ids = np.asarray(results.stimulus_ids).astype(str)
    test_ids = np.asarray(results.test_ids).astype(str)
    row = {sid: i for i, sid in enumerate(ids)}
    test_rows = [row[s] for s in test_ids]
    train_ids = [sid for sid in ids if sid not in set(test_ids)]
    if decoder_images is not None and (
        isinstance(decoder_images, bool)
        or not isinstance(decoder_images, int | np.integer)
        or decoder_images < 1
    ):
        raise ValueError(
            "'decoder_images' must be an integer >= 1 (how many training images the stand-in "
            f"decoder learns from) or None for all of them, got {decoder_images!r}."
        )
    steps: list[str] = []

    # 1. the embeddings to draw
    prior_module, prior_label = _resolve_prior(prior, results, model, device)
    regressed = (
        prior_module is None
        and model == "contrastive"
        and getattr(results.config.train, "regression_weight", 0.0) > 0
        and results.model is not None
    )
    prep = None
    if prior_module is not None or low_level is True or regressed:
        prep = _prepared(results, dataset)
    embeddings = {sub: np.asarray(emb) for sub, emb in results.embeddings[model].items()}
    if regressed:
        embeddings = _backbone_outputs(results.model, prep)
    if prior_module is not None:
        if model == "contrastive":
            conditions = _backbone_outputs(results.model, prep)
        else:
            conditions = embeddings
        settings = {**SAMPLE_DEFAULTS, **(sample_kwargs or {})}
        embeddings = {
            sub: _sample_prior(prior_module, cond, settings, seed)
            for sub, cond in conditions.items()
        }
        steps.append(
            f"{model} embeddings through {prior_label} ({settings['scheduler'].upper()}, "
            f"{settings['num_inference_steps']} steps, guidance {settings['guidance_scale']:g})"
        )
    elif regressed:
        steps.append(
            "the contrastive encoder's backbone outputs (its regression of the embedding, "
            "regression_weight > 0) drawn directly"
        )
    else:
        steps.append(f"{model} embeddings drawn directly")

    # 2. the low-level starts
    blurry: dict[str, np.ndarray] = {}
    if low_level is True:
        blurry = _low_level_images(
            prep, results, dataset, ids, resolution=low_level_resolution, device=device
        )
    elif isinstance(low_level, dict):
        blurry = _given_low_level(low_level, embeddings, len(test_ids))
    low_level = bool(blurry) or low_level is True

    # 3. the decoder
    true_emb = results.targets[test_rows]
    if decoder is None:
        label = DECODER_LABEL
        fit_ids = train_ids
        if decoder_images is not None and len(train_ids) > decoder_images:
            keep = np.random.default_rng([seed, 11]).choice(
                len(train_ids), int(decoder_images), replace=False
            )
            fit_ids = [train_ids[i] for i in np.sort(keep)]
            steps.append(
                f"stand-in decoder trained on {len(fit_ids)} of the {len(train_ids)} training "
                "images (decoder_images)"
            )
        standin = _image_decoder(
            results.targets[[row[s] for s in fit_ids]],
            fit_ids,
            dataset,
            image_size=image_size,
            channels=channels,
            epochs=epochs,
            seed=seed,
            device=device,
            cache_root=Path(out_dir) if out_dir is not None else None,
            verbose=verbose,
        )
        # the decoder starts with a LayerNorm: the arbitrary norm of contrastive outputs is
        # irrelevant
        images = {sub: standin.decode(emb) for sub, emb in embeddings.items()}
        images["ceiling"] = standin.decode(true_emb)
        if low_level:
            images.update({sub: _blend(blurry[sub], images[sub], strength) for sub in embeddings})
            steps.append(
                f"low-level start: pixel blend (1 - strength) * blurry + strength * drawing, "
                f"strength={strength:g} (the stand-in is not a diffusion model: no img2img)"
            )
    else:
        decoder = _as_embedding_decoder(decoder)
        label = f"diffusers decoder {type(decoder.pipeline).__name__}"
        unscale = _target_unscaler(results)
        kwargs = dict(decoder_kwargs or {})
        images = {}
        for sub, emb in embeddings.items():
            start = {"init_image": blurry[sub], "strength": strength} if low_level else {}
            drawn = decoder(unscale(emb), seed=seed, **start, **kwargs)
            images[sub] = _resize(drawn, image_size)
        images["ceiling"] = _resize(decoder(unscale(true_emb), seed=seed, **kwargs), image_size)
        if low_level:
            steps.append(f"low-level start: img2img from the blurry image, strength={strength:g}")
    method = "; ".join(steps)

    # 4. scores
    seen = load_stimulus_images(dataset, test_ids, size=image_size)
    # the seen images' network features, computed once for every set of reconstructions
    network, layer, _ = MINDEYE_FEATURES["efficientnet_lite0"]
    seen_features = {
        "efficientnet_lite0": compute_image_features(seen, network, layer, device=device)
    }
    tables = []
    for source, pred in images.items():
        table = reconstruction_metrics(
            pred,
            seen,
            features=("efficientnet_lite0",),
            true_features=seen_features,
            resolution=None,
            n_bootstrap=n_bootstrap,
            seed=seed,
            device=device,
        )
        table.insert(0, "source", source)
        tables.append(table)
    metrics = pd.concat(tables, ignore_index=True)
    metrics["decoder"] = label
    metrics["method"] = np.where(metrics["source"] == "ceiling", "true embedding", method)
    out = ReconstructionResults(
        test_ids, seen, images, metrics, label, method=method, low_level_images=blurry
    )
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / "reconstruction_metrics.tsv", "w") as fh:
            metrics.to_csv(fh, sep="\t", index=False)
        fig = plot_reconstructions(out)
        with atomic_write(folder / "reconstructions.png", "wb") as fh:
            fig.savefig(fh, format="png", dpi=100, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        out.out_dir = folder
    return out


# ------------------------------------------------------------------------- the pieces
def _check_strength(strength: Any) -> float:
    if (
        isinstance(strength, bool)
        or not isinstance(strength, int | float | np.number)
        or not 0 < strength <= 1
    ):
        raise ValueError(
            f"'strength' must be in (0, 1]: the share of the reconstruction that comes from the "
            f"embedding on top of the low-level start (1 ignores the start; img2img noises the "
            f"start to this level), got {strength!r}."
        )
    return float(strength)


def _resolve_prior(prior: Any, results: Any, model: str, device: Any) -> tuple[Any, str]:
    """(prior module or None, how to name it)."""
    from torch import nn

    if prior is None:
        return None, ""
    if isinstance(prior, str):
        if prior != "auto":
            raise ValueError(f"'prior' must be 'auto', a DiffusionPrior or None, got {prior!r}.")
        if model != "contrastive" or getattr(results, "checkpoint", None) is None:
            return None, ""
        from .._utils.device import resolve_device
        from ..reconstruct.prior import load_joint_prior

        found = load_joint_prior(results.checkpoint, device=resolve_device(device))
        if found is None:
            return None, ""
        if getattr(results, "model", None) is None:
            raise ValueError(
                "The run trained a prior with its encoder, but these results hold no encoder "
                "(results.model) to condition it on; use evaluate_checkpoint(run)."
            )
        return found, "the prior trained jointly with the encoder"
    if not isinstance(prior, nn.Module) or not hasattr(prior, "config"):
        raise TypeError(
            f"'prior' must be 'auto', a brainalign.reconstruct.DiffusionPrior or None, got "
            f"{type(prior).__name__}."
        )
    if model == "contrastive" and getattr(results, "model", None) is None:
        raise ValueError(
            "A prior for the contrastive embeddings is conditioned on the encoder's backbone, "
            "but these results hold no encoder (results.model)."
        )
    return prior, "the given prior"


def _prepared(results: Any, dataset: Any) -> Any:
    """The run's brain data as it was decoded: z-scored training trials, averaged test
    responses (``decode._prepare`` with the run's saved statistics when it has a folder)."""
    from .decode import PREPROCESSING_NAME, _prepare

    stats = None
    folder = getattr(results, "out_dir", None)
    if folder is not None and (Path(folder) / PREPROCESSING_NAME).is_file():
        with np.load(Path(folder) / PREPROCESSING_NAME) as saved:
            stats = {k: saved[k] for k in saved.files}
    # only the brain side is used: the targets are the run's own (already standardised)
    return _prepare(dataset, results.targets, results.config, stats)


def _backbone_outputs(model: Any, prep: Any) -> dict[str, np.ndarray]:
    """The encoder's backbone output (what a joint prior is conditioned on) per subject."""
    import torch

    param = next(iter(model.parameters()))
    was_training = model.training
    model.eval()
    out = {}
    try:
        with torch.no_grad():
            for sub, x in prep.test.items():
                xt = torch.as_tensor(np.asarray(x), dtype=param.dtype, device=param.device)
                output = model(xt, sub)
                backbone = getattr(output, "backbone", output)
                out[sub] = backbone.float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def _sample_prior(prior: Any, cond: np.ndarray, settings: dict[str, Any], seed: int) -> np.ndarray:
    from ..reconstruct.prior import sample

    emb = sample(prior, cond, seed=seed, **settings)
    return emb.reshape(len(cond), -1).float().cpu().numpy()


def _low_level_images(
    prep: Any,
    results: Any,
    dataset: Any,
    ids: np.ndarray,
    *,
    resolution: int,
    device: Any,
) -> dict[str, np.ndarray]:
    """Each subject's ridge prediction of the blurry test images ``(n_test, r, r, 3)``, fitted
    on its training and validation trials (never a test stimulus)."""
    from ..reconstruct.lowlevel import LowLevelDecoder

    # every trial that is not a test trial: the training and the validation split
    trials = {
        sub: (
            np.concatenate([x, prep.val[sub][0]]) if sub in prep.val else x,
            np.concatenate([rows, prep.val[sub][1]]) if sub in prep.val else rows,
        )
        for sub, (x, rows) in prep.train.items()
    }
    train_rows = sorted({int(r) for _, rows in trials.values() for r in rows})
    images = load_stimulus_images(dataset, ids[train_rows], size=max(resolution, 32))
    image_of = dict(zip(train_rows, images))
    alphas = list(getattr(results.config, "ridge_alphas", None) or [1.0, 100.0, 10000.0])
    out = {}
    for sub, (x, rows) in trials.items():
        seen = np.stack([image_of[int(r)] for r in rows])
        dec = LowLevelDecoder(alpha=alphas, resolution=resolution, device=device)
        dec.fit(x, seen)
        logger.info("Low-level decoder of subject %s: alpha %g", sub, dec.alpha_)
        out[sub] = dec.predict(prep.test[sub])
    return out


def _given_low_level(given: dict[str, Any], embeddings: dict, n_test: int) -> dict[str, np.ndarray]:
    out = {}
    for sub in embeddings:
        if sub not in given:
            raise ValueError(
                f"'low_level' gives blurry images for subjects {sorted(given)}, not for {sub!r}."
            )
        img = np.asarray(given[sub], dtype=np.float32)
        if img.ndim != 4 or img.shape[0] != n_test or img.shape[-1] != 3:
            raise ValueError(
                f"The blurry images of subject {sub!r} must have shape (n_test={n_test}, r, r, 3), "
                f"got {img.shape}."
            )
        out[sub] = img
    return out


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """``(n, h, w, 3)`` → ``(n, size, size, 3)`` (bilinear, antialiased), float32 in [0, 1]."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)  # fmt: skip
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _blend(blurry: np.ndarray, drawn: np.ndarray, strength: float) -> np.ndarray:
    """The stand-in's low-level start: ``(1 - strength) · blurry + strength · drawn``."""
    start = _resize(blurry, drawn.shape[1])
    return ((1.0 - strength) * start + strength * drawn).astype(np.float32)


def _as_embedding_decoder(decoder: Any) -> Any:
    from ..reconstruct.decoders import EmbeddingDecoder

    if isinstance(decoder, EmbeddingDecoder):
        return decoder
    if isinstance(decoder, str | os.PathLike):
        return EmbeddingDecoder.from_pretrained(decoder)
    raise TypeError(
        f"'decoder' must be an EmbeddingDecoder, the folder or hub id of one, or None (the "
        f"offline stand-in), got {type(decoder).__name__}."
    )


def _target_unscaler(results: Any) -> Any:
    """Map standardised embeddings back to the targets' own scale (a diffusers decoder takes
    the embeddings its image encoder produces)."""
    from .decode import PREPROCESSING_NAME

    config = results.config
    if not getattr(config, "standardize_targets", False):
        return lambda emb: np.asarray(emb, dtype=np.float32)
    folder = getattr(results, "out_dir", None)
    path = Path(folder) / PREPROCESSING_NAME if folder is not None else None
    if path is None or not path.is_file():
        raise ValueError(
            "The run standardised its targets, and a diffusers decoder needs the embeddings on "
            f"their own scale, but the run's {PREPROCESSING_NAME} (the targets' mean and SD) is "
            "not there; decode with out_dir=..., or with standardize_targets=False."
        )
    with np.load(path) as saved:
        mean, sd = saved["target_mean"], saved["target_std"]
    sd = np.where(sd > 1e-8 * max(sd.max(), 1e-30), sd, 1.0)  # as decode._prepare divides
    return lambda emb: (np.asarray(emb) * sd + mean).astype(np.float32)


def _image_decoder(
    targets: np.ndarray,
    ids: list[str],
    dataset: Any,
    *,
    image_size: int,
    channels: int,
    epochs: int,
    seed: int,
    device: Any,
    cache_root: Path | None,
    verbose: bool,
) -> Any:
    """Train the stand-in decoder, or load the one trained on the same inputs before.

    The decoder depends only on the training images and their embeddings (not on any brain
    data), so it is kept in ``cache_root/image_decoder-<key>``, keyed by a hash of everything
    that determines it.
    """
    import hashlib

    from ..reconstruct.image_decoder import (
        load_image_decoder,
        save_image_decoder,
        train_image_decoder,
    )

    h = hashlib.sha256()
    h.update(np.ascontiguousarray(targets, dtype=np.float32).tobytes())
    h.update("\n".join(ids).encode())
    h.update(f"{image_size}-{channels}-{epochs}-{seed}".encode())
    folder = cache_root / f"image_decoder-{h.hexdigest()[:16]}" if cache_root else None
    if folder is not None and folder.is_dir():
        try:
            return load_image_decoder(folder, device=device)
        except (OSError, ValueError) as err:  # damaged: train again
            logger.warning(
                "Retraining the image decoder: %s could not be loaded (%s).", folder, err
            )
    logger.info("Training the stand-in image decoder on %d training images", len(ids))
    decoder = train_image_decoder(
        targets,
        load_stimulus_images(dataset, ids, size=image_size),
        image_size=image_size,
        channels=channels,
        epochs=epochs,
        seed=seed,
        device=device,
        verbose=verbose,
    )
    if folder is not None:
        save_image_decoder(decoder, folder)
    return decoder


def plot_reconstructions(results: ReconstructionResults, *, n_images: int = 8) -> Any:
    """Grid: the seen images on top, the first subject's blurry low-level start (when there is
    one), each subject's reconstructions, the ceiling last."""
    import matplotlib.pyplot as plt

    subjects = [s for s in results.images if s != "ceiling"]
    rows: list[tuple[str, np.ndarray]] = [("seen", results.seen)]
    if results.low_level_images:
        first = next(iter(results.low_level_images))
        rows.append((f"sub-{first}\nlow-level", results.low_level_images[first]))
    rows += [(f"sub-{s}", results.images[s]) for s in subjects]
    rows.append(("from true\nembedding", results.images["ceiling"]))
    n = min(n_images, len(results.test_ids))
    fig, axes = plt.subplots(
        len(rows), n, figsize=(1.3 * n, 1.35 * len(rows)), squeeze=False, layout="constrained"
    )
    for r, (label, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(imgs[c], 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"Reconstructions ({results.decoder_label})\n{results.method}", fontsize=7)
    return fig


def reconstruct_run(
    run: str | os.PathLike,
    *,
    out_dir: str | os.PathLike | None = None,
    epochs: int = 30,
    decoder_images: int | None = 1000,
    prior: Any = "auto",
    low_level: bool = False,
    strength: float = DEFAULT_STRENGTH,
    verbose: bool = True,
) -> ReconstructionResults:
    """``brainalign reconstruct RUN``: evaluate a decoding run and reconstruct its test images.

    Parameters
    ----------
    run : path-like
        A decoding run folder, its ``train/`` folder or a checkpoint (see
        :func:`~brainalign.pipelines.decode.evaluate_checkpoint`).
    out_dir : path-like | None
        Output folder; default ``<run>/reconstruction``.
    epochs : int
        Training epochs of the stand-in image decoder.
    decoder_images : int | None
        At most this many training images for the stand-in decoder (``None``: all).
    prior : "auto" | DiffusionPrior | None
        ``"auto"``: the prior trained jointly with the run's encoder when it has one (see
        :func:`reconstruct_from_decoding`).
    low_level, strength
        The low-level start (see :func:`reconstruct_from_decoding`).
    verbose : bool
        Progress bars.
    """
    from .decode import evaluate_checkpoint, load_decode_dataset

    results = evaluate_checkpoint(run, ridge=False, verbose=False)
    dataset = load_decode_dataset(results.config.dataset, verbose=verbose)
    folder = (
        Path(out_dir) if out_dir is not None else Path(results.out_dir or run) / "reconstruction"
    )
    recon = reconstruct_from_decoding(
        results,
        dataset,
        prior=prior,
        low_level=low_level,
        strength=strength,
        epochs=epochs,
        decoder_images=decoder_images,
        out_dir=folder,
        verbose=verbose,
    )
    return recon
