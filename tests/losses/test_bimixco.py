"""MixCo / BiMixCo against transcriptions of MindEye's mixco and mixco_nce (its utils.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brainalign.losses import MixCoLoss, clip_loss, mixco, mixco_loss

TOL = {"atol": 1e-10, "rtol": 1e-10}


def _mindeye_mixco(voxels, perm, betas, select):
    """MindEye's mixco with its random draws given: mixes the selected rows in place."""
    voxels = voxels.clone()
    betas = betas.clone()
    shuffled = voxels[perm]
    shape = [-1] + [1] * (voxels.ndim - 1)
    voxels[select] = voxels[select] * betas[select].reshape(*shape) + shuffled[select] * (
        1 - betas[select]
    ).reshape(*shape)
    betas[~select] = 1
    return voxels, perm, betas, select


def _mindeye_mixco_nce(preds, targs, temp, perm=None, betas=None, bidirectional=True):
    """MindEye's mixco_nce: soft targets built by assignment, cross-entropy both ways."""
    brain_clip = preds @ targs.T / temp
    n = preds.shape[0]
    if perm is None:
        target = torch.arange(n)
        loss = F.cross_entropy(brain_clip, target)
        if bidirectional:
            loss = (loss + F.cross_entropy(brain_clip.T, target)) / 2
        return loss
    probs = torch.diag(betas)
    probs[torch.arange(n), perm] = 1 - betas
    loss = -(torch.log_softmax(brain_clip, -1) * probs).sum(-1).mean()
    if bidirectional:
        loss2 = -(torch.log_softmax(brain_clip.T, -1) * probs.T).sum(-1).mean()
        loss = (loss + loss2) / 2
    return loss


def _derangement(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return torch.from_numpy(perm)


def test_mixco_matches_mindeye_and_does_not_mutate():
    gen = torch.Generator().manual_seed(0)
    voxels = torch.randn(7, 8, 9, generator=gen, dtype=torch.float64)
    original = voxels.clone()
    result = mixco(voxels, seed=3)
    assert torch.equal(voxels, original)
    # redraw the same numbers in the documented order: permutation, coefficients, subset
    rng = np.random.default_rng(3)
    perm = torch.from_numpy(rng.permutation(7))
    betas = torch.from_numpy(rng.beta(0.15, 0.15, size=7))
    select = torch.from_numpy(rng.random(7) <= 0.5)
    expected = _mindeye_mixco(voxels, perm, betas, select)
    assert torch.equal(result.perm, expected[1])
    assert torch.equal(result.select, expected[3])
    torch.testing.assert_close(result.betas, expected[2], atol=0, rtol=0)
    torch.testing.assert_close(result.mixed, expected[0], atol=0, rtol=0)
    assert result.mixed.shape == (7, 8, 9)


def test_mixco_explicit_draws():
    x = torch.arange(12.0).reshape(4, 3)
    perm = torch.tensor([1, 0, 3, 2])
    betas = torch.tensor([0.25, 0.5, 0.9, 0.1])
    select = torch.tensor([True, False, True, False])
    result = mixco(x, perm=perm, betas=betas, select=select)
    torch.testing.assert_close(result.betas, torch.tensor([0.25, 1.0, 0.9, 1.0]))
    torch.testing.assert_close(result.mixed[0], 0.25 * x[0] + 0.75 * x[1])
    torch.testing.assert_close(result.mixed[1], x[1])
    torch.testing.assert_close(result.mixed[2], 0.9 * x[2] + 0.1 * x[3])


def test_mixco_statistics():
    result = mixco(torch.zeros(4000, 2), seed=0)
    assert abs(float(result.select.float().mean()) - 0.5) < 0.03
    mixed_betas = result.betas[result.select].numpy()
    # Beta(0.15, 0.15) piles up near 0 and 1
    assert np.mean((mixed_betas < 0.1) | (mixed_betas > 0.9)) > 0.6
    assert torch.all(result.betas[~result.select] == 1)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("n", [7, 8])
def test_loss_matches_mindeye_without_fixed_points(
    bidirectional, chunk_size, n, make_pair, assert_same
):
    x, y = make_pair(n, seed=n)
    perm = _derangement(n, seed=n)
    betas = torch.from_numpy(np.random.default_rng(n).beta(0.15, 0.15, size=n))
    betas[::3] = 1.0  # unmixed samples
    temp = 0.05
    value = mixco_loss(
        x, y, temp, perm=perm, betas=betas, bidirectional=bidirectional, chunk_size=chunk_size
    )
    reference = _mindeye_mixco_nce(x, y, temp, perm, betas, bidirectional)
    assert_same(value, reference, (x, y))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_loss_without_mixing_matches_mindeye(bidirectional, make_pair, assert_same):
    x, y = make_pair(6)
    value = mixco_loss(x, y, 0.006, bidirectional=bidirectional)
    assert_same(value, _mindeye_mixco_nce(x, y, 0.006, bidirectional=bidirectional), (x, y))


def test_fixed_points_get_full_weight(make_pair):
    """Where perm(i) = i, MindEye's assignment leaves 1 - beta_i; we give weight 1 (documented)."""
    x, y = make_pair(5)
    perm = torch.tensor([0, 2, 1, 4, 3])  # sample 0 mixed with itself
    betas = torch.tensor([0.3, 0.6, 0.6, 1.0, 0.2], dtype=torch.float64)
    value = mixco_loss(x, y, 0.1, perm=perm, betas=betas)
    # our soft targets: add the two weights
    probs = torch.diag(betas)
    probs[torch.arange(5), perm] += 1 - betas
    logits = x @ y.T / 0.1
    rows = -(torch.log_softmax(logits, 1) * probs).sum(1).mean()
    cols = -(torch.log_softmax(logits, 0) * probs).sum(0).mean()
    torch.testing.assert_close(value, (rows + cols) / 2, **TOL)
    # MindEye differs only through row 0
    mindeye = _mindeye_mixco_nce(x, y, 0.1, perm, betas)
    assert abs(float((value - mindeye).detach())) > 1e-3
    # and a self-mix with beta = 1 is a plain positive pair, exactly as the unmixed InfoNCE
    identity = torch.arange(5)
    torch.testing.assert_close(
        mixco_loss(x, y, 0.1, perm=identity, betas=torch.full((5,), 0.7, dtype=torch.float64)),
        clip_loss(x, y, 10.0),
        **TOL,
    )


def test_output_and_module(make_pair):
    x, y = make_pair(8, seed=2)
    perm = _derangement(8, 1)
    betas = torch.linspace(0.1, 1.0, 8, dtype=torch.float64)
    out = MixCoLoss(0.1)(x, y, perm, betas, return_output=True)
    torch.testing.assert_close(out.loss, _mindeye_mixco_nce(x, y, 0.1, perm, betas), **TOL)
    torch.testing.assert_close(out.align + out.uniform, out.loss.detach(), **TOL)
    assert out.accuracy_xy is not None
    assert out.accuracy_yx is not None
    assert "bidirectional=True" in repr(MixCoLoss())


def test_errors(make_pair):
    x, y = make_pair(4)
    perm = torch.tensor([1, 0, 3, 2])
    betas = torch.full((4,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="go together"):
        mixco_loss(x, y, 0.1, perm=perm)
    with pytest.raises(ValueError, match=r"permutation of 0\.\.3"):
        mixco_loss(x, y, 0.1, perm=torch.tensor([0, 0, 1, 2]), betas=betas)
    with pytest.raises(ValueError, match=r"'perm' must be a tensor of shape \(4,\)"):
        mixco_loss(x, y, 0.1, perm=perm[:3], betas=betas)
    with pytest.raises(ValueError, match=r"'betas' must lie in \[0, 1\]"):
        mixco_loss(x, y, 0.1, perm=perm, betas=betas + 1)
    with pytest.raises(ValueError, match="'temperature' must be positive"):
        mixco_loss(x, y, -0.1)
    with pytest.raises(ValueError, match="'beta' must be positive"):
        mixco(x, beta=0)
    with pytest.raises(ValueError, match="'mix_probability' must lie in"):
        mixco(x, mix_probability=1.5)
    with pytest.raises(ValueError, match="'select' must be a boolean tensor"):
        mixco(x, select=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="non-empty tensor"):
        mixco(torch.zeros(0, 3))
