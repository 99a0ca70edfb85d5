"""The decoding job end to end on a tiny simulated dataset (real images, real network, real files).

One dataset (60 images of 64 px, 2 subjects who both see every image, 8 mm voxels, high SNR) is
generated once; one run trains through ``train_from_config`` with YAML overrides, and the other
tests read its results, its run folder and its checkpoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from brainalign.data.simulate.fmri import FMRISimulationConfig
from brainalign.evaluate.retrieval import n_way_retrieval, retrieval_metrics
from brainalign.pipelines.decode import (
    PREPROCESSING_NAME,
    RESULT_COLUMNS,
    DecodeConfig,
    DecodeResults,
    decode_simulated_fmri,
    decoding_targets,
    evaluate_checkpoint,
    plot_retrieval_vs_gallery,
    plot_retrieved_images,
    train_from_config,
)
from brainalign.pipelines.simulate_fmri import simulate_fmri_dataset
from brainalign.train import RidgeDecoder, TrainConfig

N_TEST = 12
TINY = {
    "n_stimuli": 60,
    "n_subjects": 2,
    "n_test": N_TEST,
    "snr": 2.0,
    "resolution_mm": 8,
    "image_size": 64,
    "verbose": False,
}
TINY_CONFIG = {
    "target_layer": "global_pool",
    "val_fraction": 0.15,
    "ridge_alphas": [10.0, 100.0, 1000.0],
    "n_draws": 3,
    "n_bootstrap": 50,
    "gallery_sizes": [2, 5, N_TEST],
    "train": {
        "model": "mindeye2",
        "model_kwargs": {"hidden": 48, "n_blocks": 1, "dropout": 0.1, "projector_hidden": 32},
        "lr": 3e-3,
        "epochs": 30,  # replaced by an override in the run below
        "batch_size": 32,
        "restore_best": True,
        "log_every": 5,
        "device": "cpu",
    },
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, two threads of small matrices mostly wait
    for each other (the tiny run is ~10x faster on one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, one_thread):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAINALIGN_CACHE", str(cache))
    out = tmp_path_factory.mktemp("sim") / "ds"
    config = FMRISimulationConfig(train_overlap=1.0)
    yield simulate_fmri_dataset(
        out, seed=3, config=config, feature_cache_dir=cache / "features", **TINY
    )
    mp.undo()


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    """``train_from_config`` on a YAML config with two overrides."""
    folder = tmp_path_factory.mktemp("run")
    path = folder / "decode.yaml"
    values = {**TINY_CONFIG, "dataset": str(dataset.folder)}
    values["train"] = {**values["train"], "out_dir": str(folder / "out" / "train")}
    path.write_text(yaml.safe_dump(values))
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAINALIGN_CACHE", str(tmp_path_factory.mktemp("cache2")))
    results = train_from_config(path, ["train.epochs=12", "n_draws=4"], verbose=False)
    yield results
    mp.undo()


def test_overrides_reach_the_run(run):
    assert isinstance(run, DecodeResults)
    assert run.config.train.epochs == 12
    assert run.config.n_draws == 4
    assert len(run.history) == 12
    assert run.config.train.model_kwargs["hidden"] == 48
    # the data's sizes were filled in
    assert set(run.config.train.model_kwargs["n_voxels"]) == {"01", "02"}


def test_results_table_has_the_documented_columns(run):
    table = run.table
    assert list(table.columns) == list(RESULT_COLUMNS)
    assert set(table["model"]) == {"contrastive", "ridge", "ceiling"}
    assert set(table["subject"]) == {"01", "02"}
    decoded = table[table["model"] != "ceiling"]
    assert set(decoded["protocol"]) == {"n-way", "full-gallery"}
    assert set(decoded["direction"]) == {"brain_to_stimulus", "stimulus_to_brain"}
    assert set(decoded["metric"]) == {"top1", "top5"}
    # 2 models x 2 subjects x 2 protocols x 2 directions x 2 metrics, + 2 ceiling rows
    assert len(table) == 32 + 2
    assert table["value"].between(0, 1).all()
    assert (decoded["ci_low"] <= decoded["value"] + 1e-12).all()
    assert (decoded["value"] <= decoded["ci_high"] + 1e-12).all()
    nway = decoded[decoded["protocol"] == "n-way"]
    assert (nway["n_gallery"] == N_TEST).all()  # min(300, n_test)
    full = decoded[(decoded["protocol"] == "full-gallery")]
    b2s = full[full["direction"] == "brain_to_stimulus"]
    assert (b2s["n_gallery"] == 60).all()  # every stimulus is a candidate
    assert any("300-way" in note for note in run.notes)
    curves = run.curves
    assert set(curves["gallery_size"]) == {2, 5, N_TEST}
    assert {"subject", "model", "direction", "accuracy", "chance"} <= set(curves.columns)
    summary = run.summary()
    assert list(summary.index) == ["contrastive", "ridge", "ceiling"]
    assert "note:" in str(run)


def test_both_models_beat_chance(run):
    table = run.table
    nway = table[(table["protocol"] == "n-way") & (table["metric"] == "top1")]
    means = nway.groupby(["model", "direction"])["value"].mean()
    chance = 1 / N_TEST
    for model in ("contrastive", "ridge"):
        for direction in ("brain_to_stimulus", "stimulus_to_brain"):
            assert means[(model, direction)] > 3 * chance, (model, direction, means)


def test_ridge_equals_a_direct_ridge_decoder(run, dataset):
    """The ridge rows, recomputed from the files with RidgeDecoder and the retrieval functions."""
    config = run.config
    val_ids = set(np.load(run.out_dir / PREPROCESSING_NAME)["val_ids"].astype(str))
    ids = [str(i) for i in dataset.stimuli.ids]
    feats = decoding_targets(dataset, "global_pool", verbose=False).loc[ids].to_numpy(float)
    test_ids = [str(i) for i in dataset.test_ids]
    fit_ids = [s for s in ids if s not in val_ids and s not in set(test_ids)]
    mu, sd = (
        feats[[ids.index(s) for s in fit_ids]].mean(0),
        feats[[ids.index(s) for s in fit_ids]].std(0),
    )
    Y = pd.DataFrame((feats - mu) / np.where(sd > 0, sd, 1.0), index=ids)
    for sub in dataset.subjects:
        rec = dataset[sub]
        stim = rec.trials["stimulus_id"].astype(str).to_numpy()
        train = (rec.trials["split"].to_numpy() == "train") & ~np.isin(stim, list(val_ids))
        X = np.asarray(rec.data, dtype=np.float64)
        m, s = X[train].mean(0), X[train].std(0)
        test_rows = rec.trials["split"].to_numpy() == "test"
        avg = pd.DataFrame(X[test_rows]).groupby(stim[test_rows]).mean().loc[test_ids]
        decoder = RidgeDecoder(alphas=config.ridge_alphas).fit(
            (X[train] - m) / s, Y.loc[stim[train]].to_numpy()
        )
        pred = decoder.predict((avg.to_numpy() - m) / s)
        np.testing.assert_allclose(run.embeddings["ridge"][sub], pred, rtol=1e-3, atol=1e-3)
        assert run.ridge[sub].alpha_ == decoder.alpha_
        nway = n_way_retrieval(
            pred, Y.loc[test_ids].to_numpy(), N_TEST, config.n_draws, ks=(1, 5),
            n_bootstrap=0, seed=config.seed,
        )  # fmt: skip
        full = retrieval_metrics(
            pred, Y.to_numpy(), ks=(1, 5), brain_ids=test_ids, stimulus_ids=ids, n_bootstrap=0
        )
        got = run.table[(run.table["model"] == "ridge") & (run.table["subject"] == sub)]
        for result, protocol in ((nway, "n-way"), (full, "full-gallery")):
            for direction, values in result.metrics.items():
                for metric in ("top1", "top5"):
                    row = got[
                        (got["protocol"] == protocol)
                        & (got["direction"] == direction)
                        & (got["metric"] == metric)
                    ]
                    assert row["value"].item() == pytest.approx(values[metric], abs=1e-9)


def test_evaluate_checkpoint_gives_the_same_metrics(run):
    assert run.checkpoint is not None
    assert (run.checkpoint / "state.pt").is_file()
    for path in (run.out_dir, run.checkpoint):
        again = evaluate_checkpoint(path, verbose=False)
        pd.testing.assert_frame_equal(again.table, run.table, check_exact=False, rtol=1e-6)
        np.testing.assert_allclose(
            again.embeddings["contrastive"]["01"], run.embeddings["contrastive"]["01"], rtol=1e-5
        )
    assert (run.out_dir / "results.tsv").is_file()


def test_evaluation_reads_the_saved_ridge_and_refits_for_other_data(run, monkeypatch):
    from brainalign.pipelines import decode as D
    from brainalign.train.decoders import RidgeDecoder

    assert (run.out_dir / D.RIDGE_NAME).is_file()
    fits = []
    original_fit = RidgeDecoder.fit

    def counting_fit(self, X, Y):
        fits.append(X.shape)
        return original_fit(self, X, Y)

    monkeypatch.setattr(RidgeDecoder, "fit", counting_fit)
    again = evaluate_checkpoint(run.out_dir, verbose=False)
    assert fits == []  # read from ridge.npz, not refitted
    for sub, emb in run.embeddings["ridge"].items():
        np.testing.assert_array_equal(again.embeddings["ridge"][sub], emb)
        assert again.ridge[sub].alpha_ == run.ridge[sub].alpha_
        np.testing.assert_array_equal(again.ridge[sub].cv_mse_, run.ridge[sub].cv_mse_)
    # data whose manifest differs from the one the ridge was fitted on: refitted, same numbers
    monkeypatch.setattr(
        D, "_dataset_identity", lambda ds: {"folder": "elsewhere", "manifest_sha256": "0" * 64}
    )
    refit = evaluate_checkpoint(run.out_dir, verbose=False)
    assert len(fits) == len(run.subjects)
    for sub, emb in run.embeddings["ridge"].items():
        np.testing.assert_allclose(refit.embeddings["ridge"][sub], emb, rtol=1e-6, atol=1e-7)


def test_decode_in_memory_with_a_train_config(dataset, run):
    """No out_dir: nothing written; a TrainConfig alone takes the other settings' defaults."""
    train = TrainConfig(
        model="linear", epochs=2, batch_size=32, device="cpu", lr=1e-3, log_every=50
    )
    config = DecodeConfig(train=train, n_bootstrap=0, n_draws=2, gallery_sizes=(2, N_TEST))
    targets = pd.DataFrame(run.targets, index=run.stimulus_ids)
    res = decode_simulated_fmri(dataset, config=config, targets=targets, verbose=False, seed=1)
    assert res.checkpoint is None
    assert res.out_dir is None
    assert res.config.seed == 1
    assert res.config.train.seed == 1
    assert np.isnan(res.table.loc[res.table["model"] != "ceiling", "ci_low"]).all()


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="n_drawz"):
        DecodeConfig.from_dict({}, ["n_drawz=3"])
    with pytest.raises(ValueError, match="val_fraction"):
        DecodeConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match="lrr"):
        DecodeConfig.from_dict({}, ["train.lrr=1"])
    cfg = DecodeConfig.from_dict({}, ["train.model_kwargs.hidden=64", "dataset=/x"])
    assert cfg.train.model_kwargs == {"hidden": 64}
    assert cfg.dataset == "/x"
    path = cfg.to_yaml(tmp_path / "c.yaml")
    assert DecodeConfig.from_yaml(path) == cfg
    with pytest.raises(FileNotFoundError, match=r"decode\.yaml"):
        evaluate_checkpoint(tmp_path)


def test_plots(run, dataset):
    import matplotlib.pyplot as plt

    fig = plot_retrieval_vs_gallery(run)
    assert len(fig.axes) == 2
    fig2 = plot_retrieved_images(run, dataset, n_queries=2, k=3)
    assert len(fig2.axes) == 2 * 4
    retrieved = run.retrieve("01", k=3)
    assert len(retrieved) == N_TEST
    assert all(len(r) == 3 for r in retrieved["retrieved"])
    plt.close("all")


def test_the_shipped_config_parses():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "decode_simulated_fmri.yaml"
    config = DecodeConfig.from_yaml(path, ["train.epochs=3"])
    assert config.dataset == "default"
    assert config.train.epochs == 3
    assert config.train.model == "mindeye2"
    # the tuned recipe: no residual block, the CLIP loss plus 5 x the backbone's MSE
    assert config.train.model_kwargs["n_blocks"] == 0
    assert config.train.loss == "clip"
    assert config.train.regression_weight == 5.0


# ---------------------------------------------------------------------- reconstruction


def test_reconstruction_from_the_decoded_embeddings(run, dataset, tmp_path):
    from brainalign.pipelines.reconstruct import load_stimulus_images, reconstruct_from_decoding
    from brainalign.reconstruct.image_decoder import DECODER_LABEL

    recon = reconstruct_from_decoding(
        run, dataset, image_size=16, epochs=3, n_bootstrap=20, out_dir=tmp_path, verbose=False
    )
    assert set(recon.images) == {"01", "02", "ceiling"}
    assert recon.images["01"].shape == (N_TEST, 16, 16, 3)
    np.testing.assert_array_equal(recon.seen, load_stimulus_images(dataset, run.test_ids, size=16))
    metrics = recon.metrics
    assert set(metrics["source"]) == {"01", "02", "ceiling"}
    assert {"pixcorr", "ssim"} <= set(metrics["metric"])
    assert metrics["value"].notna().all()
    assert (metrics["decoder"] == DECODER_LABEL).all()
    assert list(recon.summary().index) == ["01", "02", "mean", "ceiling"]
    assert (tmp_path / "reconstructions.png").stat().st_size > 1000
    table = pd.read_csv(tmp_path / "reconstruction_metrics.tsv", sep="\t", dtype={"source": str})
    assert len(table) == len(metrics)
    assert "stand-in" in str(recon)


def test_a_run_with_a_regression_term_is_drawn_from_its_backbone(run, dataset, monkeypatch):
    """Benchetrit et al. generate from the MSE head: with regression_weight > 0 the stand-in
    decoder draws the backbone's regression of the embedding, not the projector's output."""
    from brainalign.pipelines import reconstruct as R

    train = run.config.train.replace(regression_weight=2.0, epochs=3, out_dir=None)
    reg = decode_simulated_fmri(dataset, config=run.config.replace(train=train), verbose=False)
    drawn = []
    original = R._image_decoder

    def recording_decoder(*args, **kwargs):
        standin = original(*args, **kwargs)
        decode = standin.decode

        def record(emb):
            drawn.append(np.asarray(emb))
            return decode(emb)

        standin.decode = record
        return standin

    monkeypatch.setattr(R, "_image_decoder", recording_decoder)
    recon = R.reconstruct_from_decoding(
        reg, dataset, image_size=16, epochs=1, n_bootstrap=20, verbose=False
    )
    assert "backbone outputs" in recon.method
    backbone = R._backbone_outputs(reg.model, R._prepared(reg, dataset))
    assert len(drawn) == len(dataset.subjects) + 1  # every subject, then the ceiling
    for sub, emb in zip(dataset.subjects, drawn, strict=False):
        np.testing.assert_allclose(emb, backbone[sub], rtol=1e-5, atol=1e-6)
        assert not np.allclose(emb, reg.embeddings["contrastive"][sub], atol=1e-3)
    # the run without the term draws its projected embeddings
    drawn.clear()
    plain = R.reconstruct_from_decoding(
        run, dataset, image_size=16, epochs=1, n_bootstrap=20, verbose=False
    )
    assert "contrastive embeddings drawn directly" in plain.method
    np.testing.assert_allclose(drawn[0], run.embeddings["contrastive"]["01"], rtol=1e-6)


def test_cli_evaluate_and_reconstruct_a_run(run, tmp_path, capsys, monkeypatch):
    from brainalign import cli

    monkeypatch.setenv("BRAINALIGN_CACHE", str(tmp_path / "cache"))
    assert cli.main(["evaluate", str(run.out_dir), "--no-ridge"]) == 0
    assert "n-way" in capsys.readouterr().out
    out = tmp_path / "recon"
    args = ["reconstruct", str(run.out_dir), "--out", str(out), "--epochs", "2", "--quiet"]
    assert cli.main(args) == 0
    assert "stand-in" in capsys.readouterr().out
    assert (out / "reconstructions.png").is_file()
    assert list(out.glob("image_decoder-*/image_decoder.safetensors"))
    blended = tmp_path / "recon-low"
    args = ["reconstruct", str(run.out_dir), "--out", str(blended), "--epochs", "2", "--quiet"]
    assert cli.main([*args, "--low-level", "--strength", "0.5", "--decoder-images", "20"]) == 0
    table = pd.read_csv(blended / "reconstruction_metrics.tsv", sep="\t", dtype={"source": str})
    methods = table.loc[table["source"] != "ceiling", "method"]
    assert methods.str.contains("strength=0.5").all()
    assert methods.str.contains("stand-in decoder trained on 20 of the 48 training").all()


def test_a_prior_weight_trains_the_joint_prior_that_reconstruction_uses(dataset, run, tmp_path):
    """MindEye's two heads: ``train.prior_weight > 0`` trains a diffusion prior beside the
    contrastive head; it is in the checkpoint and reconstruct_from_decoding draws through it."""
    from brainalign.pipelines.reconstruct import reconstruct_from_decoding
    from brainalign.reconstruct.prior import DiffusionPrior, load_joint_prior

    values = {**TINY_CONFIG, "dataset": str(dataset.folder), "n_bootstrap": 0}
    values["train"] = {
        **TINY_CONFIG["train"],
        "epochs": 3,
        "prior_weight": 1.0,
        "prior_kwargs": {"width": 32, "depth": 1, "n_heads": 2},
    }
    config = DecodeConfig.from_dict(values)
    targets = pd.DataFrame(run.targets, index=run.stimulus_ids)
    res = decode_simulated_fmri(
        dataset, config=config, targets=targets, out_dir=tmp_path / "run", verbose=False
    )
    assert isinstance(res.prior, DiffusionPrior)
    history = [h for h in res.history if h.get("event", "epoch") == "epoch"]
    assert all(np.isfinite(h["train_prior_loss"]) for h in history)
    saved = load_joint_prior(res.checkpoint)
    for name, value in res.prior.state_dict().items():
        torch.testing.assert_close(saved.state_dict()[name], value)
    recon = reconstruct_from_decoding(
        res, dataset, image_size=16, epochs=1, n_bootstrap=5, low_level=False, verbose=False
    )
    assert "prior" in recon.method


def test_a_run_is_not_resumed_on_another_dataset(dataset, tmp_path):
    """The weights of a run trained on one dataset would load into a model for another with
    the same voxel counts (e.g. an earlier version of the default dataset): refused."""
    import json

    other = simulate_fmri_dataset(
        tmp_path / "other", seed=4, feature_cache_dir=tmp_path / "features", **TINY
    )
    train = TrainConfig(model="linear", epochs=1, batch_size=32, device="cpu", log_every=50)
    config = DecodeConfig(train=train, n_bootstrap=0, n_draws=2, gallery_sizes=(2, N_TEST))
    out = tmp_path / "run"
    first = decode_simulated_fmri(dataset, config=config, out_dir=out, verbose=False)
    record = json.loads((out / "dataset.json").read_text())
    assert record["folder"] == str(dataset.folder.resolve())
    assert len(record["manifest_sha256"]) == 64
    with pytest.raises(ValueError, match=r"was trained on the dataset .* Give another out_dir"):
        decode_simulated_fmri(other, config=config, out_dir=out, resume=True, verbose=False)
    assert json.loads((out / "dataset.json").read_text()) == record  # nothing overwritten
    # a run written before the record existed: its decode.yaml names the dataset
    (out / "dataset.json").unlink()
    with pytest.raises(ValueError, match=r"was trained on the dataset"):
        decode_simulated_fmri(other, config=config, out_dir=out, resume=True, verbose=False)
    again = decode_simulated_fmri(dataset, config=config, out_dir=out, resume=True, verbose=False)
    for sub, emb in first.embeddings["contrastive"].items():  # the finished run's weights
        np.testing.assert_array_equal(again.embeddings["contrastive"][sub], emb)
    assert json.loads((out / "dataset.json").read_text()) == record
