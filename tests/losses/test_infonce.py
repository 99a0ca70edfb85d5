"""InfoNCE / CLIP loss against open_clip, torch's cross-entropy, naive formulas, analytic cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss as OpenClipLoss

from brainalign.losses import ClipLoss, LossOutput, clip_loss

TOL = {"atol": 1e-10, "rtol": 1e-10}


def _scale(value: float = 13.7) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("n", [1, 7, 8, 33])
def test_equals_open_clip(n, make_pair, assert_same, device):
    x, y = make_pair(n, device=device)
    scale = _scale().to(device).detach().requires_grad_()
    assert_same(clip_loss(x, y, scale), OpenClipLoss()(x, y, scale), (x, y, scale))


@pytest.mark.parametrize("n", [7, 8, 33])
@pytest.mark.parametrize("chunk_size", [1, 3, 5, 32, 64])
def test_chunked_equals_open_clip(n, chunk_size, make_pair, assert_same):
    x, y = make_pair(n, seed=n)
    scale = _scale(21.0)
    value = clip_loss(x, y, scale, chunk_size=chunk_size)
    assert_same(value, OpenClipLoss()(x, y, scale), (x, y, scale))


def test_float_scale_and_one_element_tensor(make_pair):
    x, y = make_pair(8)
    reference = OpenClipLoss()(x, y, 10.0)
    torch.testing.assert_close(clip_loss(x, y, 10.0), reference, **TOL)
    torch.testing.assert_close(clip_loss(x, y, torch.tensor([10.0])), reference, **TOL)


def test_one_directional_is_row_cross_entropy(make_pair, assert_same):
    x, y = make_pair(9)
    scale = _scale()
    reference = F.cross_entropy(scale * x @ y.T, torch.arange(9))
    for chunk_size in (None, 4):
        value = clip_loss(x, y, scale, symmetric=False, chunk_size=chunk_size)
        assert_same(value, reference, (x, y, scale))


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_label_smoothing_matches_torch(symmetric, chunk_size, make_pair, assert_same):
    x, y = make_pair(8)
    scale = _scale()
    logits = scale * x @ y.T
    target = torch.arange(8)
    reference = F.cross_entropy(logits, target, label_smoothing=0.1)
    if symmetric:
        column = F.cross_entropy(logits.T, target, label_smoothing=0.1)
        reference = (reference + column) / 2
    value = clip_loss(x, y, scale, label_smoothing=0.1, symmetric=symmetric, chunk_size=chunk_size)
    assert_same(value, reference, (x, y, scale))


def _naive_multi_positive(x, y, scale, labels, symmetric=True):
    """Supervised contrastive (L_out), cross-modal: uniform target over same-label samples."""
    logits = scale * x @ y.T
    n = len(labels)
    rows, cols = [], []
    for i in range(n):
        positives = [j for j in range(n) if labels[j] == labels[i]]
        mean_positive = sum(logits[i, j] for j in positives) / len(positives)
        rows.append(torch.logsumexp(logits[i, :], 0) - mean_positive)
    for j in range(n):
        positives = [i for i in range(n) if labels[i] == labels[j]]
        mean_positive = sum(logits[i, j] for i in positives) / len(positives)
        cols.append(torch.logsumexp(logits[:, j], 0) - mean_positive)
    row_loss = torch.stack(rows).mean()
    return (row_loss + torch.stack(cols).mean()) / 2 if symmetric else row_loss


@pytest.mark.parametrize("chunk_size", [None, 2, 5])
@pytest.mark.parametrize("symmetric", [True, False])
def test_multi_positive_matches_naive(chunk_size, symmetric, make_pair, assert_same):
    labels = torch.tensor([3, 1, 3, 0, 1, 3, 7, 0, 2])
    x, y = make_pair(9, seed=4)
    scale = _scale()
    value = clip_loss(x, y, scale, labels=labels, symmetric=symmetric, chunk_size=chunk_size)
    reference = _naive_multi_positive(x, y, scale, labels.tolist(), symmetric)
    assert_same(value, reference, (x, y, scale))


def test_distinct_labels_equal_plain_clip(make_pair):
    x, y = make_pair(7)
    labels = torch.tensor([10, 4, 2, 8, 6, 1, 0])
    torch.testing.assert_close(clip_loss(x, y, 5.0, labels=labels), clip_loss(x, y, 5.0), **TOL)


def test_aligned_orthogonal_embeddings_give_zero_loss():
    eye = torch.eye(8, 9, dtype=torch.float64)
    value = clip_loss(eye, eye.clone(), 100.0)
    # each cross-entropy is log(1 + 7 exp(-100))
    assert float(value) == pytest.approx(7 * math.exp(-100), rel=1e-6)
    assert float(value) < 1e-40


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_identical_embeddings_give_log_batch_size(chunk_size):
    row = torch.nn.functional.normalize(torch.arange(1.0, 10.0, dtype=torch.float64), dim=0)
    x = row.repeat(7, 1)
    value = clip_loss(x, x.clone(), 37.0, chunk_size=chunk_size)
    assert float(value) == pytest.approx(math.log(7), abs=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_output_terms(chunk_size, make_pair):
    x, y = make_pair(9, seed=3)
    y = (y + 0.8 * x).detach()  # some rows retrieve their pair, some do not
    y = torch.nn.functional.normalize(y, dim=1)
    out = clip_loss(x, y, 12.0, return_output=True, chunk_size=chunk_size)
    assert isinstance(out, LossOutput)
    torch.testing.assert_close(out.align + out.uniform, out.loss.detach(), **TOL)
    logits = 12.0 * x @ y.T
    target = torch.arange(9)
    torch.testing.assert_close(
        out.uniform, (logits.logsumexp(1).mean() + logits.logsumexp(0).mean()) / 2
    )
    expected_xy = (logits.argmax(1) == target).double().mean()
    expected_yx = (logits.argmax(0) == target).double().mean()
    assert 0 < float(expected_xy) < 1
    torch.testing.assert_close(out.accuracy_xy, expected_xy)
    torch.testing.assert_close(out.accuracy_yx, expected_yx)
    assert not out.align.requires_grad
    assert out.loss.requires_grad


def test_output_accuracy_with_labels(make_pair):
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    x, y = make_pair(7, seed=9)
    out = clip_loss(x, y, 9.0, labels=labels, return_output=True, symmetric=False)
    logits = 9.0 * x @ y.T
    expected = (labels[logits.argmax(1)] == labels).double().mean()
    torch.testing.assert_close(out.accuracy_xy, expected)
    assert out.accuracy_yx is None


def test_float32_is_close_to_open_clip(make_pair):
    x, y = make_pair(64, d=32, dtype=torch.float32)
    scale = torch.tensor(30.0, requires_grad=True)
    value = clip_loss(x, y, scale, chunk_size=24)
    reference = OpenClipLoss()(x, y, scale)
    torch.testing.assert_close(value, reference, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(value, (x, y, scale))
    ref_grads = torch.autograd.grad(reference, (x, y, scale))
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-4)


def test_does_not_modify_inputs(make_pair):
    x, y = make_pair(6)
    x0, y0 = x.detach().clone(), y.detach().clone()
    clip_loss(x, y, 5.0, chunk_size=4).backward()
    assert torch.equal(x.detach(), x0)
    assert torch.equal(y.detach(), y0)


def test_frozen_targets_get_no_gradient(make_pair):
    x, y = make_pair(6)
    y = y.detach()
    clip_loss(x, y, 5.0, chunk_size=4).backward()
    assert x.grad is not None
    assert y.grad is None


def test_errors(make_pair):
    x, y = make_pair(6)
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(x, y[:5], 1.0)
    with pytest.raises(ValueError, match=r"shape \(n_samples, n_features\)"):
        clip_loss(x[0], y[0], 1.0)
    with pytest.raises(TypeError, match="floating-point"):
        clip_loss(torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.long), 1.0)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        clip_loss(x.detach().numpy(), y, 1.0)
    with pytest.raises(ValueError, match="dtype and device"):
        clip_loss(x, y.float(), 1.0)
    with pytest.raises(ValueError, match="empty batch"):
        clip_loss(x[:0], y[:0], 1.0)
    with pytest.raises(ValueError, match="one-element"):
        clip_loss(x, y, torch.ones(2))
    with pytest.raises(TypeError, match="'logit_scale' must be a number"):
        clip_loss(x, y, "10")
    with pytest.raises(ValueError, match="label_smoothing"):
        clip_loss(x, y, 1.0, label_smoothing=1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        clip_loss(x, y, 1.0, chunk_size=0)
    with pytest.raises(ValueError, match=r"'labels' must have shape \(6,\)"):
        clip_loss(x, y, 1.0, labels=torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="integers"):
        clip_loss(x, y, 1.0, labels=torch.zeros(6))
    with pytest.raises(ValueError, match="not initialised"):
        clip_loss(x, y, 1.0, distributed=True)
    with pytest.raises(TypeError, match="True or False"):
        clip_loss(x, y, 1.0, distributed="yes")


def test_module_matches_open_clip_with_learnable_scale(make_pair):
    x, y = make_pair(8)
    module = ClipLoss().double()
    assert float(module.logit_scale.detach()) == pytest.approx(math.log(1 / 0.07))
    value = module(x, y)
    log_scale = module.logit_scale.detach().clone().requires_grad_()
    reference = OpenClipLoss()(x, y, log_scale.exp())
    torch.testing.assert_close(value, reference, **TOL)
    value.backward()
    reference.backward()
    torch.testing.assert_close(module.logit_scale.grad, log_scale.grad, **TOL)


def test_module_clamps_scale_like_clip(make_pair):
    x, y = make_pair(5)
    module = ClipLoss(init_logit_scale=math.log(400.0)).double()
    value = module(x, y)
    assert float(module.logit_scale.detach()) == pytest.approx(math.log(100.0))
    torch.testing.assert_close(value, clip_loss(x, y, 100.0), **TOL)
    value.backward()
    assert module.logit_scale.grad is not None
    assert float(module.logit_scale.grad) != 0.0
    free = ClipLoss(init_logit_scale=math.log(400.0), max_logit_scale=None).double()
    torch.testing.assert_close(free(x, y), clip_loss(x, y, free.scale()), **TOL)
    assert float(free.scale().detach()) == pytest.approx(400.0)


def test_module_fixed_scale_is_a_buffer(make_pair):
    module = ClipLoss(init_logit_scale=math.log(20.0), learnable=False)
    assert list(module.parameters()) == []
    assert "logit_scale" in module.state_dict()
    x, y = make_pair(5, dtype=torch.float32)
    out = module(x, y, return_output=True)
    torch.testing.assert_close(out.loss, clip_loss(x, y, 20.0), atol=1e-5, rtol=1e-5)
    assert "symmetric=True" in repr(module)
    with pytest.raises(ValueError, match="max_logit_scale"):
        ClipLoss(max_logit_scale=0)
    with pytest.raises(ValueError, match="init_logit_scale"):
        ClipLoss(init_logit_scale=float("nan"))
