"""Validation, atomic writes, devices and seeding helpers."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from brainalign._utils.atomic import atomic_path, atomic_write, file_sha256
from brainalign._utils.device import resolve_device
from brainalign._utils.optional import import_optional
from brainalign._utils.seeding import check_random_state
from brainalign._utils.validation import check_file, check_option, check_positive, suggest


def test_check_option_message_names_parameter_value_and_suggestion():
    assert check_option("metric", "euclidean", ["correlation", "euclidean"]) == "euclidean"
    with pytest.raises(ValueError, match=r"'metric' parameter.*'correlation', 'euclidean'.*'corr'"):
        check_option("metric", "corr", ["correlation", "euclidean"])
    with pytest.raises(ValueError, match="Did you mean 'correlation'"):
        check_option("metric", "corelation", ["correlation", "euclidean"])


def test_suggest_and_positive():
    assert suggest("zzz", ["a", "b"]) == ""
    assert check_positive("tr", 2.0) == 2.0
    with pytest.raises(ValueError, match="'tr' must be positive, got 0"):
        check_positive("tr", 0)
    assert check_positive("lag", 0, strict=False) == 0


def test_check_file(tmp_path):
    f = tmp_path / "betas.h5"
    f.write_bytes(b"x")
    assert check_file(f) == f
    with pytest.raises(FileNotFoundError, match=r"'fname'.*betas\.hdf5.*Did you mean 'betas\.h5'"):
        check_file(tmp_path / "betas.hdf5")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        check_file(tmp_path)


def test_atomic_write_success_and_failure(tmp_path):
    dest = tmp_path / "sub" / "cache.bin"
    with atomic_write(dest) as fh:
        fh.write(b"complete")
    assert dest.read_bytes() == b"complete"
    assert file_sha256(dest) == hashlib.sha256(b"complete").hexdigest()

    def killed_mid_write():
        with atomic_write(dest) as fh:
            fh.write(b"half")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        killed_mid_write()
    # the old complete file survives and no temporary file is left behind
    assert dest.read_bytes() == b"complete"
    assert sorted(os.listdir(dest.parent)) == ["cache.bin"]


def test_atomic_path_keeps_suffix(tmp_path):
    with atomic_path(tmp_path / "x.nii.gz", suffix=".nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz.tmp")
        tmp.write_bytes(b"1")
    assert (tmp_path / "x.nii.gz").read_bytes() == b"1"


def test_resolve_device():
    import torch

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ValueError, match="'device' parameter"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_random_state_and_optional():
    a = check_random_state(3).normal(size=4)
    np.testing.assert_array_equal(a, np.random.default_rng(3).normal(size=4))
    gen = np.random.default_rng(1)
    assert check_random_state(gen) is gen
    with pytest.raises(TypeError, match="'seed'"):
        check_random_state("7")
    with pytest.raises(ImportError, match="pip install not-a-real-pkg"):
        import_optional("not_a_real_module_xyz", pip_name="not-a-real-pkg")
