"""Alignment and uniformity against Wang & Isola's published definitions."""

from __future__ import annotations

import pytest
import torch

from brainalign.losses import (
    AlignUniformLoss,
    align_uniform_loss,
    alignment_loss,
    uniformity_loss,
)

TOL = {"atol": 1e-10, "rtol": 1e-10}


def _wang_isola_align(x, y, alpha=2.0):
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def _wang_isola_uniform(x, t=2.0):
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


@pytest.mark.parametrize("alpha", [2.0, 1.0, 3.0])
def test_alignment_matches_reference(alpha, make_pair, assert_same):
    x, y = make_pair(7)
    assert_same(alignment_loss(x, y, alpha=alpha), _wang_isola_align(x, y, alpha), (x, y))


@pytest.mark.parametrize("n", [2, 7, 9])
@pytest.mark.parametrize("t", [2.0, 0.5])
def test_uniformity_matches_reference(n, t, make_pair, assert_same):
    x, _ = make_pair(n, seed=n)
    assert_same(uniformity_loss(x, t=t), _wang_isola_uniform(x, t), (x,))


def test_uniformity_analytic_cases():
    same = torch.ones(5, 3, dtype=torch.float64) / 3**0.5
    assert float(uniformity_loss(same)) == pytest.approx(0.0, abs=1e-12)
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert float(uniformity_loss(antipodal, t=2.0)) == pytest.approx(-8.0, abs=1e-12)


def test_combined_loss_and_module(make_pair, assert_same):
    x, y = make_pair(8)
    expected = (
        0.5 * _wang_isola_align(x, y) + 2.0 * (_wang_isola_uniform(x) + _wang_isola_uniform(y)) / 2
    )
    value = align_uniform_loss(x, y, align_weight=0.5, uniform_weight=2.0)
    assert_same(value, expected, (x, y))
    out = AlignUniformLoss(align_weight=0.5, uniform_weight=2.0)(x, y, return_output=True)
    torch.testing.assert_close(out.loss, expected, **TOL)
    torch.testing.assert_close(out.align, _wang_isola_align(x, y).detach(), **TOL)
    assert out.accuracy_xy is None


def test_errors(make_pair):
    x, y = make_pair(4)
    with pytest.raises(ValueError, match="at least 2 samples"):
        uniformity_loss(x[:1])
    with pytest.raises(ValueError, match="'t' must be positive"):
        uniformity_loss(x, t=0.0)
    with pytest.raises(ValueError, match="'alpha' must be positive"):
        alignment_loss(x, y, alpha=-1.0)
    with pytest.raises(ValueError, match="n_samples, n_features"):
        uniformity_loss(x[0])
