"""EmbeddingDecoder on real diffusers pipelines built from tiny random components (CPU, 2 steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainalign.reconstruct import prior as P
from brainalign.reconstruct.decoders import EmbeddingDecoder, random_kandinsky_pipeline

EMBED_DIM = 12


def _kandinsky_pipeline():
    return random_kandinsky_pipeline(EMBED_DIM)


@pytest.fixture(scope="module")
def kandinsky_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kandinsky")
    _kandinsky_pipeline().save_pretrained(folder)
    return folder


def test_kandinsky_end_to_end_from_folder(kandinsky_dir):
    decoder = EmbeddingDecoder.from_pretrained(kandinsky_dir)
    assert decoder.kind == "kandinsky"
    assert decoder.embed_dim == EMBED_DIM
    prior = P.build_prior(target_dim=EMBED_DIM, cond_dim=5, width=16, depth=1, n_heads=2)
    decoder.check_prior(prior)
    emb = P.sample(prior, torch.randn(2, 5), num_inference_steps=2)
    kw = dict(num_inference_steps=2, height=32, width=32, guidance_scale=2.0)
    images = decoder(emb, seed=0, **kw)
    assert images.shape == (2, 32, 32, 3)
    assert images.dtype == np.float32
    assert images.min() >= 0
    assert images.max() <= 1
    np.testing.assert_array_equal(images, decoder(emb, seed=0, **kw))
    assert not np.array_equal(images, decoder(emb, seed=1, **kw))


def test_kandinsky_low_level_start(kandinsky_dir, rng):
    decoder = EmbeddingDecoder.from_pretrained(kandinsky_dir)
    emb = torch.randn(2, EMBED_DIM)
    init = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    kw = dict(num_inference_steps=4, height=32, width=32, init_image=init)
    weak = decoder(emb, strength=0.5, seed=0, **kw)
    assert weak.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(weak, decoder(emb, strength=0.5, seed=0, **kw))
    # a different start image changes the result: the start is used
    assert not np.allclose(
        weak, decoder(emb, strength=0.5, seed=0, **{**kw, "init_image": 255 - init})
    )
    with pytest.raises(ValueError, match="'strength' must be in"):
        decoder(emb, strength=1.5, **kw)


def test_dimension_mismatch_names_both_dims(kandinsky_dir):
    decoder = EmbeddingDecoder.from_pretrained(kandinsky_dir)
    prior = P.build_prior(target_dim=7, width=16, depth=1, n_heads=2)
    with pytest.raises(ValueError, match=r"outputs 7-dimensional .* expects 12-dimensional"):
        decoder.check_prior(prior)
    with pytest.raises(ValueError, match=r"are 7-dimensional .* expects 12-dimensional"):
        decoder(torch.randn(2, 7), num_inference_steps=2, height=32, width=32)


def test_rejects_other_pipelines_and_folders(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    with pytest.raises(TypeError, match="takes image embeddings"):
        EmbeddingDecoder(DDPMPipeline(unet=unet, scheduler=DDPMScheduler()))
    with pytest.raises(FileNotFoundError, match=r"model_index\.json"):
        EmbeddingDecoder.from_pretrained(tmp_path)


def _unclip_pipeline(folder):
    """Stable unCLIP (img2img variant) with tiny CLIP towers and a local 2-token vocabulary."""
    import json

    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableUnCLIPImg2ImgPipeline,
        UNet2DConditionModel,
    )  # fmt: skip
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )  # fmt: skip

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8
    )
    h = EMBED_DIM
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=h, projection_dim=h, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, intermediate_size=16, patch_size=8,
    ))  # fmt: skip
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=h, projection_dim=h,
        intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
        vocab_size=len(vocab), max_position_embeddings=8,
    ))  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(32, 64),
        attention_head_dim=(2, 4), class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * h, cross_attention_dim=h, layers_per_block=1,
        use_linear_projection=True,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=[32, 32], down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4,
    )  # fmt: skip
    return StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder.eval(),
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=h),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer,
        text_encoder=text_encoder.eval(),
        unet=unet.eval(),
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        vae=vae.eval(),
    )


def test_stable_unclip_end_to_end_from_folder(tmp_path):
    _unclip_pipeline(tmp_path).save_pretrained(tmp_path / "unclip")
    decoder = EmbeddingDecoder.from_pretrained(tmp_path / "unclip")
    assert (decoder.kind, decoder.embed_dim) == ("unclip", EMBED_DIM)
    emb = torch.randn(2, EMBED_DIM, generator=torch.Generator().manual_seed(0))
    kw = dict(num_inference_steps=2, height=32, width=32)
    images = decoder(emb, seed=0, **kw)
    assert images.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(images, decoder(emb, seed=0, **kw))
    assert not np.array_equal(images, decoder(emb + 1, seed=0, **kw))  # the embedding is used
    with pytest.raises(ValueError, match="expects 12-dimensional"):
        decoder(torch.randn(2, 9), **kw)
    with pytest.raises(ValueError, match=r"needs a Kandinsky 2\.2 decoder"):
        decoder(emb, init_image=images, **kw)
