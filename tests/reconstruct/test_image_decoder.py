"""The offline stand-in decoder: learns to draw images from their embeddings; save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainalign.reconstruct.image_decoder import (
    DECODER_LABEL,
    ConvImageDecoder,
    ImageDecoderConfig,
    load_image_decoder,
    save_image_decoder,
    train_image_decoder,
)
from brainalign.reconstruct.metrics import pixcorr


def _toy(rng, n=24, size=16):
    """Images that are smooth functions of a 4-d code; the embedding is a linear map of it."""
    codes = rng.normal(size=(n, 4))
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.stack(
        [
            np.stack(
                [
                    0.5 + 0.4 * np.tanh(c[0] * xx + c[1] * yy),
                    0.5 + 0.4 * np.tanh(c[2] * xx - c[1] * yy),
                    0.5 + 0.4 * np.tanh(c[3] * (xx - yy)),
                ],
                axis=-1,
            )
            for c in codes
        ]
    ).astype(np.float32)
    embeddings = codes @ rng.normal(size=(4, 12))
    return embeddings.astype(np.float32), images


def test_training_learns_to_draw_the_images(rng):
    emb, images = _toy(rng)
    decoder = train_image_decoder(
        emb, images, image_size=16, channels=32, epochs=150, batch_size=8, verbose=False
    )
    out = decoder.decode(emb)
    assert out.shape == (24, 16, 16, 3)
    assert out.min() >= 0
    assert out.max() <= 1
    mse = float(((out - images) ** 2).mean())
    assert mse < 0.25 * float(images.var())  # far better than drawing the mean image
    assert pixcorr(out, images) > 0.8


def test_same_seed_same_weights_and_save_load_round_trip(rng, tmp_path):
    emb, images = _toy(rng, n=8)
    kw = {"image_size": 8, "channels": 16, "epochs": 3, "batch_size": 4, "verbose": False}
    a = train_image_decoder(emb, images, seed=5, **kw)
    b = train_image_decoder(emb, images, seed=5, **kw)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    save_image_decoder(a, tmp_path / "dec")
    loaded = load_image_decoder(tmp_path / "dec")
    np.testing.assert_array_equal(loaded.decode(emb), a.decode(emb))
    assert DECODER_LABEL in (tmp_path / "dec" / "image_decoder_config.json").read_text()


def test_bad_inputs(rng, tmp_path):
    with pytest.raises(ValueError, match="power of two"):
        ImageDecoderConfig(embedding_dim=4, image_size=48)
    decoder = ConvImageDecoder(ImageDecoderConfig(embedding_dim=4, image_size=8, channels=16))
    with pytest.raises(ValueError, match=r"must be \(n, 4\)"):
        decoder.decode(np.zeros((2, 5)))
    emb, images = _toy(rng, n=6)
    with pytest.raises(ValueError, match="one row per image"):
        train_image_decoder(emb[:5], images, verbose=False)
    with pytest.raises(FileNotFoundError, match="image decoder config file"):
        load_image_decoder(tmp_path)
