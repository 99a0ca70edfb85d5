"""Diffusion prior: shapes, determinism, save/load, and learning a toy linear mapping."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from brainalign.reconstruct import prior as P


def _tiny(**kw):
    base = dict(target_dim=6, cond_dim=5, width=32, depth=2, n_heads=4, num_train_timesteps=50)
    base.update(kw)
    return P.build_prior(seed=0, **base)


def test_shapes_pooled_and_tokens():
    prior = _tiny()
    out = P.sample(prior, torch.randn(3, 5), num_inference_steps=4)
    assert out.shape == (3, 6)
    tok = _tiny(n_target_tokens=7, n_cond_tokens=2)
    out = P.sample(tok, torch.randn(3, 2, 5), num_inference_steps=4, guidance_scale=2.0)
    assert out.shape == (3, 7, 6)
    loss = P.prior_loss(tok, torch.randn(4, 2, 5), torch.randn(4, 7, 6))
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match=r"'brain_emb' must have shape \(n, 2, 5\)"):
        P.sample(tok, torch.randn(3, 5))


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_sampling_is_deterministic_under_a_seed(scheduler):
    prior = _tiny()
    cond = torch.randn(4, 5)
    kw = dict(num_inference_steps=5, scheduler=scheduler, guidance_scale=1.5)
    a = P.sample(prior, cond, seed=3, **kw)
    b = P.sample(prior, cond, seed=3, **kw)
    c = P.sample(prior, cond, seed=4, **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    g = torch.Generator().manual_seed(3)
    torch.testing.assert_close(P.sample(prior, cond, generator=g, **kw), a, rtol=0, atol=0)


def test_loss_is_reproducible_with_a_generator():
    prior = _tiny()
    cond, tgt = torch.randn(8, 5), torch.randn(8, 6)
    l1 = P.prior_loss(prior, cond, tgt, generator=torch.Generator().manual_seed(1))
    l2 = P.prior_loss(prior, cond, tgt, generator=torch.Generator().manual_seed(1))
    assert l1.item() == l2.item()


def test_save_load_round_trip(tmp_path):
    prior = _tiny(n_target_tokens=3, target_scale=2.5)
    P.save_prior(prior, tmp_path / "p")
    assert (tmp_path / "p" / "prior.safetensors").is_file()
    loaded = P.load_prior(tmp_path / "p")
    assert loaded.config == prior.config
    for (k, v), (k2, v2) in zip(prior.state_dict().items(), loaded.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(v, v2, rtol=0, atol=0)
    cond = torch.randn(2, 5)
    torch.testing.assert_close(
        P.sample(prior, cond, num_inference_steps=3), P.sample(loaded, cond, num_inference_steps=3)
    )
    with pytest.raises(FileNotFoundError, match="prior config"):
        P.load_prior(tmp_path / "missing")


def test_learns_a_linear_mapping():
    rng = np.random.default_rng(0)
    n, d_in, d_out = 96, 5, 6
    w = rng.normal(size=(d_in, d_out)) / np.sqrt(d_in)
    cond = torch.tensor(rng.normal(size=(n, d_in)), dtype=torch.float32)
    target = cond @ torch.tensor(w, dtype=torch.float32)
    prior = _tiny(cond_drop_prob=0.1)
    before = P.sample(prior, cond[:16], num_inference_steps=10, scheduler="ddim")
    t0 = time.perf_counter()
    losses = P.train_prior(prior, cond, target, n_steps=300, batch_size=32, lr=2e-3, seed=0)
    assert losses[-50:].mean() < 0.5 * losses[:20].mean()
    after = P.sample(prior, cond[:16], num_inference_steps=10, scheduler="ddim")
    err_before = (before - target[:16]).pow(2).mean() / target.pow(2).mean()
    err_after = (after - target[:16]).pow(2).mean() / target.pow(2).mean()
    assert err_after < 0.3 * err_before
    assert err_after < 0.3
    assert time.perf_counter() - t0 < 30
