"""Condensed/square conversions against scipy's squareform, and the lazy package import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.distance import squareform

import brainalign.rsa as rsa
from brainalign.rsa.condensed import condensed_index, n_stimuli_from_pairs, pair_indices


def test_importing_rsa_is_cheap_and_every_lazy_name_resolves():
    code = "import sys, brainalign.rsa\nprint('torch' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]
    for name in rsa.__all__:
        assert getattr(rsa, name) is not None
    assert dir(rsa) == rsa.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rsa.nope  # noqa: B018


@pytest.mark.parametrize("n", [2, 3, 7, 13])
def test_to_condensed_and_back_match_squareform(rng, n):
    v = rng.random(n * (n - 1) // 2)
    sq = squareform(v)
    np.testing.assert_array_equal(rsa.to_square(v), sq)
    np.testing.assert_array_equal(rsa.to_condensed(sq), v)
    batch = rng.random((4, v.size))
    squares = rsa.to_square(batch)
    assert squares.shape == (4, n, n)
    for k in range(4):
        np.testing.assert_array_equal(squares[k], squareform(batch[k]))
    np.testing.assert_array_equal(rsa.to_condensed(squares), batch)


def test_pair_indices_and_condensed_index_follow_squareform_order():
    n = 7
    i, j = pair_indices(n)
    sq = squareform(np.arange(n * (n - 1) // 2, dtype=float))
    np.testing.assert_array_equal(sq[i.numpy(), j.numpy()], np.arange(i.numel()))
    # either order of the two stimuli gives the same position
    np.testing.assert_array_equal(condensed_index(j, i, n).numpy(), np.arange(i.numel()))


def test_torch_in_torch_out(device):
    v = torch.rand(3, 21, dtype=torch.float64, device=device)
    sq = rsa.to_square(v)
    assert isinstance(sq, torch.Tensor)
    assert sq.device.type == device
    assert torch.equal(rsa.to_condensed(sq), v)
    assert torch.equal(sq, sq.transpose(1, 2))
    assert torch.equal(
        torch.diagonal(sq, dim1=1, dim2=2), torch.zeros(3, 7, device=device, dtype=torch.float64)
    )


def test_bad_inputs_name_the_problem(rng):
    with pytest.raises(ValueError, match="20 dissimilarities per RDM, which is not n"):
        rsa.to_square(rng.random(20))
    with pytest.raises(ValueError, match=r"must be condensed vectors.*\(2, 3, 3\)"):
        rsa.to_square(rng.random((2, 3, 3)))
    with pytest.raises(ValueError, match="must be square matrices"):
        rsa.to_condensed(rng.random((3, 4)))
    asym = squareform(rng.random(21))
    asym[0, 1] += 1
    with pytest.raises(ValueError, match=r"not symmetric.*check=False"):
        rsa.to_condensed(asym)
    assert rsa.to_condensed(asym, check=False)[0] == asym[0, 1]
    with pytest.raises(ValueError, match="'data' has 4 dissimilarities"):
        n_stimuli_from_pairs(4, "data")
