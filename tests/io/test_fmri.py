"""NIfTI readers: 4-D runs as time series and 4-D per-trial beta maps."""

from __future__ import annotations

import os
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.testing import data_path
from scipy.signal import detrend
from scipy.stats import zscore

from brainalign._utils.atomic import file_sha256
from brainalign._utils.errors import BrainAlignWarning, CorruptFileError
from brainalign.io.fmri import load_nifti_betas, load_nifti_runs
from brainalign.io.recording import TRIAL_COLUMNS

# distinct voxel sizes and an offset, so a transposed axis or a missing translation shows
AFFINE = np.array([[2.0, 0, 0, -10.0], [0, 3.0, 0, -20.0], [0, 0, 4.0, -30.0], [0, 0, 0, 1.0]])
SHAPE = (7, 8, 9)


def _save(path, data, affine=AFFINE, *, tr=2.0, unit="sec", dtype=None):
    img = nib.Nifti1Image(np.asarray(data), affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", unit)
    if np.ndim(data) == 4:
        img.header.set_zooms((*np.sqrt((affine[:3, :3] ** 2).sum(0)), tr))
    nib.save(img, path)
    return path


def _mask(rng, frac=0.4):
    mask = rng.random(SHAPE) < frac
    mask[0, 0, 0] = True
    return mask


def _fingerprint(paths):
    return {str(p): (file_sha256(p), os.stat(p).st_mtime_ns) for p in paths}


# ---------------------------------------------------------------------------------------------
# time series
# ---------------------------------------------------------------------------------------------


def test_runs_round_trip_mask_order_and_coords(tmp_path, rng):
    runs = [rng.normal(size=(*SHAPE, n)).astype(np.float32) for n in (10, 6)]
    paths = [_save(tmp_path / f"run{i}.nii.gz", d) for i, d in enumerate(runs)]
    mask = _mask(rng)
    mask_path = _save(tmp_path / "mask.nii.gz", mask.astype(np.uint8))
    before = _fingerprint([*paths, mask_path])

    rec = load_nifti_runs(paths, mask_path, subject="sub-03")

    assert rec.kind == "timeseries"
    assert rec.modality == "fmri"
    assert rec.subject == "03"
    assert rec.data.dtype == np.float32
    assert rec.data.shape == (16, mask.sum())
    np.testing.assert_array_equal(rec.data, np.concatenate([r[mask].T for r in runs]))
    np.testing.assert_array_equal(rec.metadata["run_of_tr"], [1] * 10 + [2] * 6)
    assert rec.metadata["n_trs_per_run"] == [10, 6]
    assert rec.tr == pytest.approx(2.0)
    np.testing.assert_array_equal(rec.mask, mask)
    np.testing.assert_allclose(rec.affine, AFFINE)
    np.testing.assert_allclose(
        rec.voxel_coords, nib.affines.apply_affine(AFFINE, np.argwhere(mask))
    )
    # each column's coordinate maps back to the voxel whose signal is in that column
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(AFFINE), rec.voxel_coords)).astype(int)
    for col in rng.choice(rec.n_features, 20, replace=False):
        np.testing.assert_array_equal(rec.data[:10, col], runs[0][tuple(ijk[col])])
    assert len(rec.trials) == 0
    assert list(rec.trials.columns[:7]) == list(TRIAL_COLUMNS)
    assert _fingerprint([*paths, mask_path]) == before


def test_scaled_int16_run_equals_get_fdata(tmp_path, rng):
    raw = rng.integers(-2000, 2000, size=(*SHAPE, 5)).astype(np.int16)
    img = nib.Nifti1Image(raw, AFFINE)
    img.header.set_slope_inter(0.25, 7.0)
    path = tmp_path / "scaled.nii"
    nib.save(img, path)
    mask = _mask(rng)
    rec = load_nifti_runs(path, mask, tr=1.5)
    expected = nib.load(path).get_fdata()[mask].T.astype(np.float32)
    np.testing.assert_array_equal(rec.data, expected)
    np.testing.assert_allclose(rec.data, raw[mask].T * 0.25 + 7.0)
    assert rec.tr == 1.5


def test_real_functional_nii_without_mask():
    path = data_path / "functional.nii"
    rec = load_nifti_runs(path)
    fdata = nib.load(path).get_fdata()
    varying = fdata.std(axis=-1) > 0
    assert rec.data.shape == (20, varying.sum())
    np.testing.assert_array_equal(rec.mask, varying)
    np.testing.assert_array_equal(rec.data, fdata[varying].T.astype(np.float32))
    assert rec.tr == pytest.approx(2.0)
    np.testing.assert_allclose(rec.affine, nib.load(path).affine)


def test_real_example4d_millisecond_tr_is_converted_with_a_warning():
    path = data_path / "example4d.nii.gz"
    with pytest.warns(BrainAlignWarning, match=r"TR = 2000 sec.*read as 2 s.*tr="):
        rec = load_nifti_runs(path)
    assert rec.tr == pytest.approx(2.0)
    assert rec.data.shape[0] == 2
    assert rec.mask.shape == (128, 96, 24)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_nifti_runs(path, tr=2.5).tr == 2.5


def test_tr_in_milliseconds_header(tmp_path, rng):
    path = _save(tmp_path / "ms.nii.gz", rng.normal(size=(*SHAPE, 4)), tr=1500.0, unit="msec")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_nifti_runs(path).tr == pytest.approx(1.5)


def test_runs_with_different_trs_raise(tmp_path, rng):
    a = _save(tmp_path / "a.nii.gz", rng.normal(size=(*SHAPE, 4)), tr=2.0)
    b = _save(tmp_path / "b.nii.gz", rng.normal(size=(*SHAPE, 4)), tr=1.0)
    with pytest.raises(ValueError, match=r"different TRs.*a\.nii\.gz.*tr="):
        load_nifti_runs([a, b])
    assert load_nifti_runs([a, b], tr=1.0).tr == 1.0


def test_events_from_bids_tsv_and_dataframes(tmp_path, rng):
    runs = [rng.normal(size=(*SHAPE, 8)).astype(np.float32) for _ in range(2)]
    ev1 = tmp_path / "sub-01_run-1_events.tsv"
    ev1.write_text(
        "onset\tduration\ttrial_type\tstim_file\tresponse_time\n"
        "0.0\t2.0\timage\tcat.png\t0.5\n"
        "4.0\t2.0\tfixation\tn/a\tn/a\n"
        "8.0\t2.0\timage\tdog.png\t0.7\n"
    )
    ev2 = pd.DataFrame(
        {
            "onset": [1.0, 5.0],
            "duration": [2.0, 2.0],
            "trial_type": ["image", "image"],
            "stim_file": ["dog.png", "cat.png"],
            "response_time": [0.4, np.nan],
        }
    )
    ev2_copy = ev2.copy(deep=True)
    with pytest.warns(BrainAlignWarning, match="Dropped 1 events without a stimulus"):
        rec = load_nifti_runs([nib.Nifti1Image(r, AFFINE) for r in runs], events=[ev1, ev2])
    t = rec.trials
    assert list(t["stimulus_id"]) == ["cat.png", "dog.png", "dog.png", "cat.png"]
    assert list(t["run"]) == [1, 1, 2, 2]
    np.testing.assert_allclose(t["onset"], [0.0, 8.0, 1.0, 5.0])
    # repetitions counted per stimulus across runs (naive reference)
    seen: dict[str, int] = {}
    expected = []
    for s in t["stimulus_id"]:
        expected.append(seen.get(s, 0))
        seen[s] = seen.get(s, 0) + 1
    assert list(t["repetition"]) == expected
    assert list(t["trial_type"]) == ["image"] * 4  # stim_file wins; trial_type is kept
    np.testing.assert_allclose(t["response_time"], [0.5, 0.7, 0.4, np.nan])
    pd.testing.assert_frame_equal(ev2, ev2_copy)


def test_single_events_table_with_run_column(rng):
    imgs = [nib.Nifti1Image(rng.normal(size=(*SHAPE, 5)), AFFINE) for _ in range(2)]
    events = pd.DataFrame({"onset": [0.0, 2.0, 1.0], "run": [1, 1, 2], "stimulus_id": [5, 6, 5]})
    rec = load_nifti_runs(imgs, events=events, tr=2.0)
    assert list(rec.trials["run"]) == [1, 1, 2]
    assert list(rec.trials["stimulus_id"]) == ["5", "6", "5"]
    assert list(rec.trials["repetition"]) == [0, 0, 1]


def test_events_errors_name_the_problem(tmp_path, rng):
    imgs = [nib.Nifti1Image(rng.normal(size=(*SHAPE, 5)), AFFINE) for _ in range(2)]
    ev = pd.DataFrame({"onset": [0.0], "trial_type": ["a"]})
    with pytest.raises(ValueError, match=r"'events' has 2 tables but 'func' has 3 runs"):
        load_nifti_runs([*imgs, imgs[0]], events=[ev, ev], tr=2.0)
    with pytest.raises(ValueError, match=r"no 'run' column.*1\.\.2"):
        load_nifti_runs(imgs, events=ev, tr=2.0)
    bad = tmp_path / "events.tsv"
    bad.write_text("time\tcondition\n0\ta\n")
    with pytest.raises(ValueError, match=r"events\.tsv.*lacks \['onset', 'stimulus_id'\].*'time'"):
        load_nifti_runs(imgs[0], events=bad, tr=2.0)


def test_standardize_and_detrend_match_scipy_per_run(rng):
    runs = [
        (rng.normal(size=(*SHAPE, n)) + np.linspace(0, 5, n)).astype(np.float32) for n in (9, 7)
    ]
    mask = _mask(rng)
    rec = load_nifti_runs(
        [nib.Nifti1Image(r, AFFINE) for r in runs], mask, tr=2.0, standardize=True, detrend=True
    )
    expected = np.concatenate(
        [zscore(detrend(r[mask].T.astype(np.float64), axis=0), axis=0, ddof=1) for r in runs]
    )
    assert rec.data.dtype == np.float32
    np.testing.assert_allclose(rec.data, expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"'standardize' parameter.*got 'z'"):
        load_nifti_runs(nib.Nifti1Image(runs[0], AFFINE), mask, tr=2.0, standardize="z")


def test_mask_none_excludes_constant_background_silently(rng):
    data = np.zeros((*SHAPE, 6), np.float32)
    brain = _mask(rng, 0.5)
    data[brain] = rng.normal(size=(brain.sum(), 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = load_nifti_runs(nib.Nifti1Image(data, AFFINE), tr=2.0)
    np.testing.assert_array_equal(rec.mask, brain)
    np.testing.assert_array_equal(rec.data, data[brain].T)


def test_explicit_mask_drops_nan_and_constant_voxels_with_warning(rng):
    data = rng.normal(size=(*SHAPE, 6)).astype(np.float32)
    mask = _mask(rng)
    idx = np.argwhere(mask)
    data[tuple(idx[0])][2] = np.nan
    data[tuple(idx[1])] = 3.0
    with pytest.warns(BrainAlignWarning, match=rf"Dropped 2 of {mask.sum()} voxels.*6 TRs"):
        rec = load_nifti_runs(nib.Nifti1Image(data, AFFINE), mask, tr=2.0)
    kept = mask.copy()
    kept[tuple(idx[0])] = kept[tuple(idx[1])] = False
    np.testing.assert_array_equal(rec.mask, kept)
    np.testing.assert_array_equal(rec.data, data[kept].T)
    np.testing.assert_allclose(
        rec.voxel_coords, nib.affines.apply_affine(AFFINE, np.argwhere(kept))
    )
    assert rec.metadata["n_dropped_voxels"] == 2
    data[mask] = 1.0
    with pytest.raises(ValueError, match=rf"All {mask.sum()} voxels .* NaN or constant"):
        load_nifti_runs(nib.Nifti1Image(data, AFFINE), mask, tr=2.0)


def test_epi_mask_matches_nilearn_on_real_example4d():
    from nilearn.masking import compute_multi_epi_mask

    img = nib.load(data_path / "example4d.nii.gz")
    rec = load_nifti_runs(img, "epi", tr=2.0)
    reference = compute_multi_epi_mask([img]).get_fdata() != 0
    assert rec.mask.sum() + rec.metadata["n_dropped_voxels"] == reference.sum()
    assert not (rec.mask & ~reference).any()
    with pytest.raises(ValueError, match=r"compute_multi_epi_mask found no brain voxel.*mask=None"):
        load_nifti_runs(data_path / "functional.nii", "epi")


def test_roi_labels_give_each_voxel_its_region(tmp_path, rng):
    data = rng.normal(size=(*SHAPE, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=SHAPE).astype(np.int16)
    label_path = _save(tmp_path / "atlas.nii.gz", labels)
    mask = _mask(rng)
    img = nib.Nifti1Image(data, AFFINE)
    rec = load_nifti_runs(img, mask, tr=2.0, roi_labels=label_path, roi_names={1: "V1", 2: "FFA"})
    names = {0: "", 1: "V1", 2: "FFA", 3: "3"}
    assert list(rec.roi_labels) == [names[v] for v in labels[mask]]
    with pytest.raises(ValueError, match=r"roi_labels.*integer labels"):
        load_nifti_runs(img, mask, tr=2.0, roi_labels=nib.Nifti1Image(labels + 0.5, AFFINE))


def test_real_mni_mask_on_another_grid_is_rejected_then_resampled(rng):
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_to_img

    mni = load_mni152_brain_mask(resolution=2)
    small = nib.Nifti1Image(rng.normal(size=(*SHAPE, 3)).astype(np.float32), AFFINE)
    with pytest.raises(ValueError, match=r"shape \(99, 117, 95\) vs \(7, 8, 9\).*resample_to_img"):
        load_nifti_runs(small, mni, tr=2.0)
    # the suggested fix: a run on a coarse MNI grid and the mask resampled onto it
    mni_affine = np.diag([8.0, 8.0, 8.0, 1.0])
    mni_affine[:3, 3] = [-90, -126, -72]
    run = nib.Nifti1Image(rng.normal(size=(23, 28, 23, 3)).astype(np.float32), mni_affine)
    resampled = resample_to_img(mni, run, interpolation="nearest")
    rec = load_nifti_runs(run, resampled, tr=2.0)
    np.testing.assert_array_equal(rec.mask, resampled.get_fdata() > 0)
    assert rec.n_features == (resampled.get_fdata() > 0).sum() > 100


def test_mask_with_another_affine_names_both(rng):
    img = nib.Nifti1Image(rng.normal(size=(*SHAPE, 3)).astype(np.float32), AFFINE)
    mask = nib.Nifti1Image(_mask(rng).astype(np.uint8), np.eye(4))
    with pytest.raises(ValueError, match=r"affine \[\[1\.0, 0\.0.* vs \[\[2\.0.*resample_to_img"):
        load_nifti_runs(img, mask, tr=2.0)


def test_runs_on_different_grids_raise(rng):
    a = nib.Nifti1Image(rng.normal(size=(*SHAPE, 3)).astype(np.float32), AFFINE)
    b = nib.Nifti1Image(rng.normal(size=(7, 8, 10, 3)).astype(np.float32), AFFINE)
    with pytest.raises(ValueError, match=r"func\[1\].*shape \(7, 8, 10\) vs \(7, 8, 9\)"):
        load_nifti_runs([a, b], tr=2.0)


def test_3d_image_where_4d_is_needed(tmp_path, rng):
    path = _save(tmp_path / "mean.nii.gz", rng.normal(size=SHAPE).astype(np.float32))
    with pytest.raises(ValueError, match=r"'func'.*mean\.nii\.gz.*3-D.*\(7, 8, 9\).*concat_imgs"):
        load_nifti_runs(path)
    with pytest.raises(ValueError, match=r"'betas'.*3-D.*concat_imgs"):
        load_nifti_betas(path, None)


def test_missing_file_names_parameter_and_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'func' does not exist.*nope\.nii\.gz"):
        load_nifti_runs(tmp_path / "nope.nii.gz")
    run = nib.Nifti1Image(np.zeros((*SHAPE, 2), np.float32), AFFINE)
    with pytest.raises(FileNotFoundError, match=r"'mask' does not exist.*brain\.nii"):
        load_nifti_runs(run, tmp_path / "brain.nii")


@pytest.mark.parametrize(
    ("name", "keep"), [("run.nii.gz", 0.5), ("run.nii", 0.5), ("run.nii.gz", 100)]
)
def test_truncated_nifti_is_a_corrupt_file_error(tmp_path, rng, name, keep):
    path = _save(tmp_path / name, rng.normal(size=(*SHAPE, 5)).astype(np.float32))
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * keep) if keep < 1 else keep])
    with pytest.raises(CorruptFileError, match=rf"'func' \('.*{name}'\).*truncated.*download"):
        load_nifti_runs(path)


def test_readers_leave_in_memory_inputs_unchanged(rng):
    data = rng.normal(size=(*SHAPE, 6)).astype(np.float32)
    img = nib.Nifti1Image(data, AFFINE)
    header = img.header.binaryblock
    mask = _mask(rng)
    mask_copy, data_copy = mask.copy(), data.copy()
    events = pd.DataFrame({"onset": [0.0, 3.0], "trial_type": ["a", "b"]})
    events_copy = events.copy(deep=True)
    rec = load_nifti_runs(img, mask, events=events, tr=2.0, standardize=True, detrend=True)
    rec.data[:] = 0  # the Recording owns its data
    betas = load_nifti_betas(img, pd.DataFrame({"stimulus_id": list("abcdef")}), mask, scale=3.0)
    betas.data[:] = 0
    np.testing.assert_array_equal(np.asarray(img.dataobj), data_copy)
    np.testing.assert_array_equal(mask, mask_copy)
    assert img.header.binaryblock == header
    pd.testing.assert_frame_equal(events, events_copy)


# ---------------------------------------------------------------------------------------------
# beta maps
# ---------------------------------------------------------------------------------------------


def test_betas_round_trip_with_nsd_scaling_and_design(tmp_path, rng):
    psc = [rng.normal(scale=2.0, size=(*SHAPE, n)) for n in (5, 4)]
    stored = [np.round(p * 300).astype(np.int16) for p in psc]
    paths = [_save(tmp_path / f"betas_session0{i + 1}.nii.gz", s) for i, s in enumerate(stored)]
    design = tmp_path / "design.tsv"
    ids = [7, 3, 7, 9, 3, 3, 7, 1, 2]
    rows = [f"{t + 1}\t{1 + (t >= 5)}\t{k}\n" for t, k in enumerate(ids)]
    design.write_text("trial\tsession\t73KID\n" + "".join(rows))
    mask = _mask(rng)
    before = _fingerprint([*paths, design])
    rec = load_nifti_betas(paths, design, mask, subject="02", scale=300)
    assert rec.kind == "trials"
    assert rec.data.shape == (9, mask.sum())
    expected = np.concatenate([s[mask].T for s in stored]).astype(np.float32) / np.float32(300)
    np.testing.assert_array_equal(rec.data, expected)
    np.testing.assert_allclose(rec.data, np.concatenate([p[mask].T for p in psc]), atol=1 / 600)
    t = rec.trials
    assert list(t["stimulus_id"]) == ["7", "3", "7", "9", "3", "3", "7", "1", "2"]
    assert list(t["session"]) == ["01"] * 5 + ["02"] * 4
    assert list(t["repetition"]) == [0, 0, 1, 0, 1, 2, 2, 0, 0]
    assert list(t["trial_id"]) == list(range(1, 10))
    assert set(t["subject"]) == {"02"}
    assert rec.metadata["n_trials_per_file"] == [5, 4]
    assert rec.metadata["scale"] == 300
    np.testing.assert_allclose(
        rec.voxel_coords, nib.affines.apply_affine(AFFINE, np.argwhere(mask))
    )
    assert _fingerprint([*paths, design]) == before


def test_betas_without_design_or_mask(rng):
    data = np.zeros((*SHAPE, 4), np.float32)
    brain = _mask(rng)
    data[brain] = rng.normal(size=(brain.sum(), 4))
    rec = load_nifti_betas(nib.Nifti1Image(data, AFFINE), None)
    assert list(rec.trials["stimulus_id"]) == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(rec.mask, brain)


def test_betas_design_with_wrong_row_count(rng):
    img = nib.Nifti1Image(rng.normal(size=(*SHAPE, 4)).astype(np.float32), AFFINE)
    design = pd.DataFrame({"stimulus_id": ["a", "b", "c"]})
    with pytest.raises(ValueError, match=r"has 3 rows but the betas have 4 trials.*one row per"):
        load_nifti_betas(img, design)
    with pytest.raises(ValueError, match=r"lists subjects \['05'\] but subject='01'"):
        load_nifti_betas(img, pd.DataFrame({"stimulus_id": list("abcd"), "subject": [5] * 4}))


def test_betas_nan_and_constant_voxels(rng):
    data = rng.normal(size=(*SHAPE, 5)).astype(np.float32)
    mask = _mask(rng)
    idx = np.argwhere(mask)
    data[tuple(idx[3])][0] = np.nan
    data[tuple(idx[4])] = 0.0
    data[tuple(idx[5])] = np.inf
    with pytest.warns(BrainAlignWarning, match=rf"Dropped 3 of {mask.sum()} voxels.*5 trials"):
        rec = load_nifti_betas(nib.Nifti1Image(data, AFFINE), None, mask)
    assert rec.n_features == mask.sum() - 3
    assert np.isfinite(rec.data).all()
    data[mask] = np.nan
    with pytest.raises(ValueError, match=r"All \d+ voxels .* NaN or constant across the 5 trials"):
        load_nifti_betas(nib.Nifti1Image(data, AFFINE), None, mask)
