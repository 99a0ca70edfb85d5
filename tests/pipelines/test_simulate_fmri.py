"""The simulated fMRI dataset end to end: real images → EfficientNet-Lite0 → files → readers.

One tiny dataset (20 images of 64 px, 2 subjects, 8 mm voxels) is generated through the real
network; the default-size generation is marked ``slow``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr

from brainalign._utils.errors import ChecksumError
from brainalign.data.simulate._common import zscore_columns
from brainalign.data.simulate.fmri import FMRISimulationConfig
from brainalign.io import Recording, StimulusSet, load_images
from brainalign.pipelines.simulate_fmri import (
    DEFAULT_TRAIN_OVERLAP,
    EFFICIENTNET_REGION_LAYERS,
    SimulatedFMRI,
    compute_layer_features,
    default_simulated_fmri,
    load_simulated_fmri,
    simulate_fmri_dataset,
)
from brainalign.pipelines.stimuli import PHOTO_SOURCES, build_natural_images

TINY = {
    "n_stimuli": 20,
    "n_subjects": 2,
    "n_test": 6,
    "resolution_mm": 8,
    "image_size": 64,
    "verbose": False,
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("sim") / "ds"
    return simulate_fmri_dataset(out, seed=1, feature_cache_dir=cache, **TINY)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_dataset_is_read_back_through_the_readers(dataset):
    assert isinstance(dataset, SimulatedFMRI)
    assert dataset.subjects == ["01", "02"]
    assert isinstance(dataset.stimuli, StimulusSet)
    assert len(dataset.stimuli) == 20
    gt = dataset.ground_truth
    assert gt.region_layers == EFFICIENTNET_REGION_LAYERS
    counts = []
    for sub in dataset.subjects:
        rec = dataset[sub]
        assert isinstance(rec, Recording)
        assert rec.modality == "fmri"
        assert rec.kind == "trials"
        s = gt.subject(sub)
        counts.append(rec.n_features)
        np.testing.assert_array_equal(rec.roi_labels, s["voxel_region"])
        np.testing.assert_array_equal(np.argwhere(rec.mask), s["voxel_ijk"])
        # every trial's stimulus is in the stimulus set, the test split is the shared set
        assert set(rec.trials["stimulus_id"]) <= set(dataset.stimuli.ids)
        test = set(rec.trials.loc[rec.trials["split"] == "test", "stimulus_id"])
        assert test == set(dataset.test_ids)
        assert (rec.trials.groupby("stimulus_id").size() == 3).all()
        # the betas are the noise-free responses plus noise, at int16 / 300 precision
        rows = pd.Index(s["stimulus_ids"]).get_indexer(rec.trials["stimulus_id"])
        residual = rec.data - s["clean"][rows]
        assert np.all(np.abs(np.round(rec.data * 300) - rec.data * 300) < 1e-3)
        assert abs(float(residual.mean())) < 0.5
        # voxel coordinates lie in MNI space, in the occipital/parietal half of the brain
        assert np.all(rec.voxel_coords[:, 1] < 0)
    assert counts[0] != counts[1]  # subjects differ in voxel counts
    categories = set(dataset.stimuli.table["category"])
    assert {"face", "non-face"} <= categories
    assert categories - {"face", "non-face"} <= set(PHOTO_SOURCES)


def test_same_seed_gives_same_bytes(dataset, cache, tmp_path):
    again = simulate_fmri_dataset(tmp_path / "again", seed=1, feature_cache_dir=cache, **TINY)
    first, second = _files(dataset.folder), _files(again.folder)
    assert sorted(first) == sorted(second)
    assert len(first) == 20 + 1 + 2 * 4 + 5
    for name, content in first.items():
        assert content == second[name], name
    # nothing was left beside the output folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]
    # files get the umask's permissions (not mkstemp's private 0600)
    probe = tmp_path / "probe"
    probe.touch()
    modes = {p.stat().st_mode & 0o777 for p in again.folder.rglob("*") if p.is_file()}
    assert modes == {probe.stat().st_mode & 0o777}


def test_generating_layer_tops_rsa_with_the_real_network(dataset, cache):
    layers = list(EFFICIENTNET_REGION_LAYERS.values())
    feats = compute_layer_features(
        dataset.stimuli, layers, image_size=64, cache_dir=cache, verbose=False
    )
    ids = list(dataset.stimuli.ids)
    gt = dataset.ground_truth
    for sub in dataset.subjects:
        s = gt.subject(sub)
        rows = [ids.index(i) for i in s["stimulus_ids"]]
        layer_rdms = {
            name: squareform(pdist(zscore_columns(f)[0], "correlation"))[np.ix_(rows, rows)]
            for name, f in feats.items()
        }
        for region, layer in EFFICIENTNET_REGION_LAYERS.items():
            clean = s["clean"][:, s["voxel_region"] == region].astype(np.float64)
            brain = pdist(clean - clean.mean(axis=0), "correlation")
            scores = {
                name: spearmanr(brain, squareform(rdm, checks=False)).statistic
                for name, rdm in layer_rdms.items()
            }
            assert max(scores, key=scores.get) == layer, (sub, region, scores)


def test_pooled_layers_keep_their_values_and_share_the_targets_cache(dataset, cache):
    """global_pool (the VOT layer) has no grid: its 1,280 values are kept, under the cache
    entry that decoding_targets reads, so the decoding job does not run the network again."""
    from brainalign.pipelines.decode import decoding_targets

    feats = compute_layer_features(
        dataset.stimuli, ["blocks.1", "global_pool"], image_size=64, cache_dir=cache,
        verbose=False,
    )  # fmt: skip
    n = len(dataset.stimuli)
    assert feats["blocks.1"].shape == (n, 24 * 4 * 4)  # grid-pooled 4 x 4
    assert feats["global_pool"].shape == (n, 1280)
    entries = sorted(Path(cache).rglob("*"))
    targets = decoding_targets(dataset, cache_dir=cache, verbose=False)
    assert sorted(Path(cache).rglob("*")) == entries  # a cache hit: nothing new written
    np.testing.assert_array_equal(targets.to_numpy(), feats["global_pool"])
    assert EFFICIENTNET_REGION_LAYERS["VOT"] == "global_pool"


def test_reload_checks_the_files(dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset.folder, copy)
    reloaded = load_simulated_fmri(copy)
    for sub in dataset.subjects:
        np.testing.assert_array_equal(reloaded[sub].data, dataset[sub].data)
    betas = copy / "sub-01" / "sub-01_betas.hdf5"
    raw = bytearray(betas.read_bytes())
    raw[-10] ^= 0xFF
    betas.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="does not match its manifest"):
        load_simulated_fmri(copy)
    (copy / "sub-02" / "sub-02_design.tsv").unlink()
    with pytest.raises((ChecksumError, FileNotFoundError), match=r"sub-02_design\.tsv"):
        load_simulated_fmri(copy)
    with pytest.raises(FileNotFoundError, match=r"has no 'manifest\.yaml'"):
        load_simulated_fmri(tmp_path)
    with pytest.raises(KeyError, match="No subject '07'"):
        dataset["sub-07"]


def test_existing_output_needs_overwrite(dataset, cache):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        simulate_fmri_dataset(dataset.folder, seed=1, feature_cache_dir=cache, **TINY)


def test_user_images_folder(tmp_path, cache):
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "mine"
    for cat in ("cats", "dogs"):
        (folder / cat).mkdir(parents=True)
        for i in range(4):
            pixels = (rng.random((40 + 7 * i, 50, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / cat / f"{cat}{i}.png")
    ds = simulate_fmri_dataset(
        tmp_path / "ds",
        images=folder,
        n_stimuli=None,
        n_subjects=1,
        n_test=3,
        resolution_mm=8,
        image_size=32,
        feature_cache_dir=cache,
        verbose=False,
    )
    table = ds.stimuli.table
    assert len(table) == 8
    assert sorted(table["original_id"]) == sorted(
        f"{c}{i}" for c in ("cats", "dogs") for i in range(4)
    )
    assert set(table["category"]) == {"cats", "dogs"}
    assert set(ds["01"].trials["category"]) == {"cats", "dogs"}
    img = ds.stimuli.load(ds.stimuli.ids[0])
    assert img.size == (32, 32)


def test_n_test_defaults_to_a_tenth_of_few_images_and_is_checked_before_the_network(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(30):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(
            folder / f"im{i:02d}.png"
        )
    common = {"images": folder, "n_subjects": 1, "resolution_mm": 8, "image_size": 32}
    cache = tmp_path / "features"
    with pytest.raises(ValueError, match=r"n_test=30 \(--n-test\) leaves no training stimulus"):
        simulate_fmri_dataset(
            tmp_path / "bad", n_test=30, feature_cache_dir=cache, verbose=False, **common
        )
    assert not cache.exists()  # refused before the network ran
    assert not (tmp_path / "bad").exists()
    ds = simulate_fmri_dataset(tmp_path / "ds", feature_cache_dir=cache, verbose=False, **common)
    assert len(ds.test_ids) == 3  # 30 images: a tenth of them, not the default's 300


def _stimuli_of(ds, sub):
    return set(ds[sub].trials["stimulus_id"].astype(str))


def test_every_subject_sees_every_image_unless_train_overlap_splits_them(dataset, cache, tmp_path):
    # the default (DEFAULT_TRAIN_OVERLAP = 1): as many images per subject as there are
    assert DEFAULT_TRAIN_OVERLAP == 1.0
    everything = {str(i) for i in dataset.stimuli.ids}
    assert all(_stimuli_of(dataset, sub) == everything for sub in dataset.subjects)
    assert dataset.ground_truth.info["config"]["train_overlap"] == 1.0
    # none shared: every training image is seen by exactly one subject
    split = simulate_fmri_dataset(tmp_path / "split", seed=1, feature_cache_dir=cache,
                                  train_overlap=0.0, **TINY)  # fmt: skip
    test = {str(i) for i in split.test_ids}
    own = [_stimuli_of(split, sub) - test for sub in split.subjects]
    assert not own[0] & own[1]
    assert own[0] | own[1] == everything - test
    assert all(_stimuli_of(split, sub) >= test for sub in split.subjects)
    # a config's own value is kept when the argument is left at None
    config = FMRISimulationConfig(train_overlap=0.0)
    again = simulate_fmri_dataset(tmp_path / "config", seed=1, feature_cache_dir=cache,
                                  config=config, **TINY)  # fmt: skip
    assert again.ground_truth.info["config"]["train_overlap"] == 0.0
    assert _files(again.folder / "sub-01") == _files(split.folder / "sub-01")


def test_natural_images_are_deterministic_and_varied(tmp_path):
    a = build_natural_images(tmp_path / "a", n_stimuli=12, image_size=24, seed=5)
    build_natural_images(tmp_path / "b", n_stimuli=12, image_size=24, seed=5)
    c = build_natural_images(tmp_path / "c", n_stimuli=12, image_size=24, seed=6)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")
    table = load_images(tmp_path / "a" / "stimuli.tsv").table
    assert list(table["category"][:2]) == ["face", "non-face"]
    pixels = np.stack([np.asarray(a.load(i), dtype=float) for i in a.ids])
    assert pixels.shape == (12, 24, 24, 3)
    assert pixels.reshape(12, -1).std(axis=1).min() > 5  # no blank crop
    assert len({p.tobytes() for p in pixels}) == 12  # all distinct
    assert c.ids.tolist() == a.ids.tolist()


def test_bad_stimulus_arguments(tmp_path):
    with pytest.raises(ValueError, match="'n_stimuli' must be an integer >= 2"):
        build_natural_images(tmp_path, n_stimuli=1)
    with pytest.raises(ValueError, match="'image_size' must be at least 16"):
        build_natural_images(tmp_path, n_stimuli=4, image_size=8)
    with pytest.raises(ValueError, match="'face_fraction' must be in"):
        build_natural_images(tmp_path, n_stimuli=4, face_fraction=2.0)


@pytest.mark.slow
def test_default_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINALIGN_CACHE", str(tmp_path / "cache"))
    start = time.perf_counter()
    ds = default_simulated_fmri(verbose=False)
    elapsed = time.perf_counter() - start
    assert ds.folder == tmp_path / "cache" / "simulated" / "fmri-v3-seed0"
    assert len(ds.stimuli) == 3000
    assert len(ds.test_ids) == 300
    assert ds.ground_truth.region_layers["VOT"] == "global_pool"
    assert len(ds.subjects) == 4
    for sub in ds.subjects:
        assert 1500 < ds[sub].n_features < 4000
        assert ds[sub].trials["stimulus_id"].nunique() == 3000  # every subject sees every image
    start = time.perf_counter()
    again = default_simulated_fmri(verbose=False)
    assert again.folder == ds.folder
    assert time.perf_counter() - start < elapsed  # loaded, not generated again
    oracle = ds.ground_truth.info["oracle_mean"]["top1_mahalanobis"]
    assert oracle > 0.9
    print(f"default dataset generated in {elapsed:.1f} s")
