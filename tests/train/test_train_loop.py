"""fit: exact resume after an interruption mid-epoch, early stopping, logs, errors."""

from __future__ import annotations

import pytest
import torch
from tests.train.train_testing import (
    SIZES,
    TARGET_DIM,
    crash_at_step,
    dataset,
    metrics_records,
    tiny_model,
)

from brainalign.train import TrainConfig, evaluate_retrieval, fit, latest_checkpoint

CASES = {
    # BiMixCo for the first epoch then SoftCLIP; dropout, EMA, cosine warm-up
    "mindeye-ema": {"loss": "mindeye", "loss_kwargs": {"mix_fraction": 0.5}, "ema_decay": 0.9},
    # learnable logit scale, one-cycle schedule, no clipping
    "clip-onecycle": {"loss": "clip", "schedule": "onecycle", "grad_clip": None},
}


def _config(tmp_path, name, **changes):
    values = dict(
        epochs=3, batch_size=16, lr=3e-3, warmup=0.2, seed=3, checkpoint_every=3,
        out_dir=str(tmp_path / name),
    )  # fmt: skip
    return TrainConfig(**{**values, **changes})


@pytest.mark.parametrize("case", list(CASES))
def test_resume_mid_epoch_equals_uninterrupted(tmp_path, case):
    train, val = dataset(), dataset(n_stimuli=12, seed=1)
    # 80 trials, batch 16: 5 steps per epoch, 15 in all; checkpoints at steps 3, 5, 6, 9, 10 …
    full_config = _config(tmp_path, "full", **CASES[case])
    full = fit(tiny_model(seed=0), train, val, full_config, verbose=False)
    assert full.n_steps == 15
    assert len(full.history) == 3

    config = _config(tmp_path, "cut", **CASES[case])

    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(seed=0), train, val, config, callbacks=[crash_at_step(8)], verbose=False)
    # the latest checkpoint is mid-epoch 1 (step 6 = epoch 1, batch 1)
    assert latest_checkpoint(config.out_dir).name == "step-00000006"
    resumed = fit(tiny_model(seed=7), train, val, config, resume=True, verbose=False)

    assert resumed.n_steps == 15
    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    if full.loss is not None:
        for key, value in full.loss.state_dict().items():
            assert torch.equal(resumed.loss.state_dict()[key], value), key
    if full.ema is not None:
        for key, value in full.ema.state_dict().items():
            assert torch.equal(resumed.ema.state_dict()[key], value), key
    assert resumed.history == full.history
    # the log of the resumed run is the uninterrupted run's, without duplicated steps
    assert metrics_records(config) == metrics_records(full_config)


def test_early_stopping_and_metrics(tmp_path):
    train, val = dataset(), dataset(n_stimuli=12, seed=1)
    config = _config(tmp_path, "stop", lr=1e-12, epochs=6, patience=2, log_every=2,
                     checkpoint_every=None)  # fmt: skip
    seen = []
    result = fit(tiny_model(dropout=0.0), train, val, config,
                 callbacks=[lambda info: seen.append(info["event"])], verbose=False)  # fmt: skip
    # a learning rate of 1e-12 changes nothing: epoch 0 is the best, 1 and 2 are not better
    assert result.stopped_early
    assert len(result.history) == 3
    assert result.best_epoch == 0
    assert seen.count("step") == 15
    assert seen.count("epoch") == 3
    records = metrics_records(config)
    steps = [r for r in records if r["event"] == "step"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10, 12, 14]
    assert {"loss", "lr", "grad_norm", "align", "uniform", "acc_brain_to_target"} <= set(steps[0])
    epochs = [r for r in records if r["event"] == "epoch"]
    assert 0 <= epochs[0]["val_top1_brain_to_target"] <= 1
    assert {"val_top5_brain_to_target", "val_top1_target_to_brain"} <= set(epochs[0])
    # resuming a finished run does nothing more
    again = fit(tiny_model(seed=3), train, val, config, resume=True, verbose=False)
    assert again.n_steps == 15
    assert again.history == result.history


def test_learns_the_synthetic_problem():
    from brainalign.models import build_model

    train = dataset(noise=0.05)
    config = TrainConfig(epochs=50, batch_size=16, lr=1e-2, loss="softclip", weight_decay=0.0)

    def linear():
        torch.manual_seed(0)
        return build_model("linear", n_voxels=dict(SIZES), target_dim=TARGET_DIM)

    # scored on the training trials (each subject has its own mixing matrix)
    before = evaluate_retrieval(linear(), train)["top1_brain_to_target"]
    result = fit(linear(), train, train, config, verbose=False)
    after = result.history[-1]["val_top1_brain_to_target"]
    assert before < 0.2, before
    assert after > 0.85, after


def test_cpu_threads_apply_during_training_and_are_restored():
    seen = []
    original = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        config = TrainConfig(epochs=1, batch_size=16, cpu_threads=1)
        record = [lambda info: seen.append(torch.get_num_threads())]
        fit(tiny_model(), dataset(), None, config, callbacks=record, verbose=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)
    assert seen
    assert set(seen) == {1}
    with pytest.raises(ValueError, match="cpu_threads"):
        TrainConfig(cpu_threads=0)


def test_errors(tmp_path):
    train = dataset()
    with pytest.raises(ValueError, match=r"resume=True needs TrainConfig\.out_dir"):
        fit(tiny_model(), train, None, TrainConfig(), resume=True)
    with pytest.raises(ValueError, match="patience=2 needs validation data"):
        fit(tiny_model(), train, None, TrainConfig(patience=2))
    with pytest.raises(ValueError, match="No training batch"):
        fit(tiny_model(), train, None, TrainConfig(batch_size=128))
    with pytest.raises(TypeError, match="BrainTargetDataset"):
        fit(tiny_model(), [1, 2], None, TrainConfig())
    with pytest.raises(TypeError, match="do not fit ClipLoss"):
        fit(tiny_model(), train, None, TrainConfig(loss_kwargs={"temp": 1}))
    from brainalign.models import build_model

    wrong = build_model("mindeye2", n_voxels={"01": 7, "02": 9}, target_dim=4, hidden=8)
    with pytest.raises(ValueError, match=r"target_shape=\(5,\)"):
        fit(wrong, train, None, TrainConfig(batch_size=16, epochs=1), verbose=False)
