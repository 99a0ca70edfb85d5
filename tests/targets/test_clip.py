"""CLIP through open_clip: our embeddings and tokens against open_clip's own encoders."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from brainalign._utils.errors import CorruptFileError
from brainalign.targets.clip import (
    compute_clip_image_embeddings,
    compute_clip_image_tokens,
    compute_clip_text_embeddings,
    load_clip,
)
from brainalign.targets.extract import extract_features

TEXTS = ["a photo of a cat", "a cup of coffee", "an astronaut", "a rocket", "x"]


@pytest.fixture
def saved_clip(tiny_clip_cfg, tmp_path):
    """A tiny CLIP built by open_clip itself (pretrained=None), saved to a local file."""
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": tiny_clip_cfg}))
    torch.manual_seed(11)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    model.eval()
    torch.save(model.state_dict(), tmp_path / "tiny_clip.pt")
    return model, preprocess, tmp_path / "tiny_clip.pt"


def _pixels(preprocess, images):
    return torch.stack([preprocess(Image.fromarray(i)) for i in images])


def test_weights_from_file_equal_open_clip(saved_clip, tiny_clip_cfg):
    model, _, path = saved_clip
    clip = load_clip(tiny_clip_cfg, path, seed=0)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), clip.model.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(v, v2, rtol=0, atol=0)
    assert clip.weights == str(path)
    assert load_clip(tiny_clip_cfg, path, seed=5).weights_sha256 == clip.weights_sha256
    assert load_clip(tiny_clip_cfg, "random", seed=5).weights_sha256 != clip.weights_sha256


def test_registered_config_and_folder(saved_clip, tiny_clip_cfg, tmp_path):
    _model, _, path = saved_clip
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "brainalign-tiny-vit.json").write_text(json.dumps(tiny_clip_cfg))
    open_clip.add_model_config(tmp_path / "reg" / "brainalign-tiny-vit.json")
    by_name = load_clip("brainalign-tiny-vit", path)
    folder = tmp_path / "cfg"  # open_clip_config.json + a checkpoint: a local-dir model
    (folder / "open_clip_model.pth").write_bytes(path.read_bytes())
    by_folder = load_clip(f"local-dir:{folder}")
    assert (
        by_name.weights_sha256
        == by_folder.weights_sha256
        == load_clip(tiny_clip_cfg, path).weights_sha256
    )
    assert load_clip("brainalign-tiny-vit", folder).name == f"local-dir:{folder}"


def test_image_embeddings_equal_encode_image(saved_clip, tiny_clip_cfg, natural_images, device):
    model, preprocess, path = saved_clip
    clip = load_clip(tiny_clip_cfg, path)
    ours = compute_clip_image_embeddings(natural_images, clip, device=device, batch_size=3)
    with torch.inference_mode():
        ref = model.encode_image(_pixels(preprocess, natural_images)).numpy()
    assert ours.shape == (7, 16)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    unit = compute_clip_image_embeddings(natural_images, clip, normalize=True, device=device)
    np.testing.assert_allclose(unit, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-6)


def test_image_tokens_are_ln_post_and_projection_of_the_last_block(
    saved_clip, tiny_clip_cfg, natural_images, device
):
    model, preprocess, path = saved_clip
    clip = load_clip(tiny_clip_cfg, path)
    tokens = compute_clip_image_tokens(natural_images, clip, device=device, batch_size=4)
    assert tokens.shape == (7, 1 + (32 // 8) ** 2, 16)  # class token + 16 patches, embed 16
    visual = model.visual
    with torch.inference_mode():
        x = _pixels(preprocess, natural_images)
        hidden = visual.transformer(visual._embeds(x))  # (7, 17, 32)
        ref = (visual.ln_post(hidden) @ visual.proj).numpy()
        pooled = model.encode_image(x).numpy()
    np.testing.assert_allclose(tokens, ref, atol=1e-6)
    np.testing.assert_allclose(tokens[:, 0], pooled, atol=1e-6)
    scaled = compute_clip_image_tokens(natural_images, clip, normalize="cls", device=device)
    np.testing.assert_allclose(
        scaled, ref / np.linalg.norm(ref[:, :1], axis=-1, keepdims=True), atol=1e-6
    )


def test_text_embeddings_equal_encode_text(saved_clip, tiny_clip_cfg, device):
    model, _, path = saved_clip
    clip = load_clip(tiny_clip_cfg, path)
    ours = compute_clip_text_embeddings(TEXTS, clip, device=device, batch_size=2)
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=16)
    with torch.inference_mode():
        ref = model.encode_text(tokenizer(TEXTS)).numpy()
    assert ours.shape == (5, 16)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_hooked_tower_layer_and_cache(saved_clip, tiny_clip_cfg, natural_images, tmp_path):
    model, preprocess, path = saved_clip
    layer = "visual.transformer.resblocks.0"
    kw = dict(
        weights=path, cache_dir=tmp_path / "cache", pooling="none", device="cpu", verbose=False
    )
    feats = extract_features(tiny_clip_cfg, ["image", layer, "image_tokens"], natural_images, **kw)
    block = model.visual.transformer.resblocks[0]
    with torch.inference_mode():
        x = _pixels(preprocess, natural_images)
        ref = block(model.visual._embeds(x)).numpy()
        pooled = model.encode_image(x).numpy()
    np.testing.assert_allclose(feats[layer], ref, atol=1e-6)
    np.testing.assert_allclose(feats["image"], pooled, atol=1e-6)
    assert feats[layer].shape == (7, 17, 32)
    assert feats["image_tokens"].shape == (7, 17, 16)
    again = extract_features(tiny_clip_cfg, ["image", layer], natural_images, **kw)
    assert all(again.from_cache.values())
    text = extract_features(tiny_clip_cfg, None, TEXTS, **kw)
    assert text.keys() == ["text"]
    assert text["text"].shape == (5, 16)


def test_bad_names_weights_and_outputs(saved_clip, tiny_clip_cfg, tmp_path):
    _, _, path = saved_clip
    with pytest.raises(ValueError, match=r"Unknown CLIP model 'ViT-B-33'. Did you mean 'ViT-B-32'"):
        load_clip("ViT-B-33", "random")
    with pytest.raises(
        ValueError, match=r"tags for this model: .*'openai'.* Did you mean 'openai'"
    ):
        load_clip("ViT-B-32", "openaii")
    with pytest.raises(ValueError, match=r"'weights' parameter of CLIP model 'ViT-B-32': None"):
        load_clip("ViT-B-32")
    with pytest.raises(FileNotFoundError, match=r"none.pt"):
        load_clip(tiny_clip_cfg, tmp_path / "none.pt")
    with pytest.raises(ValueError, match="lacks \\['text_cfg'\\]"):
        load_clip({"embed_dim": 4, "vision_cfg": {}})
    wider = {**tiny_clip_cfg, "vision_cfg": {**tiny_clip_cfg["vision_cfg"], "width": 48}}
    with pytest.raises(
        ValueError,
        match=r"shape-mismatched keys: visual.class_embedding "
        r"\(file \(32,\), model \(48,\)\)",
    ):
        load_clip(wider, path)
    deeper = {**tiny_clip_cfg, "vision_cfg": {**tiny_clip_cfg["vision_cfg"], "layers": 3}}
    with pytest.raises(ValueError, match=r"missing keys: visual.transformer.resblocks.2"):
        load_clip(deeper, path)
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match=r"bad.pt"):
        load_clip(tiny_clip_cfg, tmp_path / "bad.pt")
    clip = load_clip(tiny_clip_cfg, path)
    with pytest.raises(ValueError, match=r"Invalid CLIP image output 'tokens'"):
        extract_features(
            tiny_clip_cfg,
            ["tokens"],
            [np.zeros((8, 8, 3), np.uint8)],
            weights=path,
            cache=False,
            verbose=False,
        )
    with pytest.raises(ValueError, match=r"'visual.transformer.resblocks.7' does not exist"):
        extract_features(
            tiny_clip_cfg,
            ["visual.transformer.resblocks.7"],
            [np.zeros((8, 8, 3), np.uint8)],
            weights=path,
            cache=False,
            verbose=False,
        )
    assert clip.name.startswith("config:")


def test_tokens_need_a_vision_transformer_tower():
    resnet_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8},
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 24,
            "heads": 2,
            "layers": 1,
        },
    }
    clip = load_clip(resnet_cfg, "random")
    with pytest.raises(
        ValueError,
        match=r"needs an open_clip VisionTransformer image tower; this model has ModifiedResNet",
    ):
        compute_clip_image_tokens([np.zeros((8, 8, 3), np.uint8)], clip, device="cpu")


@pytest.mark.network
def test_pretrained_tag_from_the_hub(natural_images, tmp_path):
    """Real OpenAI ViT-B/32 weights: the cat photo matches 'a photo of a cat' best."""
    clip = load_clip("ViT-B-32", "openai", cache_dir=tmp_path)
    image = compute_clip_image_embeddings(natural_images[:1], clip, normalize=True)
    texts = compute_clip_text_embeddings(
        ["a photo of a cat", "a photo of a rocket", "a cup of coffee"], clip, normalize=True
    )
    assert (image @ texts.T).argmax() == 0
    tokens = compute_clip_image_tokens(natural_images[:1], clip)
    assert tokens.shape == (1, 50, 512)
