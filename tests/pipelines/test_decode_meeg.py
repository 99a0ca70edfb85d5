"""Decoding simulated M/EEG speech: splits, the whitened oracle, the config, the whole job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainalign.data.simulate.meeg import compute_noise_ceiling
from brainalign.pipelines.decode import train_from_config
from brainalign.pipelines.decode_meeg import (
    MEEGDecodeConfig,
    block_splits,
    decode_simulated_meeg,
    oracle_ceiling,
)
from brainalign.pipelines.simulate_meeg import simulate_meeg_dataset

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "decode_simulated_meg.yaml"

TINY_TRAIN = {
    "train.epochs=2",
    "train.model_kwargs.n_heads=8",
    "train.model_kwargs.hidden=16",
    "train.model_kwargs.depth=2",
    "train.model_kwargs.n_freqs=4",
    "train.batch_size=16",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two subjects, 24 MEG channels, 60 s of speech (about 120 words in 7 sentences)."""
    return simulate_meeg_dataset(
        tmp_path_factory.mktemp("meg") / "speech",
        seed=0,
        n_subjects=2,
        duration=60.0,
        snr=1.0,
        n_channels=24,
        n_dipoles_per_patch=3,
        verbose=False,
    )


def _tiny(dataset, **changes) -> MEEGDecodeConfig:
    config = MEEGDecodeConfig.from_yaml(
        CONFIG, [*sorted(TINY_TRAIN), f"dataset={dataset.root}", "n_bootstrap=20", "n_draws=3"]
    )
    return config.replace(test_fraction=0.3, val_fraction=0.2, block_duration=8.0, **changes)


# --------------------------------------------------------------------------- splits
def _story(n_sentences=40, words=8):
    """Word onsets of a story: 0.45 s between words, 0.3 s more between sentences."""
    onsets, sentences, t = [], [], 1.0
    for sentence in range(n_sentences):
        for _ in range(words):
            onsets.append(t)
            sentences.append(sentence)
            t += 0.45
        t += 0.3
    return np.array(onsets), np.array(sentences)


def test_block_splits_never_let_windows_of_two_splits_share_a_sample():
    onsets, sentences = _story()
    window = (-0.5, 2.5)
    split = block_splits(
        onsets, sentences, window, test_fraction=0.2, val_fraction=0.1, block_duration=20.0,
        seed=3,
    )  # fmt: skip
    kept = split != "none"
    assert set(split[kept]) == {"train", "val", "test"}
    for s in np.unique(sentences):  # a sentence is never split
        assert len(set(split[(sentences == s) & kept])) == 1
    start, stop = onsets + window[0], onsets + window[1]
    for label in ("train", "val"):
        a = np.flatnonzero(split == label)
        b = np.flatnonzero((split != label) & kept)
        overlap = (start[a][:, None] < stop[b][None, :]) & (start[b][None, :] < stop[a][:, None])
        assert not overlap.any(), label
    # only windows at block edges are dropped: most windows are kept
    assert 0.75 < kept.mean() < 1.0
    np.testing.assert_array_equal(
        split,
        block_splits(
            onsets, sentences, window, test_fraction=0.2, val_fraction=0.1,
            block_duration=20.0, seed=3,
        ),
    )  # fmt: skip


def test_block_splits_follow_the_fractions_of_blocks():
    onsets, sentences = _story(n_sentences=40, words=8)  # 40 sentences of ~3.9 s
    split = block_splits(
        onsets, sentences, (0.0, 0.1), test_fraction=0.2, val_fraction=0.1, block_duration=3.0,
        seed=0,
    )  # fmt: skip
    per_sentence = pd.Series(split).groupby(sentences).first().value_counts()
    assert per_sentence.to_dict() == {"train": 28, "test": 8, "val": 4}


def test_block_splits_refuse_too_few_blocks():
    onsets, sentences = _story(n_sentences=4)
    with pytest.raises(ValueError, match="blocks of at least block_duration=30 s cannot give"):
        block_splits(
            onsets, sentences, (-0.5, 2.5), test_fraction=0.2, val_fraction=0.1,
            block_duration=30.0,
        )  # fmt: skip


# --------------------------------------------------------------------------- the ceiling
def _coloured(rng, n, c, t, mixing):
    white = rng.normal(size=(n, c, t))
    smooth = np.cumsum(white, axis=2) * 0.3 + white  # temporally correlated
    return np.einsum("dc,nct->ndt", mixing, smooth)


def test_oracle_ceiling_with_full_shrinkage_is_the_plain_correlation_oracle(rng):
    clean = rng.normal(size=(30, 5, 40))
    noisy = clean + 2.0 * rng.normal(size=clean.shape)
    noise = rng.normal(size=(50, 5, 40))
    ours = oracle_ceiling(clean, noisy, noise, top_k=3, shrinkage=1.0)
    plain = compute_noise_ceiling(clean, noisy, top_k=3)
    assert ours.top1_accuracy == plain.top1_accuracy
    assert ours.top_k_accuracy == plain.top_k_accuracy
    np.testing.assert_allclose(ours.channel_correlation, plain.channel_correlation, atol=1e-12)


def test_whitening_with_the_known_noise_covariance_beats_plain_correlation(rng):
    c, t = 12, 60
    mixing = np.eye(c) + 3.0 * np.outer(np.ones(c), np.ones(c)) / np.sqrt(c)
    clean = rng.normal(size=(80, c, t))
    noisy = clean + 1.5 * _coloured(rng, 80, c, t, mixing)
    noise = 1.5 * _coloured(rng, 400, c, t, mixing)
    plain = compute_noise_ceiling(clean, noisy, top_k=5)
    white = oracle_ceiling(clean, noisy, noise, top_k=5)
    assert white.top1_accuracy > plain.top1_accuracy + 0.2
    assert white.top1_accuracy > 0.9
    assert white.n_segments == 80


# --------------------------------------------------------------------------- the config
def test_the_shipped_config_is_the_default_config():
    config = MEEGDecodeConfig.from_yaml(CONFIG)
    default = MEEGDecodeConfig()
    assert config.replace(train=config.train.replace(out_dir=None)) == default


def test_config_yaml_round_trip_and_overrides(tmp_path):
    config = MEEGDecodeConfig.from_yaml(CONFIG, ["top_k=5", "train.lr=3e-4", "target=envelope"])
    assert (config.top_k, config.train.lr, config.target) == (5, 3e-4, "envelope")
    assert config.train.model == "brainmagick"
    again = MEEGDecodeConfig.from_yaml(config.to_yaml(tmp_path / "c.yaml"))
    assert again == config


def test_a_partial_train_section_keeps_the_meeg_defaults():
    config = MEEGDecodeConfig.from_dict({"train": {"epochs": 3}})
    assert config.train.model == "brainmagick"
    assert config.train.epochs == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test_fraction": 0.0}, "test_fraction=0.0"),
        ({"test_fraction": 0.6, "val_fraction": 0.5}, "leave training blocks"),
        ({"target_sfreq": -1.0}, "target_sfreq must be a positive number or null"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"ridge_alphas": [1.0, -2.0]}, "ridge_alphas must be positive"),
        ({"kind": "fmri"}, "kind must be 'meeg-speech'"),
    ],
)
def test_bad_config_values_are_refused_with_the_field_named(change, message):
    with pytest.raises(ValueError, match=message):
        MEEGDecodeConfig(**change)


def test_an_unknown_override_suggests_the_key():
    with pytest.raises(ValueError, match="Did you mean 'top_k'"):
        MEEGDecodeConfig.from_yaml(CONFIG, ["topk=3"])


def test_a_feature_the_simulation_lacks_is_named(dataset):
    with pytest.raises(ValueError, match=r"target='embeding' is not a feature.*'envelope'"):
        decode_simulated_meeg(dataset, config=_tiny(dataset, target="embeding"), verbose=False)


# --------------------------------------------------------------------------- the job
@pytest.fixture(scope="module")
def decoded(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "meg-run"
    return decode_simulated_meeg(dataset, config=_tiny(dataset), out_dir=out, verbose=False)


def test_decoding_reports_segment_retrieval_beside_ridge_and_the_ceiling(decoded, dataset):
    table = decoded.table
    assert set(table["protocol"]) == {"segments"}
    assert set(table["model"]) == {"contrastive", "ridge", "ceiling"}
    n_test = len(decoded.test_ids)
    assert (table["n_gallery"] == n_test).all()
    assert set(table["metric"]) == {"top1", "top10"}
    for model in ("contrastive", "ridge"):
        rows = table[table["model"] == model]
        assert len(rows) == 2 * 2 * 2  # subjects x directions x metrics
        assert rows["value"].between(0, 1).all()
        assert (rows["ci_low"] <= rows["value"] + 1e-12).all()
        assert (rows["value"] <= rows["ci_high"] + 1e-12).all()
    top10 = table[table["metric"] == "top10"]
    np.testing.assert_allclose(top10["chance"], 10 / n_test)
    # the test segments are the windows wholly inside the test blocks
    trials = dataset.recordings["01"].trials
    split = block_splits(
        trials["onset"].to_numpy(), trials["sentence"].to_numpy(), (-0.5, 2.5 + 1 / 120),
        test_fraction=0.3, val_fraction=0.2, block_duration=8.0, seed=0,
    )  # fmt: skip
    np.testing.assert_array_equal(
        decoded.test_ids, trials["stimulus_id"].to_numpy()[split == "test"]
    )
    emb = decoded.embeddings["contrastive"]["01"]
    assert emb.shape == (n_test, decoded.targets.shape[1])
    summary = decoded.summary()
    assert list(summary.index) == ["contrastive", "ridge", "ceiling"]
    assert "segments (gallery" in str(decoded)


def test_the_ridge_baseline_decodes_above_chance_and_the_ceiling_is_high(decoded):
    index = ["model", "direction", "metric", "subject"]
    table = decoded.table.set_index(index)["value"].sort_index()
    chance = 10 / len(decoded.test_ids)
    ridge = table.loc[("ridge", "brain_to_stimulus", "top10")]
    assert ridge.mean() > chance + 0.2
    assert table.loc[("ceiling", "brain_to_stimulus", "top10")].min() > 0.9


def test_the_run_folder_holds_config_results_and_a_resumable_checkpoint(decoded, dataset):
    out = decoded.out_dir
    for name in ("decode_meeg.yaml", "preprocessing.npz", "results.tsv", "curves.tsv"):
        assert (out / name).is_file(), name
    saved = MEEGDecodeConfig.from_yaml(out / "decode_meeg.yaml")
    assert saved.dataset == str(Path(dataset.root).resolve())
    assert decoded.checkpoint is not None
    assert decoded.checkpoint.exists()
    table = pd.read_csv(out / "results.tsv", sep="\t", dtype={"subject": str})
    pd.testing.assert_frame_equal(table, decoded.table, check_dtype=False)
    # resuming a finished run trains nothing more and gives the same numbers
    again = decode_simulated_meeg(dataset, config=saved, out_dir=out, resume=True, verbose=False)
    pd.testing.assert_frame_equal(again.table, decoded.table)


def test_a_meeg_run_is_not_resumed_on_another_dataset(decoded, dataset, tmp_path):
    import json
    import shutil

    record = json.loads((decoded.out_dir / "dataset.json").read_text())
    assert record["folder"] == str(Path(dataset.root).resolve())
    run = tmp_path / "run"
    shutil.copytree(decoded.out_dir, run)
    other = {"folder": "/elsewhere/meg-speech", "manifest_sha256": "0" * 64}
    (run / "dataset.json").write_text(json.dumps(other))
    config = decoded.config
    with pytest.raises(ValueError, match=r"was trained on the dataset '/elsewhere/meg-speech'"):
        decode_simulated_meeg(dataset, config=config, out_dir=run, resume=True, verbose=False)
    assert json.loads((run / "dataset.json").read_text()) == other  # nothing overwritten


def test_brainalign_train_dispatches_a_meeg_config(dataset, tmp_path):
    config = _tiny(dataset).replace(n_bootstrap=0)
    path = config.to_yaml(tmp_path / "meg.yaml")
    results = train_from_config(path, ["train.epochs=1"], out_dir=tmp_path / "run", verbose=False)
    assert set(results.table["protocol"]) == {"segments"}
    assert (tmp_path / "run" / "decode_meeg.yaml").is_file()


def test_a_top_k_above_the_test_set_keeps_top1_only(dataset):
    config = _tiny(dataset, top_k=500, n_bootstrap=0).replace(
        train=_tiny(dataset).train.replace(epochs=1)
    )
    results = decode_simulated_meeg(dataset, config=config, verbose=False)
    assert set(results.table["metric"]) == {"top1"}
    ceiling = results.table[results.table["model"] == "ceiling"]
    assert len(ceiling) == 2  # one row per subject


def test_the_job_builds_only_its_own_encoder_and_keeps_partial_model_kwargs():
    with pytest.raises(ValueError, match=r"train\.model must be 'brainmagick'"):
        MEEGDecodeConfig(train=MEEGDecodeConfig().train.replace(model="mindeye2"))
    config = MEEGDecodeConfig.from_dict({"train": {"model_kwargs": {"hidden": 128}}})
    assert config.train.model_kwargs == {**MEEGDecodeConfig().train.model_kwargs, "hidden": 128}


def test_a_misspelled_kind_and_evaluating_a_meeg_run_say_what_to_do(decoded, tmp_path):
    from brainalign.pipelines.decode import evaluate_checkpoint

    path = tmp_path / "bad.yaml"
    path.write_text("kind: meg-speech\n")
    with pytest.raises(ValueError, match="unknown kind 'meg-speech'; 'meeg-speech'"):
        train_from_config(path)
    with pytest.raises(ValueError, match="is an M/EEG speech decoding run"):
        evaluate_checkpoint(decoded.out_dir)
