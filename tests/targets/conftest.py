"""Fixtures of the targets tests: tiny networks, a tiny CLIP configuration, real images."""

from __future__ import annotations

import numpy as np
import pytest

# A tiny open_clip ViT: width 32, 2 layers, 32 px images in 8 px patches, text context 16,
# embedding 16. Axes differ in size (17 tokens, 16 dims, 32 width) so a swapped axis fails.
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 24, "heads": 2, "layers": 2},
}


@pytest.fixture
def tiny_clip_cfg() -> dict:
    """A copy of the tiny CLIP configuration."""
    import copy

    return copy.deepcopy(TINY_CLIP)


@pytest.fixture(scope="session")
def natural_images() -> list[np.ndarray]:
    """Seven real images from scikit-image, uint8 (height, width, 3), of different sizes."""
    from skimage import data

    imgs = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    imgs += [
        np.stack([data.camera()] * 3, -1),
        data.hubble_deep_field(),
        data.immunohistochemistry(),
    ]
    return [np.ascontiguousarray(i) for i in imgs]


class CountingNet:
    """Factory of a small CNN that counts its forward calls (defined lazily: torch is heavy)."""

    @staticmethod
    def make(seed: int = 0):
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv1 = nn.Conv2d(3, 7, 3, padding=1)
                self.act = nn.ReLU()
                self.conv2 = nn.Conv2d(7, 9, 3, stride=2)
                self.head = nn.Linear(9, 5)
                self.n_forward = 0

            def forward(self, x):
                self.n_forward += 1
                x = self.conv2(self.act(self.conv1(x)))
                return self.head(x.mean(dim=(2, 3)))

        torch.manual_seed(seed)
        return Net().eval()


def to_tensor_16(img):
    """Preprocessing of the tiny net: resize to 16 × 16, scale to [0, 1], channels first."""
    import torch

    arr = np.asarray(img.resize((16, 16)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def to_tensor_12(img):
    """Another preprocessing (12 × 12), to check that the cache key follows it."""
    import torch

    arr = np.asarray(img.resize((12, 12)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@pytest.fixture
def counting_net():
    """A small CNN (conv1 → act → conv2 → head) with a ``n_forward`` counter."""
    return CountingNet.make()


@pytest.fixture
def make_net():
    """``make_net(seed)`` builds a fresh counting CNN."""
    return CountingNet.make


@pytest.fixture
def preprocess_16():
    return to_tensor_16


@pytest.fixture
def preprocess_12():
    return to_tensor_12


@pytest.fixture
def small_images(rng) -> list[np.ndarray]:
    """Nine small random uint8 RGB images of different sizes."""
    return [rng.integers(0, 256, size=(20 + i, 24 + 2 * i, 3), dtype=np.uint8) for i in range(9)]
