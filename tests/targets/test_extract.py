"""The extraction engine and the command-line entry point ``extract_features``."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from brainalign.targets.extract import _guess_modality, compute_features, extract_features
from brainalign.targets.pretrained import VisionExtractor, load_vision_model


@pytest.fixture
def image_folder(tmp_path, small_images):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(small_images):
        Image.fromarray(img).save(folder / f"im{i:02d}.png")
    return folder


def test_folder_to_hdf5(image_folder, counting_net, preprocess_16, tmp_path):
    out = tmp_path / "feats.h5"
    feats = extract_features(
        counting_net,
        ["conv1", "conv2"],
        image_folder,
        out,
        pooling="grid",
        grid_size=2,
        cache_dir=tmp_path / "cache",
        device="cpu",
        verbose=False,
        batch_size=4,
    )
    assert feats.keys() == ["conv1", "conv2"]
    assert feats["conv1"].shape == (9, 7 * 4)
    assert feats["conv2"].shape == (9, 9 * 4)
    assert len(feats) == 9
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["conv2"][()], feats["conv2"])
        ids = [s.decode() for s in h5["stimulus_ids"][()]]
        assert ids == [f"im{i:02d}.png" for i in range(9)]
        assert h5.attrs["weights_sha256"] == feats.spec["weights_sha256"]
        assert '"grid_size": 2' in h5["conv1"].attrs["pooling"]
    # the module was given without a transform: the generic ImageNet preprocessing is keyed
    assert "Normalize(mean=(0.485" in feats.spec["preprocessing"]
    with pytest.raises(KeyError, match=r"No output 'conv3'"):
        feats["conv3"]


def test_streamed_pca_equals_incremental_pca_on_the_same_chunks(
    counting_net, preprocess_16, small_images
):
    from sklearn.decomposition import IncrementalPCA

    ext = VisionExtractor(load_vision_model(counting_net, transform=preprocess_16))
    kw = dict(cache=False, device="cpu", verbose=False, batch_size=4)
    raw = compute_features(ext, small_images, ["conv2"], pooling="none", **kw)["conv2"]
    pca = compute_features(ext, small_images, ["conv2"], pooling="pca", n_components=3, **kw)
    flat = raw.reshape(9, -1).astype(np.float64)
    ref = IncrementalPCA(n_components=3)
    ref.partial_fit(flat[:5])  # batches of 4; fitted once 2k = 6 rows are buffered, keeping k
    ref.partial_fit(flat[5:])
    np.testing.assert_allclose(pca["conv2"], ref.transform(flat), atol=1e-4)
    assert counting_net.n_forward == 3 + 2 * 3  # pca: a fitting pass and a writing pass


def test_user_module_with_its_transform(counting_net, preprocess_16, small_images, tmp_path):
    feats = extract_features(
        counting_net,
        ["head"],
        small_images,
        transform=preprocess_16,
        cache_dir=tmp_path,
        device="cpu",
        verbose=False,
    )
    x = torch.stack([preprocess_16(Image.fromarray(i)) for i in small_images])
    with torch.inference_mode():
        np.testing.assert_allclose(feats["head"], counting_net(x).numpy(), atol=1e-6)
    assert feats.spec["preprocessing"].endswith("to_tensor_16")


def test_float16_and_random_projection(counting_net, preprocess_16, small_images, tmp_path):
    ext = VisionExtractor(load_vision_model(counting_net, transform=preprocess_16))
    kw = dict(cache_dir=tmp_path, device="cpu", verbose=False)
    half = compute_features(ext, small_images, ["conv2"], dtype="float16", **kw)["conv2"]
    full = compute_features(ext, small_images, ["conv2"], **kw)["conv2"]
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, full, rtol=1e-3, atol=1e-3)
    proj = compute_features(
        ext, small_images, ["conv2"], pooling="random", n_components=11, seed=2, **kw
    )["conv2"]
    assert proj.shape == (9, 11)
    with pytest.raises(ValueError, match=r"Invalid value for the 'dtype'"):
        compute_features(ext, small_images, ["conv2"], dtype="int8", **kw)


def test_device_results_agree(counting_net, preprocess_16, small_images, device):
    ext = VisionExtractor(load_vision_model(counting_net, transform=preprocess_16))
    on_dev = compute_features(
        ext, small_images, ["conv2", "head"], cache=False, device=device, verbose=False
    )
    x = torch.stack([preprocess_16(Image.fromarray(i)) for i in small_images])
    with torch.inference_mode():
        ref = counting_net.cpu()(x).numpy()
    np.testing.assert_allclose(on_dev["head"], ref, atol=1e-5)


def test_guess_modality(tmp_path, image_folder):
    assert _guess_modality(image_folder) == "image"
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.wav", np.zeros(100, np.float32), 16000)
    assert _guess_modality(audio) == "audio"
    assert _guess_modality(["a cat", "a dog"]) == "text"
    assert _guess_modality([np.zeros(100)]) == "audio"
    assert _guess_modality([np.zeros((8, 8, 3))]) == "image"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    sf.write(mixed / "a.wav", np.zeros(100, np.float32), 16000)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(mixed / "b.png")
    with pytest.raises(ValueError, match=r"holds images or audio .* pass 'modality'"):
        _guess_modality(mixed)
    with pytest.raises(FileNotFoundError, match=r"do not exist: .*no_such_folder"):
        _guess_modality(tmp_path / "no_such_folder")


def test_bad_arguments_are_named(image_folder, tmp_path):
    with pytest.raises(ValueError, match=r"'stimuli' is required"):
        extract_features("efficientnet_lite0")
    with pytest.raises(ValueError, match=r"Unknown model 'resnet-18'. Did you mean 'resnet18'"):
        extract_features("resnet-18", stimuli=image_folder, cache=False, verbose=False)
    with pytest.raises(ValueError, match=r"'blocks.9' does not exist .* Did you mean"):
        extract_features(
            "efficientnet_lite0", ["blocks.9"], image_folder, cache=False, verbose=False
        )
    with pytest.raises(ValueError, match=r"takes images, but the stimuli are text"):
        extract_features("efficientnet_lite0", None, ["a cat"], cache=False, verbose=False)
    with pytest.raises(ValueError, match=r"'batch_size' must be positive"):
        extract_features("efficientnet_lite0", None, image_folder, batch_size=0, verbose=False)
