"""MoCHi hard negative mixing against a loop transcription of Kalantidis et al.'s recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainalign.losses import HardNegativeLoss, clip_loss, hard_negative_loss, hard_negative_mixing

TOL = {"atol": 1e-10, "rtol": 1e-10}


def _naive_mochi(q, k, labels, n_hard, n_mix, n_query_mix, max_query_weight, rng):
    """Per query: sort its negatives, keep the hardest, mix pairs of them and the query with one."""
    n = q.shape[0]
    pairs = rng.integers(0, n_hard, size=(n, n_mix, 2))
    alpha = rng.random((n, n_mix, 1))
    picks = rng.integers(0, n_hard, size=(n, n_query_mix))
    beta = rng.random((n, n_query_mix, 1)) * max_query_weight
    out = []
    for i in range(n):
        negatives = [j for j in range(n) if labels[j] != labels[i]]
        order = sorted(negatives, key=lambda j: -float(q[i] @ k[j]))
        hardest = [k[j] for j in order[:n_hard]]
        synthetic = []
        for m in range(n_mix):
            a, b = pairs[i, m]
            h = float(alpha[i, m, 0]) * hardest[a] + (1 - float(alpha[i, m, 0])) * hardest[b]
            synthetic.append(h / h.norm())
        for m in range(n_query_mix):
            w = float(beta[i, m, 0])
            h = w * q[i] + (1 - w) * hardest[picks[i, m]]
            synthetic.append(h / h.norm())
        out.append(torch.stack(synthetic))
    return torch.stack(out)


def _naive_loss(x, y, scale, labels, synthetic_xy, synthetic_yx):
    def one_way(q, k, synthetic):
        n = q.shape[0]
        terms = []
        for i in range(n):
            real = [scale * q[i] @ k[j] for j in range(n)]
            fake = [scale * q[i] @ h for h in synthetic[i]]
            positives = [real[j] for j in range(n) if labels[j] == labels[i]]
            lse = torch.logsumexp(torch.stack(real + fake), 0)
            terms.append(lse - sum(positives) / len(positives))
        return torch.stack(terms).mean()

    return (one_way(x, y, synthetic_xy) + one_way(y, x, synthetic_yx)) / 2


@pytest.mark.parametrize("labels", [None, [0, 1, 0, 2, 3, 1, 4, 5, 6]])
def test_mixing_matches_naive(labels, make_pair):
    x, y = make_pair(9, seed=2)
    lab = list(range(9)) if labels is None else labels
    tensor_labels = None if labels is None else torch.tensor(labels)
    synthetic = hard_negative_mixing(
        x, y, labels=tensor_labels, n_hard=4, n_mix=5, n_query_mix=3, seed=11
    )
    expected = _naive_mochi(x.detach(), y.detach(), lab, 4, 5, 3, 0.5, np.random.default_rng(11))
    assert synthetic.shape == (9, 8, 9)
    assert not synthetic.requires_grad
    torch.testing.assert_close(synthetic, expected, **TOL)
    torch.testing.assert_close(synthetic.norm(dim=-1), torch.ones(9, 8, dtype=torch.float64))


@pytest.mark.parametrize("labels", [None, [0, 1, 0, 2, 3, 1, 4, 5, 6]])
def test_loss_matches_naive(labels, make_pair, assert_same):
    x, y = make_pair(9, seed=5)
    lab = list(range(9)) if labels is None else labels
    tensor_labels = None if labels is None else torch.tensor(labels)
    scale = torch.tensor(8.0, dtype=torch.float64, requires_grad=True)
    value = hard_negative_loss(
        x, y, scale, labels=tensor_labels, n_hard=3, n_mix=4, n_query_mix=2, seed=7
    )
    rng = np.random.default_rng(7)
    synthetic_xy = _naive_mochi(x.detach(), y.detach(), lab, 3, 4, 2, 0.5, rng)
    synthetic_yx = _naive_mochi(y.detach(), x.detach(), lab, 3, 4, 2, 0.5, rng)
    reference = _naive_loss(x, y, scale, lab, synthetic_xy, synthetic_yx)
    assert_same(value, reference, (x, y, scale))


def test_hard_negatives_raise_the_loss(make_pair):
    x, y = (t.detach() for t in make_pair(12, seed=1))
    plain = clip_loss(x, y, 10.0)
    without = hard_negative_loss(x, y, 10.0, n_hard=4, n_mix=0, n_query_mix=0)
    torch.testing.assert_close(without, plain, **TOL)
    assert float(hard_negative_loss(x, y, 10.0, n_hard=4, seed=0)) > float(plain)


def test_output_and_module(make_pair):
    x, y = make_pair(10, seed=3)
    module = HardNegativeLoss(n_hard=3, n_mix=2, n_query_mix=2, seed=0).double()
    out = module(x, y, return_output=True)
    torch.testing.assert_close(out.align + out.uniform, out.loss.detach(), **TOL)
    logits = x @ y.T
    torch.testing.assert_close(
        out.accuracy_xy, (logits.argmax(1) == torch.arange(10)).double().mean()
    )
    torch.testing.assert_close(
        out.accuracy_yx, (logits.argmax(0) == torch.arange(10)).double().mean()
    )
    one_way = hard_negative_loss(x, y, 5.0, n_hard=3, symmetric=False, return_output=True)
    assert one_way.accuracy_yx is None
    assert "n_hard=3" in repr(module)


def test_errors(make_pair):
    x, y = make_pair(5)
    with pytest.raises(ValueError, match="exceeds the number of negatives"):
        hard_negative_mixing(x, y, n_hard=5)
    with pytest.raises(ValueError, match=r"at most 0\.5"):
        hard_negative_mixing(x, y, n_hard=2, max_query_weight=0.8)
    with pytest.raises(ValueError, match=r"at most 0\.5"):
        hard_negative_loss(x, y, 1.0, n_hard=2, max_query_weight=0.8)
    with pytest.raises(ValueError, match="'n_mix' must be a non-negative int"):
        hard_negative_mixing(x, y, n_mix=-1)
    with pytest.raises(ValueError, match="'n_hard' must be at least 1"):
        hard_negative_mixing(x, y, n_hard=0)
