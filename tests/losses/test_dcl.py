"""Decoupled contrastive loss against naive transcriptions of Yeh et al.'s formulas."""

from __future__ import annotations

import math

import pytest
import torch

from brainalign.losses import DCLLoss, dcl_loss

TOL = {"atol": 1e-10, "rtol": 1e-10}


def _naive_dcl(x, y, scale, labels=None, symmetric=True, sigma=None):
    """-w_i s<x_i, y_i> + log sum_{j negative} exp(s<x_i, y_j>), averaged (and both ways)."""
    n = x.shape[0]
    labels = list(range(n)) if labels is None else labels

    def one_way(q, k):
        positives_cos = []
        for i in range(n):
            positives = [j for j in range(n) if labels[j] == labels[i]]
            positives_cos.append(sum(q[i] @ k[j] for j in positives) / len(positives))
        positives_cos = torch.stack(positives_cos)
        if sigma is None:
            weights = torch.ones(n, dtype=q.dtype)
        else:
            weights = 2 - n * torch.softmax(positives_cos / sigma, dim=0)
        terms = []
        for i in range(n):
            negatives = [j for j in range(n) if labels[j] != labels[i]]
            lse = torch.logsumexp(torch.stack([scale * q[i] @ k[j] for j in negatives]), 0)
            terms.append(-weights[i] * scale * positives_cos[i] + lse)
        return torch.stack(terms).mean()

    forward = one_way(x, y)
    return (forward + one_way(y, x)) / 2 if symmetric else forward


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("sigma", [None, 0.5])
def test_matches_naive(symmetric, chunk_size, sigma, make_pair, assert_same):
    x, y = make_pair(7, seed=1)
    scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    value = dcl_loss(x, y, scale, symmetric=symmetric, chunk_size=chunk_size, weight_sigma=sigma)
    reference = _naive_dcl(x, y, scale, symmetric=symmetric, sigma=sigma)
    assert_same(value, reference, (x, y, scale))


@pytest.mark.parametrize("sigma", [None, 0.5])
def test_multi_positive_matches_naive(sigma, make_pair, assert_same):
    labels = [4, 1, 4, 0, 1, 4, 2, 9]
    x, y = make_pair(8, seed=6)
    value = dcl_loss(x, y, 7.0, labels=torch.tensor(labels), weight_sigma=sigma, chunk_size=3)
    assert_same(value, _naive_dcl(x, y, 7.0, labels=labels, sigma=sigma), (x, y))


def test_huge_sigma_reduces_to_dcl(make_pair):
    """With sigma -> infinity every DCLW weight 2 - N softmax(<x_i, y_i> / sigma) tends to 1."""
    x, y = make_pair(6, seed=3)
    unweighted = dcl_loss(x, y, 5.0, symmetric=False)
    flat = dcl_loss(x, y, 5.0, symmetric=False, weight_sigma=1e12)
    torch.testing.assert_close(flat, unweighted, atol=1e-9, rtol=1e-9)


def test_two_samples_analytic():
    # positive removed from the denominator: loss = -s<x0,y0> + s<x0,y1> for each direction
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[0.6, 0.8], [0.8, -0.6]], dtype=torch.float64)
    value = dcl_loss(x, y, 2.0, symmetric=False)
    expected = ((-2 * 0.6 + 2 * 0.8) + (-2 * -0.6 + 2 * 0.8)) / 2
    assert float(value) == pytest.approx(expected, abs=1e-12)


def test_output(make_pair):
    x, y = make_pair(8, seed=2)
    y = torch.nn.functional.normalize(y + 0.8 * x, dim=1).detach()
    out = dcl_loss(x, y, 9.0, return_output=True, chunk_size=5)
    torch.testing.assert_close(out.align + out.uniform, out.loss.detach(), **TOL)
    logits = 9.0 * x @ y.T
    torch.testing.assert_close(
        out.accuracy_xy, (logits.argmax(1) == torch.arange(8)).double().mean()
    )
    torch.testing.assert_close(
        out.accuracy_yx, (logits.argmax(0) == torch.arange(8)).double().mean()
    )


def test_module_and_errors(make_pair):
    x, y = make_pair(5)
    module = DCLLoss(weight_sigma=0.5).double()
    assert float(module.logit_scale.detach()) == pytest.approx(math.log(10.0), rel=1e-6)
    torch.testing.assert_close(
        module(x, y), dcl_loss(x, y, module.scale(), weight_sigma=0.5), **TOL
    )
    with pytest.raises(ValueError, match="at least one negative"):
        dcl_loss(x[:1], y[:1], 1.0)
    with pytest.raises(ValueError, match="at least one negative"):
        dcl_loss(x, y, 1.0, labels=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="'weight_sigma' must be positive"):
        dcl_loss(x, y, 1.0, weight_sigma=0.0)
