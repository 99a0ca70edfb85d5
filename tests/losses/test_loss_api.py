"""The public names of brainalign.losses resolve lazily, without importing torch up front."""

from __future__ import annotations

import subprocess
import sys

import pytest

import brainalign.losses as losses


def test_import_is_cheap():
    code = "import sys, brainalign.losses; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_names_resolve():
    for name in losses.__all__:
        assert getattr(losses, name) is not None
    assert dir(losses) == losses.__all__
    assert callable(losses.mixco)
    assert callable(losses.clip_loss)
    with pytest.raises(AttributeError, match="no attribute 'clip'"):
        _ = losses.clip
