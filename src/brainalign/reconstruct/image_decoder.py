"""The offline default decoder: image embeddings → images, trained on the dataset's own images.

A real reconstruction pipeline turns predicted CLIP embeddings into images with a pretrained
diffusers decoder (:mod:`.decoders`: Stable unCLIP, Kandinsky 2.2). Those weights cannot be had
offline, so the demo uses this small stand-in instead: a convolutional decoder (a linear map to a
4 × 4 grid, then upsampling convolution blocks) trained in a few CPU minutes to draw each
training image from its embedding. It can only produce blurry images in the style of the
training set; its outputs are labelled as such wherever they are shown, and the metrics of
reconstructions made with it are not comparable with published ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brainalign._utils.atomic import atomic_path, atomic_write
from brainalign._utils.device import resolve_device
from brainalign._utils.progress import progress
from brainalign._utils.validation import check_file, check_positive
from brainalign.reconstruct.metrics import as_image_tensor

__all__ = [
    "DECODER_LABEL",
    "ConvImageDecoder",
    "ImageDecoderConfig",
    "load_image_decoder",
    "save_image_decoder",
    "train_image_decoder",
]

#: How outputs of this decoder are labelled in tables and figures.
DECODER_LABEL = "offline stand-in decoder trained on the dataset's own training images"

WEIGHTS_NAME = "image_decoder.safetensors"
CONFIG_NAME = "image_decoder_config.json"


@dataclass(frozen=True)
class ImageDecoderConfig:
    """Shape of a :class:`ConvImageDecoder`.

    Attributes
    ----------
    embedding_dim : int
        Width of the input embeddings.
    image_size : int
        Side of the output images, pixels (a power of two, at least 8).
    channels : int
        Channels of the 4 × 4 grid; halved (down to 16) at each upsampling.
    """

    embedding_dim: int
    image_size: int = 64
    channels: int = 128

    def __post_init__(self) -> None:
        check_positive("embedding_dim", self.embedding_dim)
        check_positive("channels", self.channels)
        size = self.image_size
        if size < 8 or size & (size - 1):
            raise ValueError(f"'image_size' must be a power of two >= 8, got {size}.")


class ConvImageDecoder(nn.Module):
    """Embedding ``(batch, embedding_dim)`` → image ``(batch, 3, size, size)`` in [0, 1]."""

    def __init__(self, config: ImageDecoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = nn.Sequential(
            nn.LayerNorm(config.embedding_dim), nn.Linear(config.embedding_dim, c * 16)
        )
        blocks: list[nn.Module] = []
        for _ in range(int(math.log2(config.image_size // 4))):
            out = max(c // 2, 16)
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c, out, 3, padding=1),
                nn.GroupNorm(min(8, out), out),
                nn.SiLU(),
                nn.Conv2d(out, out, 3, padding=1),
                nn.GroupNorm(min(8, out), out),
                nn.SiLU(),
            ]
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(c, 3, 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = self.stem(embeddings).reshape(len(embeddings), self.config.channels, 4, 4)
        return torch.sigmoid(self.head(self.blocks(x)))

    @torch.no_grad()
    def decode(self, embeddings: Any, *, batch_size: int = 64) -> np.ndarray:
        """Images of ``embeddings`` ``(n, embedding_dim)`` as float32 ``(n, size, size, 3)``."""
        param = next(self.parameters())
        emb = torch.as_tensor(np.asarray(embeddings), dtype=param.dtype, device=param.device)
        if emb.ndim != 2 or emb.shape[1] != self.config.embedding_dim:
            raise ValueError(
                f"'embeddings' must be (n, {self.config.embedding_dim}), got {tuple(emb.shape)}."
            )
        was_training = self.training
        self.eval()
        out = torch.cat([self(emb[i : i + batch_size]) for i in range(0, len(emb), batch_size)])
        self.train(was_training)
        return out.permute(0, 2, 3, 1).float().cpu().numpy()


def train_image_decoder(
    embeddings: Any,
    images: Any,
    *,
    image_size: int = 64,
    channels: int = 128,
    epochs: int = 60,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    device: Any = "auto",
    verbose: bool = True,
) -> ConvImageDecoder:
    """Train a :class:`ConvImageDecoder` to draw each image from its embedding.

    Parameters
    ----------
    embeddings : array-like, shape (n_images, embedding_dim)
        Target embeddings of the training images (the space brain encoders predict into).
    images : array-like, shape (n_images, H, W, 3) or (n_images, 3, H, W)
        The images, uint8 or float in [0, 1]; resized to ``image_size``.
    image_size, channels : int
        See :class:`ImageDecoderConfig`.
    epochs, batch_size, lr : int, int, float
        AdamW with a cosine learning-rate decay; mean squared pixel error.
    seed : int
        Seed of the initial weights and the batch order (same seed, same weights on one device).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    verbose : bool
        Progress bar over epochs.

    Returns
    -------
    decoder : ConvImageDecoder
        In evaluation mode, on ``device``.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        check_positive(name, value)
    dev = resolve_device(device)
    emb = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    target = as_image_tensor(images, "images", device="cpu").float()
    if target.shape[-2:] != (image_size, image_size):
        target = torch.nn.functional.interpolate(
            target, size=(image_size, image_size), mode="bilinear", antialias=True
        ).clamp(0, 1)
    if emb.ndim != 2 or len(emb) != len(target):
        raise ValueError(
            f"'embeddings' must be (n_images, dim) with one row per image: got {tuple(emb.shape)} "
            f"for {len(target)} images."
        )
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    decoder = ConvImageDecoder(ImageDecoderConfig(emb.shape[1], image_size, channels)).to(dev)
    optimiser = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(emb) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1
    )
    decoder.train()
    bar = progress(range(epochs), desc="image decoder", verbose=verbose)
    for _ in bar:
        order = torch.randperm(len(emb), generator=generator)
        for i in range(0, len(emb), batch_size):
            idx = order[i : i + batch_size]
            pred = decoder(emb[idx].to(dev))
            loss = torch.nn.functional.mse_loss(pred, target[idx].to(dev))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
        if verbose and hasattr(bar, "set_postfix"):
            bar.set_postfix(mse=f"{loss.item():.4f}")
    return decoder.eval()


def save_image_decoder(decoder: ConvImageDecoder, folder: str | os.PathLike) -> Path:
    """Write ``image_decoder.safetensors`` and ``image_decoder_config.json`` atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "class": "ConvImageDecoder"})
    with atomic_write(folder / CONFIG_NAME, "w") as fh:
        json.dump(
            {
                "class": "ConvImageDecoder",
                "label": DECODER_LABEL,
                **dataclasses.asdict(decoder.config),
            },
            fh,
            indent=2,
        )
    return folder


def load_image_decoder(folder: str | os.PathLike, *, device: Any = "cpu") -> ConvImageDecoder:
    """Load a decoder written by :func:`save_image_decoder` (weights checked key by key)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path = check_file(folder / CONFIG_NAME, "folder", what="image decoder config file")
    weights = check_file(folder / WEIGHTS_NAME, "folder", what="image decoder weights file")
    with open(cfg_path, encoding="utf-8") as fh:
        raw = json.load(fh)
    raw.pop("class", None)
    raw.pop("label", None)
    decoder = ConvImageDecoder(ImageDecoderConfig(**raw))
    state = load_file(str(weights))
    missing, unexpected = decoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"The weights in {str(weights)!r} do not match {str(cfg_path)!r}: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}."
        )
    return decoder.to(resolve_device(device)).eval()
