"""fit with a diffusion prior trained jointly (MindEye): both losses fall, the prior is saved in
the checkpoints and resumes exactly, ``prior_weight=0`` changes nothing, sampling is seeded."""

from __future__ import annotations

import pytest
import torch
from tests.train.train_testing import (
    TARGET_DIM,
    assert_equal_states,
    assert_logged_terms_add_up,
    crash_at_step,
    dataset,
    metrics_records,
    tiny_model,
)

from brainalign.reconstruct import build_joint_prior, load_joint_prior, sample
from brainalign.train import TrainConfig, fit, latest_checkpoint, load_checkpoint

# a small prior: 1 layer of width 32, 20 diffusion steps
PRIOR = {"width": 32, "depth": 1, "n_heads": 4, "num_train_timesteps": 20}


def _config(tmp_path, name, **changes):
    values = dict(
        epochs=3, batch_size=16, lr=3e-3, warmup=0.2, seed=3, checkpoint_every=3,
        out_dir=str(tmp_path / name), prior_weight=2.0, prior_kwargs=PRIOR,
    )  # fmt: skip
    return TrainConfig(**{**values, **changes})


def _fit(config, train, val=None, *, model_seed=0, **kwargs):
    prior = build_joint_prior(config, train.target_shape) if config.prior_weight else None
    return fit(tiny_model(seed=model_seed), train, val, config, prior=prior, verbose=False,
               **kwargs)  # fmt: skip


def test_joint_training_decreases_both_losses(tmp_path):
    train = dataset()
    config = _config(tmp_path, "joint", epochs=8, checkpoint_every=None, warmup=0.1)
    result = _fit(config, train)
    first, last = result.history[0], result.history[-1]
    assert last["train_contrastive_loss"] < 0.9 * first["train_contrastive_loss"]
    assert last["train_prior_loss"] < 0.8 * first["train_prior_loss"]
    # every step record carries both losses next to the total that was minimised
    assert result.n_steps == 40
    assert_logged_terms_add_up(result, config, {"prior": 2.0})
    assert result.prior is not None
    assert not result.prior.training


def test_the_prior_is_conditioned_on_the_backbone():
    """The prior's loss reaches the encoder through the backbone, not through the projector."""
    from brainalign.train.loop import _Objective, build_loss

    train = dataset()
    config = TrainConfig(prior_weight=1.0, prior_kwargs=PRIOR)
    model = tiny_model(dropout=0.0)
    prior = build_joint_prior(config, train.target_shape)
    objective = _Objective(model, build_loss(config), False, prior, config.prior_weight)
    batch = train.batch(torch.arange(16))
    rows = torch.arange(16)
    out = objective(batch.x, batch.subject, batch.target, batch.stimulus, prior_seed=0,
                    prior_rows=rows, prior_n_rows=16)  # fmt: skip
    assert torch.equal(out.loss, out.contrastive + out.prior)
    out.prior.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is None for name, g in grads.items() if name.startswith("projector"))
    assert grads["head.weight"].abs().sum() > 0
    # the parameters: the model's, the loss's, then the prior's
    names = [name for name, _ in objective.named_parameters()]
    assert names[-len(list(prior.parameters())) :] == [
        f"prior.{n}" for n, _ in prior.named_parameters()
    ]


def test_the_prior_is_in_the_checkpoint_and_reloads_equal(tmp_path):
    train, val = dataset(), dataset(n_stimuli=12, seed=1)
    config = _config(tmp_path, "ckpt", restore_best=True)
    result = _fit(config, train, val)
    state = load_checkpoint(latest_checkpoint(config.out_dir))
    assert state["prior_config"]["target_dim"] == TARGET_DIM
    assert state["prior_config"]["cond_dim"] == TARGET_DIM
    assert state["prior_config"]["width"] == 32
    # restore_best: the result holds the best epoch's prior, as the checkpoint's best_prior
    loaded = load_joint_prior(latest_checkpoint(config.out_dir))
    assert_equal_states(result.prior.state_dict(), loaded.state_dict())
    assert_equal_states(state["best_prior"], loaded.state_dict())
    last = load_joint_prior(state, best=False)
    assert_equal_states(state["prior"], last.state_dict())
    assert not loaded.training


@pytest.mark.parametrize("loss", ["mindeye", "clip"])
def test_resume_mid_epoch_equals_uninterrupted(tmp_path, loss):
    train, val = dataset(), dataset(n_stimuli=12, seed=1)
    changes = {"loss": loss, "restore_best": True}
    if loss == "mindeye":  # BiMixCo for the first epoch (the prior sees mixed inputs), EMA
        changes.update(loss_kwargs={"mix_fraction": 0.5}, ema_decay=0.9)
    full_config = _config(tmp_path, "full", **changes)
    full = _fit(full_config, train, val)
    assert full.n_steps == 15

    config = _config(tmp_path, "cut", **changes)

    with pytest.raises(KeyboardInterrupt):
        _fit(config, train, val, callbacks=[crash_at_step(8)])
    assert latest_checkpoint(config.out_dir).name == "step-00000006"
    # a prior built with another seed: its weights come from the checkpoint
    prior = build_joint_prior(config, train.target_shape, seed=99)
    resumed = fit(tiny_model(seed=7), train, val, config, prior=prior, resume=True,
                  verbose=False)  # fmt: skip

    assert resumed.n_steps == 15
    assert_equal_states(full.model.state_dict(), resumed.model.state_dict())
    assert_equal_states(full.prior.state_dict(), resumed.prior.state_dict())
    if full.ema is not None:
        assert_equal_states(full.ema.state_dict(), resumed.ema.state_dict())
    assert resumed.history == full.history
    assert metrics_records(config) == metrics_records(full_config)


def test_prior_weight_zero_changes_nothing(tmp_path):
    """Without a prior the run is the one the loop did before the feature.

    (Checked when the feature was added: the weights and histories of the two cases of
    test_train_loop equal, bit for bit, those of the loop before it.) Here: prior settings
    without a weight are inert, and nothing about a prior reaches the checkpoint or the log.
    """
    train, val = dataset(), dataset(n_stimuli=12, seed=1)
    plain = TrainConfig(epochs=2, batch_size=16, lr=3e-3, seed=3, out_dir=str(tmp_path / "a"))
    inert = plain.replace(prior_weight=0.0, prior_kwargs=PRIOR, out_dir=str(tmp_path / "b"))
    a = fit(tiny_model(), train, val, plain, verbose=False)
    b = fit(tiny_model(), train, val, inert, verbose=False)
    assert_equal_states(a.model.state_dict(), b.model.state_dict())
    assert a.history == b.history
    assert b.prior is None
    state = load_checkpoint(latest_checkpoint(inert.out_dir))
    assert not {"prior", "prior_config", "best_prior"} & set(state)
    assert not {"contrastive_loss_sum", "prior_loss_sum"} & set(state["trainer"])
    assert load_joint_prior(state) is None
    records = metrics_records(inert)
    assert not any("prior_loss" in r or "train_prior_loss" in r for r in records)


def test_sampling_from_the_joint_prior_is_deterministic_under_a_seed(tmp_path):
    train, val = dataset(), dataset(n_stimuli=12, seed=1)
    config = _config(tmp_path, "sample", out_dir=None, checkpoint_every=None)
    result = _fit(config, train)
    result.model.eval()
    with torch.no_grad():
        batch = val.batch(torch.arange(len(val)))
        backbone = result.model(batch.x, batch.subject).backbone
    kw = dict(num_inference_steps=5, scheduler="ddpm", guidance_scale=2.0)
    first = sample(result.prior, backbone, seed=11, **kw)
    assert first.shape == (len(val), TARGET_DIM)
    assert torch.equal(first, sample(result.prior, backbone, seed=11, **kw))
    assert not torch.equal(first, sample(result.prior, backbone, seed=12, **kw))


def test_errors(tmp_path):
    train = dataset()
    config = _config(tmp_path, "err")
    with pytest.raises(ValueError, match=r"prior_weight=2.0 .*build_joint_prior"):
        fit(tiny_model(), train, None, config, verbose=False)
    prior = build_joint_prior(config, train.target_shape)
    with pytest.raises(ValueError, match=r"prior_weight=0, so it would not be trained"):
        fit(tiny_model(), train, None, config.replace(prior_weight=0.0), prior=prior,
            verbose=False)  # fmt: skip
    with pytest.raises(TypeError, match=r"'prior' must be an nn.Module with a loss"):
        fit(tiny_model(), train, None, config, prior=torch.nn.Linear(2, 2), verbose=False)
    with pytest.raises(ValueError, match=r"TrainConfig.prior_weight must be a non-negative"):
        TrainConfig(prior_weight=-1.0)
    with pytest.raises(ValueError, match=r"Unknown prior setting 'widht'.*Did you mean 'width'"):
        build_joint_prior(config.replace(prior_kwargs={"widht": 8}), (5,))
    with pytest.raises(ValueError, match=r"\(dim,\) for pooled embeddings or \(n_tokens, dim\)"):
        build_joint_prior(config, (2, 3, 4))
    # resuming a run without a prior with one (and the reverse) is refused
    plain = config.replace(prior_weight=0.0, epochs=1)
    fit(tiny_model(), train, None, plain, verbose=False)
    with pytest.raises(ValueError, match=r"written without a jointly trained prior"):
        fit(tiny_model(), train, None, config, prior=prior, resume=True, verbose=False)


def test_overrides_reach_the_prior_settings():
    config = TrainConfig.from_dict(
        {"prior_kwargs": {"width": 64}},
        ["prior_weight=30", "prior_kwargs.depth=2", "prior_kwargs.n_heads=4"],
    )
    assert config.prior_weight == 30.0
    assert isinstance(config.prior_weight, float)
    assert config.prior_kwargs == {"width": 64, "depth": 2, "n_heads": 4}
    prior = build_joint_prior(config, (3, 5), seed=0)
    assert (prior.config.n_target_tokens, prior.config.target_dim) == (3, 5)
    assert (prior.config.n_cond_tokens, prior.config.cond_dim) == (3, 5)
    assert prior.config.depth == 2
