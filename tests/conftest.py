"""Shared pytest configuration: seeds, devices, headless plotting, quiet MNE."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Plots render off-screen, and MNE stays quiet, in every test.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MNE_LOGGING_LEVEL", "ERROR")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when no CUDA device is present."""
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed."""
    return np.random.default_rng(0)


def _devices() -> list:
    devices = ["cpu"]
    if _cuda_available():
        devices.append(pytest.param("cuda", marks=pytest.mark.gpu))
    return devices


@pytest.fixture(params=_devices())
def device(request: pytest.FixtureRequest) -> str:
    """Run a test on the CPU and, when present, on CUDA (CEBRA's ``parametrize_device``)."""
    return request.param
