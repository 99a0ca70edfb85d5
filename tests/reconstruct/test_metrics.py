"""Reconstruction metrics against references: scikit-image SSIM, NumPy/MindEye loops, scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import correlation as scipy_correlation
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from brainalign.evaluate import two_way_identification as evaluate_two_way
from brainalign.reconstruct import metrics


@pytest.fixture
def images(rng):
    """Two sets of 5 RGB images of 23 x 29 pixels (axes of different sizes), uint8."""
    true = rng.integers(0, 256, size=(5, 23, 29, 3), dtype=np.uint8)
    noise = rng.normal(0, 40, size=true.shape)
    pred = np.clip(true + noise, 0, 255).astype(np.uint8)
    return pred, true


def _mindeye_two_way(pred, true):
    """MindEye's two_way_identification (np.corrcoef, r < congruent, sum over axis 0)."""
    n = len(true)
    r = np.corrcoef(true, pred)[:n, n:]
    congruents = np.diag(r)
    success = r < congruents
    return np.sum(success, 0) / (n - 1)


def _naive_two_way(pred, true):
    n = len(true)
    out = np.zeros(n)
    for i in range(n):
        same = np.corrcoef(pred[i], true[i])[0, 1]
        for j in range(n):
            if j != i:
                out[i] += same > np.corrcoef(pred[i], true[j])[0, 1]
    return out / (n - 1)


def test_ssim_equals_skimage(images):
    pred, true = images
    ours = metrics.ssim(pred, true, resolution=None, reduction="none", device="cpu")
    p = pred.astype(np.float64) / 255
    t = true.astype(np.float64) / 255
    ref = [
        structural_similarity(
            rgb2gray(a), rgb2gray(b), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0,
        )
        for a, b in zip(p, t)
    ]  # fmt: skip
    np.testing.assert_allclose(ours, ref, atol=1e-9, rtol=0)
    assert metrics.ssim(pred, true, resolution=None) == pytest.approx(np.mean(ref), abs=1e-9)


def test_ssim_channels_first_float_and_tensor(images, device):
    pred, true = images
    ref = metrics.ssim(pred, true, resolution=None, reduction="none", device="cpu")
    p = torch.from_numpy(pred).permute(0, 3, 1, 2).float().div(255).to(device)
    t = torch.from_numpy(true).permute(0, 3, 1, 2).float().div(255).to(device)
    ours = metrics.ssim(p, t, resolution=None, reduction="none", chunk_size=2)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_ssim_identical_is_one(images):
    _, true = images
    assert metrics.ssim(true, true, resolution=None) == pytest.approx(1.0, abs=1e-12)


def test_pixcorr_equals_numpy(images):
    pred, true = images
    ours = metrics.pixcorr(pred, true, resolution=None, reduction="none", device="cpu")
    ref = [
        np.corrcoef(a.transpose(2, 0, 1).ravel() / 255, b.transpose(2, 0, 1).ravel() / 255)[0, 1]
        for a, b in zip(pred, true)
    ]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_pixcorr_resize_matches_torchvision(images):
    from torchvision.transforms import InterpolationMode, Resize

    pred, true = images
    resize = Resize(31, interpolation=InterpolationMode.BILINEAR, antialias=True)
    p = resize(torch.from_numpy(pred).permute(0, 3, 1, 2).double() / 255)
    t = resize(torch.from_numpy(true).permute(0, 3, 1, 2).double() / 255)
    ref = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(p.numpy(), t.numpy())]
    ours = metrics.pixcorr(pred, true, resolution=31, reduction="none", device="cpu")
    np.testing.assert_allclose(ours, ref, atol=1e-10)


@pytest.mark.parametrize("n", [2, 7, 11])
def test_two_way_equals_naive_and_mindeye(rng, n):
    true = rng.normal(size=(n, 13))
    pred = true + rng.normal(scale=1.5, size=true.shape)
    ours = metrics.two_way_identification(pred, true, reduction="none", chunk_size=3, device="cpu")
    np.testing.assert_allclose(ours, _naive_two_way(pred, true), atol=0)
    np.testing.assert_allclose(ours, _mindeye_two_way(pred, true), atol=0)
    # the evaluate module's general version, with MindEye's tie rule
    res = evaluate_two_way(pred, true, ties="pessimistic", n_bootstrap=1)
    assert metrics.two_way_identification(pred, true) == pytest.approx(
        res["brain_to_stimulus"]["two_way"], abs=1e-12
    )


def test_two_way_flattens_and_follows_device(rng, device):
    true = torch.from_numpy(rng.normal(size=(6, 3, 4, 5))).to(device)
    pred = true + 0.1
    assert metrics.two_way_identification(pred, true) == 1.0
    with pytest.raises(ValueError, match="same network and layer"):
        metrics.two_way_identification(pred[:, :2], true)


def test_embedding_distance_equals_scipy(rng):
    true = rng.normal(size=(7, 11))
    pred = true + rng.normal(size=true.shape)
    ours = metrics.embedding_distance(pred, true, reduction="none", device="cpu")
    np.testing.assert_allclose(ours, [scipy_correlation(a, b) for a, b in zip(pred, true)])


def test_image_validation(images):
    pred, true = images
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        metrics.pixcorr(pred.astype(float), true, resolution=None)
    with pytest.raises(ValueError, match="4 images but 'images_true' has 5"):
        metrics.pixcorr(pred[:4], true, resolution=None)
    with pytest.raises(ValueError, match=r"\(n_images, height, width, 3\)"):
        metrics.ssim(pred[..., 0], true, resolution=None)
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        metrics.ssim(pred[:, :8, :8], true[:, :8, :8], resolution=None)


def test_feature_two_way_efficientnet_lite0(images):
    pred, true = images
    ours = metrics.feature_two_way(pred, true, device="cpu")
    feats_p = metrics.compute_image_features(pred, layer="global_pool", device="cpu")
    feats_t = metrics.compute_image_features(true, layer="global_pool", device="cpu")
    assert feats_p.shape == (5, 1280)
    assert ours == pytest.approx(_mindeye_two_way(feats_p, feats_t).mean())
    assert metrics.feature_two_way(true, true, device="cpu") == 1.0


def test_reconstruction_metrics_table(images, rng):
    pred, true = images
    brain = rng.normal(size=(5, 8))
    table = metrics.reconstruction_metrics(
        pred, true, resolution=None, brain_embeddings=brain,
        recon_embeddings=brain + 0.01 * rng.normal(size=brain.shape),
        n_bootstrap=200, device="cpu",
    )  # fmt: skip
    assert list(table["metric"]) == [
        "pixcorr", "ssim", "efficientnet_lite0_2way", "brain_to_recon_top1", "recon_to_brain_top1",
    ]  # fmt: skip
    row = table.set_index("metric").loc["ssim"]
    assert row["value"] == pytest.approx(metrics.ssim(pred, true, resolution=None))
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert table.set_index("metric").loc["brain_to_recon_top1", "value"] == 1.0
    with pytest.raises(ValueError, match="Allowed values"):
        metrics.reconstruction_metrics(pred, true, features=["alexnet"])
    # features of the seen images computed once give the same table
    seen = {"efficientnet_lite0": metrics.compute_image_features(true, layer="global_pool")}
    again = metrics.reconstruction_metrics(
        pred, true, resolution=None, n_bootstrap=200, device="cpu", true_features=seen
    )
    np.testing.assert_allclose(again["value"], table["value"][:3])


def test_package_import_is_lazy():
    import subprocess
    import sys

    code = (
        "import sys, brainalign.reconstruct as r; "
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules; "
        "assert all(hasattr(r, n) for n in r.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
