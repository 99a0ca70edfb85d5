"""MindEye's BiMixCo -> SoftCLIP schedule against a transcription of its training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from brainalign.losses import (
    LossSchedule,
    LossStage,
    cosine_anneal,
    mindeye_loss_schedule,
    mixco,
    mixco_loss,
    soft_clip_loss,
)


def _mindeye_cosine_anneal(start, end, steps):
    return end + (start - end) / 2 * (1 + torch.cos(torch.pi * torch.arange(steps) / (steps - 1)))


def _mindeye_stages(num_epochs, mixup_pct):
    """MindEye's loop: mixco_nce at 0.006 before int(mixup_pct * num_epochs), then SoftCLIP."""
    n_mix = int(mixup_pct * num_epochs)
    temps = _mindeye_cosine_anneal(0.004, 0.0075, num_epochs - n_mix)
    stages = []
    for epoch in range(num_epochs):
        if epoch < n_mix:
            stages.append(("bimixco", 0.006))
        else:
            stages.append(("softclip", float(temps[epoch - n_mix])))
    return stages


@pytest.mark.parametrize(
    ("n_epochs", "fraction"), [(240, 0.33), (150, 0.33), (30, 1 / 3), (7, 0.5)]
)
def test_matches_mindeye(n_epochs, fraction):
    schedule = LossSchedule(n_epochs, fraction)
    for epoch, (loss, temperature) in enumerate(_mindeye_stages(n_epochs, fraction)):
        stage = schedule.at(epoch)
        assert stage.loss == loss
        assert stage.mix_inputs == (loss == "bimixco")
        assert stage.temperature == pytest.approx(temperature, rel=1e-6)
        assert mindeye_loss_schedule(epoch, n_epochs, fraction) == stage


def test_default_third_and_temperature_range():
    schedule = LossSchedule(240)
    assert schedule.n_mix_epochs == 80
    assert schedule(79).loss == "bimixco"
    first, last = schedule(80), schedule(239)
    assert first == LossStage("softclip", 0.004, False)
    assert last.temperature == pytest.approx(0.0075)
    temps = schedule.soft_temperatures()
    assert temps.shape == (160,)
    assert np.all(np.diff(temps) > 0)


def test_cosine_anneal():
    np.testing.assert_allclose(
        cosine_anneal(0.004, 0.0075, 9), _mindeye_cosine_anneal(0.004, 0.0075, 9).numpy()
    )
    assert cosine_anneal(1.0, 2.0, 1).tolist() == [1.0]
    only_soft = LossSchedule(3, 0.0)
    assert [only_soft(e).loss for e in range(3)] == ["softclip"] * 3
    only_mix = LossSchedule(3, 1.0)
    assert only_mix.soft_temperatures().shape == (0,)
    assert [only_mix(e).loss for e in range(3)] == ["bimixco"] * 3


def test_stage_computes_its_loss(make_pair):
    x, y = make_pair(6)
    soft = LossStage("softclip", 0.01, False)
    torch.testing.assert_close(soft(x, y), soft_clip_loss(x, y, 0.01))
    mixed = mixco(torch.zeros(6, 2), seed=0)
    bimixco = LossStage("bimixco", 0.006, True)
    torch.testing.assert_close(
        bimixco(x, y, perm=mixed.perm, betas=mixed.betas.double()),
        mixco_loss(x, y, 0.006, perm=mixed.perm, betas=mixed.betas.double()),
    )
    with pytest.raises(ValueError, match="does not mix inputs"):
        soft(x, y, perm=mixed.perm, betas=mixed.betas)


def test_errors():
    with pytest.raises(ValueError, match="'n_epochs' must be a positive int"):
        LossSchedule(0)
    with pytest.raises(ValueError, match="'mix_fraction' must lie in"):
        LossSchedule(10, 1.5)
    with pytest.raises(ValueError, match="'mix_temperature' must be a positive number"):
        LossSchedule(10, mix_temperature=-1.0)
    with pytest.raises(ValueError, match=r"'epoch' must lie in \[0, 9\]"):
        LossSchedule(10).at(10)
    with pytest.raises(TypeError, match="'epoch' must be an int"):
        LossSchedule(10).at(1.5)
    with pytest.raises(ValueError, match="'n_steps'"):
        cosine_anneal(0.1, 0.2, 0)
    assert math.isfinite(LossSchedule(1)(0).temperature)
