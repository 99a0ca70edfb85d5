"""``brainalign reconstruct RUN``: images from decoded brain embeddings, with MindEye's metrics.

A decoding run (:mod:`brainalign.pipelines.decode`) predicts one image embedding per test
stimulus and subject. This job turns them into pictures and scores them against the seen
images:

1. an image decoder draws an image from an embedding. Offline, it is the stand-in
   :class:`~brainalign.reconstruct.image_decoder.ConvImageDecoder` trained here on the training
   stimuli's own images and embeddings (no test image is seen), which can only make blurry
   pictures in the style of the training set — outputs say so. With a network, the same
   embeddings would go through a diffusion prior and a diffusers decoder
   (:mod:`brainalign.reconstruct.prior`, :mod:`brainalign.reconstruct.decoders`);
2. the reconstructions of each subject, and the decoder's drawing of the true embedding (the
   best this decoder can do: its ceiling), are scored with PixCorr, SSIM and 2-way
   identification on EfficientNet-Lite0 features, with bootstrap CIs over test images;
3. a grid of seen vs reconstructed images and the metrics table are written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils.atomic import atomic_write
from .._utils.progress import logger

__all__ = [
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
    """

    test_ids: np.ndarray
    seen: np.ndarray
    images: dict[str, np.ndarray]
    metrics: pd.DataFrame
    decoder_label: str
    out_dir: Path | None = None

    def summary(self) -> pd.DataFrame:
        """Metric values: rows ``source`` (subjects, then ``"mean"`` and ``"ceiling"``)."""
        wide = self.metrics.pivot_table(index="source", columns="metric", values="value")
        subjects = [s for s in wide.index if s != "ceiling"]
        mean = wide.loc[subjects].mean().rename("mean")
        return pd.concat([wide.loc[subjects], mean.to_frame().T, wide.loc[["ceiling"]]])

    def __str__(self) -> str:
        return (
            f"Reconstructions of {len(self.test_ids)} test images ({self.decoder_label})\n"
            + self.summary().round(3).to_string()
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
    image_size: int = 64,
    channels: int = 128,
    epochs: int = 30,
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
        The dataset the run decoded (its stimulus images).
    model : str
        Which decoded embeddings to draw (``"contrastive"`` or ``"ridge"``).
    image_size : int
        Side of the reconstructions, pixels (a power of two).
    channels, epochs : int
        Width and training epochs of the stand-in image decoder (about 4 s per epoch for 900
        images of 64 px on 2 CPU cores).
    n_bootstrap : int
        Bootstrap draws over test images for the CIs.
    out_dir : path-like | None
        Write ``reconstructions.png``, ``reconstruction_metrics.tsv`` and the image decoder
        there (a decoder trained on the same inputs before is loaded, not trained again).
    seed : int
        Seed of the decoder's training and of the bootstrap.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    verbose : bool
        Progress bars.

    Returns
    -------
    results : ReconstructionResults
    """
    from ..reconstruct import MINDEYE_FEATURES, compute_image_features, reconstruction_metrics
    from ..reconstruct.image_decoder import DECODER_LABEL

    if model not in results.embeddings:
        raise ValueError(
            f"'model' must be one of {sorted(results.embeddings)} (the decoded embeddings), "
            f"got {model!r}."
        )
    ids = np.asarray(results.stimulus_ids).astype(str)
    test_ids = np.asarray(results.test_ids).astype(str)
    row = {sid: i for i, sid in enumerate(ids)}
    train_ids = [sid for sid in ids if sid not in set(test_ids)]
    train_targets = results.targets[[row[s] for s in train_ids]]
    decoder = _image_decoder(
        train_targets,
        train_ids,
        dataset,
        image_size=image_size,
        channels=channels,
        epochs=epochs,
        seed=seed,
        device=device,
        cache_root=Path(out_dir) if out_dir is not None else None,
        verbose=verbose,
    )
    seen = load_stimulus_images(dataset, test_ids, size=image_size)
    # the decoder starts with a LayerNorm: the arbitrary norm of contrastive outputs is irrelevant
    images = {subject: decoder.decode(emb) for subject, emb in results.embeddings[model].items()}
    images["ceiling"] = decoder.decode(results.targets[[row[s] for s in test_ids]])
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
    metrics["decoder"] = DECODER_LABEL
    out = ReconstructionResults(test_ids, seen, images, metrics, DECODER_LABEL)
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
    """Grid: the seen images on top, each subject's reconstructions below, the ceiling last."""
    import matplotlib.pyplot as plt

    rows = ["seen", *[s for s in results.images if s != "ceiling"], "ceiling"]
    n = min(n_images, len(results.test_ids))
    fig, axes = plt.subplots(
        len(rows), n, figsize=(1.3 * n, 1.35 * len(rows)), squeeze=False, layout="constrained"
    )
    for r, name in enumerate(rows):
        imgs = results.seen if name == "seen" else results.images[name]
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(imgs[c], 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                label = {"seen": "seen", "ceiling": "from true\nembedding"}.get(name, f"sub-{name}")
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"Reconstructions ({results.decoder_label})", fontsize=8)
    return fig


def reconstruct_run(
    run: str | os.PathLike,
    *,
    out_dir: str | os.PathLike | None = None,
    epochs: int = 30,
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
        results, dataset, epochs=epochs, out_dir=folder, verbose=verbose
    )
    return recon
