"""The NSD-like fMRI simulator: ground truth, noise ceilings, determinism, real formats.

Random features stand in for network layers (no network runs here); everything written is read
back with the real readers (h5py through load_nsd_betas, nibabel, pandas).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from brainalign._utils.errors import BrainAlignWarning
from brainalign.data.simulate import (
    FMRISimulationConfig,
    RegionSpec,
    compute_ncsnr,
    load_brain_mask,
    load_fmri_ground_truth,
    noise_ceiling,
    simulate_fmri,
    write_fmri_simulation,
)
from brainalign.data.simulate._common import (
    child_rng,
    correlation_matrix,
    generate_atomically,
    reduce_features,
    top1_accuracy,
)
from brainalign.data.simulate.fmri import DEFAULT_REGIONS, subject_paths
from brainalign.io import load_nsd_betas, read_design_table, validate_dataset

N_STIM = 48
LAYERS = {"early": 30, "mid": 41, "late": 52, "top": 63}
REGION_LAYERS = {"EVC": "early", "LOC": "mid", "IPS": "late", "VOT": "top"}
SMALL = {"n_subjects": 2, "n_test": 12, "resolution_mm": 8, "seed": 3}


def _features(seed: int = 0, n: int = N_STIM) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # low-rank structure plus noise, trailing axes of different sizes (flattened by the simulator)
    out = {}
    for name, d in LAYERS.items():
        latent = rng.standard_normal((n, 6))
        out[name] = (latent @ rng.standard_normal((6, d)) + rng.standard_normal((n, d))).reshape(
            n, d, 1
        )
    return out


def _ids(n: int = N_STIM) -> list[str]:
    return [f"s{i:03d}" for i in range(n)]


@pytest.fixture(scope="module")
def sim():
    return simulate_fmri(
        _features(),
        _ids(),
        region_layers=REGION_LAYERS,
        categories=["a", "b"] * (N_STIM // 2),
        **SMALL,
    )


@pytest.fixture(scope="module")
def written(sim, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim") / "ds"
    write_fmri_simulation(sim, folder)
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_same_bytes_in_every_file(sim, written, tmp_path):
    again = simulate_fmri(
        _features(),
        _ids(),
        region_layers=REGION_LAYERS,
        categories=["a", "b"] * (N_STIM // 2),
        **SMALL,
    )
    write_fmri_simulation(again, tmp_path / "ds")
    first, second = _files(written), _files(tmp_path / "ds")
    assert sorted(first) == sorted(second)
    assert len(first) == 4 * 2 + 5  # 4 files per subject, mask, rois, 2 ground truth, manifest
    for name in first:
        assert first[name] == second[name], name


def test_other_seed_gives_other_data(sim):
    other = simulate_fmri(_features(), _ids(), region_layers=REGION_LAYERS, **{**SMALL, "seed": 4})
    assert not np.array_equal(other.test_ids, sim.test_ids)
    assert other.subjects[0].n_voxels != sim.subjects[0].n_voxels or not np.array_equal(
        other.subjects[0].betas_int16, sim.subjects[0].betas_int16
    )


def test_child_rng_streams_are_independent_and_reproducible():
    a = child_rng(5, "noise", "01").standard_normal(4)
    assert np.array_equal(a, child_rng(5, "noise", "01").standard_normal(4))
    assert not np.array_equal(a, child_rng(5, "noise", "02").standard_normal(4))
    assert not np.array_equal(a, child_rng(6, "noise", "01").standard_normal(4))
    with pytest.raises(ValueError, match="non-negative integer"):
        child_rng(-1, "x")


# ------------------------------------------------------------------------------ the design


def test_subjects_differ_in_voxels_and_weights(sim):
    a, b = sim.subjects
    assert a.n_voxels != b.n_voxels
    assert a.arrays["weights/EVC"].shape[1] != b.arrays["weights/EVC"].shape[1] or not np.allclose(
        a.arrays["weights/EVC"], b.arrays["weights/EVC"]
    )
    for sub in sim.subjects:  # every region has voxels, labels are consistent
        assert set(sub.voxel_region) == set(REGION_LAYERS)
        assert np.array_equal(np.argwhere(sub.mask), sub.arrays["voxel_ijk"])


def test_shared_test_set_is_seen_by_every_subject_three_times(sim):
    cfg = sim.config
    assert len(sim.test_ids) == cfg.n_test
    train_sets = []
    for sub in sim.subjects:
        d = sub.design
        test_rows = d[d["split"] == "test"]
        assert set(test_rows["stimulus_id"]) == set(sim.test_ids)
        assert (test_rows.groupby("stimulus_id").size() == cfg.n_repetitions).all()
        assert (d.groupby("stimulus_id").size() == cfg.n_repetitions).all()
        assert sorted(d.groupby("stimulus_id")["repetition"].apply(sorted).iloc[0]) == [0, 1, 2]
        train_sets.append(set(d.loc[d["split"] == "train", "stimulus_id"]))
    shared = train_sets[0] & train_sets[1]
    n_train = N_STIM - cfg.n_test
    assert cfg.train_overlap == 1.0  # the default: every subject sees every stimulus
    assert len(shared) == n_train
    assert len(train_sets[0] | train_sets[1]) == n_train  # every training stimulus is used
    assert not (train_sets[0] & set(sim.test_ids))


@pytest.mark.parametrize("overlap", [0.0, 0.25])
def test_train_overlap_shares_that_fraction_and_splits_the_rest(overlap):
    from brainalign.data.simulate.fmri import _allocate

    cfg = FMRISimulationConfig(**{**SMALL, "n_subjects": 3}, train_overlap=overlap)
    test, per_subject = _allocate(N_STIM, cfg)
    n_train = N_STIM - cfg.n_test
    train_sets = [set(p) - set(test) for p in per_subject]
    shared = set.intersection(*train_sets)
    assert len(shared) == round(overlap * n_train)
    own = [t - shared for t in train_sets]
    assert sum(len(o) for o in own) == n_train - len(shared)  # the rest: disjoint blocks
    assert set.union(*train_sets) == set(range(N_STIM)) - set(test)
    assert max(len(o) for o in own) - min(len(o) for o in own) <= 1
    assert all(set(test) <= set(p) for p in per_subject)


def test_design_table_columns_and_timing(sim):
    d = sim.subjects[0].design
    assert list(d.columns[:7]) == [
        "subject",
        "session",
        "run",
        "trial",
        "onset",
        "duration",
        "stimulus_id",
    ]
    assert (d["subject"] == "sub-01").all()
    first_run = d[(d["session"] == "ses-01") & (d["run"] == 1)]
    assert np.allclose(np.diff(first_run["onset"]), sim.config.trial_interval)
    assert (d["duration"] == sim.config.trial_duration).all()
    assert set(d["category"]) <= {"a", "b"}


# ------------------------------------------------------------------------------ round trip


def test_round_trip_through_the_readers(sim, written):
    for sub in sim.subjects:
        paths = {k: written / v for k, v in subject_paths(sub.subject).items()}
        rec = load_nsd_betas(
            paths["betas"], paths["design"], subject=sub.subject, mask=paths["mask"]
        )
        assert rec.data.dtype == np.float32
        np.testing.assert_array_equal(rec.data, sub.betas)  # exactly int16 / 300
        # within the int16 / 300 precision of the noise-free response + noise
        assert np.abs(rec.data - sub.betas_int16 / 300.0).max() < 1e-5
        assert list(rec.trials["stimulus_id"]) == list(sub.design["stimulus_id"])
        assert list(rec.trials["split"]) == list(sub.design["split"])
        np.testing.assert_array_equal(rec.mask, sub.mask)
        np.testing.assert_allclose(
            rec.voxel_coords, nib.affines.apply_affine(sim.affine, np.argwhere(sub.mask))
        )
        roi = np.asarray(nib.load(paths["roi"]).dataobj)
        names = pd.read_csv(written / "rois.tsv", sep="\t").set_index("label")["name"]
        np.testing.assert_array_equal(names.loc[roi[sub.mask]].to_numpy(), sub.voxel_region)
        table = read_design_table(paths["design"])
        assert (table["subject"] == sub.subject).all()


def test_betas_on_disk_are_nsd_int16_scaled_by_300(sim, written):
    import h5py

    sub = sim.subjects[1]
    with h5py.File(written / subject_paths(sub.subject)["betas"], "r") as h5:
        ds = h5["betas"]
        assert ds.dtype == np.int16
        assert ds.shape == (len(sub.design), sub.n_voxels)
        assert float(ds.attrs["scale"]) == 300.0
        np.testing.assert_array_equal(ds[()], sub.betas_int16)
    gt = load_fmri_ground_truth(written).subject(sub.subject)
    trial_rows = pd.Index(gt["stimulus_ids"]).get_indexer(sub.design["stimulus_id"])
    residual = sub.betas_int16 / 300.0 - gt["clean"][trial_rows]
    assert np.isfinite(residual).all()
    assert np.abs(residual.mean()) < 0.2  # noise is centred


def test_manifest_validates_and_detects_damage(written, tmp_path):
    import shutil

    report = validate_dataset(written / "manifest.yaml", root=written, progress=False)
    assert report.ok, str(report)
    assert len(report.entries) == 4 * 2 + 4
    assert all(e.verified for e in report.entries)
    copy = tmp_path / "copy"
    shutil.copytree(written, copy)
    design = copy / subject_paths("02")["design"]
    design.write_bytes(design.read_bytes().replace(b"train", b"trian", 1))
    report = validate_dataset(copy / "manifest.yaml", root=copy, progress=False)
    assert not report.ok
    assert [e.path for e in report.corrupt] == [subject_paths("02")["design"]]


# ------------------------------------------------------------------------------ ground truth


def test_noise_free_responses_are_the_documented_readout(written):
    gt = load_fmri_ground_truth(written)
    assert gt.region_layers == REGION_LAYERS
    ids = list(gt.arrays["stimulus_ids"])
    for label in gt.subjects:
        s = gt.subject(label)
        rows = [ids.index(i) for i in s["stimulus_ids"]]
        for region, layer in REGION_LAYERS.items():
            cols = s["voxel_region"] == region
            x = gt.features[layer][rows].astype(np.float64)
            expected = (
                s["baseline"][cols] + s[f"signal_scale/{region}"] * x @ s[f"weights/{region}"]
            )
            np.testing.assert_allclose(s["clean"][:, cols], expected, rtol=1e-4, atol=1e-4)
            w = s[f"weights/{region}"]
            k, n = w.shape
            gram = w @ w.T if k <= n else w.T @ w
            np.testing.assert_allclose(gram, np.eye(min(k, n)), atol=1e-10)


def _rdm(x: np.ndarray) -> np.ndarray:
    """Correlation-distance RDM (condensed) of patterns (n_stimuli, n_channels)."""
    return pdist(np.asarray(x, dtype=np.float64), metric="correlation")


def test_rsa_puts_the_generating_layer_on_top(sim):
    features = _features()
    rdms = {}
    for name, f in features.items():
        flat = f.reshape(N_STIM, -1)
        rdms[name] = _rdm((flat - flat.mean(0)) / flat.std(0))
    ids = list(sim.stimulus_ids)
    for sub in sim.subjects:
        rows = [ids.index(i) for i in sub.stimulus_ids]
        for region, layer in REGION_LAYERS.items():
            clean = sub.clean[:, sub.voxel_region == region]
            brain = _rdm(clean - clean.mean(axis=0))
            scores = {
                name: spearmanr(brain, pdist_rows(rdm, rows, N_STIM)).statistic
                for name, rdm in rdms.items()
            }
            assert max(scores, key=scores.get) == layer, (sub.subject, region, scores)
            assert scores[layer] > 0.6


def pdist_rows(condensed: np.ndarray, rows: list[int], n: int) -> np.ndarray:
    """The condensed RDM of a subset of the stimuli."""
    from scipy.spatial.distance import squareform

    return squareform(squareform(condensed, checks=False)[np.ix_(rows, rows)], checks=False)


def test_achieved_snr_matches_the_requested_one():
    n = 150
    sim = simulate_fmri(
        _features(1, n),
        _ids(n),
        region_layers=REGION_LAYERS,
        n_subjects=2,
        n_test=30,
        resolution_mm=6,
        snr=0.5,
        snr_spread=0.5,
        seed=1,
    )
    for sub in sim.subjects:
        requested, achieved = sub.arrays["snr"], sub.arrays["snr_achieved"]
        ratio = np.median(achieved / requested)
        assert 0.9 < ratio < 1.1, ratio
        assert np.median(requested) == pytest.approx(0.5, rel=0.15)
        assert np.corrcoef(np.log(requested), np.log(achieved))[0, 1] > 0.8
        # the noise ceiling estimated from the data follows the analytic one
        assert np.median(sub.arrays["nc_data"] - sub.arrays["nc_true"]) == pytest.approx(0, abs=4)
        assert np.corrcoef(sub.arrays["nc_data"], sub.arrays["nc_true"])[0, 1] > 0.7


def test_constant_snr_without_spread():
    sim = simulate_fmri(
        _features(), _ids(), region_layers=REGION_LAYERS, snr=0.4, snr_spread=0.0, **SMALL
    )
    np.testing.assert_allclose(sim.subjects[0].arrays["snr"], 0.4)
    np.testing.assert_allclose(sim.subjects[0].arrays["nc_true"], 100 * 0.4 / (0.4 + 1 / 3))


def _naive_ncsnr(betas, stim, sessions):
    z = np.empty_like(betas, dtype=float)
    for s in np.unique(sessions):
        rows = sessions == s
        z[rows] = (betas[rows] - betas[rows].mean(0)) / betas[rows].std(0, ddof=1)
    out = []
    for v in range(betas.shape[1]):
        variances = [
            np.var(z[stim == i, v], ddof=1) for i in np.unique(stim) if (stim == i).sum() > 1
        ]
        noise = np.mean(variances)
        out.append(np.sqrt(max(0.0, 1 - noise) / noise))
    return np.array(out)


def test_noise_ceilings_equal_a_direct_recomputation(sim, written):
    gt = load_fmri_ground_truth(written)
    n = sim.config.n_repetitions
    for label in gt.subjects:
        s = gt.subject(label)
        paths = {k: written / v for k, v in subject_paths(label).items()}
        rec = load_nsd_betas(paths["betas"], paths["design"], subject=label, mask=paths["mask"])
        stim = rec.trials["stimulus_id"].to_numpy()
        sessions = rec.trials["session"].to_numpy()
        ncsnr = _naive_ncsnr(rec.data.astype(float), stim, sessions)
        np.testing.assert_allclose(s["ncsnr"], ncsnr, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(s["nc_data"], 100 * ncsnr**2 / (ncsnr**2 + 1 / n), rtol=1e-6)
        np.testing.assert_allclose(s["nc_true"], 100 * s["snr"] / (s["snr"] + 1 / n), rtol=1e-12)
        # achieved SNR and its ceiling from the saved noise-free responses and the read betas
        rows = pd.Index(s["stimulus_ids"]).get_indexer(stim)
        clean = s["clean"].astype(float)
        achieved = clean.var(0) / (rec.data - clean[rows]).var(0)
        np.testing.assert_allclose(s["snr_achieved"], achieved, rtol=1e-4)
        np.testing.assert_allclose(s["nc_achieved"], 100 * achieved / (achieved + 1 / n), rtol=1e-4)


def test_compute_ncsnr_recovers_a_known_snr():
    rng = np.random.default_rng(0)
    n_stim, n_rep, n_vox, snr = 2000, 3, 9, 0.25
    signal = rng.standard_normal((n_stim, n_vox)) * np.sqrt(snr)
    stim = np.repeat(np.arange(n_stim), n_rep)
    betas = signal[stim] + rng.standard_normal((len(stim), n_vox))
    ncsnr = compute_ncsnr(betas, stim)
    np.testing.assert_allclose(ncsnr**2, snr, rtol=0.25)
    assert np.mean(ncsnr**2) == pytest.approx(snr, rel=0.08)
    assert noise_ceiling(0.5, 3) == pytest.approx(100 * 0.25 / (0.25 + 1 / 3))
    # a voxel without signal gets ncsnr 0
    assert compute_ncsnr(rng.standard_normal((30, 2)), np.repeat(np.arange(10), 3)).min() >= 0
    with pytest.raises(ValueError, match="more than once"):
        compute_ncsnr(betas[:5], np.arange(5))
    with pytest.raises(ValueError, match="'stimulus_ids' has 4 entries"):
        compute_ncsnr(betas[:5], np.arange(4))


def _naive_oracle_correlation(avg, clean, baseline):
    n = len(avg)
    hits = 0
    for i in range(n):
        r = [np.corrcoef(avg[i] - baseline, clean[j] - baseline)[0, 1] for j in range(n)]
        hits += int(np.argmax(r) == i)
    return hits / n


def test_oracle_equals_a_naive_identification(sim, written):
    gt = load_fmri_ground_truth(written)
    for label in gt.subjects:
        s = gt.subject(label)
        paths = {k: written / v for k, v in subject_paths(label).items()}
        rec = load_nsd_betas(paths["betas"], paths["design"], subject=label, mask=paths["mask"])
        test = [i for i in s["stimulus_ids"] if i in set(gt.test_ids)]
        avg = np.stack([rec.data[rec.trials["stimulus_id"] == i].mean(0) for i in test])
        rows = pd.Index(s["stimulus_ids"]).get_indexer(test)
        expected = _naive_oracle_correlation(avg, s["clean"][rows], s["baseline"])
        oracle = gt.info["subjects"][label]["oracle"]
        assert oracle["top1_correlation"] == pytest.approx(expected)
        assert oracle["n_way"] == len(gt.test_ids) == 12
        assert oracle["chance"] == pytest.approx(1 / 12)
        assert 0 <= oracle["top1_mahalanobis"] <= 1


def test_oracle_tracks_the_snr():
    feats = _features()
    high = simulate_fmri(feats, _ids(), region_layers=REGION_LAYERS, snr=100.0, **SMALL)
    with pytest.warns(BrainAlignWarning, match="exceed the int16 range .* were clipped"):
        low = simulate_fmri(feats, _ids(), region_layers=REGION_LAYERS, snr=1e-3, **SMALL)
    for a, b in zip(high.subjects, low.subjects):
        assert a.info["oracle"]["top1_mahalanobis"] == 1.0
        assert b.info["oracle"]["top1_mahalanobis"] < 0.6
        assert b.info["oracle"]["top1_correlation"] < 0.6


# ------------------------------------------------------------------------------ helpers


def test_reduce_features_keeps_the_correlation_geometry():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((9, 7)) * rng.uniform(0.5, 3, 7)
    scores, info = reduce_features(x, 20)
    # rank of the standardised features once each row is centred: 7 features - 1
    assert scores.shape == (9, 6)
    z = (x - x.mean(0)) / x.std(0)
    cos = (
        scores @ scores.T / np.outer(np.linalg.norm(scores, axis=1), np.linalg.norm(scores, axis=1))
    )
    np.testing.assert_allclose(cos, np.corrcoef(z), atol=1e-10)
    np.testing.assert_allclose(scores.mean(0), 0, atol=1e-10)
    assert info["explained_variance_ratio"].sum() == pytest.approx(1.0)
    few, _ = reduce_features(x, 2)
    np.testing.assert_allclose(np.abs(few), np.abs(scores[:, :2]), atol=1e-10)
    with pytest.raises(ValueError, match="constant"):
        reduce_features(np.ones((5, 3)), 2, name="flat")


def test_correlation_matrix_and_top1_against_naive():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((7, 9)), rng.standard_normal((8, 9))
    naive = np.array([[np.corrcoef(u, v)[0, 1] for v in b] for u in a])
    np.testing.assert_allclose(correlation_matrix(a, b), naive, atol=1e-12)
    scores = np.array([[3.0, 1.0, 0.0], [5.0, 2.0, 1.0], [0.0, 0.0, 1.0]])
    assert top1_accuracy(scores) == pytest.approx(2 / 3)
    assert top1_accuracy(-scores, larger_is_better=False) == pytest.approx(2 / 3)
    assert top1_accuracy(np.ones((3, 3))) == 0.0  # ties are failures


def test_load_brain_mask_is_the_mni152_mask():
    mask, affine = load_brain_mask(8)
    assert mask.dtype == bool
    assert mask.ndim == 3
    np.testing.assert_allclose(np.diag(affine)[:3], 8)
    centre = np.round(np.linalg.solve(affine, [0, -20, 10, 1])[:3]).astype(int)
    assert mask[tuple(centre)]  # the middle of the brain is inside
    assert not mask[0, 0, 0]
    assert not mask.flags.writeable


def test_generate_atomically(tmp_path):
    dest = tmp_path / "out"

    def build(folder):
        (folder / "a.txt").write_text("x")
        return 7

    assert generate_atomically(dest, build) == (dest, 7)
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        generate_atomically(dest, build)

    def other(folder):
        (folder / "b.txt").write_text("y")

    generate_atomically(dest, other, if_exists="keep")
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"]
    generate_atomically(dest, other, if_exists="replace")
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]

    def fail(folder):
        (folder / "c.txt").write_text("z")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        generate_atomically(tmp_path / "new", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left behind


def test_every_public_name_resolves():
    import brainalign.data.simulate as simulate

    for name in simulate.__all__:
        assert getattr(simulate, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        simulate.nope  # noqa: B018


def test_importing_the_package_is_cheap():
    code = (
        "import sys, brainalign.data.simulate as s; "
        "assert 'simulate_fmri' in dir(s); "
        "print(sorted(m for m in ('torch', 'nilearn', 'h5py', 'mne') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"snr": -1.0}, ValueError, "'snr' must be positive"),
        ({"shared_noise": 1.0}, ValueError, r"'shared_noise' must be in \[0, 1\)"),
        ({"n_repetitions": 1}, ValueError, "'n_repetitions' must be an integer >= 2"),
        ({"resolution_mm": 2.5}, ValueError, "'resolution_mm' must be an integer"),
        ({"n_test": N_STIM}, ValueError, "leaves no training stimulus"),
        ({"n_tests": 3}, TypeError, "unknown parameters.*Did you mean 'n_test'"),
        ({"train_overlap": 1.5}, ValueError, "'train_overlap' must be in"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_fmri(_features(), _ids(), region_layers=REGION_LAYERS, **{**SMALL, **kwargs})


def test_bad_inputs():
    feats = _features()
    with pytest.raises(TypeError, match="non-empty mapping"):
        simulate_fmri([np.zeros((3, 2))])
    with pytest.raises(ValueError, match="one row per stimulus"):
        simulate_fmri({"a": np.zeros((5, 2)), "b": np.zeros((6, 2))})
    with pytest.raises(ValueError, match="pass region_layers"):
        simulate_fmri({"a": feats["early"]}, _ids(), **SMALL)
    with pytest.raises(ValueError, match=r"missing \['VOT'\]"):
        simulate_fmri(feats, _ids(), region_layers={"EVC": "early", "LOC": "mid", "IPS": "late"})
    with pytest.raises(ValueError, match="not in 'features'"):
        simulate_fmri(feats, _ids(), region_layers={**REGION_LAYERS, "VOT": "fc7"})
    with pytest.raises(ValueError, match="'007' looks like a number"):
        simulate_fmri(feats, ["007", *_ids()[1:]], region_layers=REGION_LAYERS, **SMALL)
    with pytest.raises(ValueError, match="must be unique"):
        simulate_fmri(feats, ["a"] * N_STIM, region_layers=REGION_LAYERS, **SMALL)
    with pytest.raises(ValueError, match="'categories' has 3 entries"):
        simulate_fmri(feats, _ids(), region_layers=REGION_LAYERS, categories=["a"] * 3, **SMALL)
    with pytest.raises(ValueError, match="Invalid layer name 'a/b'"):
        simulate_fmri({"a/b": feats["early"]})


def test_region_outside_the_brain_is_an_error():
    far = RegionSpec("nowhere", ((0.0, 0.0, 300.0),), 5.0)
    cfg = dataclasses.replace(FMRISimulationConfig(**SMALL), regions=(*DEFAULT_REGIONS[:1], far))
    with pytest.raises(ValueError, match="'nowhere' has no voxel inside the brain mask"):
        simulate_fmri({"x": _features()["early"], "y": _features()["mid"]}, _ids(), config=cfg)
    with pytest.raises(ValueError, match="Region names must be unique"):
        FMRISimulationConfig(regions=(DEFAULT_REGIONS[0], DEFAULT_REGIONS[0]))


def test_ground_truth_of_another_kind_is_refused(tmp_path):
    from brainalign.data.simulate._common import save_ground_truth

    save_ground_truth(tmp_path, {"format": "something-else"}, {"x": np.zeros(3)})
    with pytest.raises(ValueError, match="not the ground truth of a simulated fMRI dataset"):
        load_fmri_ground_truth(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"has no 'ground_truth\.json'"):
        load_fmri_ground_truth(tmp_path / "missing")
