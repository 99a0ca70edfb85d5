"""``brainalign simulate`` and ``brainalign features`` on the command line."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from brainalign import cli
from brainalign.pipelines.simulate_fmri import load_simulated_fmri


def test_simulate_fmri_writes_a_dataset_that_reads_back(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BRAINALIGN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "ds"
    args = ["simulate", "fmri", "--out", str(out), "--seed", "3", "--quiet"]
    args += ["--n-stimuli", "16", "--n-subjects", "2", "--n-test", "4"]
    args += ["--resolution-mm", "8", "--image-size", "64", "--snr", "0.5"]
    assert cli.main(args) == 0
    assert "<SimulatedFMRI" in capsys.readouterr().out
    ds = load_simulated_fmri(out)
    assert ds.subjects == ["01", "02"]
    assert len(ds.stimuli) == 16
    assert ds.ground_truth.info["config"]["snr"] == 0.5
    assert ds.ground_truth.info["config"]["train_overlap"] == 1.0  # the default: all images
    # a second run refuses to clobber the dataset unless told to
    assert cli.main(args) == 2
    assert "overwrite" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite"]) == 0
    # --train-overlap 0: the 12 training images are split between the 2 subjects
    assert cli.main([*args, "--overwrite", "--train-overlap", "0"]) == 0
    ds = load_simulated_fmri(out)
    assert ds.ground_truth.info["config"]["train_overlap"] == 0.0
    assert [ds[s].trials["stimulus_id"].nunique() for s in ds.subjects] == [10, 10]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_simulate_meg_writes_bids(tmp_path, capsys):
    out = tmp_path / "meg"
    args = ["simulate", "meg", "--out", str(out), "--quiet", "--n-subjects", "1"]
    args += ["--duration", "15", "--sfreq", "100", "--n-channels", "16"]
    assert cli.main(args) == 0
    assert "meg" in capsys.readouterr().out.lower()
    assert list(out.rglob("*_events.tsv"))


def test_features_writes_hdf5(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        pixels = rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"im{i}.png")
    out = tmp_path / "features.h5"
    args = ["features", str(folder), "--layer", "blocks.1", "--layer", "blocks.3"]
    args += ["--pooling", "grid", "--grid-size", "2", "--out", str(out), "--no-cache", "--quiet"]
    assert cli.main(args) == 0
    assert out.is_file()
    with h5py.File(out) as f:
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else 0)
    assert any("blocks.1" in n for n in names)
    assert any("blocks.3" in n for n in names)


def test_simulate_rejects_a_bad_modality(capsys):
    with pytest.raises(SystemExit):
        cli.main(["simulate", "pet", "--out", "x"])
    assert "invalid choice" in capsys.readouterr().err


def test_simulate_eeg_images_writes_bids_with_image_events(tmp_path, monkeypatch, capsys):
    import pandas as pd

    monkeypatch.setenv("BRAINALIGN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eeg"
    args = ["simulate", "eeg", "--paradigm", "images", "--out", str(out), "--quiet"]
    args += ["--n-subjects", "1", "--n-stimuli", "30", "--image-size", "64", "--n-channels", "16"]
    assert cli.main(args) == 0
    capsys.readouterr()
    events = pd.read_csv(next(out.rglob("*_events.tsv")), sep="\t")
    assert {"stimulus_id", "image", "split"} <= set(events.columns)
