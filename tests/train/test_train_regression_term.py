"""fit with a regression term beside the contrastive loss (Benchetrit et al. 2024): the loss is
``contrastive + regression_weight * mse(backbone, target)``, the MSE reaches the encoder through
the backbone only, BiMixCo mixes its target like the inputs, both terms are logged, a resumed
run equals an uninterrupted one, and ``regression_weight=0`` changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.train.train_testing import (
    assert_equal_states,
    assert_logged_terms_add_up,
    crash_at_step,
    dataset,
    metrics_records,
    synthetic,
    tiny_model,
)

from brainalign.train import (
    ContrastiveDecoder,
    TrainConfig,
    fit,
    latest_checkpoint,
    load_checkpoint,
)
from brainalign.train.loop import _Objective, _regression_loss, build_loss


def _config(tmp_path, name, **changes):
    values = dict(
        epochs=3, batch_size=16, lr=3e-3, warmup=0.2, seed=3, checkpoint_every=3,
        out_dir=str(tmp_path / name), regression_weight=0.5,
    )  # fmt: skip
    return TrainConfig(**{**values, **changes})


def test_the_objective_adds_the_weighted_mse_of_the_backbone():
    train = dataset()
    config = TrainConfig(regression_weight=2.5)
    model = tiny_model(dropout=0.0)
    objective = _Objective(model, build_loss(config), False, None, 0.0, 2.5)
    assert objective.terms == ("contrastive", "regression")
    batch = train.batch(torch.arange(16))
    out = objective(batch.x, batch.subject, batch.target, batch.stimulus)
    with torch.no_grad():
        backbone = model(batch.x, batch.subject).backbone
    # the naive mean of squared differences over every value of the batch
    naive = ((backbone.double() - batch.target.double()) ** 2).mean()
    assert float(out.regression.detach()) == pytest.approx(float(naive), rel=1e-6)
    assert out.prior is None
    torch.testing.assert_close(out.loss, out.contrastive + 2.5 * out.regression)
    # the regression reaches the encoder through the backbone, never through the projector
    out.regression.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is None for name, g in grads.items() if name.startswith("projector"))
    assert grads["head.weight"].abs().sum() > 0
    # without a term the objective returns the contrastive loss's own output
    plain = _Objective(model, build_loss(config), False)
    assert plain.terms == ()
    assert not hasattr(plain(batch.x, batch.subject, batch.target, batch.stimulus), "regression")


def test_the_objective_hands_bimixco_s_mixing_to_the_regression():
    from brainalign.losses import LossSchedule, mixco

    train = dataset()
    model = tiny_model(dropout=0.0)
    objective = _Objective(model, None, False, None, 0.0, 1.0)
    stage = LossSchedule(3, mix_fraction=0.5).at(0)
    assert stage.mix_inputs
    batch = train.batch(torch.arange(16))
    x, perm, betas, _ = mixco(batch.x, seed=0)
    assert not torch.all(betas == 1)
    out = objective(x, batch.subject, batch.target, batch.stimulus, stage, perm, betas)
    with torch.no_grad():
        backbone = model(x, batch.subject).backbone
    mixed = _regression_loss(backbone, batch.target, perm, betas)
    unmixed = _regression_loss(backbone, batch.target, None, None)
    assert float(out.regression.detach()) == pytest.approx(float(mixed), rel=1e-6)
    assert abs(float(mixed) - float(unmixed)) > 1e-3


def test_a_backbone_shaped_unlike_the_targets_is_refused():
    with pytest.raises(ValueError, match=r"target_shape=\(1, 4\)"):
        _regression_loss(torch.zeros(6, 4), torch.zeros(6, 1, 4), None, None)


def test_under_bimixco_the_regression_target_is_mixed_like_the_inputs():
    rng = np.random.default_rng(0)
    backbone = torch.from_numpy(rng.normal(size=(6, 4))).float()
    target = torch.from_numpy(rng.normal(size=(6, 4))).float()
    perm = torch.tensor([1, 0, 3, 2, 5, 4])
    betas = torch.tensor([0.2, 1.0, 0.7, 0.5, 1.0, 0.9], dtype=torch.float64)
    got = _regression_loss(backbone, target, perm, betas)
    mixed = np.array([
        b * target[i].numpy() + (1 - b) * target[p].numpy()
        for i, (p, b) in enumerate(zip(perm.tolist(), betas.tolist(), strict=True))
    ])  # fmt: skip
    expected = np.mean((backbone.numpy() - mixed) ** 2)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    assert float(_regression_loss(backbone, target, None, None)) == pytest.approx(
        float(F.mse_loss(backbone, target)), rel=1e-7
    )


def test_fit_minimises_and_logs_both_terms(tmp_path):
    train = dataset()
    config = _config(tmp_path, "fit", epochs=8, checkpoint_every=None, warmup=0.1)
    result = fit(tiny_model(), train, None, config, verbose=False)
    first, last = result.history[0], result.history[-1]
    assert last["train_regression_loss"] < 0.8 * first["train_regression_loss"]
    assert last["train_contrastive_loss"] < 0.9 * first["train_contrastive_loss"]
    assert result.n_steps == 40
    assert_logged_terms_add_up(result, config, {"regression": 0.5})
    assert not any("prior_loss" in r for r in metrics_records(config))


def test_the_regression_term_brings_the_backbone_close_to_the_targets(tmp_path):
    """The contrastive loss leaves the backbone free (only the projector's direction counts);
    the regression term pulls it to the targets: a 2x lower MSE at least (0.15-0.31 of the
    contrastive-only MSE across 8 seeds)."""
    train = dataset()
    common = dict(epochs=15, checkpoint_every=None, warmup=0.1)
    plain = fit(tiny_model(), train, None, _config(tmp_path, "a", regression_weight=0.0,
                **common), verbose=False)  # fmt: skip
    joint = fit(tiny_model(), train, None, _config(tmp_path, "b", regression_weight=5.0,
                **common), verbose=False)  # fmt: skip
    batch = train.batch(torch.arange(len(train)))

    def mse(model):
        model.eval()
        with torch.no_grad():
            return float(F.mse_loss(model(batch.x, batch.subject).backbone, batch.target))

    assert mse(joint.model) < 0.5 * mse(plain.model)


@pytest.mark.parametrize("loss", ["mindeye", "clip"])
def test_resume_mid_epoch_equals_uninterrupted(tmp_path, loss):
    train, val = dataset(), dataset(n_stimuli=12, seed=1)
    changes = {"loss": loss, "restore_best": True}
    if loss == "mindeye":  # BiMixCo for 2 of 3 epochs (the cut at step 8 is in the second):
        # the regression's target is mixed before and after the resume
        changes.update(loss_kwargs={"mix_fraction": 0.7}, ema_decay=0.9)
    full_config = _config(tmp_path, "full", **changes)
    full = fit(tiny_model(), train, val, full_config, verbose=False)
    assert full.n_steps == 15

    config = _config(tmp_path, "cut", **changes)

    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), train, val, config, callbacks=[crash_at_step(8)], verbose=False)
    assert latest_checkpoint(config.out_dir).name == "step-00000006"
    resumed = fit(tiny_model(seed=7), train, val, config, resume=True, verbose=False)
    assert resumed.n_steps == 15
    assert_equal_states(full.model.state_dict(), resumed.model.state_dict())
    assert resumed.history == full.history
    assert metrics_records(config) == metrics_records(full_config)


def test_a_resume_with_another_weight_is_refused(tmp_path):
    train = dataset()
    config = _config(tmp_path, "run", regression_weight=0.0, epochs=1)
    fit(tiny_model(), train, None, config, verbose=False)
    with pytest.raises(ValueError, match=r"regression_weight=0.0.*regression_weight=5.0"):
        fit(tiny_model(), train, None, config.replace(regression_weight=5.0, epochs=2),
            resume=True, verbose=False)  # fmt: skip


def test_without_the_term_nothing_of_it_is_logged_or_saved(tmp_path):
    train, val = dataset(), dataset(n_stimuli=12, seed=1)
    config = _config(tmp_path, "plain", regression_weight=0.0, epochs=2)
    fit(tiny_model(), train, val, config, verbose=False)
    assert not any(
        "regression_loss" in r or "contrastive_loss" in r for r in metrics_records(config)
    )
    state = load_checkpoint(latest_checkpoint(config.out_dir))
    assert not {"contrastive_loss_sum", "regression_loss_sum"} & set(state["trainer"])


def test_the_sklearn_decoder_passes_the_weight_on():
    brain, ids, targets = synthetic()
    Y = {s: targets[ids[s]] for s in brain}
    dec = ContrastiveDecoder(
        model_kwargs={"hidden": 8, "n_blocks": 0}, epochs=2, batch_size=20, regression_weight=1.5
    ).fit(brain, Y)
    assert dec.config_.regression_weight == 1.5
    assert "train_regression_loss" in dec.result_.history[-1]
    # left at None, the config's weight is kept
    kept = ContrastiveDecoder(
        model_kwargs={"hidden": 8, "n_blocks": 0}, epochs=1, batch_size=20,
        config=TrainConfig(regression_weight=2.0),
    ).fit(brain, Y)  # fmt: skip
    assert kept.config_.regression_weight == 2.0


@pytest.mark.parametrize("value", [-1.0, float("nan"), "heavy"])
def test_a_bad_weight_is_refused_with_its_name(value):
    with pytest.raises((TypeError, ValueError), match="regression_weight"):
        TrainConfig(regression_weight=value)
