"""``brainalign rsa``: layers vs regions on a small simulated dataset, from a YAML config."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from brainalign import cli
from brainalign.pipelines.compare_layers import (
    RSAConfig,
    load_rsa_config,
    region_test_patterns,
    run_rsa,
)
from brainalign.pipelines.simulate_fmri import simulate_fmri_dataset

# 32 shared test images: enough stimuli for the RDMs to tell the layers apart
SMALL = {
    "n_stimuli": 40,
    "n_subjects": 3,
    "n_test": 32,
    "resolution_mm": 8,
    "image_size": 64,
    "verbose": False,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAINALIGN_CACHE", str(cache))
    out = tmp_path_factory.mktemp("sim") / "ds"
    yield simulate_fmri_dataset(out, seed=1, feature_cache_dir=cache / "features", **SMALL)
    mp.undo()


def test_region_patterns_are_the_averaged_test_betas(dataset):
    patterns = region_test_patterns(dataset)
    assert list(patterns) == list(dataset.rois["name"])
    rec = dataset["02"]
    voxels = np.flatnonzero(np.asarray(rec.roi_labels) == "VOT")
    sid = str(dataset.test_ids[3])
    trials = rec.trials["stimulus_id"].astype(str).to_numpy() == sid
    expected = rec.data[trials][:, voxels].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(patterns["VOT"][1][3], expected, rtol=1e-6)
    assert len(patterns["EVC"]) == 3


def test_cli_rsa_from_a_config_recovers_the_generating_layers(dataset, tmp_path, capsys):
    config = tmp_path / "rsa.yaml"
    config.write_text(
        yaml.safe_dump(
            {"dataset": str(dataset.folder), "n_permutations": 99, "n_bootstrap": 50, "seed": 3}
        )
    )
    out = tmp_path / "results"
    args = ["rsa", str(config), "--out", str(out), "--set", "topological=true", "--quiet"]
    assert cli.main(args) == 0
    capsys.readouterr()
    table = pd.read_csv(out / "rsa.csv")
    assert set(table["transform"]) == {"none", "geotopological"}
    assert len(table) == 2 * 4 * 4  # transforms x regions x layers
    best = pd.read_csv(out / "best_layers.csv")
    assert best["recovered"].all(), best
    assert (out / "layer_profiles.png").stat().st_size > 1000
    assert yaml.safe_load((out / "config.yaml").read_text())["n_permutations"] == 99


def test_run_rsa_returns_the_table(dataset, tmp_path):
    config = RSAConfig(
        dataset=str(dataset.folder),
        layers=["blocks.1", "blocks.6"],
        topological=False,
        n_permutations=0,
        n_bootstrap=0,
        out=str(tmp_path / "r"),
    )
    table = run_rsa(config, verbose=False)
    assert set(table["layer"]) == {"blocks.1", "blocks.6"}
    assert table["value"].notna().all()


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="unknown RSA configuration key 'n_permutation'"):
        load_rsa_config(None, ["n_permutation=10"])
    with pytest.raises(ValueError, match="must look like key=value"):
        load_rsa_config(None, ["topological"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_rsa_config(tmp_path / "nope.yaml")
    assert load_rsa_config(None, ["layers=[blocks.1, blocks.3]"]).layers == ["blocks.1", "blocks.3"]
    with pytest.raises(FileNotFoundError, match="brainalign simulate fmri"):
        run_rsa(RSAConfig(dataset=str(tmp_path / "missing")), verbose=False)
