"""The main job (``brainalign demo``) and the manifest subcommands of the command line."""

from __future__ import annotations

import numpy as np
import pytest

from brainalign import cli
from brainalign.io.manifest import list_manifests
from brainalign.pipelines.demo import load_example_recordings, manifest_table


def test_manifest_table_lists_every_shipped_manifest():
    table = manifest_table()
    assert table["name"].tolist() == list_manifests()
    for name in ("nsd", "things_eeg2", "things_meg", "meg_masc", "mous", "broderick2018"):
        assert name in set(table["name"])


def test_example_recordings_are_the_real_wheel_files():
    import nibabel as nib
    from nibabel.testing import data_path

    recs = load_example_recordings()
    func = recs["functional.nii"]
    img = nib.load(f"{data_path}/functional.nii")
    assert func.data.shape[0] == img.shape[-1] == 20
    assert func.tr == 2.0
    # each column is the time course of the voxel at its coordinates
    to_ijk = np.linalg.inv(img.affine)
    ijk = np.rint(nib.affines.apply_affine(to_ijk, func.voxel_coords)).astype(int)
    raw = np.asarray(img.dataobj, dtype=np.float64)
    for col in (0, func.n_features // 2, func.n_features - 1):
        i, j, k = ijk[col]
        np.testing.assert_allclose(func.data[:, col], raw[i, j, k], rtol=1e-6)
    assert recs["task.func.gii"].kind == "timeseries"


def test_demo_runs_the_main_job(capsys, tmp_path, monkeypatch):
    """The whole demo on the default simulated dataset (generated here once, ~1.5 min), with a
    shorter decoder training than the shipped config (the full one: the slow test below)."""
    from brainalign.pipelines.demo import run_demo

    monkeypatch.setenv("BRAINALIGN_CACHE", str(tmp_path / "cache"))
    quick = {
        # 3 epochs of ~29,000 trials; one ridge penalty: no cross-validation (fitted twice here)
        "decode_overrides": ["train.epochs=3", "ridge_alphas=[3162.0]"],
        "reconstruction_epochs": 2,
        "meeg_overrides": ["train.epochs=2", "n_bootstrap=50", "block_duration=10"],
        "meeg_duration": 60.0,
    }
    results = run_demo(tmp_path / "data", verbose=False, **quick)
    out = capsys.readouterr().out
    assert "Dataset manifests" in out
    assert "OK: 10 present" in out
    assert "<Recording fmri" in out
    assert "<SimulatedFMRI" in out
    assert "4 subjects" in out
    assert "OK: 11 present" in out  # the generated dataset matches the shipped manifest
    # RSA on the measured test betas recovers the generating layer of every region
    assert "generating layer recovered in 4 of 4 regions" in out
    assert results["best_layers"]["recovered"].all()
    assert set(results["rsa"]["subject"]) == {"01", "02", "03", "04"}
    assert len(results["rsa"]) == 4 * 4 * 4  # subjects x regions x layers
    # decoding: both models far above chance (1/300) in the 300-way test
    summary = results["decoding"].summary()
    assert summary.loc["contrastive", ("brain_to_stimulus", "top1")] > 0.1
    assert summary.loc["ridge", ("brain_to_stimulus", "top1")] > 0.1
    assert "== Reconstruction" in out
    assert "stand-in decoder" in out
    run = tmp_path / "data" / "demo-decode-fmri-v3-seed0"
    assert (run / "reconstruction" / "reconstructions.png").is_file()
    # speech from MEG: segment retrieval beside ridge and the whitened oracle
    assert "Decoding speech from simulated MEG" in out
    meg = results["meeg_decoding"].table
    assert set(meg["model"]) == {"contrastive", "ridge", "ceiling"}
    assert set(meg["protocol"]) == {"segments"}
    ceiling = meg[(meg["model"] == "ceiling") & (meg["metric"] == "top1")]["value"]
    assert ceiling.min() > 0.9
    assert (tmp_path / "data" / "meg-speech-v1-60s-seed0" / "manifest.yaml").is_file()
    manifest = tmp_path / "data" / "fmri-v3-seed0" / "manifest.yaml"
    mtime = manifest.stat().st_mtime_ns

    # a second run loads the cached dataset and evaluates the finished run again
    again = run_demo(tmp_path / "data", verbose=False, **quick)
    assert manifest.stat().st_mtime_ns == mtime
    assert again["decoding"].train_seconds == 0
    np.testing.assert_allclose(
        again["decoding"].summary().to_numpy(), summary.to_numpy(), equal_nan=True
    )


@pytest.mark.slow
def test_cli_demo_with_the_shipped_config(capsys, tmp_path, monkeypatch):
    """``brainalign demo`` as users run it (~15-20 min on 2 cores): the contrastive decoder beats
    ridge and the reconstructions score above chance."""
    monkeypatch.setenv("BRAINALIGN_CACHE", str(tmp_path / "cache"))
    assert cli.main(["demo", "--quiet", "--data-root", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "contrastive beats ridge" in out
    assert "generating layer recovered in 4 of 4 regions" in out


def test_cli_validate_and_fetch(capsys, tmp_path):
    assert cli.main(["validate", "examples", "--no-checksums"]) == 0
    assert "present" in capsys.readouterr().out
    # NSD needs a data-use agreement: a dry run lists the access notes, downloads nothing
    cli.main(["fetch", "nsd", "--root", str(tmp_path), "--dry-run"])
    assert "nsd" in capsys.readouterr().out.lower()
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_user_errors_without_traceback(capsys):
    assert cli.main(["validate", "nds"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "Did you mean 'nsd'" in err


@pytest.mark.parametrize("command", ["manifests"])
def test_cli_manifests(capsys, command):
    assert cli.main([command]) == 0
    assert "meg_masc" in capsys.readouterr().out
