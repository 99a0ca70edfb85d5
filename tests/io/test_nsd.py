"""NSD-style HDF5 betas: int16 × 300 scaling, layouts, partial reads, bad files."""

from __future__ import annotations

import os

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainalign._utils.atomic import file_sha256
from brainalign._utils.errors import BrainAlignWarning, CorruptFileError
from brainalign.io import nsd
from brainalign.io.nsd import load_nsd_betas

SHAPE = (7, 8, 9)  # X, Y, Z
AFFINE = np.array([[1.8, 0, 0, -60.0], [0, 1.8, 0, -90.0], [0, 0, 1.8, -50.0], [0, 0, 0, 1.0]])


def _design(n, rng, **extra):
    return pd.DataFrame({"73KID": rng.integers(1, 6, size=n), **extra})


def _write(path, stored, **kwargs):
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("betas", data=stored, **kwargs)
        return ds.name


def _corrupt_chunk(path, chunk_offset):
    """Overwrite the bytes of the chunk that starts at ``chunk_offset`` with garbage."""
    with h5py.File(path, "r") as f:
        ds = f["betas"]
        infos = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    info = next(i for i in infos if i.chunk_offset == chunk_offset)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)


@pytest.fixture
def psc(rng):
    """Percent signal change betas (11 trials) and their NSD storage (int16 of × 300)."""
    values = rng.normal(scale=3.0, size=(11, *SHAPE))
    return values, np.round(values * 300).astype(np.int16)


@pytest.fixture
def mask(rng):
    m = rng.random(SHAPE) < 0.5
    m[0, 0, 0] = m[-1, -1, -1] = True
    return m


def test_2d_layout_round_trip_is_int16_over_300(tmp_path, psc, mask, rng):
    values, stored = psc
    flat = stored[:, mask]
    path = tmp_path / "betas.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("betas", data=flat)
        ds.attrs["voxel_ijk"] = np.argwhere(mask)
        ds.attrs["volume_shape"] = SHAPE
        f.attrs["affine"] = AFFINE
    design = tmp_path / "design.csv"
    _design(11, rng).to_csv(design, index=False)
    before = {p: (file_sha256(p), os.stat(p).st_mtime_ns) for p in (path, design)}

    rec = load_nsd_betas(path, design, subject="04")

    assert rec.kind == "trials"
    assert rec.data.dtype == np.float32
    np.testing.assert_array_equal(rec.data, flat.astype(np.float32) / np.float32(300))
    np.testing.assert_allclose(rec.data, values[:, mask], atol=1 / 600 + 1e-6)
    assert rec.metadata["scale"] == 300.0
    np.testing.assert_array_equal(rec.mask, mask)
    np.testing.assert_allclose(rec.affine, AFFINE)
    np.testing.assert_allclose(
        rec.voxel_coords, nib.affines.apply_affine(AFFINE, np.argwhere(mask))
    )
    assert list(rec.trials["stimulus_id"]) == [str(v) for v in pd.read_csv(design)["73KID"]]
    assert set(rec.trials["subject"]) == {"04"}
    assert before == {p: (file_sha256(p), os.stat(p).st_mtime_ns) for p in (path, design)}


@pytest.mark.parametrize("layout", ["nsd_zyx", "xyz"])
def test_volumetric_layouts_with_a_mask(tmp_path, psc, mask, rng, layout):
    _, stored = psc
    on_disk = stored.transpose(0, 3, 2, 1) if layout == "nsd_zyx" else stored
    path = tmp_path / "betas_session01.hdf5"
    _write(path, on_disk, chunks=(11, 1, 1, 1))  # NSD's [1 1 1 750] chunks, seen from h5py
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), AFFINE)
    rec = load_nsd_betas(path, _design(11, rng), mask=mask_img)
    np.testing.assert_array_equal(rec.data, stored[:, mask].astype(np.float32) / np.float32(300))
    np.testing.assert_array_equal(rec.mask, mask)
    np.testing.assert_allclose(
        rec.voxel_coords, nib.affines.apply_affine(AFFINE, np.argwhere(mask))
    )


@pytest.mark.parametrize("chunks", [(11, 1, 1, 1), (1, 9, 8, 7), None])
def test_selection_equals_full_read_with_small_blocks(
    tmp_path, psc, mask, rng, monkeypatch, chunks
):
    _, stored = psc
    path = tmp_path / "betas.hdf5"
    _write(path, stored.transpose(0, 3, 2, 1), chunks=chunks)
    design = _design(11, rng)
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), AFFINE)
    full = load_nsd_betas(path, design, mask=mask_img)
    monkeypatch.setattr(nsd, "_BLOCK_BYTES", 100)  # many blocks of uneven sizes
    cols = np.array([0, 3, 4, 17, int(mask.sum()) - 1])
    rows = np.array([0, 2, 3, 4, 10])
    part = load_nsd_betas(path, design, mask=mask_img, voxel_indices=cols[::-1], trials=rows)
    np.testing.assert_array_equal(part.data, full.data[np.ix_(rows, cols)])
    np.testing.assert_array_equal(part.metadata["voxel_indices"], cols)
    np.testing.assert_array_equal(part.metadata["file_trials"], rows)
    np.testing.assert_allclose(part.voxel_coords, full.voxel_coords[cols])
    np.testing.assert_array_equal(np.flatnonzero(part.mask), np.flatnonzero(full.mask)[cols])
    pd.testing.assert_frame_equal(
        part.trials, full.trials.iloc[rows].reset_index(drop=True).rename_axis("trial")
    )
    blocked = load_nsd_betas(path, design, mask=mask_img)
    np.testing.assert_array_equal(blocked.data, full.data)


def test_unselected_voxel_chunks_are_never_read(tmp_path, psc, mask, rng):
    _, stored = psc
    flat = stored.reshape(11, -1)[:, :300]
    path = tmp_path / "betas.h5"
    _write(path, flat, chunks=(11, 50), compression="gzip")  # voxel-major chunks
    _corrupt_chunk(path, (0, 250))
    design = _design(11, rng)
    rec = load_nsd_betas(path, design, voxel_indices=np.arange(10, 240))
    np.testing.assert_array_equal(rec.data, flat[:, 10:240] / np.float32(300))
    with pytest.raises(CorruptFileError, match=r"'betas' \('.*betas\.h5'\).*HDF5.*download"):
        load_nsd_betas(path, design)


def test_unselected_trial_chunks_are_never_read(tmp_path, psc, rng):
    _, stored = psc
    flat = stored.reshape(11, -1)[:, :300]
    path = tmp_path / "betas.h5"
    _write(path, flat, chunks=(1, 300), compression="gzip")  # trial-major chunks
    _corrupt_chunk(path, (7, 0))
    design = _design(11, rng)
    rec = load_nsd_betas(path, design, trials=[0, 1, 5, 9])
    np.testing.assert_array_equal(rec.data, flat[[0, 1, 5, 9]] / np.float32(300))
    with pytest.raises(CorruptFileError, match=r"cannot be read as an HDF5 file"):
        load_nsd_betas(path, design)


def test_session_selects_rows_of_design_and_file(tmp_path, psc, rng):
    _, stored = psc
    flat = stored.reshape(11, -1)[:, :40]
    design = _design(
        11, rng, session=[1] * 6 + [2] * 5, trial=list(range(1, 7)) + list(range(1, 6))
    )
    whole = tmp_path / "all_sessions.h5"
    _write(whole, flat)
    rec = load_nsd_betas(whole, design, session=2)
    np.testing.assert_array_equal(rec.data, flat[6:] / np.float32(300))
    assert list(rec.trials["session"]) == ["02"] * 5
    assert list(rec.trials["trial_id"]) == [1, 2, 3, 4, 5]
    one = tmp_path / "betas_session02.h5"
    _write(one, flat[6:])  # one session per file, as NSD ships them
    rec_one = load_nsd_betas(one, design, session="ses-02")
    np.testing.assert_array_equal(rec_one.data, rec.data)
    np.testing.assert_array_equal(rec_one.metadata["file_trials"], np.arange(5))
    with pytest.raises(
        ValueError, match=r"no trial of session '03'; its sessions are \['01', '02'\]"
    ):
        load_nsd_betas(whole, design, session=3)
    odd = tmp_path / "odd.h5"
    _write(odd, flat[:4])
    with pytest.raises(
        ValueError, match=r"has 4 trials, which is neither the 11 rows .* nor the 5"
    ):
        load_nsd_betas(odd, design, session=2)
    with pytest.raises(ValueError, match=r"needs a 'session' column"):
        load_nsd_betas(whole, _design(11, rng), session=2)


def test_float_dataset_is_not_rescaled_and_nan_voxels_are_dropped(tmp_path, rng):
    values = rng.normal(size=(11, 30)).astype(np.float32)
    values[4, 7] = np.nan
    values[:, 12] = 0.5
    path = tmp_path / "float.h5"
    _write(path, values)
    with pytest.warns(BrainAlignWarning, match=r"Dropped 2 of 30 voxels.*11 trials"):
        rec = load_nsd_betas(path, None)
    keep = np.setdiff1d(np.arange(30), [7, 12])
    np.testing.assert_array_equal(rec.data, values[:, keep])
    np.testing.assert_array_equal(rec.metadata["voxel_indices"], keep)
    assert rec.metadata["scale"] is None
    assert list(rec.trials["stimulus_id"]) == [str(i) for i in range(11)]
    _write(path, np.zeros((11, 30), np.int16))
    with pytest.raises(ValueError, match=r"All 30 voxels .*NaN or constant across the 11 trials"):
        load_nsd_betas(path, None)


def test_missing_and_corrupt_files(tmp_path, psc):
    with pytest.raises(FileNotFoundError, match=r"'betas' does not exist.*betas_session01\.hdf5"):
        load_nsd_betas(tmp_path / "betas_session01.hdf5", None)
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(CorruptFileError, match=r"garbage\.hdf5.*file signature not found"):
        load_nsd_betas(garbage, None)
    path = tmp_path / "truncated.hdf5"
    _write(path, psc[1])
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(CorruptFileError, match=r"truncated\.hdf5.*truncated file"):
        load_nsd_betas(path, None)


def test_dataset_and_geometry_errors(tmp_path, psc, mask, rng):
    _, stored = psc
    path = tmp_path / "betas.hdf5"
    _write(path, stored.transpose(0, 3, 2, 1))
    with pytest.raises(ValueError, match=r"no dataset 'beta'; its datasets are \['betas'\]"):
        load_nsd_betas(path, None, dataset="beta")
    with pytest.raises(ValueError, match=r"volumetric, shape \(11, 9, 8, 7\); pass mask="):
        load_nsd_betas(path, None)
    wrong = np.ones((7, 8, 10), bool)
    with pytest.raises(
        ValueError, match=r"shape \(7, 8, 10\) but .* \(9, 8, 7\) .* \(7, 8, 9\).*resample_to_img"
    ):
        load_nsd_betas(path, None, mask=wrong)
    with pytest.raises(ValueError, match=r"has 10 rows but 'betas' .* has 11 trials"):
        load_nsd_betas(path, _design(10, rng), mask=mask)
    dup = _design(11, rng, trial=[1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 2])
    with pytest.raises(ValueError, match=r"duplicated trial ids: \['2', '9'\]"):
        load_nsd_betas(path, dup, mask=mask)
    with pytest.raises(ValueError, match=r"'voxel_indices' must select positions in 0\.\."):
        load_nsd_betas(path, None, mask=mask, voxel_indices=[int(mask.sum())])
    flat = tmp_path / "flat.hdf5"
    _write(flat, stored[:, mask])
    with pytest.raises(ValueError, match=r"mask .* has 3 voxels but .* has \d+ columns"):
        load_nsd_betas(flat, None, mask=np.pad(np.ones((1, 1, 3), bool), ((0, 6), (0, 7), (0, 6))))
