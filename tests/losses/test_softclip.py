"""SoftCLIP against a transcription of MindEye's definition (soft_clip_loss in its utils.py)."""

from __future__ import annotations

import pytest
import torch

from brainalign.losses import SoftClipLoss, soft_clip_loss

TOL = {"atol": 1e-10, "rtol": 1e-10}


def _mindeye_soft_clip(preds, targs, temp, target_temp=None):
    """MindEye: cross-entropy of brain logits against softmax(target-target / temp), both ways."""
    target_temp = temp if target_temp is None else target_temp
    clip_clip = targs @ targs.T / target_temp
    brain_clip = preds @ targs.T / temp
    forward = -(torch.log_softmax(brain_clip, -1) * torch.softmax(clip_clip, -1)).sum(-1).mean()
    backward = (
        -(torch.log_softmax(brain_clip.T, -1) * torch.softmax(clip_clip.T, -1)).sum(-1).mean()
    )
    return (forward + backward) / 2


@pytest.mark.parametrize("n", [1, 7, 8, 33])
@pytest.mark.parametrize("temp", [0.125, 0.006])
def test_matches_mindeye(n, temp, make_pair, assert_same):
    x, y = make_pair(n, seed=n)
    assert_same(soft_clip_loss(x, y, temp), _mindeye_soft_clip(x, y, temp), (x, y))


def test_separate_target_temperature(make_pair, assert_same):
    x, y = make_pair(9)
    value = soft_clip_loss(x, y, 0.1, target_temperature=0.3)
    assert_same(value, _mindeye_soft_clip(x, y, 0.1, 0.3), (x, y))


def test_tensor_temperature_gets_gradient(make_pair, assert_same):
    x, y = make_pair(6)
    temp = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    assert_same(soft_clip_loss(x, y, temp), _mindeye_soft_clip(x, y, temp), (x, y, temp))


def test_orthogonal_targets_reduce_to_clip(make_pair):
    # orthogonal targets with a small temperature: the soft targets are one-hot
    from brainalign.losses import clip_loss

    x, _ = make_pair(6)
    y = torch.eye(6, 9, dtype=torch.float64)
    torch.testing.assert_close(soft_clip_loss(x, y, 0.01), clip_loss(x, y, 100.0), **TOL)


def test_output_and_module(make_pair):
    x, y = make_pair(9, seed=1)
    y = torch.nn.functional.normalize(y + 0.8 * x, dim=1).detach()
    out = SoftClipLoss(temperature=0.05)(x, y, return_output=True)
    torch.testing.assert_close(out.loss, _mindeye_soft_clip(x, y, 0.05), **TOL)
    torch.testing.assert_close(out.align + out.uniform, out.loss.detach(), **TOL)
    logits = x @ y.T
    torch.testing.assert_close(
        out.accuracy_xy, (logits.argmax(1) == torch.arange(9)).double().mean()
    )
    torch.testing.assert_close(
        out.accuracy_yx, (logits.argmax(0) == torch.arange(9)).double().mean()
    )
    assert "temperature=0.05" in repr(SoftClipLoss(0.05))


def test_errors(make_pair):
    x, y = make_pair(4)
    with pytest.raises(ValueError, match="'temperature' must be positive"):
        soft_clip_loss(x, y, 0.0)
    with pytest.raises(ValueError, match="'target_temperature' must be positive"):
        soft_clip_loss(x, y, 0.1, target_temperature=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        soft_clip_loss(x, y[:3])
