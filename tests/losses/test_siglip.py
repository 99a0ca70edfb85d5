"""SigLIP loss against open_clip's SigLipLoss and a naive multi-positive transcription."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import SigLipLoss as OpenSigLipLoss

from brainalign.losses import SigLipLoss, siglip_loss

TOL = {"atol": 1e-10, "rtol": 1e-10}


def _params(scale: float = 13.7, bias: float = -3.1) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(scale, dtype=torch.float64, requires_grad=True),
        torch.tensor(bias, dtype=torch.float64, requires_grad=True),
    )


@pytest.mark.parametrize("n", [1, 7, 8, 33])
@pytest.mark.parametrize("chunk_size", [None, 1, 3, 5, 64])
def test_equals_open_clip(n, chunk_size, make_pair, assert_same):
    x, y = make_pair(n, seed=n)
    scale, bias = _params()
    value = siglip_loss(x, y, scale, bias, chunk_size=chunk_size)
    reference = OpenSigLipLoss()(x, y, scale, bias)
    assert_same(value, reference, (x, y, scale, bias))


def test_initial_parameters_match_siglip(make_pair):
    x, y = make_pair(6)
    module = SigLipLoss().double()
    assert float(module.logit_scale.detach().exp()) == pytest.approx(10.0)
    assert float(module.logit_bias.detach()) == -10.0
    value = module(x, y)
    log_scale = module.logit_scale.detach().clone().requires_grad_()
    bias = module.logit_bias.detach().clone().requires_grad_()
    reference = OpenSigLipLoss()(x, y, log_scale.exp(), bias)
    torch.testing.assert_close(value, reference, **TOL)
    value.backward()
    reference.backward()
    torch.testing.assert_close(module.logit_scale.grad, log_scale.grad, **TOL)
    torch.testing.assert_close(module.logit_bias.grad, bias.grad, **TOL)


def _naive_multi_positive(x, y, scale, bias, labels):
    n = len(labels)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if labels[i] == labels[j] else -1.0
            total = total - F.logsigmoid(z * (scale * x[i] @ y[j] + bias))
    return total / n


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_multi_positive_matches_naive(chunk_size, make_pair, assert_same):
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 5])
    x, y = make_pair(7, seed=2)
    scale, bias = _params(8.0, -2.0)
    value = siglip_loss(x, y, scale, bias, labels=labels, chunk_size=chunk_size)
    reference = _naive_multi_positive(x, y, scale, bias, labels.tolist())
    assert_same(value, reference, (x, y, scale, bias))


def test_large_logits_stay_exact(make_pair):
    # softplus must not switch to a linear approximation (torch's threshold=20 would)
    x, y = make_pair(8)
    scale, bias = _params(60.0, 5.0)
    value = siglip_loss(x, y, scale, bias, chunk_size=3)
    reference = OpenSigLipLoss()(x, y, scale, bias)
    torch.testing.assert_close(value, reference, **TOL)


def test_output_terms(make_pair):
    x, y = make_pair(9, seed=5)
    y = torch.nn.functional.normalize(y + 0.8 * x, dim=1).detach()
    out = siglip_loss(x, y, 10.0, -1.0, return_output=True)
    torch.testing.assert_close(out.align + out.uniform, out.loss.detach(), **TOL)
    logits = 10.0 * x @ y.T - 1.0
    torch.testing.assert_close(out.align, -logits.diagonal().mean())
    expected = (logits.argmax(1) == torch.arange(9)).double().mean()
    assert 0 < float(expected) < 1
    torch.testing.assert_close(out.accuracy_xy, expected)
    assert out.accuracy_yx is None


def test_module_buffers_and_errors(make_pair):
    module = SigLipLoss(learnable=False, init_logit_scale=math.log(5.0), init_logit_bias=-1.0)
    assert list(module.parameters()) == []
    x, y = make_pair(5, dtype=torch.float32)
    torch.testing.assert_close(module(x, y), siglip_loss(x, y, 5.0, -1.0), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        siglip_loss(x, y[:4], 1.0, 0.0)
    with pytest.raises(TypeError, match="'logit_bias' must be a number"):
        siglip_loss(x, y, 1.0, None)
    with pytest.raises(ValueError, match="not initialised"):
        siglip_loss(x, y, 1.0, 0.0, distributed=True)
